//! Ed25519 signing keys of webhook endpoints (Standard Webhooks `v1a`): a signature a receiver can
//! check but not make, unlike an HMAC. We generate the key; it is stored like a signing secret
//! (`whsk_<base64 seed>`, sealed at rest by the endpoint store) and shown only as its public key
//! (`whpk_<base64>`).

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// How a private key is written: `whsk_` and the base64 of its 32-byte seed (RFC 8032's private
/// key, what `cryptography`'s `Ed25519PrivateKey.private_bytes(Raw)` gives).
pub const SECRET_PREFIX: &str = "whsk_";
/// How a public key is written: `whpk_` and the base64 of its 32 bytes.
pub const PUBLIC_PREFIX: &str = "whpk_";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeyError {
    /// Never says what the stored value was: it is a private key.
    #[error("an Ed25519 signing key is not `whsk_` and the base64 of 32 bytes")]
    Malformed,
    #[error("the system's random number generator failed")]
    Random,
}

/// An endpoint's Ed25519 private key. `Debug` prints only the public key; the private key leaves
/// through [`SigningKey::to_secret`] (for the store) alone. The key pair is expanded once, when
/// the key is read, so signing a delivery costs one signature.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "Secret", into = "Secret")]
pub struct SigningKey {
    seed: Secret,
    pair: Arc<Ed25519KeyPair>,
}

impl SigningKey {
    /// A new key from the operating system's CSPRNG.
    pub fn generate() -> Result<SigningKey, SigningKeyError> {
        let mut seed = [0u8; 32];
        SystemRandom::new().fill(&mut seed).map_err(|_| SigningKeyError::Random)?;
        SigningKey::from_seed(&seed)
    }

    fn from_seed(seed: &[u8]) -> Result<SigningKey, SigningKeyError> {
        if seed.len() != 32 {
            return Err(SigningKeyError::Malformed);
        }
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| SigningKeyError::Malformed)?;
        Ok(SigningKey {
            seed: Secret::new(format!("{SECRET_PREFIX}{}", B64.encode(seed))),
            pair: Arc::new(pair),
        })
    }

    /// Reads a `whsk_…` key.
    pub fn parse(secret: &Secret) -> Result<SigningKey, SigningKeyError> {
        let b64 = secret.expose().strip_prefix(SECRET_PREFIX).ok_or(SigningKeyError::Malformed)?;
        SigningKey::from_seed(&B64.decode(b64).map_err(|_| SigningKeyError::Malformed)?)
    }

    /// The public key as receivers configure it: `whpk_<base64>`.
    pub fn public_key(&self) -> String {
        format!("{PUBLIC_PREFIX}{}", B64.encode(self.pair.public_key().as_ref()))
    }

    /// The 64-byte Ed25519 signature of `parts`, concatenated.
    pub fn sign(&self, parts: &[&[u8]]) -> Vec<u8> {
        // ring signs one slice; the signed content is small (a webhook body, bounded).
        let msg: Vec<u8> = parts.concat();
        self.pair.sign(&msg).as_ref().to_vec()
    }

    /// The private key as stored (`whsk_…`): for the endpoint store, which seals it.
    pub fn to_secret(&self) -> Secret {
        self.seed.clone()
    }
}

impl TryFrom<Secret> for SigningKey {
    type Error = SigningKeyError;
    fn try_from(s: Secret) -> Result<Self, Self::Error> {
        SigningKey::parse(&s)
    }
}

impl From<SigningKey> for Secret {
    fn from(k: SigningKey) -> Secret {
        k.seed
    }
}

impl PartialEq for SigningKey {
    fn eq(&self, other: &Self) -> bool {
        self.seed == other.seed
    }
}

impl Eq for SigningKey {}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ED25519, UnparsedPublicKey};

    #[test]
    fn rfc8032_test_1() {
        // RFC 8032 §7.1, TEST 1: the empty message.
        let seed =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").expect("hex");
        let key = SigningKey::from_seed(&seed).expect("key");
        let public =
            hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a").expect("hex");
        assert_eq!(key.public_key(), format!("whpk_{}", B64.encode(&public)));
        assert_eq!(
            hex::encode(key.sign(&[b""])),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn generated_keys_round_trip_and_verify() {
        let key = SigningKey::generate().expect("key");
        let again = SigningKey::parse(&key.to_secret()).expect("reads back");
        assert_eq!(key, again);
        assert_ne!(key, SigningKey::generate().expect("another"));
        let sig = key.sign(&[b"id.", b"1.", b"{}"]);
        let public = B64.decode(&key.public_key()["whpk_".len()..]).expect("b64");
        UnparsedPublicKey::new(&ED25519, &public).verify(b"id.1.{}", &sig).expect("verifies");
        assert!(UnparsedPublicKey::new(&ED25519, &public).verify(b"id.1.{ }", &sig).is_err());
    }

    #[test]
    fn debug_and_serde_never_lose_or_show_it_by_accident() {
        let key = SigningKey::generate().expect("key");
        let secret = key.to_secret();
        assert!(!format!("{key:?}").contains(&secret.expose()[5..]), "Debug shows only the public key");
        let json = serde_json::to_string(&key).expect("json");
        assert_eq!(json, format!("\"{}\"", secret.expose()), "stored as whsk_… (the store seals it)");
        assert_eq!(serde_json::from_str::<SigningKey>(&json).expect("reads"), key);
        for bad in ["\"whsec_abc\"", "\"whsk_!!\"", "\"whsk_AAAA\""] {
            let err = serde_json::from_str::<SigningKey>(bad).expect_err(bad).to_string();
            assert!(err.contains("whsk_"), "{err}");
        }
    }
}
