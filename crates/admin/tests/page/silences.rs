//! The Silences section of the Settings page in a real headless Chromium (see `browser`): a
//! person creates a silence, sees a bad matcher refused with the reason, sees what the silence
//! muted (a real worker fans out), expires it early, and reads both actions in the audit list;
//! the page shows what the API answers.

use std::time::Duration;

use entraguard_core::event::Event;
use entraguard_core::job::{EventJob, Job};
use entraguard_testkit::{HttpReceiver, RedisServer, wait_until};
use fantoccini::{Client, Locator};
use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::browser::{call, click, in_chromium, sign_in, spawn_worker, text_of, wait_text};
use crate::common::start;

fn finding(tenant: &str, severity: &str) -> Event {
    Event::from_json(
        format!(
            r#"{{"event":"finding.new","tenant_id":"{tenant}","finding":{{"id":"PIM-002","title":"t",
            "severity":"{severity}","category":"privileged-access","remediation_url":"https://x.example/f"}}}}"#
        )
        .as_bytes(),
    )
    .expect("valid event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_creates_watches_and_expires_a_silence_on_the_page() {
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let soar = HttpReceiver::start();
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}{path}", admin.base);
    call(
        &http,
        reqwest::Method::POST,
        &api("/api/endpoints"),
        Some(json!({"name": "SOAR", "channel": "webhook", "target": soar.url_for("/hook"), "events": ["finding.new"]})),
    )
    .await;

    let (stop_worker, worker) = spawn_worker(&redis.url());

    let base = admin.base.clone();
    let queue = admin.queue.clone();
    let receiver = soar;
    in_chromium("entraguard-silences-page-failure.png", move |browser| async move {
        sign_in(&browser, &base).await;
        wait_text(&browser, "#silences-empty", "no silences yet", |t| t == "No silences.").await;

        // A bad matcher is refused with the reason, and nothing is created.
        type_into(&browser, "#silence-who", "alice").await;
        type_into(&browser, "#silence-matchers", "tenant=B severity<=urgent").await;
        type_into(&browser, "#silence-duration", "1h").await;
        type_into(&browser, "#silence-comment", "tenant B is being migrated").await;
        click(&browser, "#silence-create").await;
        wait_text(&browser, "#silence-error", "the refusal", |t| {
            t.starts_with("matchers:") && t.contains("\"urgent\" is not a severity")
        })
        .await;

        // Fixed, it is created for every endpoint.
        clear_and_type(&browser, "#silence-matchers", "tenant=B severity<=medium").await;
        click(&browser, "#silence-create").await;
        wait_text(&browser, "#silence-message", "created", |t| t.starts_with("Created sil_")).await;
        let listed = call(&http, reqwest::Method::GET, &format!("{base}/api/silences"), None).await;
        let id = listed[0]["id"].as_str().expect("the API lists it").to_owned();
        let row = format!("#silence-list tr[data-id='{id}']");
        wait_text(&browser, &format!("{row} .state"), "its state", |t| t == "active").await;

        // B's low finding is muted (the worker counts it); B's high goes.
        let mut conn = queue.connection();
        for e in [finding("B", "low"), finding("B", "high")] {
            let _: () =
                conn.rpush(queue.keys().ready(), Job::Event(EventJob::new(e)).encode()).await.expect("rpush");
        }
        receiver.wait_for_requests(1, Duration::from_secs(60)).await;
        let shown = format!("{base}/api/silences/{id}");
        wait_until(Duration::from_secs(60), "the API counts the muted finding", || async {
            call(&http, reqwest::Method::GET, &shown, None).await["silenced"] == 1
        })
        .await;
        click(&browser, "#silences-refresh").await;
        wait_text(&browser, &format!("{row} .silenced"), "the count", |t| t == "1").await;
        let view = call(&http, reqwest::Method::GET, &shown, None).await;
        assert_row_shows(&browser, &row, &view).await;
        assert_eq!(receiver.requests().len(), 1, "only B's high was sent");
        assert_eq!(receiver.requests()[0].json()["finding"]["severity"], "high");

        // Expired early from the page: the API says so, and the audit list shows both actions.
        click(&browser, &format!("{row} button.silence-expire")).await;
        wait_text(&browser, &format!("{row} .state"), "expired", |t| t == "expired").await;
        let view = call(&http, reqwest::Method::GET, &shown, None).await;
        assert_eq!((view["state"].as_str(), view["expired_by"].as_str()), (Some("expired"), Some("alice")));
        assert_row_shows(&browser, &row, &view).await;
        let audit = call(&http, reqwest::Method::GET, &format!("{base}/api/silences/audit"), None).await;
        let rows = browser.find_all(Locator::Css("#silence-audit tbody tr")).await.expect("audit rows");
        assert_eq!(rows.len(), 2, "a create and an expiry");
        for (tr, entry) in rows.iter().zip(audit.as_array().expect("list")) {
            let text = tr.text().await.expect("text");
            for field in ["at", "who", "action", "silence_id"] {
                let want = entry[field].as_str().expect("field");
                assert!(text.contains(want), "audit row {text:?} shows {field} {want:?}");
            }
        }
        assert_eq!(audit[0]["action"], "expired");
        assert_eq!(audit[1]["action"], "created");
        assert!(
            rows[0].find(Locator::Css(".action")).await.expect("cell").text().await.expect("text")
                == "expired"
        );
        // An expired silence has nothing to expire.
        assert!(browser.find(Locator::Css(&format!("{row} button.silence-expire"))).await.is_err());
    })
    .await;
    stop_worker.trigger();
    let _ = worker.await;
}

async fn type_into(browser: &Client, css: &str, text: &str) {
    browser.find(Locator::Css(css)).await.expect(css).send_keys(text).await.expect("type");
}

async fn clear_and_type(browser: &Client, css: &str, text: &str) {
    let field = browser.find(Locator::Css(css)).await.expect(css);
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

/// The silence's row shows what the API says of it.
async fn assert_row_shows(browser: &Client, row: &str, view: &Value) {
    let text = text_of(browser, row).await;
    let matchers: Vec<&str> =
        view["matchers"].as_array().expect("matchers").iter().filter_map(Value::as_str).collect();
    for want in [
        view["state"].as_str().unwrap_or("?"),
        &matchers.join(" "),
        view["starts_at"].as_str().unwrap_or("?"),
        view["ends_at"].as_str().unwrap_or("?"),
        view["created_by"].as_str().unwrap_or("?"),
        view["comment"].as_str().unwrap_or("?"),
    ] {
        assert!(text.contains(want), "the row {text:?} shows {want:?} as the API does: {view}");
    }
    let recent: Vec<&str> =
        view["recent_events"].as_array().expect("recent").iter().filter_map(Value::as_str).collect();
    assert_eq!(text_of(browser, &format!("{row} .recent")).await, recent.join(" "));
    assert_eq!(text_of(browser, &format!("{row} .silenced")).await, view["silenced"].to_string());
}
