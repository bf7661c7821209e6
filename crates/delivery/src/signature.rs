//! Webhook signatures, the one place they are computed:
//! - `X-Coderaft-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>`, as the seed
//!   defines it, with the current secret;
//! - Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64
//!   HMAC-SHA256 of "id.timestamp.body">`), which lets receivers reject replays by timestamp;
//!   during a secret rotation it carries one signature per secret, space-separated;
//! - Standard Webhooks' asymmetric `v1a,<base64 Ed25519 signature>` of the same content, for
//!   endpoints with a signing key (beside the `v1,` entries when they have a secret too; two
//!   during a key rotation): receivers verify with the public key and cannot forge.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use entraguard_core::secret::Secret;
use entraguard_core::signing_key::SigningKey;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The `X-Coderaft-Signature` header value for `body` signed with `secret`.
pub fn coderaft_signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret, &[body])))
}

/// The Standard Webhooks key of a secret: the base64 after `whsec_` for secrets in that form
/// (as Svix and the Standard Webhooks libraries issue them), else the secret's bytes.
pub fn standard_key(secret: &Secret) -> Vec<u8> {
    let s = secret.expose();
    s.strip_prefix("whsec_").and_then(|b| B64.decode(b).ok()).unwrap_or_else(|| s.as_bytes().to_vec())
}

/// The `webhook-signature` header value: `v1,<sig>` for each secret, then `v1a,<sig>` for each
/// Ed25519 key, space-separated.
pub fn standard_signature(
    secrets: &[&Secret],
    keys: &[&SigningKey],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let ts = timestamp.to_string();
    let signed: [&[u8]; 5] = [id.as_bytes(), b".", ts.as_bytes(), b".", body];
    let hmacs = secrets.iter().map(|s| format!("v1,{}", B64.encode(hmac_sha256(&standard_key(s), &signed))));
    let ed25519 = keys.iter().map(|k| format!("v1a,{}", B64.encode(k.sign(&signed))));
    hmacs.chain(ed25519).collect::<Vec<_>>().join(" ")
}

fn hmac_sha256(secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_test_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?"
        assert_eq!(
            coderaft_signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn standard_webhooks_reference_vector() {
        // The example of the Standard Webhooks specification (and Svix's docs).
        let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let sig = standard_signature(
            &[&secret],
            &[],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotation_carries_one_signature_per_secret() {
        let (a, b) = (Secret::new("new-secret-0123456789"), Secret::new("old-secret-0123456789"));
        let both = standard_signature(&[&a, &b], &[], "dlv_1", 1, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], standard_signature(&[&a], &[], "dlv_1", 1, b"{}"));
        assert_eq!(parts[1], standard_signature(&[&b], &[], "dlv_1", 1, b"{}"));
    }

    #[test]
    fn ed25519_entries_follow_the_hmac_ones_and_verify() {
        use ring::signature::{ED25519, UnparsedPublicKey};
        let secret = Secret::new("a-signing-secret-0123456789");
        let (new, old) = (SigningKey::generate().expect("key"), SigningKey::generate().expect("key"));
        let header = standard_signature(&[&secret], &[&new, &old], "dlv_1", 1614265330, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 3, "{header}");
        assert_eq!(parts[0], standard_signature(&[&secret], &[], "dlv_1", 1614265330, b"{}"));
        for (part, key) in parts[1..].iter().zip([&new, &old]) {
            let sig = B64.decode(part.strip_prefix("v1a,").expect("v1a")).expect("b64");
            let public = B64.decode(key.public_key().strip_prefix("whpk_").expect("whpk")).expect("b64");
            UnparsedPublicKey::new(&ED25519, &public).verify(b"dlv_1.1614265330.{}", &sig).expect("verifies");
        }
        assert_eq!(standard_signature(&[], &[&new], "dlv_1", 1, b"{}").split(' ').count(), 1);
    }
}
