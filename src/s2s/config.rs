//! The s2s configuration shared by every shard, and the rustls configurations it carries: both
//! sides accept any peer certificate during the handshake (still checking the handshake
//! signatures), validity for a domain is decided afterwards by [`super::Trust`].

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};

use super::Trust;
use crate::tls::ServedCert;
use crate::xml::Limits;

/// ALPN protocol id for direct TLS s2s (XEP-0368).
pub const ALPN_XMPP_SERVER: &[u8] = b"xmpp-server";

/// Configuration of every s2s stream (read-only once built, shared by all shards in an `Arc`).
/// Its `Debug` never prints the dialback secret.
#[derive(Clone)]
pub struct S2sConfig {
    /// Domains served: an incoming header's and stanza's `to` must name one (or a dynamic host).
    pub hosts: Vec<String>,
    /// Incoming TLS: asks for a client certificate without requiring one ([`server_tls_config`]).
    pub tls_server: Option<Arc<ServerConfig>>,
    /// Outgoing TLS: presents our certificate, accepts any server certificate ([`client_tls_config`]).
    pub tls_client: Option<Arc<ClientConfig>>,
    /// No dialback and no stanza before TLS; a remote not offering STARTTLS is given up.
    pub tls_required: bool,
    /// Incoming connections start with the TLS handshake (XEP-0368 listener).
    pub direct_tls: bool,
    /// Server dialback (XEP-0220) is offered and used.
    pub dialback: bool,
    /// SASL EXTERNAL with certificates is offered and used.
    pub sasl_external: bool,
    /// Trust anchors for peer certificates.
    pub trust: Arc<Trust>,
    /// The dialback secret (XEP-0185), the same on every shard (and every node of a cluster).
    pub dialback_secret: [u8; 32],
    /// Scanner limits (stanza bytes, depth, attributes).
    pub limits: Limits,
    /// Bound in bytes of output not yet taken by the driver ([`super::S2sOut::push_stanza`]; past
    /// it the driver stops reading, [`super::S2sIn::may_read`]).
    pub outbound_queue_bytes: usize,
    /// Time from connect until the stream is authenticated (zero disables it).
    pub auth_timeout: Duration,
    /// Time without any input byte before the stream is closed (zero disables it).
    pub idle_timeout: Duration,
}

impl std::fmt::Debug for S2sConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S2sConfig")
            .field("hosts", &self.hosts)
            .field("tls_server", &self.tls_server.is_some())
            .field("tls_client", &self.tls_client.is_some())
            .field("tls_required", &self.tls_required)
            .field("direct_tls", &self.direct_tls)
            .field("dialback", &self.dialback)
            .field("sasl_external", &self.sasl_external)
            .field("trust_anchors", &self.trust.len())
            .field("dialback_secret", &"<hidden>")
            .field("limits", &self.limits)
            .field("outbound_queue_bytes", &self.outbound_queue_bytes)
            .field("auth_timeout", &self.auth_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl S2sConfig {
    /// A configuration for `hosts` with the defaults: TLS required, dialback and SASL EXTERNAL on,
    /// no TLS configurations (set them), the public roots, a random dialback secret.
    pub fn new(hosts: Vec<String>) -> Result<S2sConfig, getrandom::Error> {
        let mut dialback_secret = [0u8; 32];
        getrandom::getrandom(&mut dialback_secret)?;
        Ok(S2sConfig {
            hosts,
            tls_server: None,
            tls_client: None,
            tls_required: true,
            direct_tls: false,
            dialback: true,
            sasl_external: true,
            trust: Arc::new(Trust::webpki_roots()),
            dialback_secret,
            limits: Limits::default(),
            outbound_queue_bytes: 1024 * 1024,
            auth_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
        })
    }
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// The rustls server configuration of incoming s2s streams: our certificate and key (`cert`, which
/// SIGHUP may replace), TLS 1.2 and 1.3, a client certificate asked for but optional and accepted
/// whatever its issuer.
pub fn server_tls_config(
    cert: Arc<ServedCert>,
    direct_tls: bool,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(Arc::new(AnyCert(algorithms())))
        .with_cert_resolver(cert);
    if direct_tls {
        config.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
    }
    Ok(Arc::new(config))
}

/// The rustls client configuration of outgoing s2s streams: our certificate and key (`cert`) as
/// the client certificate, TLS 1.2 and 1.3, any server certificate accepted (the stream validates
/// it).
pub fn client_tls_config(cert: Arc<ServedCert>) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(any_server_cert())
        .with_client_cert_resolver(cert);
    Ok(Arc::new(config))
}

/// The handshake signature checks both verifier traits declare alike: the ring provider's algorithms.
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(message, cert, dss, &self.0)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(message, cert, dss, &self.0)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_schemes()
        }
    };
}

/// A server-certificate verifier that accepts any chain but still verifies the handshake
/// signatures (the peer holds the certificate's key): for callers that decide on validity
/// themselves, like the s2s stream, or that knowingly trust anything (the load generator's
/// `--insecure` against self-signed benchmark servers).
pub fn any_server_cert() -> Arc<dyn ServerCertVerifier> {
    Arc::new(AnyCert(algorithms()))
}

/// Accepts any certificate chain (validity is decided per domain after the handshake) but checks
/// that the peer holds the certificate's key: the handshake signatures are verified.
#[derive(Debug)]
struct AnyCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    signature_checks!();
}

impl ClientCertVerifier for AnyCert {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    signature_checks!();
}
