//! Client side of SASL SCRAM-SHA-1 / SCRAM-SHA-256 (RFC 5802, RFC 7677), without
//! channel binding (`n,,`). Sans-IO: strings in, strings out.
//!
//! Passwords are used as given (no SASLprep): the load generator's passwords are ASCII.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The hash a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// SCRAM-SHA-1.
    Sha1,
    /// SCRAM-SHA-256.
    Sha256,
}

/// Ways a SCRAM exchange can fail on the client side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A server message lacks a required attribute or is not UTF-8.
    #[error("malformed server message")]
    Malformed,
    /// The server nonce does not extend ours.
    #[error("server nonce does not start with the client nonce")]
    NonceMismatch,
    /// Salt or signature is not valid base64.
    #[error("invalid base64 in server message")]
    Base64,
    /// The iteration count is missing, zero or absurd.
    #[error("invalid iteration count")]
    Iterations,
    /// The server sent `e=...`.
    #[error("server error: {0}")]
    Server(String),
    /// The server signature does not match: the server does not know the password.
    #[error("server signature mismatch")]
    ServerSignature,
    /// `server_final` called before `server_first`.
    #[error("exchange out of order")]
    OutOfOrder,
}

impl ScramHash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => hmac_with::<Hmac<Sha1>>(key, data),
            ScramHash::Sha256 => hmac_with::<Hmac<Sha256>>(key, data),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            ScramHash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

fn hmac_with<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// One client-side SCRAM exchange.
#[derive(Debug)]
pub struct ScramClient {
    hash: ScramHash,
    password: String,
    cnonce: String,
    client_first_bare: String,
    server_signature: Option<Vec<u8>>,
}

/// Upper bound on the iteration count we accept (a hostile server could stall us).
const MAX_ITERATIONS: u32 = 10_000_000;

impl ScramClient {
    /// Start an exchange for `username` with a caller-chosen client nonce.
    pub fn new(hash: ScramHash, username: &str, password: &str, cnonce: &str) -> Self {
        let user = username.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            hash,
            password: password.to_owned(),
            cnonce: cnonce.to_owned(),
            client_first_bare: format!("n={user},r={cnonce}"),
            server_signature: None,
        }
    }

    /// Start an exchange with a random 18-byte nonce.
    pub fn with_random_nonce(hash: ScramHash, username: &str, password: &str) -> Self {
        let mut raw = [0u8; 18];
        // The OS RNG is always there on Linux; fall back to a time-based nonce anyway.
        if getrandom::getrandom(&mut raw).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            raw[..16].copy_from_slice(&t.to_le_bytes());
        }
        Self::new(hash, username, password, &B64.encode(raw))
    }

    /// The client-first message (`n,,n=user,r=nonce`).
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Process server-first and return client-final.
    pub fn server_first(&mut self, msg: &[u8]) -> Result<String, ScramError> {
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed)?;
        let nonce = field(msg, 'r').ok_or(ScramError::Malformed)?;
        let salt = field(msg, 's').ok_or(ScramError::Malformed)?;
        let iters = field(msg, 'i').ok_or(ScramError::Malformed)?;
        if !nonce.starts_with(&self.cnonce) || nonce.len() <= self.cnonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = B64.decode(salt).map_err(|_| ScramError::Base64)?;
        let iters: u32 = iters.parse().map_err(|_| ScramError::Iterations)?;
        if iters == 0 || iters > MAX_ITERATIONS {
            return Err(ScramError::Iterations);
        }
        let h = self.hash;
        let salted = h.salted_password(self.password.as_bytes(), &salt, iters);
        let client_key = h.hmac(&salted, b"Client Key");
        let stored_key = h.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{},{}", self.client_first_bare, msg, without_proof);
        let client_sig = h.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_sig)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = h.hmac(&salted, b"Server Key");
        self.server_signature = Some(h.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Check server-final (`v=...`); an `e=...` becomes [`ScramError::Server`].
    pub fn server_final(&self, msg: &[u8]) -> Result<(), ScramError> {
        let expected = self
            .server_signature
            .as_ref()
            .ok_or(ScramError::OutOfOrder)?;
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed)?;
        if let Some(e) = field(msg, 'e') {
            return Err(ScramError::Server(e.to_owned()));
        }
        let v = field(msg, 'v').ok_or(ScramError::Malformed)?;
        let v = B64.decode(v).map_err(|_| ScramError::Base64)?;
        if &v == expected {
            Ok(())
        } else {
            Err(ScramError::ServerSignature)
        }
    }
}

/// Value of the `k=` attribute in a comma-separated SCRAM message.
fn field(msg: &str, k: char) -> Option<&str> {
    msg.split(',').find_map(|part| {
        let mut it = part.chars();
        (it.next() == Some(k) && it.next() == Some('=')).then(|| &part[2..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5802_sha1_vector() {
        let mut c = ScramClient::new(
            ScramHash::Sha1,
            "user",
            "pencil",
            "fyko+d2lbbFgONRv9qkxdawL",
        );
        assert_eq!(c.client_first(), "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let fin = c
            .server_first(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
            .expect("server-first");
        assert_eq!(
            fin,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        c.server_final(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")
            .expect("server signature");
        assert_eq!(
            c.server_final(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(ScramError::ServerSignature)
        );
    }

    #[test]
    fn rfc7677_sha256_vector() {
        let mut c = ScramClient::new(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        let fin = c
            .server_first(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .expect("server-first");
        assert_eq!(
            fin,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .expect("server signature");
    }

    #[test]
    fn rejects_foreign_nonce_and_server_error() {
        let mut c = ScramClient::new(ScramHash::Sha1, "u,=x", "p", "abc");
        assert_eq!(c.client_first(), "n,,n=u=2C=3Dx,r=abc");
        assert_eq!(
            c.server_first(b"r=zzz123,s=QSXCR+Q6sek8bf92,i=4096"),
            Err(ScramError::NonceMismatch)
        );
        assert_eq!(c.server_final(b"v=AA=="), Err(ScramError::OutOfOrder));
        c.server_first(b"r=abc123,s=QSXCR+Q6sek8bf92,i=1")
            .expect("server-first");
        assert_eq!(
            c.server_final(b"e=invalid-proof"),
            Err(ScramError::Server("invalid-proof".into()))
        );
        assert_eq!(
            c.server_first(b"r=abc123,s=QSXCR+Q6sek8bf92,i=0"),
            Err(ScramError::Iterations)
        );
    }
}
