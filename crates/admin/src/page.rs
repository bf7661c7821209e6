//! The Settings → Webhooks page: plain server-rendered HTML and a little JavaScript over the
//! JSON API; no external resources (works offline, strict CSP). A login form exchanges the admin
//! token for an HttpOnly session cookie.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;

use crate::{AppState, auth};

const CSP: &str = "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'";

pub fn routes(_state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/settings/webhooks") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/settings/webhooks", get(webhooks_page))
}

fn html(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_SECURITY_POLICY, CSP), (header::CACHE_CONTROL, "no-store")], Html(body))
        .into_response()
}

async fn login_page() -> Response {
    html(StatusCode::OK, login_html(""))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(s): State<AppState>, Form(f): Form<LoginForm>) -> Response {
    if !auth::token_matches(&s, &f.token) {
        return html(StatusCode::UNAUTHORIZED, login_html("That token is not right."));
    }
    let value = s.token.as_ref().map(|t| auth::session_value(t.expose())).unwrap_or_default();
    let cookie = format!("{}={value}; HttpOnly; SameSite=Strict; Path=/", auth::COOKIE);
    (
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, cookie), (header::LOCATION, "/settings/webhooks".to_owned())],
    )
        .into_response()
}

async fn logout() -> Response {
    let cookie = format!("{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0", auth::COOKIE);
    (StatusCode::SEE_OTHER, [(header::SET_COOKIE, cookie), (header::LOCATION, "/login".to_owned())])
        .into_response()
}

async fn webhooks_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if !auth::authorized(&s, &headers) {
        return Redirect::to("/login").into_response();
    }
    html(StatusCode::OK, WEBHOOKS_PAGE.clone())
}

const STYLE: &str = "body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#111827;background:#f9fafb}
header{background:#1f2937;color:#fff;padding:12px 24px}header a{color:#d1d5db;font-size:13px}
main{max-width:1100px;margin:24px auto;padding:0 24px}h1{font-size:20px;margin:0 0 4px}h2{font-size:16px}
table{width:100%;border-collapse:collapse;background:#fff}th,td{text-align:left;padding:8px;border-bottom:1px solid #e5e7eb;font-size:14px;vertical-align:top}
.target{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}.muted{color:#6b7280;font-size:13px}
form.card,section.card{background:#fff;border:1px solid #e5e7eb;padding:16px;margin:16px 0}label{display:block;margin:8px 0 4px;font-size:13px;color:#374151}
input[type=text],input[type=password],select{width:100%;padding:6px;box-sizing:border-box}button{padding:6px 12px;margin-right:6px;cursor:pointer}
.ok{color:#15803d}.fail{color:#b91c1c}.warn{color:#b45309;font-size:12px}.events label{display:inline-block;margin-right:12px}";

fn login_html(message: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>EntraGuard · Sign in</title><style>{STYLE}</style></head>
<body><header><strong>EntraGuard</strong> Settings</header><main><h1>Sign in</h1>
<form class=\"card\" method=\"post\" action=\"/login\"><label for=\"token\">Admin token (NOTIFY_ADMIN_TOKEN)</label>
<input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"current-password\" autofocus>
<p class=\"fail\" id=\"login-error\">{message}</p><button id=\"login\" type=\"submit\">Sign in</button></form></main></body></html>"
    )
}

/// The page; its styles are shared with the sign-in page.
const WEBHOOKS_HTML: &str = include_str!("webhooks.html");

/// The page with its styles.
static WEBHOOKS_PAGE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| WEBHOOKS_HTML.replace("STYLE_PLACEHOLDER", STYLE));
