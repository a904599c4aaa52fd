//! Encryption at rest: AES-256-GCM over WAL record payloads and checkpoint
//! blocks. Each sealed message is `nonce(12) | ciphertext | tag(16)` with a
//! random nonce, and binds associated data (a record's header, a block's
//! length) so a sealed piece cannot be moved elsewhere unnoticed. The key
//! never appears in `Debug` output or errors.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

const NONCE: usize = 12;
/// Bytes sealing adds to a message.
pub const OVERHEAD: usize = NONCE + 16;

/// An AES-256-GCM key, ready to seal and open.
pub struct Cipher {
    aead: Aes256Gcm,
    /// A key check value (4 bytes of AES over a fixed block): names the key
    /// in logs and errors without revealing it.
    id: String,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cipher(key {})", self.id)
    }
}

/// Why key text was refused (the text itself is never repeated).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an encryption key must be 32 bytes: 64 hex digits, or 32 raw bytes in a key file")]
pub struct BadKey;

impl Cipher {
    /// A cipher for a 32-byte key.
    pub fn new(key: &[u8; 32]) -> Cipher {
        let aead = Aes256Gcm::new(key.into());
        // A key fingerprint for logs: the first block sealed under a fixed
        // nonce, which reveals nothing about the key.
        let probe = aead
            .encrypt(Nonce::from_slice(&[0u8; NONCE]), &[0u8; 4][..])
            .unwrap_or_default();
        let id = probe.iter().take(4).map(|b| format!("{b:02x}")).collect();
        Cipher { aead, id }
    }

    /// Reads a key file: exactly 32 raw bytes, or 64 hex digits.
    pub fn parse_key(bytes: &[u8]) -> Result<[u8; 32], BadKey> {
        if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
            return Ok(raw);
        }
        Cipher::parse_hex_key(std::str::from_utf8(bytes).map_err(|_| BadKey)?)
    }

    /// Reads a key given as 64 hex digits (surrounding whitespace ignored).
    pub fn parse_hex_key(text: &str) -> Result<[u8; 32], BadKey> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(BadKey);
        }
        let mut key = [0u8; 32];
        for (i, out) in key.iter_mut().enumerate() {
            *out = u8::from_str_radix(text.get(2 * i..2 * i + 2).ok_or(BadKey)?, 16)
                .map_err(|_| BadKey)?;
        }
        Ok(key)
    }

    /// A short, non-secret name for this key, for logs and errors.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Encrypts `plain`, binding `aad`.
    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .aead
            .encrypt(&nonce, Payload { msg: plain, aad })
            .expect("AES-GCM encryption of an in-memory buffer does not fail");
        let mut out = Vec::with_capacity(NONCE + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts what [`Cipher::seal`] made with the same `aad`; `None` when
    /// the key is wrong or the bytes were changed.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < OVERHEAD {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE);
        self.aead
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_and_refuse_another_key_or_place() {
        let a = Cipher::new(&[7; 32]);
        let b = Cipher::new(&[8; 32]);
        let sealed = a.seal(b"row data", b"lsn 5");
        assert_eq!(sealed.len(), 8 + OVERHEAD);
        assert_eq!(a.open(&sealed, b"lsn 5").as_deref(), Some(&b"row data"[..]));
        assert_eq!(b.open(&sealed, b"lsn 5"), None, "wrong key");
        assert_eq!(a.open(&sealed, b"lsn 6"), None, "moved elsewhere");
        assert_ne!(
            a.seal(b"row data", b"lsn 5"),
            sealed,
            "fresh nonce each time"
        );
        assert_ne!(a.id(), b.id());
        assert!(!format!("{a:?}").contains("0707"));
    }

    #[test]
    fn keys_parse_from_hex_or_raw_bytes() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
        let key = Cipher::parse_key(hex.as_bytes()).unwrap();
        assert_eq!(key[1], 0x11);
        assert_eq!(key[31], 0xff);
        assert_eq!(Cipher::parse_key(&[0xAB; 32]).unwrap(), [0xAB; 32]);
        assert_eq!(Cipher::parse_key(b"short"), Err(BadKey));
        assert_eq!(Cipher::parse_key("zz".repeat(32).as_bytes()), Err(BadKey));
    }
}
