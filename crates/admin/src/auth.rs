//! Authentication: `Authorization: Bearer <NOTIFY_ADMIN_TOKEN>` on API calls, or the session
//! cookie the login page sets (HttpOnly, SameSite=Strict, so another site cannot ride on it).
//! The cookie holds a hash of the token, never the token itself.

use axum::http::HeaderMap;
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request carries a valid token or session.
pub fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.token else { return true };
    let token = token.expose();
    if let Some(bearer) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        && constant_time_eq(bearer.trim().as_bytes(), token.as_bytes())
    {
        return true;
    }
    let want = session_value(token);
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .any(|(k, v)| k == COOKIE && constant_time_eq(v.as_bytes(), want.as_bytes()))
}

/// Whether `candidate` is the token (the login form).
pub fn token_matches(state: &AppState, candidate: &str) -> bool {
    match &state.token {
        Some(t) => constant_time_eq(candidate.trim().as_bytes(), t.expose().as_bytes()),
        None => true,
    }
}
