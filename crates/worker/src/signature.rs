//! Webhook signatures: `X-Coderaft-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>`,
//! as the seed defines it. The one place a signature is computed.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The `X-Coderaft-Signature` header value for `body` signed with `secret`.
pub fn coderaft_signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret, body)))
}

fn hmac_sha256(secret: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    mac.update(message);
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
}
