//! The admin server under attack: cross-site requests, stolen or stale sessions, token guessing,
//! framing and sniffing, and tokens in webhook URLs. Each test is the attacker's request and what
//! the server must answer.

mod common;

use std::time::Duration;

use entraguard_testkit::RedisServer;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use common::{TOKEN, start};

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
