//! Silences end to end: a real worker binary fans out, a real admin binary and the real CLI
//! create, show, expire and audit them, over one Redis; a receiver on 127.0.0.1 records what is
//! sent.

use std::process::Stdio;
use std::time::Duration;

use entraguard_producer::Event;
use entraguard_testkit::{HttpReceiver, bin_path, free_port, wait_until};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::harness::{Stack, finding};

const LONG: Duration = Duration::from_secs(60);

fn scan_failed(tenant: &str) -> Event {
    Event::from_json(
        format!(
            r#"{{"event":"scan.failed","tenant_id":"{tenant}","scan_id":"s2","scan":{{"run_id":"r1",
            "kind":"full","environment":"prod","error":{{"kind":"network","message":"down"}}}}}}"#
        )
        .as_bytes(),
    )
    .expect("valid scan event")
}

/// What the receiver got, as "tenant finding-or-kind", in arrival order.
fn got(receiver: &HttpReceiver) -> Vec<String> {
    receiver
        .requests()
        .iter()
        .map(|r| {
            let b = r.json();
            let what = b["finding"]["id"].as_str().or(b["event"].as_str()).unwrap_or("?").to_owned();
            format!("{} {what}", b["tenant_id"].as_str().unwrap_or("?"))
        })
        .collect()
}

/// The CLI against this stack's Redis: stdout, or a panic with its stderr.
async fn cli(url: &str, args: &[&str]) -> String {
    let out = Command::new(bin_path("entraguard-notify"))
        .args(["--redis-url", url])
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("NOTIFY_SILENCE_AUTHOR")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("cli runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: exit {:?}: {stderr}", out.status.code());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn cli_json(url: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = cli(url, &all).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} prints JSON ({e}): {out}"))
}

struct Admin {
    base: String,
    _child: Child,
    http: reqwest::Client,
}

impl Admin {
    async fn start(url: &str) -> Admin {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(bin_path("entraguard-admin"))
            .args(["--redis-url", url, "--insecure-local-only"])
            .env_remove("REDIS_URL")
            .env("NOTIFY_ADMIN_ADDR", &addr)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("admin starts");
        let base = format!("http://{addr}");
        let health = format!("{base}/healthz");
        wait_until(LONG, "the admin server answers", || async {
            matches!(reqwest::get(&health).await, Ok(r) if r.status().is_success())
        })
        .await;
        Admin { base, _child: child, http: reqwest::Client::new() }
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.expect("GET");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        serde_json::from_str(&r.text().await.expect("body")).expect("JSON")
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, serde_json::from_str(&r.text().await.expect("body")).expect("JSON"))
    }
}

/// Worker metrics: the counter of deliveries silences kept back (0 before its first count);
/// `None` while `/metrics` does not answer.
async fn silenced_metric(base: &str) -> Option<u64> {
    let text = reqwest::get(format!("{base}/metrics")).await.ok()?.text().await.ok()?;
    let line = text.lines().find(|l| {
        l.starts_with("entraguard_deliveries_suppressed_total") && l.contains(r#"reason="silence""#)
    });
    Some(line.and_then(|l| l.rsplit(' ').next()).and_then(|n| n.parse::<f64>().ok()).map_or(0, |n| n as u64))
}

/// The issue's case: a silence on (tenant B, severity ≤ medium) for 3 s mutes B's low findings
/// (counted), lets B's high and A's low through, and after its end B's low go again; a second
/// silence expired early stops muting at once, never hid B's failed scan; the audit list shows
/// the creates and the expiry; the CLI and the API show the same silences; `/metrics` counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_mutes_what_it_matches_until_it_ends_or_is_expired_and_every_change_is_audited() {
    let stack = Stack::start().await;
    let url = stack.redis.url();
    let receiver = HttpReceiver::start();
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new", "scan.failed"], None).await;
    let health = format!("127.0.0.1:{}", free_port());
    let _worker = stack.spawn_worker_process(&["--health-addr", &health]);
    let admin = Admin::start(&url).await;
    let metrics = format!("http://{health}");
    wait_until(LONG, "the worker's /metrics answers", || async { silenced_metric(&metrics).await.is_some() })
        .await;

    // The worker is fetching before the 3 s start: a first event goes through.
    stack.producer.publish(&finding("A", "A-WARM-UP", "low")).await.expect("published");
    receiver.wait_for_requests(1, LONG).await;

    // Tenant B, severity ≤ medium, for 3 s: created through the API (the page's path).
    let (status, created) = admin
        .post(
            "/api/silences",
            json!({"matchers": ["tenant=B", "severity<=medium"], "duration": "3s",
                   "author": "alice", "comment": "tenant B is being migrated"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let first = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["state"], "active", "{created}");
    assert_eq!(created["matchers"], json!(["tenant=B", "severity<=medium"]));
    for e in [finding("B", "B-LOW-1", "low"), finding("B", "B-HIGH", "high"), finding("A", "A-LOW", "low")] {
        stack.producer.publish(&e).await.expect("published");
    }
    stack.producer.publish(&finding("B", "B-MED", "medium")).await.expect("published");
    receiver.wait_for_requests(3, LONG).await;
    wait_until(LONG, "the silence counts B's low and medium", || async {
        admin.get(&format!("/api/silences/{first}")).await["silenced"] == 2
    })
    .await;
    stack.wait_drained(LONG).await;
    let mut sent = got(&receiver);
    sent.sort();
    assert_eq!(
        sent,
        ["A A-LOW", "A A-WARM-UP", "B B-HIGH"],
        "B's high and A's low go; B's low and medium do not"
    );
    let shown = admin.get(&format!("/api/silences/{first}")).await;
    assert_eq!(shown["recent_events"].as_array().map(Vec::len), Some(2), "{shown}");

    // After its end (by Redis's clock), B's low go again.
    wait_until(LONG, "the 3 s silence is over", || async {
        admin.get(&format!("/api/silences/{first}")).await["state"] == "expired"
    })
    .await;
    stack.producer.publish(&finding("B", "B-LOW-2", "low")).await.expect("published");
    let after = receiver.wait_for_requests(4, LONG).await;
    assert!(got(&receiver).contains(&"B B-LOW-2".to_owned()), "{:?}", after.len());

    // A second silence, from the CLI, on all of tenant B for an hour: it mutes B's low, never
    // B's failed scan; expired early from the CLI, B's low go again at once.
    let second = cli(
        &url,
        &[
            "silence",
            "create",
            "tenant=B",
            "--duration",
            "1h",
            "--author",
            "bob",
            "--comment",
            "noisy tenant",
        ],
    )
    .await
    .trim()
    .to_owned();
    assert!(second.starts_with("sil_"), "{second}");
    stack.producer.publish(&finding("B", "B-LOW-3", "low")).await.expect("published");
    stack.producer.publish(&scan_failed("B")).await.expect("published");
    receiver.wait_for_requests(5, LONG).await;
    wait_until(LONG, "the second silence counts B's low", || async {
        admin.get(&format!("/api/silences/{second}")).await["silenced"] == 1
    })
    .await;
    assert!(
        got(&receiver).contains(&"B scan.failed".to_owned()),
        "a failed scan is never muted unless named"
    );
    let expired = cli_json(&url, &["silence", "expire", &second, "--by", "carol"]).await;
    assert_eq!(expired["state"], "expired", "{expired}");
    assert_eq!(expired["expired_by"], "carol");
    let (status, again) = admin.post(&format!("/api/silences/{second}/expire"), json!({"by": "carol"})).await;
    assert_eq!(status, 409, "expiring twice is refused: {again}");
    stack.producer.publish(&finding("B", "B-LOW-4", "low")).await.expect("published");
    receiver.wait_for_requests(6, LONG).await;
    stack.wait_drained(LONG).await;
    let mut sent = got(&receiver);
    sent.sort();
    assert_eq!(sent, ["A A-LOW", "A A-WARM-UP", "B B-HIGH", "B B-LOW-2", "B B-LOW-4", "B scan.failed"]);

    // The audit list: both creates and the expiry, newest first, the same in the API and CLI.
    let audit = admin.get("/api/silences/audit").await;
    let actions: Vec<(String, String, String)> = audit
        .as_array()
        .expect("list")
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
            (s("action"), s("who"), s("silence_id"))
        })
        .collect();
    let own = |a: &str, w: &str, id: &str| (a.to_owned(), w.to_owned(), id.to_owned());
    assert_eq!(
        actions,
        [own("expired", "carol", &second), own("created", "bob", &second), own("created", "alice", &first)]
    );
    assert!(audit[2]["what"].as_str().is_some_and(|w| w.contains("tenant=B severity<=medium")), "{audit}");
    assert_eq!(cli_json(&url, &["silence", "audit"]).await, audit);

    // The CLI and the API show the same silences and counts.
    assert_eq!(cli_json(&url, &["silence", "list", "--all"]).await, admin.get("/api/silences").await);
    assert_eq!(
        cli_json(&url, &["silence", "show", &first]).await,
        admin.get(&format!("/api/silences/{first}")).await
    );
    let table = cli(&url, &["silence", "list", "--all"]).await;
    assert!(table.contains(&first) && table.contains("tenant=B severity<=medium"), "{table}");
    assert!(cli(&url, &["silence", "list"]).await.lines().count() == 1, "expired ones only with --all");

    // The worker's /metrics counts every delivery silences kept back.
    wait_until(LONG, "3 silenced deliveries in /metrics", || async {
        silenced_metric(&metrics).await == Some(3)
    })
    .await;
}

/// Bad input gets a clear error naming the field, from the API (422) and the CLI (exit 2), and
/// nothing is stored or audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_silences_are_refused_with_the_reason_and_leave_nothing_behind() {
    let stack = Stack::start().await;
    let url = stack.redis.url();
    let admin = Admin::start(&url).await;
    let cases = [
        (
            json!({"matchers": ["team=B"], "duration": "1h", "author": "a", "comment": "c"}),
            "matchers",
            "unknown field",
        ),
        (
            json!({"matchers": ["severity<=urgent"], "duration": "1h", "author": "a", "comment": "c"}),
            "matchers",
            "not a severity",
        ),
        (json!({"matchers": [], "duration": "1h", "author": "a", "comment": "c"}), "matchers", "match_all"),
        (
            json!({"matchers": ["tenant=B"], "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z",
                   "author": "a", "comment": "c"}),
            "ends_at",
            "not after the start",
        ),
        (
            json!({"matchers": ["tenant=B"], "duration": "1h", "author": "a", "comment": "c", "colour": "red"}),
            "colour",
            "unknown",
        ),
        (
            json!({"matchers": ["tenant=B"], "duration": "1h", "author": "a", "comment": "c", "endpoint_id": "ep_01NOSUCH"}),
            "endpoint_id",
            "no endpoint",
        ),
    ];
    for (body, field, reason) in cases {
        let (status, answer) = admin.post("/api/silences", body.clone()).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
        assert!(answer["reason"].as_str().is_some_and(|r| r.contains(reason)), "{body}: {answer}");
    }
    let out = Command::new(bin_path("entraguard-notify"))
        .args(["--redis-url", &url, "silence", "create", "severity=urgent", "--duration", "1h"])
        .args(["--author", "a", "--comment", "c"])
        .env_remove("REDIS_URL")
        .output()
        .await
        .expect("cli runs");
    assert_eq!(out.status.code(), Some(2), "bad input is exit 2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid matchers") && stderr.contains("\"urgent\" is not a severity"),
        "{stderr}"
    );
    assert_eq!(admin.get("/api/silences").await, json!([]));
    assert_eq!(admin.get("/api/silences/audit").await, json!([]));
}
