//! Secrets at rest: endpoint URLs (Slack and Teams URLs carry tokens) and signing secrets are
//! sealed with XChaCha20-Poly1305 under `NOTIFY_ENCRYPTION_KEY` before they reach Redis.
//!
//! A sealed value reads `enc:v1:<key id>:<base64(nonce ‖ ciphertext)>`; the key id (the first
//! 8 hex digits of the key's SHA-256) says which key opens it, so keys rotate: put the new key in
//! `NOTIFY_ENCRYPTION_KEY`, the old one in `NOTIFY_ENCRYPTION_OLD_KEYS`, run
//! `entraguard-notify endpoint reseal`, then drop the old key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::secret::Secret;

const PREFIX: &str = "enc:v1:";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("{setting}: expected 32 bytes in base64 (generate one with `openssl rand -base64 32`)")]
    BadKey { setting: &'static str },
    #[error(
        "a stored secret is encrypted with key {0}, which is neither NOTIFY_ENCRYPTION_KEY nor in NOTIFY_ENCRYPTION_OLD_KEYS"
    )]
    UnknownKey(String),
    #[error("a stored secret is encrypted but NOTIFY_ENCRYPTION_KEY is not set")]
    NoKey,
    #[error("a stored secret failed to decrypt: it was altered, or the key is wrong")]
    Corrupt,
}

struct Key {
    id: String,
    aead: XChaCha20Poly1305,
}

impl Key {
    fn parse(setting: &'static str, b64: &str) -> Result<Key, CryptoError> {
        let bytes = B64.decode(b64.trim()).map_err(|_| CryptoError::BadKey { setting })?;
        if bytes.len() != 32 {
            return Err(CryptoError::BadKey { setting });
        }
        let id = hex::encode(&Sha256::digest(&bytes)[..4]);
        let aead = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| CryptoError::BadKey { setting })?;
        Ok(Key { id, aead })
    }
}

/// Seals and opens stored secrets. Cheap to share behind an `Arc`.
pub struct Cipher {
    current: Key,
    old: Vec<Key>,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cipher(key {}, {} old)", self.current.id, self.old.len())
    }
}

impl Cipher {
    /// From `NOTIFY_ENCRYPTION_KEY` and `NOTIFY_ENCRYPTION_OLD_KEYS`.
    pub fn new(current: &Secret, old: &[Secret]) -> Result<Cipher, CryptoError> {
        Ok(Cipher {
            current: Key::parse("NOTIFY_ENCRYPTION_KEY", current.expose())?,
            old: old
                .iter()
                .map(|k| Key::parse("NOTIFY_ENCRYPTION_OLD_KEYS", k.expose()))
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    /// Whether `key_id` is one of the old keys (`NOTIFY_ENCRYPTION_OLD_KEYS`).
    pub fn has_old_key(&self, key_id: &str) -> bool {
        self.old.iter().any(|k| k.id == key_id)
    }

    pub fn seal(&self, plaintext: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption with a valid key and nonce cannot fail for in-memory data.
        let ct = self.current.aead.encrypt(&nonce, plaintext.as_bytes()).unwrap_or_default();
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        format!("{PREFIX}{}:{}", self.current.id, B64.encode(blob))
    }

    /// Opens a sealed value; a value that is not sealed is returned as it is.
    pub fn open(&self, stored: &str) -> Result<String, CryptoError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (id, b64) = rest.split_once(':').ok_or(CryptoError::Corrupt)?;
        let key = std::iter::once(&self.current)
            .chain(self.old.iter())
            .find(|k| k.id == id)
            .ok_or_else(|| CryptoError::UnknownKey(id.to_owned()))?;
        let blob = B64.decode(b64).map_err(|_| CryptoError::Corrupt)?;
        if blob.len() < 24 {
            return Err(CryptoError::Corrupt);
        }
        let (nonce, ct) = blob.split_at(24);
        let pt = key.aead.decrypt(XNonce::from_slice(nonce), ct).map_err(|_| CryptoError::Corrupt)?;
        String::from_utf8(pt).map_err(|_| CryptoError::Corrupt)
    }

    /// Whether `stored` should be sealed again with the current key.
    pub fn needs_reseal(&self, stored: &str) -> bool {
        !stored.starts_with(&format!("{PREFIX}{}:", self.current.id))
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// Opens a stored value with an optional cipher: plain values pass, sealed ones need a key.
pub fn open_with(cipher: Option<&Cipher>, stored: &str) -> Result<String, CryptoError> {
    match cipher {
        Some(c) => c.open(stored),
        None if is_sealed(stored) => Err(CryptoError::NoKey),
        None => Ok(stored.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Secret {
        Secret::new(B64.encode([byte; 32]))
    }

    #[test]
    fn seal_open_round_trip_and_rotation() {
        let old = Cipher::new(&key(1), &[]).expect("key");
        let sealed = old.seal("https://hooks.slack.com/services/T0/B0/token");
        assert!(sealed.starts_with("enc:v1:") && !sealed.contains("token"));
        assert_eq!(old.open(&sealed).expect("opens"), "https://hooks.slack.com/services/T0/B0/token");
        let new = Cipher::new(&key(2), &[key(1)]).expect("keys");
        assert_eq!(
            new.open(&sealed).expect("old key still opens"),
            "https://hooks.slack.com/services/T0/B0/token"
        );
        assert!(new.needs_reseal(&sealed));
        assert!(!new.needs_reseal(&new.seal("x")));
        let only_new = Cipher::new(&key(2), &[]).expect("key");
        assert!(matches!(only_new.open(&sealed), Err(CryptoError::UnknownKey(_))));
    }

    #[test]
    fn tampering_and_bad_keys_are_refused() {
        let c = Cipher::new(&key(3), &[]).expect("key");
        let mut sealed = c.seal("secret");
        sealed.pop();
        sealed.push('A');
        assert!(c.open(&sealed).is_err());
        assert!(Cipher::new(&Secret::new("short"), &[]).is_err());
        assert_eq!(open_with(None, "plain").expect("plain passes"), "plain");
        assert_eq!(open_with(None, &c.seal("x")), Err(CryptoError::NoKey));
    }
}
