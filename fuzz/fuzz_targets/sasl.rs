//! The SASL server (PLAIN, SCRAM-SHA-1/256 and -PLUS) on arbitrary client messages. One account,
//! `user` / `pencil` with the salts of RFC 5802 and RFC 7677, and the server nonces of those RFCs,
//! so the published exchanges (in the seed corpus) succeed and the fuzzer can reach the proof check.
//! Checks: success only for `user` and only with the password (PLAIN) or known secrets (SCRAM);
//! once finished (success or failure) the exchange refuses every further message.
//!
//! Input: a control byte (bits 0-2 mechanism, bit 3 channel binding data present, bit 4 no initial
//! response, bit 5 -PLUS advertised with a random nonce, bit 6 abort after the first message), then
//! the client messages separated by 0xFF bytes.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use petrel::auth::{ChannelBinding, Mechanism, SaslFailure, SaslServer, SaslStep, ScramSecrets};
use petrel_fuzz::control;

const DOMAIN: &str = "example.com";

fn secrets() -> &'static ScramSecrets {
    static S: OnceLock<ScramSecrets> = OnceLock::new();
    S.get_or_init(|| {
        let salt = |s| B64.decode(s).expect("RFC salt is base64");
        ScramSecrets::derive_with_salts(
            "pencil",
            4096,
            salt("QSXCR+Q6sek8bf92"),
            salt("W22ZaJ0SNY7soEsUEjb6gQ=="),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((c, rest)) = control(data) else {
        return;
    };
    let mech = Mechanism::ALL[usize::from(c & 7) % Mechanism::ALL.len()];
    let cb = ChannelBinding {
        tls_exporter: (c & 8 != 0).then_some([7u8; 32]),
        tls_server_end_point: (c & 128 != 0)
            .then(|| petrel::auth::EndPointHash::new(&[9u8; 32]))
            .flatten(),
    };
    let mut msgs = rest.split(|&b| b == 0xFF);
    let initial = if c & 16 != 0 { None } else { msgs.next() };
    let (mut s, mut step) = if c & 32 != 0 {
        SaslServer::start(mech, DOMAIN, cb, true, initial)
    } else {
        let nonce = match mech.hash() {
            Some(petrel::auth::HashAlg::Sha1) => "3rfcNHYJY1ZVvWVs7j",
            _ => "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        };
        SaslServer::start_with_nonce(mech, DOMAIN, cb, initial, nonce)
    };
    assert_eq!(s.mechanism(), mech);
    let mut known = false;
    let mut password_ok = false;
    let mut first = true;
    loop {
        step = match step {
            SaslStep::Challenge(_) => {
                if c & 64 != 0 && !first {
                    let f = s.abort();
                    assert_eq!(f, SaslStep::Failure(SaslFailure::Aborted));
                    f
                } else {
                    first = false;
                    let Some(m) = msgs.next() else { return };
                    s.step(m)
                }
            }
            SaslStep::NeedSecrets { username } => {
                known = username == "user";
                s.provide_secrets(known.then(|| secrets().clone()))
            }
            SaslStep::VerifyPlain { username, password } => {
                password_ok = username == "user" && password == "pencil";
                s.plain_verified(password_ok)
            }
            SaslStep::Success {
                username,
                additional_data,
            } => {
                assert_eq!(username, "user");
                match mech {
                    Mechanism::Plain => assert!(password_ok && additional_data.is_none()),
                    _ => assert!(known && additional_data.is_some()),
                }
                break;
            }
            SaslStep::Failure(_) => break,
        };
    }
    // A finished exchange takes nothing more.
    let next = msgs.next().unwrap_or(b"x");
    assert_eq!(
        s.step(next),
        SaslStep::Failure(SaslFailure::MalformedRequest)
    );
    assert!(matches!(s.provide_secrets(None), SaslStep::Failure(_)));
    assert!(matches!(s.plain_verified(true), SaslStep::Failure(_)));
});
