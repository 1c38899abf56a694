//! The sans-IO SASL server: decoded client messages in, steps out.
//!
//! The caller (c2s) base64-decodes `<auth/>`/`<response/>` payloads, feeds them here, and acts
//! on each `SaslStep`: send a challenge, fetch secrets off-shard, check a PLAIN password
//! off-shard, or finish with success or failure.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use subtle::ConstantTimeEq;

use super::scram::{hash, hmac, random};
use super::scram_msg::{self, CbFlag};
use super::{
    plain, ChannelBinding, HashAlg, Mechanism, SaslFailure, ScramHashSecrets, ScramSecrets,
};
use crate::jid::BareJid;

/// Random bytes in the server nonce (RFC 5802 asks for enough entropy; 24 is ample).
const SERVER_NONCE_BYTES: usize = 24;

/// What the caller must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    /// Send `<challenge/>` with these bytes (base64-encoded by the caller).
    Challenge(Vec<u8>),
    /// Fetch this user's secrets (off-shard) and call `provide_secrets`.
    NeedSecrets {
        /// The nodeprep-ed localpart.
        username: String,
    },
    /// Fetch this user's secrets, run `ScramSecrets::verify_plain` off-shard, then call
    /// `plain_verified`.
    VerifyPlain {
        /// The nodeprep-ed localpart.
        username: String,
        /// The password as sent (verify_plain applies SASLprep).
        password: String,
    },
    /// Send `<success/>`; the stream is authenticated as `username@domain`.
    Success {
        /// The nodeprep-ed localpart.
        username: String,
        /// SCRAM server-final-message, for `<success/>` (RFC 6120 §6.3.10).
        additional_data: Option<Vec<u8>>,
    },
    /// Send `<failure/>` with this condition; the exchange is over.
    Failure(SaslFailure),
}

/// After the client-first-message, waiting for the user's secrets.
struct ScramFirst {
    alg: HashAlg,
    username: String,
    client_first_bare: String,
    /// Expected `c=` content: the GS2 header, plus the exporter value for -PLUS.
    cbind_input: Vec<u8>,
    /// Client nonce followed by server nonce.
    nonce: String,
}

/// After server-first-message, waiting for client-final-message.
struct ScramFinal {
    first: ScramFirst,
    server_first: String,
    secrets: ScramHashSecrets,
    /// False when the user is unknown and `secrets` are fake.
    known: bool,
}

enum State {
    /// Waiting for the initial response (after an empty challenge when it was absent).
    Initial,
    /// Waiting for `plain_verified`.
    Plain { username: String },
    /// Waiting for `provide_secrets`.
    ScramSecrets(Box<ScramFirst>),
    /// Waiting for client-final-message.
    ScramFinal(Box<ScramFinal>),
    /// Finished (success or failure); any further input is a protocol error.
    Done,
}

/// One SASL exchange on one stream.
pub struct SaslServer {
    mech: Mechanism,
    domain: String,
    cb: ChannelBinding,
    plus_advertised: bool,
    state: State,
    /// Server nonce fixed by tests to reproduce published exchanges; None = random.
    fixed_nonce: Option<Box<str>>,
    /// The user whose credentials were asked for (`NeedSecrets` / `VerifyPlain`).
    checked: Option<String>,
    /// The client named an authorization identity (it can only be its own JID).
    authzid_given: bool,
}

impl SaslServer {
    /// Starts an exchange for `mech` on a stream to `domain`. `initial`: the already
    /// base64-decoded initial response (None if absent; Some(vec![]) for "=").
    /// `plus_advertised`: whether -PLUS mechanisms were offered on this stream.
    pub fn start(
        mech: Mechanism,
        domain: &str,
        cb: ChannelBinding,
        plus_advertised: bool,
        initial: Option<&[u8]>,
    ) -> (SaslServer, SaslStep) {
        Self::start_inner(mech, domain, cb, plus_advertised, initial, None)
    }

    /// `start` with a fixed server nonce, to reproduce the RFC 5802/7677 examples (unit tests, and
    /// the fuzz target, which needs a known nonce to reach the proof check). Never for a real
    /// stream: a predictable nonce allows replay.
    pub fn start_with_nonce(
        mech: Mechanism,
        domain: &str,
        cb: ChannelBinding,
        initial: Option<&[u8]>,
        nonce: &str,
    ) -> (SaslServer, SaslStep) {
        Self::start_inner(mech, domain, cb, false, initial, Some(nonce.into()))
    }

    fn start_inner(
        mech: Mechanism,
        domain: &str,
        cb: ChannelBinding,
        plus_advertised: bool,
        initial: Option<&[u8]>,
        fixed_nonce: Option<Box<str>>,
    ) -> (SaslServer, SaslStep) {
        let domain = BareJid::domain_only(domain)
            .map(|d| d.domain().to_owned())
            .unwrap_or_else(|_| domain.to_owned());
        let mut s = SaslServer {
            mech,
            domain,
            cb,
            plus_advertised,
            state: State::Initial,
            fixed_nonce,
            checked: None,
            authzid_given: false,
        };
        if mech.is_plus() && !cb.any() {
            // -PLUS is only offered with channel binding data; the client picked one we
            // did not offer.
            let step = s.fail(SaslFailure::InvalidMechanism);
            return (s, step);
        }
        let step = match initial {
            // Both PLAIN and SCRAM are client-first: ask for the response (RFC 6120 §6.4.2).
            None => SaslStep::Challenge(Vec::new()),
            Some(msg) => s.client_first(msg),
        };
        (s, step)
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// The user (nodeprep-ed localpart) whose credentials this exchange looked up: a failure after
    /// that is a wrong password (or proof), which login throttling counts.
    pub fn checked_user(&self) -> Option<&str> {
        self.checked.as_deref()
    }

    /// Handles a client `<response/>` (decoded).
    pub fn step(&mut self, response: &[u8]) -> SaslStep {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Initial => self.client_first(response),
            State::ScramFinal(st) => {
                let r = self.client_final(*st, response);
                self.finish(r)
            }
            // A response while we wait on the caller, or after the end.
            State::Plain { .. } | State::ScramSecrets(_) | State::Done => {
                self.fail(SaslFailure::MalformedRequest)
            }
        }
    }

    /// Answers `NeedSecrets`. None means unknown user: the exchange goes on with a fake
    /// salt (stable per username) so it looks the same, and fails at the end.
    pub fn provide_secrets(&mut self, secrets: Option<ScramSecrets>) -> SaslStep {
        let State::ScramSecrets(first) = std::mem::replace(&mut self.state, State::Done) else {
            return self.fail(SaslFailure::MalformedRequest);
        };
        let (secrets, known) = match secrets {
            Some(s) => (s.for_hash(first.alg).clone(), true),
            None => (fake_secrets(first.alg, &first.username), false),
        };
        let server_first = format!(
            "r={},s={},i={}",
            first.nonce,
            B64.encode(&secrets.salt),
            secrets.iterations
        );
        let challenge = server_first.clone().into_bytes();
        self.state = State::ScramFinal(Box::new(ScramFinal {
            first: *first,
            server_first,
            secrets,
            known,
        }));
        SaslStep::Challenge(challenge)
    }

    /// Answers `VerifyPlain` with the result of `ScramSecrets::verify_plain` (false for an
    /// unknown user).
    pub fn plain_verified(&mut self, ok: bool) -> SaslStep {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Plain { username } if ok => SaslStep::Success {
                username,
                additional_data: None,
            },
            State::Plain { .. } => SaslStep::Failure(SaslFailure::NotAuthorized),
            _ => self.fail(SaslFailure::MalformedRequest),
        }
    }

    /// Handles a client `<abort/>`.
    pub fn abort(&mut self) -> SaslStep {
        self.fail(SaslFailure::Aborted)
    }

    fn fail(&mut self, f: SaslFailure) -> SaslStep {
        self.state = State::Done;
        SaslStep::Failure(f)
    }

    fn finish(&mut self, r: Result<SaslStep, SaslFailure>) -> SaslStep {
        r.unwrap_or_else(|f| self.fail(f))
    }

    fn client_first(&mut self, msg: &[u8]) -> SaslStep {
        let r = match self.mech.hash() {
            None => self.plain(msg),
            Some(alg) => self.scram_first(alg, msg),
        };
        self.finish(r)
    }

    fn plain(&mut self, msg: &[u8]) -> Result<SaslStep, SaslFailure> {
        let m = plain::parse(msg)?;
        let username = self.username(m.authcid)?;
        self.check_authzid(m.authzid, &username)?;
        self.state = State::Plain {
            username: username.clone(),
        };
        self.checked = Some(username.clone());
        Ok(SaslStep::VerifyPlain {
            username,
            password: m.password.to_owned(),
        })
    }

    fn scram_first(&mut self, alg: HashAlg, msg: &[u8]) -> Result<SaslStep, SaslFailure> {
        let m = scram_msg::parse_client_first(msg)?;
        let mut cbind_input = m.gs2_header.to_vec();
        match (m.cb, self.mech.is_plus()) {
            (CbFlag::No, false) => {}
            // `y` while we offered -PLUS: someone stripped -PLUS from our features.
            (CbFlag::ClientOnly, false) if self.plus_advertised => {
                return Err(SaslFailure::NotAuthorized)
            }
            (CbFlag::ClientOnly, false) => {}
            // A type this stream does not have (the exporter on TLS 1.2) is refused like a type
            // we never offer (RFC 5802 §7 `e=unsupported-channel-binding-type`).
            (CbFlag::TlsExporter, true) => {
                let exporter = self.cb.tls_exporter.ok_or(SaslFailure::NotAuthorized)?;
                cbind_input.extend_from_slice(&exporter);
            }
            (CbFlag::TlsServerEndPoint, true) => {
                let hash = self
                    .cb
                    .tls_server_end_point
                    .ok_or(SaslFailure::NotAuthorized)?;
                cbind_input.extend_from_slice(hash.as_bytes());
            }
            // -PLUS without binding, or binding on a mechanism without it.
            (CbFlag::No | CbFlag::ClientOnly, true)
            | (CbFlag::TlsExporter | CbFlag::TlsServerEndPoint, false) => {
                return Err(SaslFailure::MalformedRequest)
            }
        }
        let username = self.username(&m.username)?;
        self.check_authzid(&m.authzid, &username)?;
        let server_nonce = match &self.fixed_nonce {
            Some(n) => n.to_string(),
            None => {
                let mut raw = [0u8; SERVER_NONCE_BYTES];
                random(&mut raw).map_err(|_| SaslFailure::TemporaryAuthFailure)?;
                B64.encode(raw)
            }
        };
        self.state = State::ScramSecrets(Box::new(ScramFirst {
            alg,
            username: username.clone(),
            client_first_bare: m.bare.to_owned(),
            cbind_input,
            nonce: format!("{}{}", m.nonce, server_nonce),
        }));
        self.checked = Some(username.clone());
        Ok(SaslStep::NeedSecrets { username })
    }

    fn client_final(&mut self, st: ScramFinal, msg: &[u8]) -> Result<SaslStep, SaslFailure> {
        let m = scram_msg::parse_client_final(msg)?;
        let first = &st.first;
        if !bool::from(m.cbind_input.ct_eq(&first.cbind_input)) {
            return Err(SaslFailure::NotAuthorized);
        }
        if m.nonce != first.nonce {
            return Err(SaslFailure::NotAuthorized);
        }
        let alg = first.alg;
        if m.proof.len() != alg.output_len() {
            return Err(SaslFailure::MalformedRequest);
        }
        let auth_message = [
            first.client_first_bare.as_bytes(),
            b",",
            st.server_first.as_bytes(),
            b",",
            m.without_proof.as_bytes(),
        ];
        let client_signature = hmac(alg, &st.secrets.stored_key, &auth_message);
        let client_key: Vec<u8> = m
            .proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let proof_ok = hash(alg, &client_key).ct_eq(&st.secrets.stored_key);
        if !bool::from(proof_ok & subtle::Choice::from(u8::from(st.known))) {
            return Err(SaslFailure::NotAuthorized);
        }
        let server_signature = hmac(alg, &st.secrets.server_key, &auth_message);
        Ok(SaslStep::Success {
            username: st.first.username,
            additional_data: Some(format!("v={}", B64.encode(server_signature)).into_bytes()),
        })
    }

    /// The nodeprep-ed localpart of an authcid (`user`, or `user@our-domain` as some
    /// clients send).
    fn username(&self, authcid: &str) -> Result<String, SaslFailure> {
        let local = match authcid.rsplit_once('@') {
            Some((local, domain)) => {
                let same = BareJid::domain_only(domain).is_ok_and(|d| d.domain() == self.domain);
                if !same {
                    return Err(SaslFailure::NotAuthorized);
                }
                local
            }
            None => authcid,
        };
        let jid =
            BareJid::new(Some(local), &self.domain).map_err(|_| SaslFailure::NotAuthorized)?;
        jid.node()
            .map(str::to_owned)
            .ok_or(SaslFailure::NotAuthorized)
    }

    /// Whether the client named an authorization identity (XEP-0388 §2.3 then wants it to match
    /// the stream's `from`, when there is one).
    pub fn authzid_given(&self) -> bool {
        self.authzid_given
    }

    /// An authzid must be empty or this very user (no proxy authorization).
    fn check_authzid(&mut self, authzid: &str, username: &str) -> Result<(), SaslFailure> {
        if authzid.is_empty() {
            return Ok(());
        }
        self.authzid_given = true;
        match BareJid::parse(authzid) {
            Ok(j) if j.node() == Some(username) && j.domain() == self.domain => Ok(()),
            _ => Err(SaslFailure::InvalidAuthzid),
        }
    }
}

/// The iteration count an unknown user's exchange shows: the one new accounts get (`[auth]
/// scram_iterations`), so that it does not tell unknown accounts from real ones. Set once at start.
static UNKNOWN_USER_ITERATIONS: std::sync::atomic::AtomicU32 =
    std::sync::atomic::AtomicU32::new(ScramSecrets::DEFAULT_ITERATIONS);

/// Makes unknown users' exchanges show `iterations`, the count accounts are created with.
pub fn set_unknown_user_iterations(iterations: u32) {
    UNKNOWN_USER_ITERATIONS.store(iterations, std::sync::atomic::Ordering::Relaxed);
}

/// Checks a PLAIN password against `jid`'s secrets. An unknown account costs the same PBKDF2 (its
/// decoy secrets, as SCRAM shows them) and fails: answering it sooner told anyone which accounts
/// exist.
pub fn verify_plain(secrets: Option<&ScramSecrets>, jid: &BareJid, password: &str) -> bool {
    match secrets {
        Some(s) => s.verify_plain(password),
        None => {
            let decoy = fake_secrets(HashAlg::Sha256, jid.node().unwrap_or_default());
            let again = ScramHashSecrets::compute(
                HashAlg::Sha256,
                password.as_bytes(),
                decoy.salt,
                decoy.iterations,
            );
            // Compared like a real key, and never equal to the decoy's zero key in practice;
            // false either way.
            let _ = again.stored_key.ct_eq(&decoy.stored_key);
            false
        }
    }
}

/// Secrets for an unknown user: the salt is an HMAC of the username under a per-process key,
/// so repeated attempts see the same salt, as they would for a real account.
fn fake_secrets(alg: HashAlg, username: &str) -> ScramHashSecrets {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        // If the OS random source fails, nonces fail too and no exchange gets this far.
        let _ = random(&mut k);
        k
    });
    let mut salt = hmac(HashAlg::Sha256, key, &[username.as_bytes(), &[alg as u8]]);
    salt.truncate(16);
    ScramHashSecrets {
        salt,
        iterations: UNKNOWN_USER_ITERATIONS.load(std::sync::atomic::Ordering::Relaxed),
        stored_key: vec![0; alg.output_len()],
        server_key: vec![0; alg.output_len()],
    }
}

#[cfg(test)]
mod tests;
