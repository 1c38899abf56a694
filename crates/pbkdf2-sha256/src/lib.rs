//! PBKDF2-HMAC-SHA-256 with one 32-byte output block: SCRAM-SHA-256's `Hi()` (RFC 5802 §2.2),
//! which a PLAIN login runs against the stored secrets.
//!
//! Each of the `i` iterations is two SHA-256 compressions (inner and outer HMAC) of one block
//! whose padding never changes. The HMAC pad states are computed once, and each iteration calls
//! `sha2::compress256` (SHA-NI when the CPU has it) on a block built in place: the `pbkdf2`
//! crate's generic loop clones HMAC states and re-pads every message, which cost about a fifth
//! more per login in the profile of a PLAIN login storm.
//!
//! A crate of its own so that the workspace's dev profile can optimise it (`Cargo.toml`,
//! `[profile.dev.package.petrel-pbkdf2]`): unoptimised, the loop around the block function is
//! several times slower than the `pbkdf2` crate's optimised one, and every test login pays it.

use hmac::{Hmac, Mac};
use sha2::digest::generic_array::GenericArray;
use sha2::{Digest, Sha256};

/// SHA-256's block size in bytes.
const BLOCK: usize = 64;

/// SHA-256's initial hash value (FIPS 180-4 §5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Bit length of the message an iteration hashes after its pad block: 64 + 32 bytes.
const PADDED_LEN_BITS: u64 = ((BLOCK + 32) * 8) as u64;

/// The state after compressing `key ^ pad` (the key already at most one block long).
fn pad_state(key: &[u8], pad: u8) -> [u32; 8] {
    let mut block = [pad; BLOCK];
    block.iter_mut().zip(key).for_each(|(b, k)| *b ^= k);
    let mut state = IV;
    sha2::compress256(
        &mut state,
        std::slice::from_ref(GenericArray::from_slice(&block)),
    );
    state
}

/// Writes a state as the 32 big-endian bytes that start `block`.
fn put_words(block: &mut [u8; BLOCK], state: &[u32; 8]) {
    for (chunk, w) in block.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&w.to_be_bytes());
    }
}

/// `Hi(password, salt, iterations)` with HMAC-SHA-256: PBKDF2's first output block.
pub fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    // HMAC hashes keys longer than a block (RFC 2104 §2).
    let hashed;
    let key = if password.len() > BLOCK {
        hashed = Sha256::digest(password);
        &hashed[..]
    } else {
        password
    };
    let (inner, outer) = (pad_state(key, 0x36), pad_state(key, 0x5c));
    // U1 = HMAC(password, salt || INT(1)): the salt has any length, so the HMAC crate does it.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(password).expect("HMAC accepts keys of any length");
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    // One block holds U (32 bytes) and the fixed padding of a 96-byte message.
    let mut block = [0u8; BLOCK];
    block[..32].copy_from_slice(&mac.finalize().into_bytes());
    block[32] = 0x80;
    block[BLOCK - 8..].copy_from_slice(&PADDED_LEN_BITS.to_be_bytes());
    let mut acc = [0u32; 8];
    for (a, chunk) in acc.iter_mut().zip(block.chunks_exact(4)) {
        // chunks_exact(4) yields 4-byte slices only.
        *a = u32::from_be_bytes(chunk.try_into().expect("4 bytes"));
    }
    for _ in 1..iterations {
        let mut state = inner;
        sha2::compress256(
            &mut state,
            std::slice::from_ref(GenericArray::from_slice(&block)),
        );
        put_words(&mut block, &state);
        state = outer;
        sha2::compress256(
            &mut state,
            std::slice::from_ref(GenericArray::from_slice(&block)),
        );
        put_words(&mut block, &state);
        acc.iter_mut().zip(state).for_each(|(a, w)| *a ^= w);
    }
    let mut out = [0u8; 32];
    for (chunk, w) in out.chunks_exact_mut(4).zip(acc) {
        chunk.copy_from_slice(&w.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
        out
    }

    #[test]
    fn published_vector() {
        // The commonly published PBKDF2-HMAC-SHA-256 vector: P = "password", S = "salt",
        // c = 4096, dkLen = 32.
        let want = [
            0xc5, 0xe4, 0x78, 0xd5, 0x92, 0x88, 0xc8, 0x41, 0xaa, 0x53, 0x0d, 0xb6, 0x84, 0x5c,
            0x4c, 0x8d, 0x96, 0x28, 0x93, 0xa0, 0x01, 0xce, 0x4e, 0x11, 0xa4, 0x96, 0x38, 0x73,
            0xaa, 0x98, 0x13, 0x4a,
        ];
        assert_eq!(hi(b"password", b"salt", 4096), want);
    }

    #[test]
    fn same_as_the_pbkdf2_crate() {
        // Key lengths around the block size (long keys are hashed), empty and long salts, and
        // 1 iteration (U1 only).
        for pw_len in [0, 1, 8, 32, 63, 64, 65, 200] {
            let pw: Vec<u8> = (0..pw_len).map(|i| i as u8 ^ 0xa5).collect();
            for salt in [&b""[..], b"0123456789abcdef", &[7u8; 100]] {
                for iterations in [1, 2, 3, 100] {
                    assert_eq!(
                        hi(&pw, salt, iterations),
                        crate_hi(&pw, salt, iterations),
                        "password {pw_len} bytes, salt {} bytes, {iterations} iterations",
                        salt.len()
                    );
                }
            }
        }
    }
}
