//! Authentication: `Authorization: Bearer <NOTIFY_ADMIN_TOKEN>` on API calls, or the session
//! cookie the login page sets (HttpOnly, SameSite=Strict, so another site cannot ride on it).
//! The cookie holds a hash of the token, never the token itself.

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use crate::AppState;

pub const COOKIE: &str = "eg_admin";

/// The cookie value for `token`.
pub fn session_value(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"entraguard-admin-session:");
    h.update(token.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a token is refused at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("NOTIFY_ADMIN_TOKEN is blank: set a token of 16+ characters")]
    Blank,
    #[error("NOTIFY_ADMIN_TOKEN starts or ends with whitespace (a trailing newline from a file?): remove it")]
    Whitespace,
    #[error("NOTIFY_ADMIN_TOKEN has {0} characters: use at least 16")]
    TooShort(usize),
}

/// Checks an admin token before the server starts.
pub fn check_token(token: &str) -> Result<(), TokenError> {
    if token.trim().is_empty() {
        return Err(TokenError::Blank);
    }
    if token.trim() != token {
        return Err(TokenError::Whitespace);
    }
    let n = token.chars().count();
    if n < 16 {
        return Err(TokenError::TooShort(n));
    }
    Ok(())
}

/// Compares two secrets in constant time, their lengths included (it compares their hashes).
fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    std::hint::black_box(x.iter().zip(y.iter()).fold(0u8, |acc, (p, q)| acc | (p ^ q))) == 0
}

/// Whether the request carries the bearer token (false when the server has none).
pub fn bearer_ok(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.token else { return false };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|bearer| same_secret(bearer.trim(), token.expose()))
}

/// Whether the request carries a valid token or session.
pub fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.token else { return true };
    if bearer_ok(state, headers) {
        return true;
    }
    let want = session_value(token.expose());
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .any(|(k, v)| k == COOKIE && same_secret(v, &want))
}

/// Whether `candidate` is the token (the login form).
pub fn token_matches(state: &AppState, candidate: &str) -> bool {
    match &state.token {
        Some(t) => same_secret(candidate.trim(), t.expose()),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_blank_short_or_padded_are_refused() {
        assert_eq!(check_token("                "), Err(TokenError::Blank));
        assert_eq!(check_token(""), Err(TokenError::Blank));
        assert_eq!(check_token("0123456789abcdef\n"), Err(TokenError::Whitespace));
        assert_eq!(check_token(" 0123456789abcdef"), Err(TokenError::Whitespace));
        assert_eq!(check_token("short"), Err(TokenError::TooShort(5)));
        assert_eq!(check_token("0123456789abcdef"), Ok(()));
    }
}
