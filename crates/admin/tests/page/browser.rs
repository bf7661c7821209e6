//! The browser harness of the page tests: chromedriver and a headless Chromium in a temp dir of
//! their own, one session at a time, a screenshot on failure; and the small steps the tests
//! repeat (sign in, click, read or wait for an element's text, an API call, a dead letter made
//! through the queue's own path).

use super::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One browser session at a time in this binary: Chromium is heavy on a busy two-core machine.
pub(crate) static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts chromedriver and a headless Chromium, runs `steps` in a task of its own (so a failed
/// step still lets this take a screenshot, named `shot`, and shut Chromium down before its temp
/// dir goes), then re-raises the steps' panic.
pub(crate) async fn in_chromium<F, Fut>(shot: &str, steps: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    assert!(
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
        "this test needs Debian's chromium and chromium-driver (./dev test installs them)"
    );
    let _one_at_a_time = BROWSER.lock().await;
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
    // A new machine's first Chromium start can outlast chromedriver's own wait for it (its
    // profile, fonts and caches are made then): a session refused for that is asked again.
    let mut attempts = 0;
    let browser = loop {
        attempts += 1;
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(browser) => break browser,
            Err(e) if attempts < 3 => {
                eprintln!("browser session refused (attempt {attempts}), asking again: {e}")
            }
            Err(e) => panic!("browser session refused {attempts} times: {e}"),
        }
    };

    let outcome = tokio::spawn(steps(browser.clone())).await;
    if outcome.is_err() {
        match screenshot(&browser, shot).await {
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
pub(crate) async fn screenshot(browser: &Client, name: &str) -> Result<PathBuf, String> {
    let png = browser.screenshot().await.map_err(|e| e.to_string())?;
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, png).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// A bearer-token API call with a JSON body (or none for GET); the answer as JSON.
pub(crate) async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut req = http.request(method, url).bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let text = req.send().await.expect("request").text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"))
}

/// Text of the element matched by `css`, or "" while it is not there.
pub(crate) async fn text_of(browser: &Client, css: &str) -> String {
    match browser.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until the element matched by `css` shows text that `want` accepts; says what it saw.
pub(crate) async fn wait_text(browser: &Client, css: &str, what: &str, want: impl Fn(&str) -> bool) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let t = text_of(browser, css).await;
            if want(&t) {
                return;
            }
            *seen.lock().expect("lock") = t;
            // Re-check, like wait_until, until the deadline: the page sends no notification.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(found.is_ok(), "{what}: {css} shows {:?}", seen.lock().expect("lock"));
}

/// Clicks the element matched by `css` once it is on the page. A click the page refuses for a
/// moment (the element replaced by a re-render between finding and clicking it, or covered while
/// the page lays out) is tried again until the deadline; the last refusal is reported.
pub(crate) async fn click(browser: &Client, css: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let element = browser
            .wait()
            .at_most(left.max(Duration::from_millis(1)))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} on the page: {e}"));
        match element.click().await {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("click {css} refused, trying again: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("click {css}: {e}"),
        }
    }
}

pub(crate) async fn sign_in(browser: &Client, base: &str) {
    browser.goto(&format!("{base}/settings/webhooks")).await.expect("goto");
    let wait = || browser.wait().at_most(Duration::from_secs(30));
    wait().for_element(Locator::Id("token")).await.expect("login form").send_keys(TOKEN).await.expect("type");
    click(browser, "#login").await;
    wait().for_element(Locator::Css("#endpoints tbody tr")).await.expect("the endpoints listed");
}

/// Dead-letters a delivery of `event` to `endpoint` through the queue's own path (push, take,
/// give up) after two failed attempts; returns its id.
pub(crate) async fn dead_letter(
    queue: &entraguard_core::queue::Queue,
    endpoint: &str,
    reason: &str,
) -> String {
    use entraguard_core::job::{AttemptRecord, DeliveryJob, Job};
    use entraguard_core::queue::{DeadLetterDraft, WorkerId};
    let worker = WorkerId::generate();
    let mut job = DeliveryJob::new(entraguard_worker::delivery::test_event(), endpoint.parse().expect("id"));
    let raw = Job::Delivery(job.clone()).encode();
    queue.push(std::slice::from_ref(&raw)).await.expect("push");
    let mut fetcher = queue.fetcher(&worker, Duration::from_secs(1)).await.expect("fetcher");
    let taken = fetcher.try_fetch().await.expect("fetch").expect("job");
    job.attempts = (1..=2)
        .map(|n| AttemptRecord {
            attempt: n,
            at: entraguard_core::timestamp::Timestamp::now(),
            duration_ms: 30,
            status: Some(503),
            error: Some("HTTP 503: maintenance".into()),
        })
        .collect();
    let id = job.delivery_id.to_string();
    let draft = DeadLetterDraft { id: id.clone(), reason: reason.into(), delivery: Some(job) };
    assert!(queue.dead_letter(&taken, &draft).await.expect("dead letter"));
    id
}

/// A worker in this process on `redis_url` (plain HTTP and loopback receivers allowed), to
/// deliver what the page sends; stop it with the handle, then await the task.
pub(crate) fn spawn_worker(
    redis_url: &str,
) -> (
    entraguard_worker::shutdown::ShutdownTrigger,
    tokio::task::JoinHandle<Result<(), entraguard_worker::runner::RunError>>,
) {
    let config = entraguard_worker::WorkerConfig::from_args([
        "entraguard-worker",
        "--redis-url",
        redis_url,
        "--allow-http=true",
        "--allow-private-targets",
        "127.0.0.1/32",
        "--fetch-block",
        "1s",
    ])
    .expect("worker config");
    let (stop, shutdown) = entraguard_worker::Shutdown::new();
    (stop, tokio::spawn(entraguard_worker::run(config, shutdown)))
}
