//! SCRAM secrets (RFC 5802 / RFC 7677) on RustCrypto, and MongooseIM's multi-SCRAM storage form.
//!
//! Only StoredKey and ServerKey are kept, never the password or the salted password. PBKDF2
//! (`derive`, `verify_plain`) is expensive: callers run it off the shard.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AuthError;

/// Salt length for new secrets, as MongooseIM uses.
const SALT_LEN: usize = 16;

/// The hash functions petrel offers SCRAM with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA-1 (SCRAM-SHA-1, RFC 5802).
    Sha1,
    /// SHA-256 (SCRAM-SHA-256, RFC 7677).
    Sha256,
}

impl HashAlg {
    /// Output size in bytes (also the size of keys and proofs).
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
        }
    }

    /// MongooseIM's 10-character prefix of this hash's entry in the multi-SCRAM form.
    fn storage_prefix(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "===SHA1===",
            HashAlg::Sha256 => "==SHA256==",
        }
    }
}

/// HMAC(key, data[0] || data[1] || ...).
pub(crate) fn hmac(alg: HashAlg, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length (long keys are hashed), so new_from_slice cannot fail.
    const ANY_KEY: &str = "HMAC accepts keys of any length";
    match alg {
        HashAlg::Sha1 => {
            let mut m = Hmac::<Sha1>::new_from_slice(key).expect(ANY_KEY);
            data.iter().for_each(|d| m.update(d));
            m.finalize().into_bytes().to_vec()
        }
        HashAlg::Sha256 => {
            let mut m = Hmac::<Sha256>::new_from_slice(key).expect(ANY_KEY);
            data.iter().for_each(|d| m.update(d));
            m.finalize().into_bytes().to_vec()
        }
    }
}

/// H(data).
pub(crate) fn hash(alg: HashAlg, data: &[u8]) -> Vec<u8> {
    match alg {
        HashAlg::Sha1 => Sha1::digest(data).to_vec(),
        HashAlg::Sha256 => Sha256::digest(data).to_vec(),
    }
}

/// Hi(password, salt, i) of RFC 5802: PBKDF2 with HMAC-H.
fn salted_password(alg: HashAlg, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0; alg.output_len()];
    match alg {
        HashAlg::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out),
        HashAlg::Sha256 => out.copy_from_slice(&petrel_pbkdf2::hi(password, salt, iterations)),
    }
    out
}

/// SASLprep (RFC 4013) of a password. A password SASLprep refuses is used as is: the same
/// rule applies at registration and at login, so it still verifies through PLAIN.
fn prep_password(password: &str) -> std::borrow::Cow<'_, str> {
    stringprep::saslprep(password).unwrap_or(std::borrow::Cow::Borrowed(password))
}

/// Fills `buf` from the OS random source.
pub(crate) fn random(buf: &mut [u8]) -> Result<(), AuthError> {
    getrandom::getrandom(buf).map_err(|_| AuthError::Random)
}

/// The SCRAM secrets of one hash function.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramHashSecrets {
    /// The salt.
    pub salt: Vec<u8>,
    /// The PBKDF2 iteration count.
    pub iterations: u32,
    /// StoredKey = H(HMAC(SaltedPassword, "Client Key")).
    pub stored_key: Vec<u8>,
    /// ServerKey = HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl ScramHashSecrets {
    /// Computes the secrets for an already SASLprep-ed password (PBKDF2: expensive).
    pub fn compute(alg: HashAlg, prepared_password: &[u8], salt: Vec<u8>, iterations: u32) -> Self {
        let salted = salted_password(alg, prepared_password, &salt, iterations);
        let client_key = hmac(alg, &salted, &[b"Client Key"]);
        ScramHashSecrets {
            stored_key: hash(alg, &client_key),
            server_key: hmac(alg, &salted, &[b"Server Key"]),
            salt,
            iterations,
        }
    }

    fn to_storage(&self) -> String {
        format!(
            "{}|{}|{}",
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key)
        )
    }

    fn from_storage(alg: HashAlg, entry: &str, iterations: u32) -> Result<Self, AuthError> {
        let mut fields = entry.split('|');
        let (Some(salt), Some(stored), Some(server), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(AuthError::MalformedEntry(alg));
        };
        let s = ScramHashSecrets {
            salt: B64.decode(salt)?,
            iterations,
            stored_key: B64.decode(stored)?,
            server_key: B64.decode(server)?,
        };
        if s.salt.is_empty() {
            return Err(AuthError::MalformedEntry(alg));
        }
        if s.stored_key.len() != alg.output_len() || s.server_key.len() != alg.output_len() {
            return Err(AuthError::BadKeyLength(alg));
        }
        Ok(s)
    }
}

// Keys are password-equivalent for an attacker with a dictionary: never print them.
impl fmt::Debug for ScramHashSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramHashSecrets")
            .field("salt_len", &self.salt.len())
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// A user's SCRAM secrets for every hash petrel offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramSecrets {
    /// Secrets for SCRAM-SHA-1(-PLUS).
    pub sha1: ScramHashSecrets,
    /// Secrets for SCRAM-SHA-256(-PLUS); also used to verify PLAIN.
    pub sha256: ScramHashSecrets,
}

impl ScramSecrets {
    /// Default PBKDF2 iteration count (MongooseIM's default).
    pub const DEFAULT_ITERATIONS: u32 = 10_000;

    /// Derives secrets from a password with a fresh 16-byte random salt per hash (PBKDF2:
    /// expensive; run it off the shard).
    ///
    /// Panics only if the OS random source fails, as there is no safe way to make a salt then.
    pub fn derive(password: &str, iterations: u32) -> ScramSecrets {
        let (mut salt1, mut salt256) = (vec![0; SALT_LEN], vec![0; SALT_LEN]);
        if random(&mut salt1)
            .and_then(|_| random(&mut salt256))
            .is_err()
        {
            panic!("OS random source failed while salting a password");
        }
        Self::derive_with_salts(password, iterations, salt1, salt256)
    }

    /// `derive` with given salts (tests and imports).
    pub fn derive_with_salts(
        password: &str,
        iterations: u32,
        salt_sha1: Vec<u8>,
        salt_sha256: Vec<u8>,
    ) -> ScramSecrets {
        let pw = prep_password(password);
        ScramSecrets {
            sha1: ScramHashSecrets::compute(HashAlg::Sha1, pw.as_bytes(), salt_sha1, iterations),
            sha256: ScramHashSecrets::compute(
                HashAlg::Sha256,
                pw.as_bytes(),
                salt_sha256,
                iterations,
            ),
        }
    }

    /// The secrets of one hash.
    pub fn for_hash(&self, alg: HashAlg) -> &ScramHashSecrets {
        match alg {
            HashAlg::Sha1 => &self.sha1,
            HashAlg::Sha256 => &self.sha256,
        }
    }

    /// Checks a plaintext password (PLAIN) against the SHA-256 StoredKey, in constant time
    /// (PBKDF2: expensive; run it off the shard).
    pub fn verify_plain(&self, password: &str) -> bool {
        let pw = prep_password(password);
        let s = &self.sha256;
        let again =
            ScramHashSecrets::compute(HashAlg::Sha256, pw.as_bytes(), s.salt.clone(), s.iterations);
        again.stored_key.ct_eq(&s.stored_key).into()
    }

    /// MongooseIM's multi-SCRAM text form:
    /// `==MULTI_SCRAM==,<iterations>,===SHA1===<salt>|<stored>|<server>,==SHA256==<salt>|<stored>|<server>`
    /// (base64 fields). The form has one iteration count, that of the SHA-256 entry; `derive`
    /// always uses the same count for both.
    pub fn to_storage(&self) -> String {
        debug_assert_eq!(self.sha1.iterations, self.sha256.iterations);
        format!(
            "==MULTI_SCRAM==,{},{}{},{}{}",
            self.sha256.iterations,
            HashAlg::Sha1.storage_prefix(),
            self.sha1.to_storage(),
            HashAlg::Sha256.storage_prefix(),
            self.sha256.to_storage()
        )
    }

    /// Parses the multi-SCRAM form. Entries for hashes petrel does not offer (SHA224/384/512)
    /// are skipped; SHA-1 and SHA-256 entries are required.
    pub fn from_storage(s: &str) -> Result<ScramSecrets, AuthError> {
        let body = s
            .strip_prefix("==MULTI_SCRAM==,")
            .ok_or(AuthError::UnknownFormat)?;
        let mut fields = body.split(',');
        let iterations: u32 = fields
            .next()
            .and_then(|i| i.parse().ok())
            .filter(|&i| i > 0)
            .ok_or(AuthError::BadIterations)?;
        let (mut sha1, mut sha256) = (None, None);
        for field in fields {
            if let Some(e) = field.strip_prefix(HashAlg::Sha1.storage_prefix()) {
                sha1 = Some(ScramHashSecrets::from_storage(
                    HashAlg::Sha1,
                    e,
                    iterations,
                )?);
            } else if let Some(e) = field.strip_prefix(HashAlg::Sha256.storage_prefix()) {
                sha256 = Some(ScramHashSecrets::from_storage(
                    HashAlg::Sha256,
                    e,
                    iterations,
                )?);
            }
        }
        Ok(ScramSecrets {
            sha1: sha1.ok_or(AuthError::MissingHash(HashAlg::Sha1))?,
            sha256: sha256.ok_or(AuthError::MissingHash(HashAlg::Sha256))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        B64.decode(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn derive_with_given_salts_is_deterministic() {
        // The published RFC 5802/7677 exchanges check the key values (sasl tests).
        let s = ScramSecrets::derive_with_salts(
            "pencil",
            4096,
            b64("QSXCR+Q6sek8bf92"),
            b64("W22ZaJ0SNY7soEsUEjb6gQ=="),
        );
        assert_eq!(s.sha1.stored_key.len(), 20);
        assert_eq!(s.sha256.server_key.len(), 32);
        let again = ScramSecrets::derive_with_salts(
            "pencil",
            4096,
            b64("QSXCR+Q6sek8bf92"),
            b64("W22ZaJ0SNY7soEsUEjb6gQ=="),
        );
        assert_eq!(s, again);
        assert!(s.verify_plain("pencil"));
        assert!(!s.verify_plain("pencil2"));
        assert!(!s.verify_plain(""));
    }

    #[test]
    fn derive_uses_fresh_salts() {
        let a = ScramSecrets::derive("secret", 64);
        let b = ScramSecrets::derive("secret", 64);
        assert_eq!(a.sha1.salt.len(), SALT_LEN);
        assert_ne!(a.sha1.salt, a.sha256.salt);
        assert_ne!(a.sha256.salt, b.sha256.salt);
        assert_ne!(a.sha256.stored_key, b.sha256.stored_key);
        assert!(a.verify_plain("secret") && b.verify_plain("secret"));
    }

    #[test]
    fn saslprep_applies() {
        // U+00A0 (no-break space) maps to ASCII space under SASLprep; U+00AD maps to nothing.
        let s = ScramSecrets::derive("I\u{AD}X a", 64);
        assert!(s.verify_plain("IX\u{A0}a"));
        assert!(!s.verify_plain("ix a"));
    }

    #[test]
    fn storage_round_trip() {
        let s = ScramSecrets::derive("pw", 100);
        let text = s.to_storage();
        assert!(text.starts_with("==MULTI_SCRAM==,100,===SHA1==="));
        assert!(text.contains(",==SHA256=="));
        assert_eq!(ScramSecrets::from_storage(&text), Ok(s));
    }

    #[test]
    fn storage_reads_mongooseim_example() {
        // From MongooseIM's doc/developers-guide/SCRAM-serialization.md (password "padthai").
        let text = "==MULTI_SCRAM==,4096,\
            ===SHA1===QClQsw/sfPEnwj4AEp6E1w==|ys1104hRhqMoRputBY5sLHKXoSw=|EJvxXWM42tO7BgW21lNZyBc1dD0=,\
            ==SHA224==dk0ImXFVPoUfqD5FveV7YA==|G0ibQ/YYuCtoun4I+1IF2zJ7Q8x2T23ETnq5Gg==|EvE2EkZcUb3k4CooeOcVFy95P32t+NDX0xbQUA==,\
            ==SHA256==M7BYKSo04XbzBr4C7b056g==|A779MC05nSGQln5no0hKTGHFSaQ7oguKBZgORW3s+es=|XhtGFf6NDWsnVSCO4xkzPD3qc046fPL0pATZi7RmaWo=";
        let s = ScramSecrets::from_storage(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.sha256.iterations, 4096);
        assert_eq!(s.sha1.salt, b64("QClQsw/sfPEnwj4AEp6E1w=="));
        assert!(s.verify_plain("padthai"));
        assert!(!s.verify_plain("padthai "));
        // The SHA-1 entry must verify too (recompute by hand).
        let again = ScramHashSecrets::compute(HashAlg::Sha1, b"padthai", s.sha1.salt.clone(), 4096);
        assert_eq!(again, s.sha1);
    }

    #[test]
    fn storage_errors() {
        let good = ScramSecrets::derive("pw", 10).to_storage();
        assert_eq!(
            ScramSecrets::from_storage("==SCRAM==,a,b,c,4096"),
            Err(AuthError::UnknownFormat)
        );
        assert_eq!(
            ScramSecrets::from_storage(&good.replace(",10,", ",x,")),
            Err(AuthError::BadIterations)
        );
        assert_eq!(
            ScramSecrets::from_storage(&good.replace(",10,", ",0,")),
            Err(AuthError::BadIterations)
        );
        let only_sha1 = good
            .split(",==SHA256==")
            .next()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(
            ScramSecrets::from_storage(&only_sha1),
            Err(AuthError::MissingHash(HashAlg::Sha256))
        );
        let short_key = "==MULTI_SCRAM==,10,===SHA1===AAAA|AAAA|AAAA,==SHA256==AAAA|AAAA|AAAA";
        assert_eq!(
            ScramSecrets::from_storage(short_key),
            Err(AuthError::BadKeyLength(HashAlg::Sha1))
        );
        assert!(matches!(
            ScramSecrets::from_storage("==MULTI_SCRAM==,10,===SHA1===!!|AAAA|AAAA"),
            Err(AuthError::Base64(_))
        ));
        assert_eq!(
            ScramSecrets::from_storage("==MULTI_SCRAM==,10,===SHA1===AAAA|AAAA"),
            Err(AuthError::MalformedEntry(HashAlg::Sha1))
        );
    }

    #[test]
    fn debug_hides_keys() {
        let s = ScramSecrets::derive("pw", 10);
        let d = format!("{s:?}");
        assert!(d.contains("iterations: 10"));
        assert!(!d.contains(&B64.encode(&s.sha256.stored_key)));
        assert!(!d.contains(&format!("{:?}", s.sha256.stored_key)));
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// Rough costs for capacity planning: `cargo test --release --lib auth::scram::timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn pbkdf2_and_scram_costs() {
        let n = 20;
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(ScramSecrets::derive(
                "pencil",
                ScramSecrets::DEFAULT_ITERATIONS,
            ));
        }
        println!(
            "derive(10k iterations, SHA-1 + SHA-256): {:?} each",
            t.elapsed() / n
        );
        let s = ScramSecrets::derive("pencil", ScramSecrets::DEFAULT_ITERATIONS);
        let t = std::time::Instant::now();
        for _ in 0..n {
            assert!(s.verify_plain("pencil"));
        }
        println!("verify_plain (10k, SHA-256): {:?} each", t.elapsed() / n);
        let t = std::time::Instant::now();
        let m = 100_000;
        for i in 0..m {
            std::hint::black_box(hmac(
                HashAlg::Sha256,
                &s.sha256.stored_key,
                &[b"auth message", &[i as u8]],
            ));
        }
        println!(
            "HMAC-SHA-256 (SCRAM final step does two): {:?} each",
            t.elapsed() / m
        );
        let t = std::time::Instant::now();
        for _ in 0..m {
            std::hint::black_box(crate::jid::Jid::parse("Juliet@Example.com/balcony").is_ok());
        }
        println!("Jid::parse ASCII: {:?} each", t.elapsed() / m);
        let t = std::time::Instant::now();
        for _ in 0..m {
            std::hint::black_box(crate::jid::Jid::parse("Élise@bücher.example/ψ").is_ok());
        }
        println!(
            "Jid::parse non-ASCII (stringprep): {:?} each",
            t.elapsed() / m
        );
    }
}
