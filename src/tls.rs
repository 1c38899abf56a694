//! rustls server configurations for c2s listeners: configured PEM files, or a self-signed
//! certificate for all hosts generated once into `DATA_DIR/tls/` and reused.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::ServerConfig;
use tracing::{info, warn};

use crate::auth::EndPointHash;
use crate::config::{C2sListenerConfig, General, TlsMode};

mod served;
pub use served::{reload_all, CertSnapshot, Reloaded, ServedCert};

/// ALPN protocol id for direct TLS c2s (XEP-0368).
pub const ALPN_XMPP_CLIENT: &[u8] = b"xmpp-client";
/// Directory under `data_dir` holding the generated certificate.
pub const SELF_SIGNED_DIR: &str = "tls";
/// File name of the generated certificate.
pub const SELF_SIGNED_CERT: &str = "selfsigned-cert.pem";
/// File name of the generated private key (mode 0600).
pub const SELF_SIGNED_KEY: &str = "selfsigned-key.pem";

/// Serializes generation within the process: several listeners (or shards) may ask at once,
/// and two interleaved generations could leave a certificate next to the other one's key.
static SELF_SIGNED_LOCK: Mutex<()> = Mutex::new(());

/// Why a TLS server configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is missing, unreadable or not PEM.
    #[error("{}: cannot read certificate: {source}", path.display())]
    ReadCert {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{}: no certificate found", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file is missing, unreadable, not PEM or holds no private key.
    #[error("{}: cannot read private key: {source}", path.display())]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: pem::Error,
    },
    /// The certificate is PEM but not a parsable X.509 certificate.
    #[error("{}: invalid certificate: {source}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// webpki's reason.
        source: webpki::Error,
    },
    /// A trust anchor rustls does not accept.
    #[error("{}: unusable CA certificate: {source}", path.display())]
    BadAnchor {
        /// The file.
        path: PathBuf,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// rustls refused the client configuration's protocol versions.
    #[error("cannot build a TLS client configuration: {0}")]
    Client(rustls::Error),
    /// Only one of certfile/keyfile is set (configuration validation normally prevents this).
    #[error("listener on port {port}: certfile and keyfile must be given together")]
    HalfPair {
        /// The listener's port.
        port: u16,
    },
    /// rustls rejected the pair (bad key, key not matching the certificate, ...).
    #[error("{} / {}: {source}", cert.display(), key.display())]
    Rejected {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// No host can be put in a certificate (only ASCII names can, no punycode conversion yet).
    #[error("no host can be used as a certificate name: {0:?}")]
    NoCertifiableHost(Vec<String>),
    /// rcgen failed to generate the certificate.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Writing the generated files failed.
    #[error("{}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A listener's rustls configuration and the certificate it serves (which SASL binds to).
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The rustls server configuration (its resolver is `cert`).
    pub config: Arc<ServerConfig>,
    /// The pair served, which SIGHUP may replace.
    pub cert: Arc<ServedCert>,
}

/// Builds the rustls server configuration of `listener` (TLS 1.2 and 1.3, ring provider;
/// ALPN `xmpp-client` for direct TLS). Without a configured certificate, uses the self-signed
/// one from [`ensure_self_signed`].
pub fn server_config(
    listener: &C2sListenerConfig,
    general: &General,
) -> Result<ServerTls, TlsError> {
    let (cert, key) = match (&listener.certfile, &listener.keyfile) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        (None, None) => ensure_self_signed(general)?,
        _ => {
            return Err(TlsError::HalfPair {
                port: listener.port,
            })
        }
    };
    let served = ServedCert::open(&cert, &key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| TlsError::Rejected {
            cert: cert.clone(),
            key: key.clone(),
            source,
        })?
        .with_no_client_auth()
        .with_cert_resolver(served.clone());
    if listener.tls == TlsMode::Tls {
        config.alpn_protocols = vec![ALPN_XMPP_CLIENT.to_vec()];
    }
    Ok(ServerTls {
        config: Arc::new(config),
        cert: served,
    })
}

/// RFC 5929 §4.1 `tls-server-end-point` of a certificate: its DER hashed with the hash of its
/// signature algorithm, SHA-256 in place of MD5 and SHA-1. None where the algorithm names no
/// hash (Ed25519, RSASSA-PSS with parameters): no binding is offered then.
pub fn server_end_point(cert: &CertificateDer<'_>) -> Option<EndPointHash> {
    use sha2::Digest;
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, ... }
    let oid = yasna::parse_der(cert, |r| {
        r.read_sequence(|r| {
            r.next().read_der()?;
            let oid = r.next().read_sequence(|r| {
                let oid = r.next().read_oid()?;
                r.read_optional(|r| r.read_der())?;
                Ok(oid)
            })?;
            r.next().read_der()?;
            Ok(oid)
        })
    })
    .ok()?;
    let hash = match oid.components().as_slice() {
        // md5, sha1, sha256 WithRSAEncryption; ecdsa-with-SHA1, ecdsa-with-SHA256
        [1, 2, 840, 113549, 1, 1, 4 | 5 | 11]
        | [1, 2, 840, 10045, 4, 1]
        | [1, 2, 840, 10045, 4, 3, 2] => sha2::Sha256::digest(cert).to_vec(),
        [1, 2, 840, 113549, 1, 1, 12] | [1, 2, 840, 10045, 4, 3, 3] => {
            sha2::Sha384::digest(cert).to_vec()
        }
        [1, 2, 840, 113549, 1, 1, 13] | [1, 2, 840, 10045, 4, 3, 4] => {
            sha2::Sha512::digest(cert).to_vec()
        }
        _ => return None,
    };
    EndPointHash::new(&hash)
}

/// A rustls client configuration for outgoing TLS to servers we do not federate with (the
/// cluster's NATS servers): the web PKI roots plus the certificates of `cafile`, no client
/// certificate.
pub fn client_config(cafile: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = cafile {
        for c in read_certs(path)? {
            roots.add(c).map_err(|source| TlsError::BadAnchor {
                path: path.to_owned(),
                source,
            })?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(TlsError::Client)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificates of a PEM file (at least one).
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_err = |source| TlsError::ReadCert {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads a PEM certificate chain and private key.
pub fn load_pair(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = read_certs(cert)?;
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::ReadKey {
        path: key.to_owned(),
        source,
    })?;
    Ok((chain, private_key))
}

/// Makes sure `DATA_DIR/tls/` holds a self-signed certificate whose names cover every host,
/// generating it if missing, unreadable or not covering; returns (certificate, key) paths.
pub fn ensure_self_signed(general: &General) -> Result<(PathBuf, PathBuf), TlsError> {
    let dir = general.data_dir.join(SELF_SIGNED_DIR);
    let cert = dir.join(SELF_SIGNED_CERT);
    let key = dir.join(SELF_SIGNED_KEY);
    let names = certifiable_names(general)?;

    // A poisoned lock only means another generation panicked; the files are checked anyway.
    let _guard = SELF_SIGNED_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());

    if cert.exists() || key.exists() {
        match stored_covers(&cert, &key, &names) {
            Ok(None) => {
                info!(cert = %cert.display(), key = %key.display(), "using self-signed certificate");
                return Ok((cert, key));
            }
            Ok(Some(missing)) => info!(
                cert = %cert.display(), host = %missing,
                "self-signed certificate does not cover a host; generating a new one"
            ),
            Err(e) => {
                warn!(error = %e, "stored self-signed certificate unusable; generating a new one")
            }
        }
    }

    let generated = generate(&names)?;
    crate::store::create_private_dir(&dir).map_err(|source| TlsError::Write {
        path: dir.clone(),
        source,
    })?;
    // Key first: a certificate on disk always has its key next to it.
    write_atomically(&key, generated.key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_atomically(&cert, generated.cert.pem().as_bytes(), 0o644)?;
    info!(
        cert = %cert.display(), key = %key.display(), hosts = ?names,
        "generated self-signed certificate"
    );
    Ok((cert, key))
}

/// The hosts as certificate names: internationalized ones by their A-labels (RFC 6125 §6.4.2);
/// a name that has no ASCII form is skipped with a warning.
fn certifiable_names(general: &General) -> Result<Vec<String>, TlsError> {
    let (ascii, other): (Vec<_>, Vec<_>) = general
        .hosts
        .iter()
        .map(|h| crate::jid::domain_to_ascii(h.as_str()).into_owned())
        .partition(|h| h.is_ascii());
    for host in &other {
        warn!(%host, "internationalized host left out of the self-signed certificate");
    }
    if ascii.is_empty() {
        return Err(TlsError::NoCertifiableHost(other));
    }
    Ok(ascii)
}

/// `Ok(None)` if the stored pair loads and covers every name, `Ok(Some(name))` for the first
/// name it does not cover.
fn stored_covers(cert: &Path, key: &Path, names: &[String]) -> Result<Option<String>, TlsError> {
    let (chain, _key) = load_pair(cert, key)?;
    // load_pair returns a non-empty chain.
    let end_entity =
        webpki::EndEntityCert::try_from(&chain[0]).map_err(|source| TlsError::BadCertificate {
            path: cert.to_owned(),
            source,
        })?;
    Ok(names
        .iter()
        .find(|name| {
            !ServerName::try_from(name.as_str())
                .is_ok_and(|sn| end_entity.verify_is_valid_for_subject_name(&sn).is_ok())
        })
        .cloned())
}

fn generate(names: &[String]) -> Result<rcgen::CertifiedKey, TlsError> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    // names is non-empty (certifiable_names guarantees it).
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.as_str());
    }
    let key_pair = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key_pair)?;
    Ok(rcgen::CertifiedKey { cert, key_pair })
}

/// Writes `bytes` to a temporary file created with `mode`, then renames it over `path`, so
/// readers never see a partial file and the key is never world-readable, even briefly.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension(format!("pem.tmp{}", std::process::id()));
    let err = |source| TlsError::Write {
        path: tmp.clone(),
        source,
    };
    let _ = fs::remove_file(&tmp); // leftover of a crashed run; absence is the normal case
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests;
