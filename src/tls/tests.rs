use std::os::unix::fs::PermissionsExt;

use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};

use super::*;
use crate::config::{Config, Domain};
use sha2::Digest;

fn config_in(dir: &Path, hosts: &[&str]) -> Config {
    let hosts = hosts
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "[general]\nhosts = [{hosts}]\ndata_dir = {:?}\n[[listen.c2s]]\nport = 5222\n\
         [[listen.c2s]]\nport = 5223\ntls = \"tls\"\n",
        dir.to_str().unwrap()
    );
    Config::parse(&text, Path::new("t.toml")).unwrap()
}

/// Drives a full in-memory handshake; returns the ALPN protocol the client saw.
fn handshake(server: Arc<ServerConfig>, trust: &Path, name: &str, alpn: bool) -> Option<Vec<u8>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(trust).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client_config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if alpn {
        client_config.alpn_protocols = vec![ALPN_XMPP_CLIENT.to_vec()];
    }
    let mut client = ClientConnection::new(
        Arc::new(client_config),
        ServerName::try_from(name.to_owned()).unwrap(),
    )
    .unwrap();
    let mut server = ServerConnection::new(server).unwrap();
    for _ in 0..10 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        server.read_tls(&mut buf.as_slice()).unwrap();
        server.process_new_packets().unwrap();
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        client.read_tls(&mut buf.as_slice()).unwrap();
        client.process_new_packets().unwrap();
        if !client.is_handshaking() && !server.is_handshaking() {
            return client.alpn_protocol().map(<[u8]>::to_vec);
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn self_signed_is_generated_then_reused() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path(), &["localhost", "chat.example"]);
    let (cert, key) = ensure_self_signed(&config.general).unwrap();
    assert_eq!(cert, dir.path().join("tls").join(SELF_SIGNED_CERT));
    assert_eq!(key, dir.path().join("tls").join(SELF_SIGNED_KEY));
    let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let names = certifiable_names(&config.general).unwrap();
    assert_eq!(stored_covers(&cert, &key, &names).unwrap(), None);
    let other = ["elsewhere.example".to_owned()];
    assert_eq!(
        stored_covers(&cert, &key, &other).unwrap().as_deref(),
        Some("elsewhere.example")
    );

    let first_cert = fs::read(&cert).unwrap();
    let first_key = fs::read(&key).unwrap();
    let (cert2, key2) = ensure_self_signed(&config.general).unwrap();
    assert_eq!((&cert2, &key2), (&cert, &key));
    assert_eq!(
        fs::read(&cert).unwrap(),
        first_cert,
        "reused, not regenerated"
    );
    assert_eq!(fs::read(&key).unwrap(), first_key);
}

#[test]
fn self_signed_is_regenerated_for_new_hosts_or_damage() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path(), &["localhost"]);
    let (cert, key) = ensure_self_signed(&config.general).unwrap();
    let first = fs::read(&cert).unwrap();

    config
        .general
        .hosts
        .push(Domain::parse("new.example").unwrap());
    ensure_self_signed(&config.general).unwrap();
    let second = fs::read(&cert).unwrap();
    assert_ne!(second, first);
    let names = certifiable_names(&config.general).unwrap();
    assert_eq!(stored_covers(&cert, &key, &names).unwrap(), None);

    fs::write(&key, "garbage").unwrap();
    ensure_self_signed(&config.general).unwrap();
    assert_ne!(fs::read(&cert).unwrap(), second);
    load_pair(&cert, &key).unwrap();
}

#[test]
fn idn_hosts_are_certified_by_their_a_labels() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path(), &["bücher.example", "localhost"]);
    assert_eq!(
        certifiable_names(&config.general).unwrap(),
        vec!["xn--bcher-kva.example", "localhost"]
    );
    let only_idn = config_in(dir.path(), &["bücher.example"]);
    let (cert, key) = ensure_self_signed(&only_idn.general).unwrap();
    let mut listener = only_idn.listen.c2s[0].clone();
    listener.certfile = Some(cert.clone());
    listener.keyfile = Some(key);
    let server = server_config(&listener, &only_idn.general).unwrap();
    assert_eq!(
        handshake(server.config, &cert, "xn--bcher-kva.example", false),
        None
    );
}

#[test]
fn server_config_handshakes_with_alpn_only_for_direct_tls() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path(), &["localhost", "chat.example"]);
    let starttls = server_config(&config.listen.c2s[0], &config.general)
        .unwrap()
        .config;
    let direct = server_config(&config.listen.c2s[1], &config.general)
        .unwrap()
        .config;
    assert!(starttls.alpn_protocols.is_empty());
    assert_eq!(direct.alpn_protocols, vec![b"xmpp-client".to_vec()]);

    let trust = dir.path().join("tls").join(SELF_SIGNED_CERT);
    assert_eq!(handshake(starttls, &trust, "chat.example", false), None);
    assert_eq!(
        handshake(direct, &trust, "localhost", true).as_deref(),
        Some(ALPN_XMPP_CLIENT)
    );
}

fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let generated = generate(&[name.to_owned()]).unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    fs::write(&cert, generated.cert.pem()).unwrap();
    fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

#[test]
fn configured_pair_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path(), &["localhost"]);
    let (cert, key) = write_pair(dir.path(), "xmpp.example");
    let listener = &mut config.listen.c2s[0];
    listener.certfile = Some(cert.clone());
    listener.keyfile = Some(key);
    let server = server_config(listener, &config.general).unwrap();
    assert!(
        !dir.path().join("tls").exists(),
        "no self-signed certificate when one is configured"
    );
    // The generated certificate is ECDSA P-256 with SHA-256: its DER hashed with SHA-256.
    let der = read_certs(&cert).unwrap().remove(0);
    let sha256: [u8; 32] = sha2::Sha256::digest(der.as_ref()).into();
    assert_eq!(
        server.cert.end_point().map(|h| h.as_bytes().to_vec()),
        Some(sha256.to_vec())
    );
    assert_eq!(handshake(server.config, &cert, "xmpp.example", false), None);
}

#[test]
fn the_server_end_point_takes_the_hash_of_the_signature_algorithm() {
    let cert = |alg: &'static rcgen::SignatureAlgorithm| {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(vec!["xmpp.example".to_owned()]).unwrap();
        params.self_signed(&key).unwrap().der().clone()
    };
    let p384 = cert(&rcgen::PKCS_ECDSA_P384_SHA384);
    let sha384: [u8; 48] = sha2::Sha384::digest(p384.as_ref()).into();
    assert_eq!(
        server_end_point(&p384).map(|h| h.as_bytes().to_vec()),
        Some(sha384.to_vec())
    );
    // RFC 5929 names no hash for Ed25519: no binding rather than a guessed one.
    assert_eq!(server_end_point(&cert(&rcgen::PKCS_ED25519)), None);
    assert_eq!(
        server_end_point(&CertificateDer::from(vec![0x30, 0x00])),
        None
    );
}

#[test]
fn missing_invalid_and_mismatched_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_pair(dir.path(), "a.example");
    let (_, other_key) = write_pair(dir.path(), "b.example");
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    fs::write(&garbage, "not pem at all\n").unwrap();
    let truncated = dir.path().join("truncated.pem");
    fs::write(&truncated, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();

    let err = load_pair(&missing, &key).unwrap_err();
    assert!(
        matches!(&err, TlsError::ReadCert { source: pem::Error::Io(e), .. } if e.kind() == std::io::ErrorKind::NotFound)
    );
    assert!(err.to_string().contains("missing.pem"), "{err}");
    assert!(matches!(
        load_pair(&cert, &missing),
        Err(TlsError::ReadKey { .. })
    ));
    assert!(matches!(
        load_pair(&garbage, &key),
        Err(TlsError::NoCertificate { .. })
    ));
    assert!(matches!(
        load_pair(&truncated, &key),
        Err(TlsError::ReadCert { .. })
    ));
    assert!(matches!(
        load_pair(&cert, &garbage),
        Err(TlsError::ReadKey { .. })
    ));

    let mut config = config_in(dir.path(), &["localhost"]);
    let listener = &mut config.listen.c2s[0];
    listener.certfile = Some(cert);
    listener.keyfile = Some(other_key);
    assert!(matches!(
        server_config(listener, &config.general),
        Err(TlsError::Rejected { .. })
    ));
    listener.keyfile = None;
    assert!(matches!(
        server_config(listener, &config.general),
        Err(TlsError::HalfPair { port: 5222 })
    ));
}
