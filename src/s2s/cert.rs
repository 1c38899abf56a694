//! Certificate validity for a domain (RFC 6120 §13.7.2, RFC 6125 DNS-ID): chain to a trust
//! anchor, extended key usage, name. The TLS handshakes accept any certificate (see
//! `config.rs`); the streams ask [`Trust::validates`] afterwards, so an invalid certificate only
//! rules out SASL EXTERNAL and leaves dialback possible.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};

/// Which side of the TLS handshake presented the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertUsage {
    /// The server of the handshake (an outgoing stream's remote): EKU serverAuth.
    Server,
    /// The client of the handshake (an incoming stream's peer): EKU clientAuth, or serverAuth
    /// (public CAs stopped issuing clientAuth server certificates; the peer is a server, its
    /// certificate is one).
    Client,
}

/// The CA file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file is missing, unreadable or not PEM.
    #[error("{}: cannot read CA certificates: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: pem::Error,
    },
    /// A certificate of the file is not usable as a trust anchor.
    #[error("{}: invalid CA certificate: {source}", path.display())]
    BadAnchor {
        /// The file.
        path: PathBuf,
        /// webpki's reason.
        source: webpki::Error,
    },
}

/// Trust anchors: the Mozilla roots of `webpki-roots` and/or extra CAs from a PEM file.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    anchors: Vec<TrustAnchor<'static>>,
}

impl Trust {
    /// No anchor at all: nothing validates (dialback only).
    pub fn empty() -> Trust {
        Trust::default()
    }

    /// The public Web PKI roots (webpki-roots).
    pub fn webpki_roots() -> Trust {
        Trust {
            anchors: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }
    }

    /// Adds the CA certificates of a PEM file.
    pub fn add_pem_file(&mut self, path: &Path) -> Result<(), TrustError> {
        let read = |source| TrustError::Read {
            path: path.to_owned(),
            source,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(read)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(read)?;
        for der in certs {
            self.add_der(&der).map_err(|source| TrustError::BadAnchor {
                path: path.to_owned(),
                source,
            })?;
        }
        Ok(())
    }

    /// Adds one DER CA certificate.
    pub fn add_der(&mut self, der: &CertificateDer<'_>) -> Result<(), webpki::Error> {
        let anchor = webpki::anchor_from_trusted_cert(der)?.to_owned();
        self.anchors.push(anchor);
        Ok(())
    }

    /// Number of trust anchors.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// True without any anchor.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// True when `chain` (end entity first, then intermediates) chains to an anchor at `now`, its
    /// extended key usage fits `usage`, and its end entity is valid for the DNS name `domain`.
    pub fn validates(
        &self,
        chain: &[CertificateDer<'_>],
        domain: &str,
        now: UnixTime,
        usage: CertUsage,
    ) -> bool {
        let Some((ee, intermediates)) = chain.split_first() else {
            return false;
        };
        if self.anchors.is_empty() {
            return false;
        }
        // Certificates name an internationalized domain by its A-labels.
        let ascii = crate::jid::domain_to_ascii(domain);
        let Ok(name) = ServerName::try_from(ascii.as_ref()) else {
            return false;
        };
        let Ok(cert) = webpki::EndEntityCert::try_from(ee) else {
            return false;
        };
        let algs = rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all;
        let chains = |eku| {
            cert.verify_for_usage(algs, &self.anchors, intermediates, now, eku, None, None)
                .is_ok()
        };
        let chained = match usage {
            CertUsage::Server => chains(webpki::KeyUsage::server_auth()),
            CertUsage::Client => {
                chains(webpki::KeyUsage::client_auth()) || chains(webpki::KeyUsage::server_auth())
            }
        };
        chained && cert.verify_is_valid_for_subject_name(&name).is_ok()
    }
}
