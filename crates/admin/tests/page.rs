//! The Settings → Webhooks page in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `./dev test` installs): sign in, add a Slack endpoint pointing at a
//! local fake, press Send test and read the receiver's status on the page, toggle it off, delete
//! it, sign out.
//!
//! Chromium's profile and every temp file of chromedriver and Chromium live in one temp dir that
//! is removed when the test ends, passed or failed. On failure a screenshot of the page goes to
//! the target directory and its path is printed.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use entraguard_testkit::{HttpReceiver, RedisServer, free_port, wait_until};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use common::{TOKEN, start};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_adds_tests_disables_and_deletes_an_endpoint_in_the_browser() {
    assert!(
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
        "this test needs Debian's chromium and chromium-driver (./dev test installs them)"
    );
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let slack = HttpReceiver::start();

    // Declared before the driver, so it is dropped (removed) after the driver is killed.
    let tmp = tempfile::Builder::new().prefix("entraguard-chromium-").tempdir().expect("temp dir");
    let profile = tmp.path().join("profile");
    let port = free_port();
    let mut driver = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        // chromedriver and the Chromium it starts put their scratch files under TMPDIR.
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    wait_until(Duration::from_secs(60), "chromedriver listening", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--window-size=1280,1000",
                     format!("--user-data-dir={}", profile.display())]
        }),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("browser session");

    // The steps run in a task of their own so that a failed step still lets this function take a
    // screenshot and shut Chromium down before the temp dir goes.
    let outcome = tokio::spawn(use_the_page(browser.clone(), admin.base.clone(), slack)).await;
    if outcome.is_err() {
        match screenshot(&browser).await {
            Ok(path) => eprintln!("the page when the test failed: {}", path.display()),
            Err(e) => eprintln!("no screenshot of the page: {e}"),
        }
    }
    let _ = browser.close().await;
    let _ = driver.kill().await;
    drop(tmp);
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("the browser steps did not finish: {e}"),
        }
    }
}

/// Saves a screenshot of the page in the target directory (not the temp dir, which is removed).
async fn screenshot(browser: &Client) -> Result<PathBuf, String> {
    let png = browser.screenshot().await.map_err(|e| e.to_string())?;
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("entraguard-webhooks-page-failure.png");
    std::fs::write(&path, png).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
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
