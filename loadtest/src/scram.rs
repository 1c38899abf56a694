//! Client side of SASL SCRAM-SHA-1 / SCRAM-SHA-256 (RFC 5802, RFC 7677), without
//! channel binding (`n,,`). Sans-IO: strings in, strings out.
//!
//! Passwords are used as given (no SASLprep): the load generator's passwords are ASCII.
//!
//! Like a real client (RFC 5802 §5.1), the generator keeps ClientKey and ServerKey per
//! (hash, password, salt, iterations) in a [`ScramCache`], so a login with known keys costs a few
//! HMACs instead of a PBKDF2: the server's verification, not the generator, is what gets measured.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The hash a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

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

/// What a cache entry is found by: the inputs of PBKDF2 (the password only as its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    hash: ScramHash,
    password_digest: [u8; 32],
    salt: Vec<u8>,
    iterations: u32,
}

/// ClientKey and ServerKey of one (hash, password, salt, iterations).
#[derive(Clone, PartialEq, Eq)]
struct Keys {
    client_key: Vec<u8>,
    server_key: Vec<u8>,
}

/// Errors loading or saving a [`ScramCache`] file.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Reading or writing the file failed.
    #[error("SCRAM cache file {0}: {1}")]
    Io(String, std::io::Error),
    /// A line is not `hash iterations salt password-digest client-key server-key` (base64).
    #[error("SCRAM cache file {0}, line {1}: malformed")]
    Malformed(String, usize),
}

/// Most entries a cache holds: one per user of the largest runs; beyond it new keys are computed
/// for every login and not kept (bounded memory).
const CACHE_LIMIT: usize = 2_000_000;

/// ClientKey/ServerKey per (hash, password, salt, iterations), shared by every executor of a run.
/// The lock is held for a look-up or an insert only, never while PBKDF2 runs.
#[derive(Default)]
pub struct ScramCache {
    map: Mutex<HashMap<CacheKey, Keys>>,
}

// Keys are password-equivalent: print the size only.
impl std::fmt::Debug for ScramCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScramCache({} entries)", self.len())
    }
}

impl ScramCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Keys>> {
        // A panic while holding the lock leaves a valid map (inserts are atomic): go on.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// The keys for these PBKDF2 inputs, computed (and kept) on a miss.
    fn keys(&self, hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> Keys {
        let key = CacheKey {
            hash,
            password_digest: Sha256::digest(password.as_bytes()).into(),
            salt: salt.to_vec(),
            iterations,
        };
        if let Some(k) = self.lock().get(&key) {
            return k.clone();
        }
        let salted = hash.salted_password(password.as_bytes(), salt, iterations);
        let keys = Keys {
            client_key: hash.hmac(&salted, b"Client Key"),
            server_key: hash.hmac(&salted, b"Server Key"),
        };
        let mut map = self.lock();
        if map.len() < CACHE_LIMIT {
            map.insert(key, keys.clone());
        }
        keys
    }

    /// Loads a cache saved by [`ScramCache::save`]; a missing file is an empty cache.
    pub fn load(path: &Path) -> Result<ScramCache, CacheError> {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(CacheError::Io(name, e)),
        };
        let mut map = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let (key, keys) =
                parse_line(line).ok_or_else(|| CacheError::Malformed(name.clone(), i + 1))?;
            map.insert(key, keys);
        }
        Ok(ScramCache {
            map: Mutex::new(map),
        })
    }

    /// Writes every entry, one a line (the file holds password-equivalent keys of load users).
    pub fn save(&self, path: &Path) -> Result<(), CacheError> {
        let mut text = String::new();
        for (k, v) in self.lock().iter() {
            let hash = match k.hash {
                ScramHash::Sha1 => "sha1",
                ScramHash::Sha256 => "sha256",
            };
            text.push_str(&format!(
                "{hash} {} {} {} {} {}\n",
                k.iterations,
                B64.encode(&k.salt),
                B64.encode(k.password_digest),
                B64.encode(&v.client_key),
                B64.encode(&v.server_key)
            ));
        }
        std::fs::write(path, text).map_err(|e| CacheError::Io(path.display().to_string(), e))
    }
}

/// One line of a cache file, or None when malformed.
fn parse_line(line: &str) -> Option<(CacheKey, Keys)> {
    let mut f = line.split(' ');
    let hash = match f.next()? {
        "sha1" => ScramHash::Sha1,
        "sha256" => ScramHash::Sha256,
        _ => return None,
    };
    let iterations = f.next()?.parse().ok()?;
    let mut b64 = || B64.decode(f.next()?).ok();
    let (salt, digest, client_key, server_key) = (b64()?, b64()?, b64()?, b64()?);
    let len = hash.output_len();
    if f.next().is_some() || client_key.len() != len || server_key.len() != len {
        return None;
    }
    let key = CacheKey {
        hash,
        password_digest: digest.try_into().ok()?,
        salt,
        iterations,
    };
    Some((
        key,
        Keys {
            client_key,
            server_key,
        },
    ))
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

    /// Process server-first and return client-final; the keys come from `cache` when it has them.
    pub fn server_first(&mut self, msg: &[u8], cache: &ScramCache) -> Result<String, ScramError> {
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
        let Keys {
            client_key,
            server_key,
        } = cache.keys(h, &self.password, &salt, iters);
        let stored_key = h.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{},{}", self.client_first_bare, msg, without_proof);
        let client_sig = h.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_sig)
            .map(|(a, b)| a ^ b)
            .collect();
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
            .server_first(
                b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
                &ScramCache::default(),
            )
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

    const SHA256_FIRST: &[u8] =
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const SHA256_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";

    fn rfc7677_client() -> ScramClient {
        ScramClient::new(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO")
    }

    #[test]
    fn cache_keeps_one_entry_per_salt_and_gives_the_same_proof() {
        let cache = ScramCache::default();
        for _ in 0..3 {
            let fin = rfc7677_client().server_first(SHA256_FIRST, &cache);
            assert_eq!(fin.as_deref(), Ok(SHA256_FINAL));
        }
        assert_eq!(cache.len(), 1);
        // Another password or salt is another entry.
        let mut other =
            ScramClient::new(ScramHash::Sha256, "user", "pencil2", "rOprNGfwEbeRWgbNEkqO");
        let fin = other.server_first(SHA256_FIRST, &cache);
        assert!(fin.is_ok_and(|f| f != SHA256_FINAL));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn cache_file_round_trip_and_is_used() {
        let dir = std::env::temp_dir().join(format!("petrel-load-scram-{}", std::process::id()));
        let path = dir.with_extension("cache");
        assert_eq!(ScramCache::load(&path).map(|c| c.len()).ok(), Some(0));
        let cache = ScramCache::default();
        let fin = rfc7677_client().server_first(SHA256_FIRST, &cache);
        assert_eq!(fin.as_deref(), Ok(SHA256_FINAL));
        cache.save(&path).expect("save");
        let loaded = ScramCache::load(&path).expect("load");
        assert_eq!(loaded.len(), 1);
        let fin = rfc7677_client().server_first(SHA256_FIRST, &loaded);
        assert_eq!(fin.as_deref(), Ok(SHA256_FINAL));
        // A loaded entry is what the proof is computed from: change its ClientKey, the proof changes.
        let text = std::fs::read_to_string(&path).expect("read");
        let fields: Vec<&str> = text.trim_end().split(' ').collect();
        let tampered = text.replace(fields[4], &B64.encode([7u8; 32]));
        std::fs::write(&path, tampered).expect("write");
        let fin =
            rfc7677_client().server_first(SHA256_FIRST, &ScramCache::load(&path).expect("load"));
        assert!(fin.is_ok_and(|f| f != SHA256_FINAL));
        std::fs::write(&path, "sha256 4096 AAAA\n").expect("write");
        assert!(matches!(
            ScramCache::load(&path),
            Err(CacheError::Malformed(_, 1))
        ));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn rfc7677_sha256_vector() {
        let mut c = ScramClient::new(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        let fin = c
            .server_first(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", &ScramCache::default())
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
            c.server_first(
                b"r=zzz123,s=QSXCR+Q6sek8bf92,i=4096",
                &ScramCache::default()
            ),
            Err(ScramError::NonceMismatch)
        );
        assert_eq!(c.server_final(b"v=AA=="), Err(ScramError::OutOfOrder));
        c.server_first(b"r=abc123,s=QSXCR+Q6sek8bf92,i=1", &ScramCache::default())
            .expect("server-first");
        assert_eq!(
            c.server_final(b"e=invalid-proof"),
            Err(ScramError::Server("invalid-proof".into()))
        );
        assert_eq!(
            c.server_first(b"r=abc123,s=QSXCR+Q6sek8bf92,i=0", &ScramCache::default()),
            Err(ScramError::Iterations)
        );
    }
}
