//! SASL server tests: the published RFC exchanges, -PLUS, failures, PLAIN.

use super::*;
use crate::auth::EndPointHash;

const DOMAIN: &str = "example.com";

fn b64(s: &str) -> Vec<u8> {
    B64.decode(s).unwrap_or_else(|e| panic!("{e}"))
}

fn no_cb() -> ChannelBinding {
    ChannelBinding::default()
}

fn cb(v: u8) -> ChannelBinding {
    ChannelBinding {
        tls_exporter: Some([v; 32]),
        tls_server_end_point: None,
    }
}

/// A TLS 1.2 stream: only the certificate's hash (SHA-384 here) to bind to.
fn end_point(v: u8) -> ChannelBinding {
    ChannelBinding {
        tls_exporter: None,
        tls_server_end_point: EndPointHash::new(&[v; 48]),
    }
}

fn challenge(step: SaslStep) -> String {
    match step {
        SaslStep::Challenge(c) => String::from_utf8(c).unwrap_or_else(|e| panic!("{e}")),
        other => panic!("expected a challenge, got {other:?}"),
    }
}

fn need(user: &str) -> SaslStep {
    SaslStep::NeedSecrets {
        username: user.into(),
    }
}

fn fail(f: SaslFailure) -> SaslStep {
    SaslStep::Failure(f)
}

/// A SCRAM client's final message for `password`, computed independently of the server code
/// (PBKDF2 + HMAC straight from RustCrypto).
fn client_final(
    alg: HashAlg,
    password: &str,
    client_first_bare: &str,
    server_first: &str,
    cbind_input: &[u8],
) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    use sha1::Sha1;
    use sha2::{Digest, Sha256};
    let attr = |k: &str| {
        server_first
            .split(',')
            .find_map(|a| a.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {server_first}"))
            .to_owned()
    };
    let (nonce, salt, iters) = (attr("r="), b64(&attr("s=")), attr("i="));
    let iters: u32 = iters.parse().unwrap_or_else(|e| panic!("{e}"));
    let without_proof = format!("c={},r={}", B64.encode(cbind_input), nonce);
    let auth = format!("{client_first_bare},{server_first},{without_proof}");
    let (client_key, stored_key, signature);
    match alg {
        HashAlg::Sha1 => {
            let salted = pbkdf2::pbkdf2_hmac_array::<Sha1, 20>(password.as_bytes(), &salt, iters);
            let mac = |k: &[u8], d: &[u8]| {
                let mut m =
                    <Hmac<Sha1> as Mac>::new_from_slice(k).unwrap_or_else(|e| panic!("{e}"));
                m.update(d);
                m.finalize().into_bytes().to_vec()
            };
            client_key = mac(&salted, b"Client Key");
            stored_key = Sha1::digest(&client_key).to_vec();
            signature = mac(&stored_key, auth.as_bytes());
        }
        HashAlg::Sha256 => {
            let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), &salt, iters);
            let mac = |k: &[u8], d: &[u8]| {
                let mut m =
                    <Hmac<Sha256> as Mac>::new_from_slice(k).unwrap_or_else(|e| panic!("{e}"));
                m.update(d);
                m.finalize().into_bytes().to_vec()
            };
            client_key = mac(&salted, b"Client Key");
            stored_key = Sha256::digest(&client_key).to_vec();
            signature = mac(&stored_key, auth.as_bytes());
        }
    }
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    format!("{without_proof},p={}", B64.encode(proof)).into_bytes()
}

fn secrets(password: &str) -> ScramSecrets {
    ScramSecrets::derive(password, 64)
}

#[test]
fn rfc5802_scram_sha1_example() {
    let (mut s, step) = SaslServer::start_with_nonce(
        Mechanism::ScramSha1,
        DOMAIN,
        no_cb(),
        Some(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"),
        "3rfcNHYJY1ZVvWVs7j",
    );
    assert_eq!(step, need("user"));
    let sec = ScramSecrets::derive_with_salts("pencil", 4096, b64("QSXCR+Q6sek8bf92"), vec![1; 16]);
    assert_eq!(
        challenge(s.provide_secrets(Some(sec))),
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
    );
    let step = s.step(
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    );
    assert_eq!(
        step,
        SaslStep::Success {
            username: "user".into(),
            additional_data: Some(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=".to_vec()),
        }
    );
    assert_eq!(s.step(b"anything"), fail(SaslFailure::MalformedRequest));
}

#[test]
fn rfc7677_scram_sha256_example() {
    let (mut s, step) = SaslServer::start_with_nonce(
        Mechanism::ScramSha256,
        DOMAIN,
        no_cb(),
        Some(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"),
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    );
    assert_eq!(step, need("user"));
    let sec = ScramSecrets::derive_with_salts(
        "pencil",
        4096,
        vec![1; 16],
        b64("W22ZaJ0SNY7soEsUEjb6gQ=="),
    );
    assert_eq!(
        challenge(s.provide_secrets(Some(sec))),
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    );
    let step = s.step(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
          p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    );
    assert_eq!(
        step,
        SaslStep::Success {
            username: "user".into(),
            additional_data: Some(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()),
        }
    );
}

/// Runs a full SCRAM exchange and returns the final step.
fn scram_exchange(
    mech: Mechanism,
    channel: ChannelBinding,
    client_first: &str,
    client_cbind: &[u8],
    stored: &ScramSecrets,
    password: &str,
) -> SaslStep {
    let (mut s, step) = SaslServer::start(mech, DOMAIN, channel, channel.any(), None);
    assert_eq!(step, SaslStep::Challenge(vec![]));
    let step = s.step(client_first.as_bytes());
    let SaslStep::NeedSecrets { .. } = step else {
        return step;
    };
    let server_first = challenge(s.provide_secrets(Some(stored.clone())));
    let bare = client_first.splitn(3, ',').nth(2).unwrap_or_default();
    let alg = mech.hash().unwrap_or(HashAlg::Sha1);
    s.step(&client_final(
        alg,
        password,
        bare,
        &server_first,
        client_cbind,
    ))
}

#[test]
fn plus_exchange_with_exporter() {
    let stored = secrets("hunter2");
    let mut cbind = b"p=tls-exporter,,".to_vec();
    cbind.extend_from_slice(&[0x42; 32]);
    for mech in [Mechanism::ScramSha256Plus, Mechanism::ScramSha1Plus] {
        let step = scram_exchange(
            mech,
            cb(0x42),
            "p=tls-exporter,,n=juliet,r=cn0nce",
            &cbind,
            &stored,
            "hunter2",
        );
        let SaslStep::Success {
            username,
            additional_data: Some(v),
        } = step
        else {
            panic!("{mech:?}: {step:?}");
        };
        assert_eq!(username, "juliet");
        assert!(v.starts_with(b"v="));
    }
}

#[test]
fn plus_exchange_with_the_server_end_point() {
    let stored = secrets("hunter2");
    let exchange = |channel, flag: &str, data: &[u8]| {
        let mut cbind = format!("{flag},,").into_bytes();
        cbind.extend_from_slice(data);
        scram_exchange(
            Mechanism::ScramSha256Plus,
            channel,
            &format!("{flag},,n=juliet,r=cn0nce"),
            &cbind,
            &stored,
            "hunter2",
        )
    };
    let step = exchange(end_point(7), "p=tls-server-end-point", &[7; 48]);
    assert!(matches!(step, SaslStep::Success { .. }), "{step:?}");
    // Another certificate's hash: a TLS man in the middle.
    let step = exchange(end_point(7), "p=tls-server-end-point", &[8; 48]);
    assert_eq!(step, fail(SaslFailure::NotAuthorized));
    // The exporter does not exist on this stream (TLS 1.2).
    let step = exchange(end_point(7), "p=tls-exporter", &[7; 32]);
    assert_eq!(step, fail(SaslFailure::NotAuthorized));
    // Both on TLS 1.3: the client picks.
    let both = ChannelBinding {
        tls_server_end_point: EndPointHash::new(&[9; 32]),
        ..cb(3)
    };
    let step = exchange(both, "p=tls-server-end-point", &[9; 32]);
    assert!(matches!(step, SaslStep::Success { .. }), "{step:?}");
    let step = exchange(both, "p=tls-exporter", &[3; 32]);
    assert!(matches!(step, SaslStep::Success { .. }), "{step:?}");
}

#[test]
fn plus_wrong_channel_binding() {
    let stored = secrets("hunter2");
    // The client saw a different exporter value (a TLS man in the middle).
    let mut cbind = b"p=tls-exporter,,".to_vec();
    cbind.extend_from_slice(&[0x43; 32]);
    let step = scram_exchange(
        Mechanism::ScramSha256Plus,
        cb(0x42),
        "p=tls-exporter,,n=juliet,r=cn0nce",
        &cbind,
        &stored,
        "hunter2",
    );
    assert_eq!(step, fail(SaslFailure::NotAuthorized));
    // Non-PLUS: c= must carry the GS2 header the client sent.
    let step = scram_exchange(
        Mechanism::ScramSha256,
        no_cb(),
        "n,,n=juliet,r=x",
        b"y,,",
        &stored,
        "hunter2",
    );
    assert_eq!(step, fail(SaslFailure::NotAuthorized));
}

#[test]
fn wrong_password() {
    let stored = secrets("hunter2");
    for mech in [Mechanism::ScramSha1, Mechanism::ScramSha256] {
        let step = scram_exchange(mech, no_cb(), "n,,n=juliet,r=x", b"n,,", &stored, "hunter3");
        assert_eq!(step, fail(SaslFailure::NotAuthorized), "{mech:?}");
        let step = scram_exchange(mech, no_cb(), "n,,n=juliet,r=x", b"n,,", &stored, "hunter2");
        assert!(matches!(step, SaslStep::Success { .. }), "{mech:?}");
    }
}

#[test]
fn gs2_flag_rules() {
    let start = |mech, channel: ChannelBinding, advertised, msg: &[u8]| {
        SaslServer::start(mech, DOMAIN, channel, advertised, Some(msg)).1
    };
    // `y` while -PLUS was advertised: downgrade attack.
    let step = start(Mechanism::ScramSha256, cb(1), true, b"y,,n=u,r=x");
    assert_eq!(step, fail(SaslFailure::NotAuthorized));
    // `y` when -PLUS was not advertised is fine.
    assert_eq!(
        start(Mechanism::ScramSha256, no_cb(), false, b"y,,n=u,r=x"),
        need("u")
    );
    // p= on a non-PLUS mechanism.
    let step = start(
        Mechanism::ScramSha256,
        cb(1),
        true,
        b"p=tls-exporter,,n=u,r=x",
    );
    assert_eq!(step, fail(SaslFailure::MalformedRequest));
    // n on a PLUS mechanism.
    let step = start(Mechanism::ScramSha256Plus, cb(1), true, b"n,,n=u,r=x");
    assert_eq!(step, fail(SaslFailure::MalformedRequest));
    // PLUS mechanism without channel binding data: never offered.
    let step = start(
        Mechanism::ScramSha1Plus,
        no_cb(),
        false,
        b"p=tls-exporter,,n=u,r=x",
    );
    assert_eq!(step, fail(SaslFailure::InvalidMechanism));
    // Unsupported binding type.
    let step = start(
        Mechanism::ScramSha256Plus,
        cb(1),
        true,
        b"p=tls-unique,,n=u,r=x",
    );
    assert_eq!(step, fail(SaslFailure::NotAuthorized));
    // Mandatory extension.
    let step = start(Mechanism::ScramSha1, no_cb(), false, b"n,,m=x,n=u,r=x");
    assert_eq!(step, fail(SaslFailure::MalformedRequest));
}

#[test]
fn unknown_user_fails_at_the_end_with_a_stable_salt() {
    let run = |user: &str| {
        let msg = format!("n,,n={user},r=abc");
        let (mut s, step) = SaslServer::start(
            Mechanism::ScramSha256,
            DOMAIN,
            no_cb(),
            false,
            Some(msg.as_bytes()),
        );
        assert_eq!(step, need(user));
        let first = challenge(s.provide_secrets(None));
        let bare = &msg[3..];
        let last = s.step(&client_final(
            HashAlg::Sha256,
            "guess",
            bare,
            &first,
            b"n,,",
        ));
        (first, last)
    };
    let (first_a, last) = run("ghost");
    assert_eq!(last, fail(SaslFailure::NotAuthorized));
    assert!(first_a.contains(&format!(",i={}", ScramSecrets::DEFAULT_ITERATIONS)));
    let salt = |c: &str| {
        c.split(",s=")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .map(b64)
    };
    assert_eq!(salt(&first_a).map(|s| s.len()), Some(16));
    let (first_b, _) = run("ghost");
    assert_eq!(salt(&first_a), salt(&first_b));
    let (first_c, _) = run("spectre");
    assert_ne!(salt(&first_a), salt(&first_c));
}

#[test]
fn server_nonce_is_random_and_prefixed() {
    let first = |_: u8| {
        let (mut s, _) = SaslServer::start(
            Mechanism::ScramSha1,
            DOMAIN,
            no_cb(),
            false,
            Some(b"n,,n=u,r=CLIENT"),
        );
        challenge(s.provide_secrets(Some(secrets("x"))))
    };
    let (a, b) = (first(0), first(1));
    let nonce = |c: &str| {
        c.split(',')
            .next()
            .and_then(|r| r.strip_prefix("r=CLIENT"))
            .map(str::to_owned)
    };
    let (na, nb) = (nonce(&a), nonce(&b));
    assert!(na.as_ref().is_some_and(|n| n.len() >= 32), "{a}");
    assert_ne!(na, nb);
}

#[test]
fn nonce_mismatch_fails() {
    let (mut s, _) = SaslServer::start(
        Mechanism::ScramSha1,
        DOMAIN,
        no_cb(),
        false,
        Some(b"n,,n=u,r=abc"),
    );
    let first = challenge(s.provide_secrets(Some(secrets("pw"))));
    // Replace the nonce with the client part only; proof computed over that message.
    let forged = first.replacen(first.split(',').next().unwrap_or_default(), "r=abc", 1);
    let msg = client_final(HashAlg::Sha1, "pw", "n=u,r=abc", &forged, b"n,,");
    assert_eq!(s.step(&msg), fail(SaslFailure::NotAuthorized));
}

#[test]
fn escaped_username_and_authzid() {
    let step = SaslServer::start(
        Mechanism::ScramSha1,
        DOMAIN,
        no_cb(),
        false,
        Some(b"n,,n=a=2Cb=3Dc,r=x"),
    )
    .1;
    assert_eq!(step, need("a,b=c"));
    let step = SaslServer::start(
        Mechanism::ScramSha1,
        DOMAIN,
        no_cb(),
        false,
        Some(b"n,,n=Juliet,r=x"),
    )
    .1;
    assert_eq!(step, need("juliet"));
    let ok = b"n,a=juliet@Example.com,n=juliet,r=x";
    assert_eq!(
        SaslServer::start(Mechanism::ScramSha1, DOMAIN, no_cb(), false, Some(ok)).1,
        need("juliet")
    );
    let other = b"n,a=romeo@example.com,n=juliet,r=x";
    let step = SaslServer::start(Mechanism::ScramSha1, DOMAIN, no_cb(), false, Some(other)).1;
    assert_eq!(step, fail(SaslFailure::InvalidAuthzid));
    let bad_user = b"n,,n=a b,r=x";
    let step = SaslServer::start(Mechanism::ScramSha1, DOMAIN, no_cb(), false, Some(bad_user)).1;
    assert_eq!(step, fail(SaslFailure::NotAuthorized));
}

#[test]
fn empty_initial_response_is_malformed() {
    let step = SaslServer::start(Mechanism::ScramSha1, DOMAIN, no_cb(), false, Some(b"")).1;
    assert_eq!(step, fail(SaslFailure::MalformedRequest));
    let step = SaslServer::start(Mechanism::Plain, DOMAIN, no_cb(), false, Some(b"")).1;
    assert_eq!(step, fail(SaslFailure::MalformedRequest));
}

#[test]
fn out_of_order_calls_fail() {
    let (mut s, _) = SaslServer::start(
        Mechanism::ScramSha1,
        DOMAIN,
        no_cb(),
        false,
        Some(b"n,,n=u,r=x"),
    );
    // A response while the server waits for secrets.
    assert_eq!(
        s.step(b"c=biws,r=x,p=AAAA"),
        fail(SaslFailure::MalformedRequest)
    );
    assert_eq!(s.provide_secrets(None), fail(SaslFailure::MalformedRequest));
    let (mut s, _) = SaslServer::start(Mechanism::Plain, DOMAIN, no_cb(), false, None);
    assert_eq!(s.plain_verified(true), fail(SaslFailure::MalformedRequest));
    let (mut s, _) = SaslServer::start(Mechanism::ScramSha1, DOMAIN, no_cb(), false, None);
    assert_eq!(s.abort(), fail(SaslFailure::Aborted));
    assert_eq!(s.step(b"n,,n=u,r=x"), fail(SaslFailure::MalformedRequest));
}

#[test]
fn plain_exchange() {
    let (mut s, step) = SaslServer::start(
        Mechanism::Plain,
        DOMAIN,
        no_cb(),
        false,
        Some(b"\0Juliet\0s3cret pw"),
    );
    assert_eq!(
        step,
        SaslStep::VerifyPlain {
            username: "juliet".into(),
            password: "s3cret pw".into()
        }
    );
    let stored = secrets("s3cret pw");
    let ok = stored.verify_plain("s3cret pw");
    assert_eq!(
        s.plain_verified(ok),
        SaslStep::Success {
            username: "juliet".into(),
            additional_data: None
        }
    );
    let (mut s, _) = SaslServer::start(
        Mechanism::Plain,
        DOMAIN,
        no_cb(),
        false,
        Some(b"\0juliet\0wrong"),
    );
    assert_eq!(
        s.plain_verified(stored.verify_plain("wrong")),
        fail(SaslFailure::NotAuthorized)
    );
}

#[test]
fn plain_after_empty_challenge_and_authzid() {
    let (mut s, step) = SaslServer::start(Mechanism::Plain, DOMAIN, no_cb(), false, None);
    assert_eq!(step, SaslStep::Challenge(vec![]));
    let step = s.step(b"juliet@example.com\0juliet@example.com\0pw");
    assert!(
        matches!(step, SaslStep::VerifyPlain { ref username, .. } if username == "juliet"),
        "{step:?}"
    );

    let start =
        |msg: &[u8]| SaslServer::start(Mechanism::Plain, DOMAIN, no_cb(), false, Some(msg)).1;
    assert_eq!(
        start(b"romeo@example.com\0juliet\0pw"),
        fail(SaslFailure::InvalidAuthzid)
    );
    assert_eq!(
        start(b"juliet@other.org\0juliet\0pw"),
        fail(SaslFailure::InvalidAuthzid)
    );
    assert_eq!(
        start(b"\0juliet@other.org\0pw"),
        fail(SaslFailure::NotAuthorized)
    );
    assert_eq!(start(b"juliet\0pw"), fail(SaslFailure::MalformedRequest));
    assert_eq!(start(b"\0\0pw"), fail(SaslFailure::MalformedRequest));
    assert_eq!(start(b"\0juliet\0"), fail(SaslFailure::MalformedRequest));
    assert_eq!(start(b"\0jul\"iet\0pw"), fail(SaslFailure::NotAuthorized));
}
