//! The Settings → Webhooks page in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `./dev test` installs): sign in, add a Slack endpoint pointing at a
//! local fake, press Send test and read the receiver's status on the page, toggle it off, delete
//! it, sign out.
//!
//! Chromium's profile and every temp file of chromedriver and Chromium live in one temp dir that
//! is removed when the test ends, passed or failed. On failure a screenshot of the page goes to
//! the target directory and its path is printed.

mod browser;
#[path = "../common.rs"]
mod common;
/// The Silences section: create, watch, expire, the audit list.
mod silences;
use browser::*;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use entraguard_testkit::{HttpReceiver, RedisServer, free_port, wait_until};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use common::{TOKEN, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_adds_tests_disables_and_deletes_an_endpoint_in_the_browser() {
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let slack = HttpReceiver::start();
    in_chromium("entraguard-webhooks-page-failure.png", |browser| {
        use_the_page(browser, admin.base.clone(), slack)
    })
    .await;
}

async fn use_the_page(browser: Client, base: String, slack: HttpReceiver) {
    let wait = || browser.wait().at_most(Duration::from_secs(30));

    // Signed out: the page sends you to sign in; a wrong token is refused.
    browser.goto(&format!("{base}/settings/webhooks")).await.expect("goto");
    wait()
        .for_element(Locator::Id("token"))
        .await
        .expect("login form")
        .send_keys("wrong-token")
        .await
        .expect("type");
    browser.find(Locator::Id("login")).await.expect("button").click().await.expect("click");
    // The form posts JSON from script; the answer shows without a reload.
    let err = wait().for_element(Locator::Id("login-error")).await.expect("error");
    wait_until(Duration::from_secs(30), "the wrong token refused on the page", || {
        let e = err.clone();
        async move { e.text().await.unwrap_or_default().contains("not right") }
    })
    .await;
    browser.find(Locator::Id("token")).await.expect("field").send_keys(TOKEN).await.expect("type");
    browser.find(Locator::Id("login")).await.expect("button").click().await.expect("click");
    wait().for_element(Locator::Id("endpoint-form")).await.expect("webhooks page");
    // A new endpoint has no current secret to keep: only an edit says so.
    let label = text_of(&browser, "#secret-label").await;
    assert!(label.starts_with("Signing secret") && !label.contains("keep the current"), "{label}");

    // Add a Slack endpoint pointing at the local fake.
    browser
        .find(Locator::Css("#channel option[value=slack]"))
        .await
        .expect("option")
        .click()
        .await
        .expect("pick");
    browser.find(Locator::Id("name")).await.expect("name").send_keys("SOC Slack").await.expect("type");
    browser
        .find(Locator::Id("target"))
        .await
        .expect("target")
        .send_keys(&slack.url_for("/services/T0AAA/B0BBB/SLACKTOKEN"))
        .await
        .expect("type");
    browser
        .find(Locator::Css("#events input[value='finding.new']"))
        .await
        .expect("event")
        .click()
        .await
        .expect("tick");
    // Rules: only tenant A, its low findings as one digest per scan.
    browser.find(Locator::Css("#rules summary")).await.expect("rules").click().await.expect("open");
    browser
        .find(Locator::Id("rules-tenants"))
        .await
        .expect("tenants")
        .send_keys("tenant-a")
        .await
        .expect("type");
    browser
        .find(Locator::Css("#rules-digest input[value='low']"))
        .await
        .expect("digest severity")
        .click()
        .await
        .expect("tick");
    browser.find(Locator::Id("save")).await.expect("save").click().await.expect("click");
    let row = wait().for_element(Locator::Css("#endpoints tbody tr")).await.expect("a row");
    let row_text = row.text().await.expect("text");
    assert!(row_text.contains("SOC Slack") && row_text.contains("slack"), "{row_text}");
    assert!(
        row_text.contains("tenants tenant-a") && row_text.contains("digest low"),
        "the rules shown: {row_text}"
    );
    assert!(!row_text.contains("SLACKTOKEN"), "the page shows the URL masked: {row_text}");

    // Send test: the receiver's status shows inline.
    browser
        .find(Locator::Css("#endpoints tbody tr button.test"))
        .await
        .expect("send test")
        .click()
        .await
        .expect("click");
    let result = browser.find(Locator::Css("#endpoints tbody tr .test-result")).await.expect("result");
    wait_until(Duration::from_secs(30), "Send test result on the page", || {
        let r = result.clone();
        async move { r.text().await.unwrap_or_default().starts_with("Delivered · 200") }
    })
    .await;
    let got = slack.wait_for_requests(1, Duration::from_secs(30)).await;
    assert!(
        got[0].json()["text"].as_str().is_some_and(|t| t.contains("TEST-001")),
        "a Slack message arrived"
    );

    // Toggle it off: the API agrees.
    browser
        .find(Locator::Css("#endpoints tbody tr input.toggle"))
        .await
        .expect("toggle")
        .click()
        .await
        .expect("click");
    let http = reqwest::Client::new();
    let list_url = format!("{base}/api/endpoints");
    wait_until(Duration::from_secs(30), "endpoint disabled", || {
        let (h, u) = (http.clone(), list_url.clone());
        async move {
            let Ok(r) = h.get(&u).bearer_auth(TOKEN).send().await else { return false };
            let body = r.text().await.unwrap_or_default();
            serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| v[0]["enabled"] == false)
        }
    })
    .await;

    // The Send test outcome is still shown after the table re-rendered with the toggle.
    wait_until(Duration::from_secs(30), "the toggle re-rendered and the test outcome kept", || {
        let b = browser.clone();
        async move {
            let Ok(row) = b.find(Locator::Css("#endpoints tbody tr")).await else { return false };
            let toggled = match row.find(Locator::Css("input.toggle")).await {
                Ok(t) => t.is_selected().await.is_ok_and(|on| !on),
                Err(_) => false,
            };
            let kept = match row.find(Locator::Css(".test-result")).await {
                Ok(r) => r.text().await.is_ok_and(|t| t.starts_with("Delivered · 200")),
                Err(_) => false,
            };
            toggled && kept
        }
    })
    .await;

    // Delete, with confirmation.
    browser
        .find(Locator::Css("#endpoints tbody tr button.delete"))
        .await
        .expect("delete")
        .click()
        .await
        .expect("click");
    browser.accept_alert().await.expect("confirm");
    wait_until(Duration::from_secs(30), "no endpoints left", || {
        let (h, u) = (http.clone(), list_url.clone());
        async move {
            let Ok(r) = h.get(&u).bearer_auth(TOKEN).send().await else { return false };
            r.text().await.unwrap_or_default().trim() == "[]"
        }
    })
    .await;
    let empty = wait().for_element(Locator::Id("empty")).await.expect("empty note");
    wait_until(Duration::from_secs(30), "the page says there are no endpoints", || {
        let e = empty.clone();
        async move { e.is_displayed().await.unwrap_or(false) }
    })
    .await;

    // Sign out: back at the sign-in form, and the session is gone on the server too.
    browser.find(Locator::Id("logout")).await.expect("sign out").click().await.expect("click");
    wait().for_element(Locator::Id("login-form")).await.expect("sign-in form after sign-out");
    browser.goto(&format!("{base}/settings/webhooks")).await.expect("goto");
    wait().for_element(Locator::Id("login-form")).await.expect("signed out: sent to sign in");
}

/// Recent Deliveries with request and response and Redeliver; health; dead letters listed,
/// filtered by endpoint, shown with every attempt, replayed, purged one and all — on the page,
/// with a worker delivering what the page sends again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_reads_recent_deliveries_redelivers_and_works_the_dead_letters_in_the_browser() {
    use entraguard_core::history::{AttemptResult, DeliveryRecord};
    use entraguard_core::job::{AttemptRecord, DeliveryJob};
    use entraguard_core::timestamp::Timestamp;

    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let soar = std::sync::Arc::new(HttpReceiver::with_default(
        entraguard_testkit::Reply::status(200).body("accepted by SOAR"),
    ));
    let http = reqwest::Client::new();
    let create = async |name: &str, path: &str, ed25519: bool| {
        let body = json!({"name": name, "channel": "webhook", "target": soar.url_for(path), "events": ["all"],
                          "secret": "a-long-random-signing-secret", "ed25519": ed25519});
        let v =
            call(&http, reqwest::Method::POST, &format!("{}/api/endpoints", admin.base), Some(body)).await;
        (v["id"].as_str().unwrap_or_else(|| panic!("created: {v}")).to_owned(), v["public_key"].clone())
    };
    let (ours, public_key) = create("SOAR", "/soar", true).await;
    let public_key = public_key.as_str().expect("an Ed25519 public key").to_owned();
    assert!(public_key.starts_with("whpk_"), "{public_key}");
    let (other, none) = create("ITSM", "/itsm", false).await;
    assert!(none.is_null(), "no key unless asked: {none}");

    // Two attempts of one delivery recorded as the worker records them: a 503, then a 200.
    let endpoint_id = ours.parse().expect("endpoint id");
    let job = DeliveryJob::new(entraguard_worker::delivery::test_event(), Clone::clone(&endpoint_id));
    let headers = [
        ("content-type", "application/json"),
        ("x-coderaft-delivery", job.delivery_id.as_str()),
        ("x-coderaft-signature", "sha256=SIGNATURESIGNATURE"),
    ];
    let at = Timestamp::now();
    let failed = AttemptRecord {
        attempt: 1,
        at,
        duration_ms: 80,
        status: Some(503),
        error: Some("HTTP 503: maintenance".into()),
    };
    let ok = AttemptRecord { attempt: 2, at, duration_ms: 20, status: Some(200), error: None };
    admin
        .queue
        .record_history(
            &endpoint_id,
            &[
                DeliveryRecord::new(
                    &job,
                    &failed,
                    AttemptResult::Retry,
                    headers,
                    Some("down for maintenance"),
                ),
                DeliveryRecord::new(&job, &ok, AttemptResult::Delivered, headers, Some("accepted by SOAR")),
            ],
        )
        .await
        .expect("history");
    let ours_dead = [
        dead_letter(&admin.queue, &ours, "gave up after 2 attempts: HTTP 503").await,
        dead_letter(&admin.queue, &ours, "gave up after 2 attempts: HTTP 503").await,
    ];
    let others_dead = [
        dead_letter(&admin.queue, &other, "permanent: HTTP 410").await,
        dead_letter(&admin.queue, &other, "permanent: HTTP 410").await,
    ];

    // A worker delivers what the page sends again.
    let (stop_worker, worker) = spawn_worker(&redis.url());

    let base = admin.base.clone();
    let delivery = job.delivery_id.to_string();
    let receiver = soar.clone();
    let queue = admin.queue.clone();
    in_chromium("entraguard-deliveries-page-failure.png", move |browser| async move {
        sign_in(&browser, &base).await;

        // Health and Recent Deliveries of our endpoint.
        click(&browser, &format!("#endpoints tbody tr[data-id='{ours}'] button.details")).await;
        wait_text(&browser, "#health-rate", "success rate over 24 h", |t| t.starts_with("50 % (1 of 2)")).await;
        wait_text(&browser, "#health-error", "last error", |t| t.contains("HTTP 503: maintenance")).await;
        wait_text(&browser, "#health-breaker", "breaker state", |t| t.starts_with("closed")).await;
        wait_text(&browser, "#health-in-flight", "in flight", |t| t == "0").await;
        wait_text(&browser, "#health-waiting", "waiting", |t| t == "0").await;
        wait_text(&browser, "#health-parked", "parked", |t| t == "0").await;
        let rows = browser.find_all(Locator::Css("#deliveries tbody tr")).await.expect("rows");
        assert_eq!(rows.len(), 2, "both attempts listed");
        let newest = rows[0].text().await.expect("text");
        assert!(newest.contains("delivered") && newest.contains("200") && newest.contains(&delivery), "{newest}");
        // Request and response of the failed attempt.
        click(&browser, "#deliveries tbody tr:nth-child(2) details summary").await;
        wait_text(&browser, "#deliveries tbody tr:nth-child(2) pre.request-headers", "request headers", |t| {
            t.contains("x-coderaft-signature: ****") && t.contains(&format!("x-coderaft-delivery: {delivery}"))
        })
        .await;
        let page = browser.source().await.expect("source");
        assert!(!page.contains("SIGNATURESIGNATURE"), "the signature value never reaches the page");
        // The Ed25519 public key receivers verify with, on the details and in the edit form.
        wait_text(&browser, "#details-public-key", "the public key", |t| t.contains(&public_key)).await;
        click(&browser, &format!("#endpoints tbody tr[data-id='{ours}'] button.edit")).await;
        wait_text(&browser, "#public-key", "the public key in the form", |t| t.contains(&public_key)).await;
        let ticked = browser.find(Locator::Id("ed25519")).await.expect("checkbox").is_selected().await;
        assert!(ticked.expect("selected"), "the form shows the endpoint has a key");
        click(&browser, "#cancel").await;
        wait_text(&browser, "#deliveries tbody tr:nth-child(2) pre.response-body", "response body", |t| {
            t == "down for maintenance"
        })
        .await;

        // Redeliver: queued on the page, delivered by the worker with the same delivery id.
        click(&browser, "#deliveries tbody tr:nth-child(1) button.redeliver").await;
        wait_text(&browser, "#deliveries tbody tr:nth-child(1) .redeliver-result", "redeliver outcome", |t| {
            t.starts_with("Redelivery queued")
        })
        .await;
        wait_until(Duration::from_secs(60), "the redelivery at the receiver", || {
            let (r, d) = (receiver.clone(), delivery.clone());
            async move { r.requests().iter().any(|q| q.header("x-coderaft-delivery") == Some(d.as_str())) }
        })
        .await;

        // Dead letters: all four, newest first.
        click(&browser, "#dlq-refresh").await;
        wait_until(Duration::from_secs(30), "four dead letters listed", || {
            let b = browser.clone();
            async move { b.find_all(Locator::Css("#dlq tbody tr")).await.map(|r| r.len()).unwrap_or(0) == 4 }
        })
        .await;
        // Read afresh each time: the page load's own listing may still replace the rows.
        let newest = others_dead[1].clone();
        wait_until(Duration::from_secs(30), "the newest dead letter listed first", || {
            let (b, newest) = (browser.clone(), newest.clone());
            async move {
                let Ok(row) = b.find(Locator::Css("#dlq tbody tr")).await else { return false };
                row.attr("data-id").await.ok().flatten().as_deref() == Some(newest.as_str())
            }
        })
        .await;

        // Show one: reason, every attempt, the event.
        click(&browser, &format!("#dlq tbody tr[data-id='{}'] button.dlq-show", ours_dead[0])).await;
        wait_text(&browser, "#dlq-detail", "the dead letter shown", |t| {
            t.contains("Reason: gave up after 2 attempts: HTTP 503") && t.contains("Attempts (2)") && t.contains("TEST-001")
        })
        .await;
        assert_eq!(browser.find_all(Locator::Css("#dlq-attempts tr")).await.expect("attempts").len(), 2);

        // Only our endpoint's, then replay them all: the worker delivers both.
        click(&browser, &format!("#dlq-endpoint option[value='{ours}']")).await;
        click(&browser, "#dlq-refresh").await;
        wait_until(Duration::from_secs(30), "our two dead letters listed", || {
            let b = browser.clone();
            async move { b.find_all(Locator::Css("#dlq tbody tr")).await.map(|r| r.len()).unwrap_or(0) == 2 }
        })
        .await;
        click(&browser, "#dlq-replay-all").await;
        wait_text(&browser, "#dlq-message", "replay outcome", |t| t.starts_with("Replayed 2")).await;
        for id in &ours_dead {
            wait_until(Duration::from_secs(60), "a replayed dead letter at the receiver", || {
                let (r, d) = (receiver.clone(), id.clone());
                async move { r.requests().iter().any(|q| q.header("x-coderaft-delivery") == Some(d.as_str())) }
            })
            .await;
        }

        // Purge one of the other endpoint's, with confirmation, then all.
        click(&browser, "#dlq-endpoint option[value='']").await;
        click(&browser, "#dlq-refresh").await;
        let purge_one = format!("#dlq tbody tr[data-id='{}'] button.dlq-purge", others_dead[0]);
        click(&browser, &purge_one).await;
        browser.accept_alert().await.expect("confirm");
        wait_text(&browser, "#dlq-message", "purge outcome", |t| t == format!("Purged {}", others_dead[0])).await;
        click(&browser, "#dlq-purge-all").await;
        browser.accept_alert().await.expect("confirm");
        wait_text(&browser, "#dlq-message", "purge-all outcome", |t| t == "Purged 1").await;
        wait_until(Duration::from_secs(30), "no dead letters left", || {
            let q = queue.clone();
            async move { q.stats().await.is_ok_and(|s| s.dead == 0) }
        })
        .await;
        let empty = browser.find(Locator::Id("dlq-empty")).await.expect("empty note");
        assert!(empty.is_displayed().await.expect("displayed"), "the page says there are no dead letters");
    })
    .await;
    stop_worker.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(30), worker).await;
}

/// A page on another origin (here another port of the same host: the same site, so the
/// SameSite=Strict session cookie does travel) tries to disable an endpoint through the
/// signed-in admin's browser: every attempt fails and the endpoint stays enabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_cannot_change_anything_through_the_signed_in_browser() {
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let http = reqwest::Client::new();
    let body =
        json!({"name": "SOC", "channel": "webhook", "target": "http://127.0.0.1:9/x", "events": ["all"]});
    let created =
        call(&http, reqwest::Method::POST, &format!("{}/api/endpoints", admin.base), Some(body)).await;
    let id = created["id"].as_str().unwrap_or_else(|| panic!("created: {created}")).to_owned();
    let target = format!("{}/api/endpoints/{id}/disable", admin.base);
    let attacker_html = format!(
        r#"<!DOCTYPE html><html><body><p id="state">running</p><script>
const t = {target:?};
const tries = [
  fetch(t, {{method: "POST", mode: "no-cors", credentials: "include", headers: {{"content-type": "text/plain"}}, body: "{{}}"}}),
  fetch(t, {{method: "POST", credentials: "include", headers: {{"content-type": "application/json"}}, body: "{{}}"}}),
];
Promise.allSettled(tries).then((r) => {{ document.getElementById("state").textContent = "done " + r.map((x) => x.status).join(","); }});
</script></body></html>"#
    );
    let attacker = HttpReceiver::with_default(
        entraguard_testkit::Reply::status(200).header("content-type", "text/html").body(attacker_html),
    );
    let base = admin.base.clone();
    let (http2, list) = (http.clone(), format!("{}/api/endpoints/{id}", admin.base));
    in_chromium("entraguard-csrf-failure.png", move |browser| async move {
        sign_in(&browser, &base).await;
        browser.goto(&attacker.url_for("/evil")).await.expect("goto the other origin");
        wait_text(&browser, "#state", "the other origin's attempts settled", |t| t.starts_with("done")).await;
        let shown = call(&http2, reqwest::Method::GET, &list, None).await;
        assert_eq!(shown["enabled"], true, "the endpoint is still enabled: {shown}");
        // The page still works for its own origin: the session was not the problem.
        browser.goto(&format!("{base}/settings/webhooks")).await.expect("back");
        wait_text(&browser, "#endpoints tbody tr", "the endpoint listed", |t| t.contains("SOC")).await;
    })
    .await;
}
