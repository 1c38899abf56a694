//! The certificate a listener serves, which SIGHUP can replace: certificates are renewed every
//! 60-90 days (Let's Encrypt), and a restart would close every session. rustls asks
//! [`ServedCert`] for the certificate at each handshake (it is the configurations' resolver), so
//! a renewed pair reaches every new connection on every shard while the open ones keep theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};

use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

use super::{load_pair, server_end_point, TlsError};
use crate::auth::EndPointHash;

/// A certificate chain and its key, with what SASL binds to (RFC 5929 `tls-server-end-point`).
#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    end_point: Option<EndPointHash>,
}

/// The certificate and key a listener (or s2s) presents: read from files, read again by
/// [`reload_all`].
#[derive(Debug)]
pub struct ServedCert {
    /// The PEM files, or None for a pair given in memory (tests), which never reloads.
    files: Option<(PathBuf, PathBuf)>,
    /// Read at every handshake, written only by a reload: the lock is never held across I/O.
    current: RwLock<Arc<Current>>,
}

/// Every pair opened from files, for [`reload_all`]; two listeners naming the same files share one.
static OPENED: Mutex<Vec<Weak<ServedCert>>> = Mutex::new(Vec::new());

impl ServedCert {
    /// A pair from memory: never reloaded.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Arc<ServedCert>, rustls::Error> {
        Ok(Arc::new(ServedCert {
            files: None,
            current: RwLock::new(Arc::new(certified(chain, key)?)),
        }))
    }

    /// The pair in `cert` and `key` (PEM), checked (the key must match the certificate); the
    /// same object for the same files.
    pub fn open(cert: &Path, key: &Path) -> Result<Arc<ServedCert>, TlsError> {
        let mut opened = OPENED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        opened.retain(|w| w.strong_count() > 0);
        let same = |s: &Arc<ServedCert>| {
            s.files
                .as_ref()
                .is_some_and(|(c, k)| c.as_path() == cert && k.as_path() == key)
        };
        if let Some(known) = opened.iter().filter_map(Weak::upgrade).find(same) {
            return Ok(known);
        }
        let served = Arc::new(ServedCert {
            current: RwLock::new(Arc::new(read(cert, key)?)),
            files: Some((cert.to_owned(), key.to_owned())),
        });
        opened.push(Arc::downgrade(&served));
        Ok(served)
    }

    /// The `tls-server-end-point` hash of the certificate served now.
    pub fn end_point(&self) -> Option<EndPointHash> {
        self.now().end_point
    }

    /// The pair served now, for a connection starting its handshake: what it binds to later
    /// (RFC 5929: the certificate of that connection's handshake) stays the same across reloads.
    pub fn snapshot(&self) -> CertSnapshot {
        CertSnapshot(self.now())
    }

    /// The certificate file, if the pair came from files.
    pub fn cert_path(&self) -> Option<&Path> {
        self.files.as_ref().map(|(c, _)| c.as_path())
    }

    fn now(&self) -> Arc<Current> {
        // A poisoned lock only means a reload panicked between two plain assignments: the value
        // is whole either way.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the files again; on any error the pair served so far stays. `Ok(true)` when the
    /// certificate changed.
    fn reload(&self) -> Result<bool, TlsError> {
        let Some((cert, key)) = &self.files else {
            return Ok(false);
        };
        let fresh = read(cert, key)?;
        let changed = fresh.key.cert != self.now().key.cert;
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(fresh);
        Ok(changed)
    }
}

/// The certificate a connection was served (see [`ServedCert::snapshot`]).
#[derive(Debug, Clone)]
pub struct CertSnapshot(Arc<Current>);

impl CertSnapshot {
    /// Its `tls-server-end-point` hash, if its signature names one.
    pub fn end_point(&self) -> Option<EndPointHash> {
        self.0.end_point
    }
}

/// What one pair's reload did.
#[derive(Debug)]
pub struct Reloaded {
    /// The certificate file.
    pub cert: PathBuf,
    /// Whether a different certificate is now served, or why the old one stays.
    pub outcome: Result<bool, TlsError>,
}

/// Reads every pair opened from files again (SIGHUP). A pair that fails to load (missing,
/// half-written, key not matching) keeps serving the previous one.
pub fn reload_all() -> Vec<Reloaded> {
    let live: Vec<Arc<ServedCert>> = {
        let mut opened = OPENED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        opened.retain(|w| w.strong_count() > 0);
        opened.iter().filter_map(Weak::upgrade).collect()
    };
    live.iter()
        .filter_map(|s| {
            Some(Reloaded {
                cert: s.cert_path()?.to_owned(),
                outcome: s.reload(),
            })
        })
        .collect()
}

fn read(cert: &Path, key: &Path) -> Result<Current, TlsError> {
    let (chain, private_key) = load_pair(cert, key)?;
    // load_pair returns a non-empty chain.
    webpki::EndEntityCert::try_from(&chain[0]).map_err(|source| TlsError::BadCertificate {
        path: cert.to_owned(),
        source,
    })?;
    certified(chain, private_key).map_err(|source| TlsError::Rejected {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    })
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Current, rustls::Error> {
    let provider = rustls::crypto::ring::default_provider();
    let end_point = chain.first().and_then(|c| server_end_point(c));
    let key = CertifiedKey::from_der(chain, key, &provider)?;
    Ok(Current {
        key: Arc::new(key),
        end_point,
    })
}

impl ResolvesServerCert for ServedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.now().key.clone())
    }
}

/// Outgoing s2s streams present the same pair (SASL EXTERNAL).
impl ResolvesClientCert for ServedCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.now().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
