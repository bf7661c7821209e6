//! The Settings → Webhooks page (endpoints, dead letters, silences): plain server-rendered HTML and a little JavaScript (served as
//! files, no inline script) over the JSON API; no external resources (works offline, strict CSP).
//! Sign-in exchanges the admin token for a server-side session (see `auth`); sign-in and sign-out
//! are JSON requests like every other state change.

use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::Method;
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get, post};
use serde::Deserialize;

use crate::error::ErrorBody;
use crate::routes::{Route, router};
use crate::{ApiError, AppState, auth};

pub fn routes(_state: AppState) -> Router<AppState> {
    router(routes_table())
}

/// The page's routes. Sign-in, sign-out and the probe are JSON or plain text and documented in
/// the OpenAPI document; the page and its scripts are not API.
pub fn routes_table() -> Vec<Route> {
    let page = |method: Method, path: &'static str, handler: fn() -> MethodRouter<AppState>| Route {
        method,
        path,
        handler,
        documented: false,
    };
    let api = |method: Method, path: &'static str, handler: fn() -> MethodRouter<AppState>| Route {
        method,
        path,
        handler,
        documented: true,
    };
    vec![
        page(Method::GET, "/", || get(|| async { Redirect::to("/settings/webhooks") })),
        // Liveness and readiness probes, without the token (the OpenAPI document is behind it).
        api(Method::GET, "/healthz", || get(healthz)),
        page(Method::GET, "/login", || get(login_page)),
        api(Method::POST, "/login", || post(login)),
        page(Method::GET, "/login.js", || get(|| async { script(LOGIN_JS) })),
        api(Method::POST, "/logout", || post(logout)),
        page(Method::GET, "/settings/webhooks", || get(webhooks_page)),
        page(Method::GET, "/settings/webhooks.js", || get(|| async { script(WEBHOOKS_JS) })),
        page(Method::GET, "/settings/silences.js", || get(|| async { script(SILENCES_JS) })),
    ]
}

/// Liveness and readiness probe: `ok`, without the token.
#[utoipa::path(get, path = "/healthz", tag = "session", security(()),
    responses((status = 200, description = "ok", body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

fn html(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

fn script(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], body).into_response()
}

async fn login_page() -> Response {
    html(StatusCode::OK, LOGIN_PAGE.clone())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginBody {
    token: String,
}

/// `POST /login {"token"}`: `204` with the session cookie, `401`, or `429` with `Retry-After`
/// after 5 failed tries in a minute from that address (an IPv6 /64); other addresses' failures
/// never limit it.
#[utoipa::path(post, path = "/login", tag = "session", security(()), request_body = LoginBody,
    responses((status = 204, description = "signed in: the session cookie is set"),
              (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn login(
    State(s): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    body: Result<crate::body::RawBody, ApiError>,
) -> Response {
    let ip = auth::client_ip(&ext);
    let now = Instant::now();
    if let Err(e) = auth::rate_limited(&s, auth::Door::SignIn, ip, now) {
        return e.into_response();
    }
    let LoginBody { token } = match body.and_then(|b| crate::body::parse(&b.0)) {
        Ok(body) => body,
        Err(ApiError::Validation { field, reason }) => {
            let reason = format!("{reason}: send {{\"token\": \"…\"}}");
            return ApiError::Validation { field, reason }.into_response();
        }
        Err(e) => return e.into_response(),
    };
    if !auth::token_matches(&s, &token) {
        s.login_limiter.failed(auth::Door::SignIn, ip, now);
        tracing::warn!(client = %ip, "sign-in with a wrong token");
        return ApiError::WrongToken.into_response();
    }
    if s.token.is_none() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let id = match auth::new_session(&s).await {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let cookie = format!(
        "{}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        auth::COOKIE,
        auth::SESSION_MAX.as_secs(),
        if secure(&s, &headers) { "; Secure" } else { "" }
    );
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

/// Whether the session cookie gets `Secure`: over HTTPS (as a TLS proxy says), or when told.
fn secure(s: &AppState, headers: &HeaderMap) -> bool {
    s.secure_cookie
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// `POST /logout {}`: ends the session in Redis and clears the cookie; `204`.
#[utoipa::path(post, path = "/logout", tag = "session", security(()),
    responses((status = 204, description = "signed out: the session is deleted in Redis")))]
pub(crate) async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<crate::body::NoFields, ApiError>,
) -> Response {
    if let Err(e) = body {
        return e.into_response();
    }
    if let Some(id) = auth::session_id(&headers)
        && let Err(e) = auth::revoke_session(&s, id).await
    {
        return e.into_response();
    }
    let cookie = format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        auth::COOKIE,
        if secure(&s, &headers) { "; Secure" } else { "" }
    );
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

async fn webhooks_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    match auth::authorized(&s, &headers).await {
        Ok(true) => html(StatusCode::OK, WEBHOOKS_PAGE.clone()),
        Ok(false) => Redirect::to("/login").into_response(),
        Err(e) => e.into_response(),
    }
}

const STYLE: &str = "body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#111827;background:#f9fafb}
header{background:#1f2937;color:#fff;padding:12px 24px}header a{color:#d1d5db;font-size:13px}header #logout{float:right}
main{max-width:1100px;margin:24px auto;padding:0 24px}h1{font-size:20px;margin:0 0 4px}h2{font-size:16px}
table{width:100%;border-collapse:collapse;background:#fff}th,td{text-align:left;padding:8px;border-bottom:1px solid #e5e7eb;font-size:14px;vertical-align:top}
.target{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}.muted{color:#6b7280;font-size:13px}
form.card,section.card{background:#fff;border:1px solid #e5e7eb;padding:16px;margin:16px 0}label{display:block;margin:8px 0 4px;font-size:13px;color:#374151}
input[type=text],input[type=password],select{width:100%;padding:6px;box-sizing:border-box}button{padding:6px 12px;margin-right:6px;cursor:pointer}
h3{font-size:14px;margin:16px 0 6px}dl.health{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;font-size:14px}dl.health dt{color:#6b7280}
pre{background:#f3f4f6;padding:8px;font-size:12px;white-space:pre-wrap;word-break:break-all;max-height:300px;overflow:auto}.filters label{display:inline-block;margin-right:6px}.filters input,.filters select{width:auto;margin-right:12px}
.pager{margin-top:8px}.mono{font-family:ui-monospace,monospace;font-size:12px}
.ok{color:#15803d}.fail{color:#b91c1c}.warn{color:#b45309;font-size:12px}.events label{display:inline-block;margin-right:12px}";

/// The sign-in page. Its form posts JSON through /login.js; without script it posts a form,
/// which the server refuses (the token never goes into a URL).
static LOGIN_PAGE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>EntraGuard · Sign in</title><style>{STYLE}</style></head>
<body><header><strong>EntraGuard</strong> Settings</header><main><h1>Sign in</h1>
<form class=\"card\" id=\"login-form\" method=\"post\" action=\"/login\"><label for=\"token\">Admin token (NOTIFY_ADMIN_TOKEN)</label>
<input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"current-password\" autofocus>
<p class=\"fail\" id=\"login-error\"></p><button id=\"login\" type=\"submit\">Sign in</button></form></main>
<script src=\"/login.js\"></script></body></html>"
    )
});

const LOGIN_JS: &str = include_str!("login.js");
const WEBHOOKS_JS: &str = include_str!("webhooks.js");
/// The page's Silences section (over `webhooks.js`'s `api`, `cell` and `el`).
const SILENCES_JS: &str = include_str!("silences.js");

/// The page; its styles are shared with the sign-in page.
const WEBHOOKS_HTML: &str = include_str!("webhooks.html");

/// The page with its styles.
static WEBHOOKS_PAGE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| WEBHOOKS_HTML.replace("STYLE_PLACEHOLDER", STYLE));
