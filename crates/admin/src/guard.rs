//! What every request passes before its handler, and what every answer carries.
//!
//! Cross-site request forgery: a state change (any method but GET, HEAD, OPTIONS) needs a JSON
//! body (`Content-Type: application/json`, which a cross-site form or `no-cors` fetch cannot
//! send), and, when it carries `Origin`, that Origin must be this server's own
//! (`http[s]://<Host>`); `Sec-Fetch-Site` other than `same-origin` is refused. A cookie session
//! without `Origin` is refused; bearer-token clients (curl) send none and pass. Without a token
//! (`--insecure-local-only`) the same rules hold, and only `localhost`, `127.0.0.1` and `[::1]`
//! are served as `Host`, so a DNS-rebound name cannot reach the API.
//!
//! Headers: a Content-Security-Policy without inline script, no framing, no sniffing, no referrer,
//! no caching.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, AppState, auth};

pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match check(&state, req.method(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether `host` (a `Host` header) names this machine's loopback.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().map(|h| format!("[{h}]")).unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h).to_owned(),
    };
    matches!(name.to_ascii_lowercase().as_str(), "localhost" | "127.0.0.1" | "[::1]")
}

/// This server's origin as the request reached it.
fn own_origin(headers: &HeaderMap, host: &str) -> String {
    let https = header_str(headers, "x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"));
    format!("{}://{host}", if https { "https" } else { "http" })
}

fn check(state: &AppState, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    let host = header_str(headers, header::HOST).unwrap_or("");
    if state.token.is_none() && !loopback_host(host) {
        return Err(ApiError::Forbidden(
            "without a token (--insecure-local-only) only localhost, 127.0.0.1 and [::1] are served".into(),
        ));
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if let Some(site) = header_str(headers, "sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Err(ApiError::Forbidden(format!("a {site} request")));
    }
    match header_str(headers, header::ORIGIN) {
        Some(origin) => {
            let own = own_origin(headers, host);
            if host.is_empty() || !origin.eq_ignore_ascii_case(&own) {
                return Err(ApiError::Forbidden(format!(
                    "Origin {origin} is not this server's origin {own}"
                )));
            }
        }
        None if state.token.is_some() && !auth::bearer_ok(state, headers) => {
            return Err(ApiError::Forbidden(
                "a state change without Origin: browsers send it, API clients use Authorization: Bearer"
                    .into(),
            ));
        }
        None => {}
    }
    let json = header_str(headers, header::CONTENT_TYPE)
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::NotJson);
    }
    Ok(())
}

/// Sets the security headers on every answer.
pub async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["localhost:3000", "127.0.0.1:3000", "[::1]:3000", "LOCALHOST", "127.0.0.1"] {
            assert!(loopback_host(h), "{h}");
        }
        for h in ["rebind.example:3000", "127.0.0.1.nip.io:3000", "", "[::2]:3000", "localhost.evil:1"] {
            assert!(!loopback_host(h), "{h}");
        }
    }
}
