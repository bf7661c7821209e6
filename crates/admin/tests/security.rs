//! The admin server under attack: cross-site requests, stolen or stale sessions, token guessing,
//! framing and sniffing, and tokens in webhook URLs. Each test is the attacker's request and what
//! the server must answer.

mod common;

use std::time::Duration;

use entraguard_testkit::{RedisServer, wait_until};
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use common::{TOKEN, start, start_with};

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// A request as the test describes it; answers status, headers and the body as JSON (or text).
async fn send(req: reqwest::RequestBuilder) -> (u16, HeaderMap, Value) {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The session cookie's `name=value` and its whole `Set-Cookie` line.
fn session_cookie(headers: &HeaderMap) -> (String, String) {
    let line = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("eg_admin="))
        .expect("a session cookie")
        .to_owned();
    let pair = line.split(';').next().expect("pair").to_owned();
    (pair, line)
}

/// Signs in as the page does (JSON, same origin); answers the cookie pair and its `Set-Cookie`.
async fn login(base: &str) -> (String, String) {
    let (status, headers, body) = send(
        client()
            .post(format!("{base}/login"))
            .header("origin", base)
            .header("content-type", "application/json")
            .body(json!({ "token": TOKEN }).to_string()),
    )
    .await;
    assert_eq!(status, 204, "sign-in: {body}");
    session_cookie(&headers)
}

async fn create_endpoint(base: &str, target: &str) -> Value {
    let (status, _, ep) = send(
        client()
            .post(format!("{base}/api/endpoints"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(
                json!({"name": "SOAR", "channel": "webhook", "target": target, "events": ["finding.new"]})
                    .to_string(),
            ),
    )
    .await;
    assert_eq!(status, 201, "{ep}");
    ep
}

async fn enabled(base: &str, id: &str) -> Value {
    let (_, _, ep) = send(client().get(format!("{base}/api/endpoints/{id}")).bearer_auth(TOKEN)).await;
    ep["enabled"].clone()
}

/// A page on another port of the same host posts a form through the signed-in admin's cookie; a
/// cookie request without Origin is refused; only same-origin JSON changes state. Bearer clients
/// (no Origin) keep working, with a JSON content type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_and_form_encoded_state_changes_are_refused() {
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let base = admin.base.clone();
    let ep = create_endpoint(&base, "https://soar.example.com/hook").await;
    let id = ep["id"].as_str().expect("id").to_owned();
    let disable = format!("{base}/api/endpoints/{id}/disable");
    let evil = "http://127.0.0.1:1";

    // Even a bearer client needs a JSON content type to change state.
    let (status, _, body) = send(
        client()
            .post(&disable)
            .bearer_auth(TOKEN)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("x=1"),
    )
    .await;
    assert_eq!(status, 415, "form-encoded POST with a bearer token: {body}");
    let (status, _, body) = send(client().post(&disable).bearer_auth(TOKEN)).await;
    assert_eq!(status, 415, "POST without a content type: {body}");
    assert_eq!(enabled(&base, &id).await, true);

    let (cookie, _) = login(&base).await;
    // The attacker's form: cross-origin, form-encoded, the admin's cookie rides along.
    let (status, _, body) = send(
        client()
            .post(&disable)
            .header("cookie", &cookie)
            .header("origin", evil)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("x=1"),
    )
    .await;
    assert_eq!(status, 403, "cross-origin form through the cookie: {body}");
    assert_eq!(body["error"], "forbidden", "{body}");
    // Cross-origin JSON (what fetch with CORS would send): also 403.
    let (status, _, body) = send(
        client()
            .post(&disable)
            .header("cookie", &cookie)
            .header("origin", evil)
            .header("content-type", "application/json")
            .body("{}"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // A cookie without Origin: refused.
    let (status, _, body) = send(
        client()
            .post(&disable)
            .header("cookie", &cookie)
            .header("content-type", "application/json")
            .body("{}"),
    )
    .await;
    assert_eq!(status, 403, "cookie without Origin: {body}");
    // A cross-site fetch the browser marks as such: refused even with a matching Origin.
    let (status, _, _) = send(
        client()
            .post(&disable)
            .header("cookie", &cookie)
            .header("origin", &base)
            .header("sec-fetch-site", "cross-site")
            .header("content-type", "application/json")
            .body("{}"),
    )
    .await;
    assert_eq!(status, 403);
    // Sign-out and sign-in are state changes too.
    let (status, _, _) = send(
        client()
            .post(format!("{base}/logout"))
            .header("cookie", &cookie)
            .header("origin", evil)
            .header("content-type", "application/x-www-form-urlencoded"),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = send(
        client()
            .post(format!("{base}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", &base)
            .body(format!("token={TOKEN}")),
    )
    .await;
    assert_eq!(status, 415, "form-encoded sign-in");
    assert_eq!(enabled(&base, &id).await, true, "nothing above changed the endpoint");

    // The page's own request: same origin, JSON, the cookie.
    let (status, _, body) = send(
        client()
            .post(&disable)
            .header("cookie", &cookie)
            .header("origin", &base)
            .header("content-type", "application/json")
            .body("{}"),
    )
    .await;
    assert_eq!((status, body["enabled"].clone()), (200, json!(false)), "{body}");
    // curl with the token: no Origin, JSON.
    let (status, _, body) = send(
        client()
            .post(format!("{base}/api/endpoints/{id}/enable"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json; charset=utf-8"),
    )
    .await;
    assert_eq!((status, body["enabled"].clone()), (200, json!(true)), "{body}");
}

/// Without a token (`--insecure-local-only`) a page on localhost (another port) cannot disable an
/// endpoint or replay dead letters with a `no-cors` fetch, and a DNS-rebound host name is not
/// served at all; a local curl (no Origin, JSON) and the page itself still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_local_only_refuses_other_origins_and_rebound_hosts() {
    let redis = RedisServer::start();
    let admin = start_with(&redis, None).await;
    let base = admin.base.clone();
    let port = base.rsplit(':').next().expect("port").to_owned();
    let (status, _, ep) = send(
        client()
            .post(format!("{base}/api/endpoints"))
            .header("content-type", "application/json")
            .body(
                json!({"name": "SOAR", "channel": "webhook", "target": "https://soar.example.com/hook", "events": ["finding.new"]})
                    .to_string(),
            ),
    )
    .await;
    assert_eq!(status, 201, "local curl: {ep}");
    let id = ep["id"].as_str().expect("id").to_owned();

    // fetch(…/api/dlq/replay, {method: "POST", mode: "no-cors"}) from http://localhost:8080.
    let (status, _, body) = send(
        client()
            .post(format!("{base}/api/dlq/replay"))
            .header("origin", "http://localhost:8080")
            .header("sec-fetch-site", "same-site"),
    )
    .await;
    assert_eq!(status, 403, "no-cors replay from another local origin: {body}");
    let (status, _, body) = send(
        client()
            .post(format!("{base}/api/endpoints/{id}/disable"))
            .header("origin", "http://localhost:8080")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("x=1"),
    )
    .await;
    assert_eq!(status, 403, "form from another local origin: {body}");
    // DNS rebinding: the attacker's name now points at 127.0.0.1; Origin and Host agree.
    let rebound = format!("rebind.example:{port}");
    let (status, _, body) = send(
        client()
            .post(format!("{base}/api/endpoints/{id}/disable"))
            .header("host", &rebound)
            .header("origin", format!("http://{rebound}"))
            .header("content-type", "application/json")
            .body("{}"),
    )
    .await;
    assert_eq!(status, 403, "rebound host: {body}");
    let (status, _, _) = send(client().get(format!("{base}/api/endpoints")).header("host", &rebound)).await;
    assert_eq!(status, 403, "reads under a rebound host name");
    let (_, _, ep) = send(client().get(format!("{base}/api/endpoints/{id}"))).await;
    assert_eq!(ep["enabled"], true, "nothing above changed the endpoint");

    // The page (same origin, JSON) works.
    let (status, _, body) = send(
        client()
            .post(format!("{base}/api/endpoints/{id}/disable"))
            .header("origin", &base)
            .header("content-type", "application/json")
            .body("{}"),
    )
    .await;
    assert_eq!((status, body["enabled"].clone()), (200, json!(false)), "{body}");
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Sessions are random ids kept in Redis with idle and absolute expiry, revoked on sign-out;
/// the cookie is HttpOnly, SameSite=Strict, and Secure behind HTTPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_random_expiring_and_revoked_on_sign_out() {
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let base = admin.base.clone();
    let mut conn = redis.connection().await;
    let list = format!("{base}/api/endpoints");
    let get_with = |cookie: String| {
        let list = list.clone();
        async move { send(client().get(&list).header("cookie", cookie)).await.0 }
    };

    let (cookie, line) = login(&base).await;
    let id = cookie.strip_prefix("eg_admin=").expect("value").to_owned();
    assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "256-bit id in hex: {id}");
    let old_style = {
        let mut h = Sha256::new();
        h.update(b"entraguard-admin-session:");
        h.update(TOKEN.as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    assert_ne!(id, old_style, "the cookie is not derived from the token");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(line.contains(attr), "{attr} in {line}");
    }
    assert!(!line.contains("Secure"), "plain HTTP: no Secure: {line}");
    let (second, _) = login(&base).await;
    assert_ne!(cookie, second, "each sign-in gets its own session");

    // In Redis under the prefix, by hash, with the idle TTL.
    let key = format!("{{entraguard}}:session:{}", sha256_hex(&id));
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.expect("pttl");
    assert!(ttl > 0 && ttl <= 30 * 60 * 1000, "idle TTL {ttl} ms");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.expect("keys");
    assert!(keys.iter().all(|k| !k.contains(&id)), "the id itself is never a key: {keys:?}");
    assert_eq!(get_with(cookie.clone()).await, 200);

    // Use pushes the idle expiry back.
    redis::cmd("PEXPIRE").arg(&key).arg(60_000).exec_async(&mut conn).await.expect("pexpire");
    assert_eq!(get_with(cookie.clone()).await, 200);
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.expect("pttl");
    assert!(ttl > 60_000, "refreshed on use: {ttl} ms");

    // Signing out revokes the session on the server, not only in the browser.
    let (status, headers, _) = send(
        client()
            .post(format!("{base}/logout"))
            .header("cookie", &cookie)
            .header("origin", &base)
            .header("content-type", "application/json")
            .body("{}"),
    )
    .await;
    assert_eq!(status, 204);
    assert!(session_cookie(&headers).1.contains("Max-Age=0"));
    assert_eq!(get_with(cookie.clone()).await, 401, "a copied cookie is dead after sign-out");
    let exists: i64 = redis::cmd("EXISTS").arg(&key).query_async(&mut conn).await.expect("exists");
    assert_eq!(exists, 0);

    // Absolute expiry: a session past its end is refused (and removed) even if used all along.
    let key2 = format!("{{entraguard}}:session:{}", sha256_hex(second.strip_prefix("eg_admin=").expect("v")));
    redis::cmd("SET").arg(&key2).arg(1).arg("KEEPTTL").exec_async(&mut conn).await.expect("set");
    assert_eq!(get_with(second.clone()).await, 401, "past the absolute expiry");
    let exists: i64 = redis::cmd("EXISTS").arg(&key2).query_async(&mut conn).await.expect("exists");
    assert_eq!(exists, 0);

    // Idle expiry: Redis drops the key, the cookie is refused.
    let (third, _) = login(&base).await;
    let key3 = format!("{{entraguard}}:session:{}", sha256_hex(third.strip_prefix("eg_admin=").expect("v")));
    redis::cmd("PEXPIRE").arg(&key3).arg(1).exec_async(&mut conn).await.expect("pexpire");
    wait_until(Duration::from_secs(10), "the idle session expired", || {
        let (mut c, key3) = (conn.clone(), key3.clone());
        async move { redis::cmd("EXISTS").arg(&key3).query_async::<i64>(&mut c).await.is_ok_and(|n| n == 0) }
    })
    .await;
    assert_eq!(get_with(third).await, 401);

    // Behind an HTTPS proxy the cookie is Secure.
    let https = base.replacen("http://", "https://", 1);
    let (status, headers, _) = send(
        client()
            .post(format!("{base}/login"))
            .header("origin", &https)
            .header("x-forwarded-proto", "https")
            .header("content-type", "application/json")
            .body(json!({ "token": TOKEN }).to_string()),
    )
    .await;
    assert_eq!(status, 204);
    assert!(session_cookie(&headers).1.contains("; Secure"));
}

/// Guessing the token: the sixth wrong try in a minute from one address (at the sign-in form, or
/// as a bearer token: each counts apart) is `429` with `Retry-After`, and so is the right token
/// at that door from that address until the window has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_are_rate_limited() {
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let base = admin.base.clone();
    let attempt = |token: &str| {
        client()
            .post(format!("{base}/login"))
            .header("origin", &base)
            .header("content-type", "application/json")
            .body(json!({ "token": token }).to_string())
    };
    for i in 0..5 {
        let (status, _, body) = send(attempt(&format!("wrong-guess-{i:04}-xxxxxxxx"))).await;
        assert_eq!(status, 401, "try {i}: {body}");
    }
    let (status, headers, body) = send(attempt("wrong-guess-0005-xxxxxxxx")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "too_many_requests", "{body}");
    let retry: u64 = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let (status, _, _) = send(attempt(TOKEN)).await;
    assert_eq!(status, 429, "the right token waits too");
    let (status, _, _) = send(client().get(format!("{base}/api/endpoints")).bearer_auth(TOKEN)).await;
    assert_eq!(status, 200, "failed sign-ins never limit the bearer-token API");

    // Guessing through the API's bearer check instead: the same limit.
    let admin = start(&redis).await;
    let base = admin.base.clone();
    let list = format!("{base}/api/endpoints");
    for i in 0..5 {
        let (status, _, _) =
            send(client().get(&list).bearer_auth(format!("wrong-guess-{i:04}-xxxxxxxx"))).await;
        assert_eq!(status, 401, "try {i}");
    }
    let (status, headers, _) = send(client().get(&list).bearer_auth(TOKEN)).await;
    assert_eq!(status, 429);
    assert!(headers.contains_key("retry-after"));
}

/// Tokens that are blank, short or carry whitespace (a trailing newline from a file) stop the
/// server at start-up with a message naming NOTIFY_ADMIN_TOKEN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_or_padded_tokens_are_refused_at_start_up() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    for token in ["                ", "short-token", &format!("{TOKEN}\n"), &format!(" {TOKEN}")] {
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_entraguard-admin"))
            .env_clear()
            .env("NOTIFY_ADMIN_TOKEN", token)
            .env("REDIS_URL", redis.url())
            .env("NOTIFY_ADMIN_ADDR", "127.0.0.1:0")
            .current_dir(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start entraguard-admin");
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("token {token:?} was accepted: the server kept running"))
            .expect("output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "token {token:?}");
        assert!(stderr.contains("NOTIFY_ADMIN_TOKEN"), "token {token:?}: {stderr}");
        assert!(!stderr.contains(TOKEN), "the token is not echoed: {stderr}");
    }
}

/// The page runs no inline script and cannot be framed; no answer is cached or sniffed; the
/// OpenAPI document is behind the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_and_no_inline_script() {
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let base = admin.base.clone();
    let (cookie, _) = login(&base).await;
    for path in ["/settings/webhooks", "/login"] {
        let (status, h, body) = send(client().get(format!("{base}{path}")).header("cookie", &cookie)).await;
        assert_eq!(status, 200, "{path}");
        let csp = h.get("content-security-policy").and_then(|v| v.to_str().ok()).expect("CSP").to_owned();
        let script_src = csp.split(';').find(|d| d.trim().starts_with("script-src")).expect("script-src");
        assert!(!script_src.contains("unsafe-inline"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(h.get("x-frame-options").map(|v| v.as_bytes()), Some(&b"DENY"[..]), "{path}");
        assert_eq!(h.get("x-content-type-options").map(|v| v.as_bytes()), Some(&b"nosniff"[..]));
        assert_eq!(h.get("referrer-policy").map(|v| v.as_bytes()), Some(&b"no-referrer"[..]));
        let html = body.as_str().expect("html");
        assert!(!html.contains("<script>"), "{path}: no inline script");
        assert!(html.contains("<script src=\"/"), "{path}: its script is a file");
    }
    for path in ["/settings/webhooks.js", "/login.js"] {
        let (status, h, _) = send(client().get(format!("{base}{path}"))).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            h.get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with("text/javascript")),
            "{path}"
        );
    }
    for req in [
        client().get(format!("{base}/api/endpoints")).bearer_auth(TOKEN),
        client().get(format!("{base}/api/endpoints")),
        client().get(format!("{base}/api/stats")).header("cookie", &cookie),
        client()
            .post(format!("{base}/api/endpoints"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body("{}"),
    ] {
        let (status, h, _) = send(req).await;
        assert_eq!(h.get("cache-control").map(|v| v.as_bytes()), Some(&b"no-store"[..]), "{status}");
        assert_eq!(h.get("x-content-type-options").map(|v| v.as_bytes()), Some(&b"nosniff"[..]));
    }
    let (status, _, _) = send(client().get(format!("{base}/api/openapi.json"))).await;
    assert_eq!(status, 401, "the OpenAPI document is behind the token");
    let (status, _, doc) = send(client().get(format!("{base}/api/openapi.json")).bearer_auth(TOKEN)).await;
    assert_eq!((status, doc["openapi"].clone()), (200, json!("3.1.0")));
    // Probes use /healthz, which needs no token and tells nothing.
    let (status, _, body) = send(client().get(format!("{base}/healthz"))).await;
    assert_eq!((status, body), (200, json!("ok")));
}

/// Tokens in a webhook's path or query string are masked like Slack's, in what the API shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_in_webhook_paths_and_queries_are_masked() {
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let base = admin.base.clone();
    let a = create_endpoint(&base, "https://soar.example.com/SOARPATHTOKEN1").await;
    assert_eq!(a["target"], "https://soar.example.com/****", "{a}");
    let b = create_endpoint(&base, "https://soar.example.com:8443/hook?token=abc&x=1").await;
    assert_eq!(b["target"], "https://soar.example.com:8443/hook?token=****&x=****", "{b}");
    let (_, _, list) = send(client().get(format!("{base}/api/endpoints")).bearer_auth(TOKEN)).await;
    let shown = list.to_string();
    assert!(
        !shown.contains("SOARPATHTOKEN1") && !shown.contains("=abc") && !shown.contains("x=1"),
        "{shown}"
    );
}

/// A client bound to a loopback source address (Linux routes all of 127.0.0.0/8 to lo).
fn client_from(last_octet: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from([127, 0, 0, last_octet]))
        .build()
        .expect("client")
}

/// Issue 24: an attacker without the token cannot lock the admin out. 30 wrong sign-ins from
/// 127.0.0.2–.7, then bursts of 21 (from the same addresses, and spread over 21 others, past what
/// the old overall limit allowed), each followed by the admin: the correct token from 127.0.0.1
/// signs in and the bearer-token API answers, every time; the attackers' addresses are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_sign_ins_from_other_addresses_never_lock_the_admin_out() {
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let base = admin.base.clone();
    let sign_in = |from: u8, token: &str| {
        client_from(from)
            .post(format!("{base}/login"))
            .header("origin", &base)
            .header("content-type", "application/json")
            .body(json!({ "token": token }).to_string())
    };
    let admin_gets_in = |round: usize| {
        let (base, sign_in) = (base.clone(), sign_in(1, TOKEN));
        async move {
            let (status, headers, body) = send(sign_in).await;
            assert_eq!(status, 204, "round {round}: the admin's sign-in: {body}");
            let (cookie, _) = session_cookie(&headers);
            let (status, _, body) =
                send(client_from(1).get(format!("{base}/api/endpoints")).header("cookie", cookie)).await;
            assert_eq!(status, 200, "round {round}: the admin's session: {body}");
            let (status, _, body) =
                send(client_from(1).get(format!("{base}/api/endpoints")).bearer_auth(TOKEN)).await;
            assert_eq!(status, 200, "round {round}: the bearer-token API: {body}");
        }
    };
    let mut n = 0;
    let mut wrong = || {
        n += 1;
        format!("wrong-guess-{n:05}-xxxxxxxx")
    };
    for from in 2..=7u8 {
        for _ in 0..5 {
            let (status, _, body) = send(sign_in(from, &wrong())).await;
            assert_eq!(status, 401, "127.0.0.{from}: {body}");
        }
    }
    admin_gets_in(0).await;
    for round in 1..=3 {
        let mut refused = 0;
        for i in 0..21u8 {
            let (status, _, _) = send(sign_in(2 + i % 6, &wrong())).await;
            refused += usize::from(status == 429);
        }
        assert_eq!(refused, 21, "round {round}: the attackers' addresses are limited");
        admin_gets_in(round).await;
        for i in 0..21u8 {
            let from = 10 + 21 * (round as u8 - 1) + i;
            let (status, _, _) = send(sign_in(from, &wrong())).await;
            assert_eq!(status, 401, "round {round}: 127.0.0.{from}'s first try is checked");
        }
        admin_gets_in(round).await;
        // Wrong bearer tokens from the attackers' addresses do not limit the admin's either.
        for from in 2..=7u8 {
            let (status, _, _) =
                send(client_from(from).get(format!("{base}/api/stats")).bearer_auth(wrong())).await;
            assert!(status == 401 || status == 429, "{status}");
        }
        admin_gets_in(round).await;
    }
    // The API is never limited by failed sign-ins: the token from an attacker's address works.
    let (status, _, body) =
        send(client_from(2).get(format!("{base}/api/endpoints")).bearer_auth(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
}
