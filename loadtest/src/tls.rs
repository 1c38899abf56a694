//! rustls client configuration: a CA file, or `--insecure` (accept any certificate,
//! for self-signed benchmark servers on loopback).

use rustls::pki_types::CertificateDer;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use std::sync::Arc;

/// Errors building the TLS client configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// Neither `--ca` nor `--insecure` was given.
    #[error("STARTTLS needs --ca FILE or --insecure")]
    NoTrust,
    /// The CA file could not be read or parsed.
    #[error("reading CA file: {0}")]
    Ca(String),
    /// rustls refused the configuration.
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Build the client config: trust `ca` (PEM) or, with `insecure`, anything.
pub fn client_config(
    ca: Option<&std::path::Path>,
    insecure: bool,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
    let cfg = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(petrel::s2s::any_server_cert())
            .with_no_client_auth()
    } else {
        let path = ca.ok_or(TlsSetupError::NoTrust)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in
            CertificateDer::pem_file_iter(path).map_err(|e| TlsSetupError::Ca(e.to_string()))?
        {
            let cert = cert.map_err(|e| TlsSetupError::Ca(e.to_string()))?;
            roots.add(cert)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(cfg))
}
