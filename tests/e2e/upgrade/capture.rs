//! The tool that writes `tests/fixtures/layout-v1/previous-release.json`: the previous
//! release's own binaries (its CLI and worker, built from its commit by the testkit) run a
//! scenario on a fresh Redis until every shape it writes is there, then the keys are dumped.
//! Not part of the suite (`#[ignore]`); regenerate with
//!
//! ```sh
//! cargo test -p entraguard-tests --test e2e -- --ignored --exact upgrade::capture::capture_the_previous_release
//! ```
//!
//! (`ENTRAGUARD_FIXTURE_COMMIT=<commit>` captures another release, `ENTRAGUARD_FIXTURE_OUT` names
//! the file, from the repository's root; tests/fixtures/README.md lists the fixtures). The
//! scenario, on five webhook endpoints (their receivers' roles):
//! - `ok` (200) and `digest` (200, scan digest of low and medium findings, 10 min wait) get every
//!   event while the old worker runs: Recent Deliveries, an open digest and its timer;
//! - `slow` never answers: with one delivery per endpoint at a time, one hangs in the worker's
//!   processing list (the worker is then SIGKILLed) and the rest wait in its lane
//!   (`delivery_ref.v1`, bodies kept once);
//! - `flaky` answers 500: five failures scheduled as retries (10 min) in the delayed set, its
//!   breaker open, the rest parked in its lane;
//! - `rejecting` answers 400: first, before the rest, a worker with a one-retry schedule
//!   dead-letters two failed scans there (a webhook's failures are retryable: dead after the
//!   retry) and stops on SIGTERM; the old CLI replays one of them (a full `delivery.v1` in ready)
//!   after the second worker is killed;
//! - then the old CLI publishes a finding and the scan's end, left in ready as `event.v1` jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use entraguard_core::ids::EventId;
use entraguard_testkit::{HttpReceiver, RedisServer, Reply, release_bin_dir, wait_until};
use tokio::process::Command;

use super::PREVIOUS_RELEASE;
use super::fixture::{Expect, Fixture, dump};
use crate::harness::keys;

const TENANT: &str = "8d6310d1-5e4b-4e1c-9d7a-3f0f7a4f2b11";
const SCAN: &str = "scan_2026-12-01T07:00Z";

/// Runs a CLI of `bins` against `url`; its stdout, or a panic with its stderr.
async fn cli(bins: &Path, url: &str, args: &[&str]) -> String {
    let out = Command::new(bins.join("entraguard-notify"))
        .args(["--redis-url", url, "--allow-http=true"])
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("NOTIFY_ENCRYPTION_KEY")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the old cli runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{args:?}: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
    stdout
}

fn finding(id: &EventId, finding: &str, severity: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id.to_string(),
        "event": "finding.new",
        "tenant_id": TENANT,
        "tenant_name": "contoso.onmicrosoft.com",
        "scan_id": SCAN,
        "finding": {
            "id": finding,
            "title": format!("Finding {finding}"),
            "severity": severity,
            "category": "privileged-access",
            "affected": ["admin@contoso.com"],
            "remediation_url": format!("https://entraguard.example.com/api/entraguard/findings/{finding}")
        }
    })
}

fn scan_failed(id: &EventId) -> serde_json::Value {
    serde_json::json!({
        "id": id.to_string(), "event": "scan.failed", "tenant_id": TENANT,
        "tenant_name": "contoso.onmicrosoft.com", "scan_id": SCAN,
        "scan": {
            "run_id": "run_2026-12-01T07:00Z", "kind": "full", "environment": "prod",
            "error": { "kind": "graph_throttled", "message": "Graph answered 429 for 20 minutes" }
        }
    })
}

fn scan_completed(id: &EventId) -> serde_json::Value {
    serde_json::json!({
        "id": id.to_string(), "event": "scan.completed", "tenant_id": TENANT,
        "tenant_name": "contoso.onmicrosoft.com", "scan_id": SCAN,
        "scan": {
            "run_id": "run_2026-12-01T07:00Z", "kind": "full", "environment": "prod", "score": 72,
            "grade": "C", "new_findings": { "critical": 0, "high": 7, "medium": 0, "low": 2, "info": 0 }
        }
    })
}

/// Publishes `events` with the old CLI (from a file: one call for the batch).
async fn publish(bins: &Path, url: &str, dir: &Path, events: &[serde_json::Value]) {
    let file = dir.join("events.json");
    std::fs::write(&file, serde_json::to_vec(events).expect("json")).expect("write events");
    let out = cli(bins, url, &["publish", file.to_str().expect("utf-8 path")]).await;
    assert_eq!(out.lines().filter(|l| l.starts_with("evt_")).count(), events.len(), "published: {out}");
}

/// How many of `endpoint`'s deliveries wait in the delayed set and in its lane.
async fn waiting_for(conn: &mut redis::aio::MultiplexedConnection, endpoint: &str) -> (usize, usize) {
    let delayed: Vec<String> =
        redis::cmd("ZRANGE").arg(keys().delayed()).arg(0).arg(-1).query_async(conn).await.expect("zrange");
    let retries = delayed.iter().filter(|j| j.contains(&format!("\"endpoint_id\":\"{endpoint}\""))).count();
    let lane: usize = redis::cmd("LLEN")
        .arg(format!("{}:lane:{endpoint}", keys().tag()))
        .query_async(conn)
        .await
        .expect("llen");
    (retries, lane)
}

#[tokio::test]
#[ignore = "writes tests/fixtures/layout-v1/previous-release.json from the previous release's binaries; run by hand"]
async fn capture_the_previous_release() {
    let commit = std::env::var("ENTRAGUARD_FIXTURE_COMMIT").unwrap_or_else(|_| PREVIOUS_RELEASE.to_owned());
    // A relative ENTRAGUARD_FIXTURE_OUT is from the repository's root (tests run in tests/).
    let out: PathBuf = std::env::var_os("ENTRAGUARD_FIXTURE_OUT")
        .map(|p| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(p))
        .unwrap_or_else(|| super::fixture::dir().join("layout-v1/previous-release.json"));
    let bins = tokio::task::spawn_blocking({
        let commit = commit.clone();
        move || release_bin_dir(&commit)
    })
    .await
    .expect("build");
    let redis = RedisServer::start();
    let url = redis.url();
    let tmp = tempfile::tempdir().expect("tmp");
    let ok = HttpReceiver::start();
    let digest = HttpReceiver::start();
    let slow = HttpReceiver::with_default(Reply::status(200).delay(Duration::from_secs(600)));
    let flaky = HttpReceiver::with_default(Reply::status(500));
    let rejecting = HttpReceiver::with_default(Reply::status(400));

    let mut endpoints = BTreeMap::new();
    let secret = "a-long-random-signing-secret";
    for (role, receiver, events, extra) in [
        ("ok", &ok, "finding.new,scan.completed,scan.failed", &[][..]),
        (
            "digest",
            &digest,
            "finding.new,scan.completed",
            &["--digest", "low,medium", "--digest-max-wait", "10m"][..],
        ),
        ("slow", &slow, "finding.new", &[][..]),
        ("flaky", &flaky, "finding.new", &[][..]),
        ("rejecting", &rejecting, "scan.failed", &[][..]),
    ] {
        let target = receiver.url_for(&format!("/{role}"));
        let mut args = vec![
            "--json",
            "endpoint",
            "add",
            "--name",
            role,
            "--channel",
            "webhook",
            "--target",
            &target,
            "--events",
            events,
            "--secret",
            secret,
        ];
        args.extend_from_slice(extra);
        let view: serde_json::Value =
            serde_json::from_str(&cli(&bins, &url, &args).await).expect("endpoint json");
        let id = view["id"].as_str().expect("endpoint id").to_owned();
        endpoints.insert(id, role.to_owned());
    }
    let id_of =
        |role: &str| endpoints.iter().find(|(_, r)| *r == role).map(|(id, _)| id.clone()).expect("role");

    let old_worker = |retries: &str| {
        Command::new(bins.join("entraguard-worker"))
            .args(["--redis-url", &url, "--allow-http=true", "--allow-private-targets", "127.0.0.1/32"])
            .args(["--retry-schedule", retries, "--breaker-probe", "10m", "--endpoint-concurrency", "1"])
            .args([
                "--delivery-timeout",
                "120s",
                "--lease",
                "1s",
                "--fetch-block",
                "1s",
                "--concurrency",
                "8",
            ])
            .env_remove("REDIS_URL")
            .env_remove("NOTIFY_ENCRYPTION_KEY")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the old worker starts")
    };
    let mut conn = redis.connection().await;
    let deadline = Duration::from_secs(120);

    // Phase 0: two failed scans dead-lettered (a webhook's failures are retryable: one retry,
    // then the dead-letter queue) by a worker with a one-retry schedule, stopped with SIGTERM.
    let fails: Vec<EventId> = (0..2).map(|_| EventId::generate()).collect();
    let first = old_worker("50ms");
    publish(&bins, &url, tmp.path(), &fails.iter().map(scan_failed).collect::<Vec<_>>()).await;
    ok.wait_for_requests(2, deadline).await;
    wait_until(deadline, "2 dead letters", || {
        let mut conn = conn.clone();
        async move {
            redis::cmd("LLEN").arg(keys().dlq()).query_async::<usize>(&mut conn).await.expect("llen") == 2
        }
    })
    .await;
    let pid = first.id().expect("running").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = first.wait_with_output().await.expect("the first worker stops");
    assert!(status.status.success(), "{status:?}");

    // Phase A, while a worker with 10 min retries runs.
    let mut worker = old_worker("10m,10m,10m");
    let highs: Vec<(EventId, String)> =
        (1..=6).map(|i| (EventId::generate(), format!("PIM-00{i}"))).collect();
    let lows: Vec<(EventId, String)> = (1..=2).map(|i| (EventId::generate(), format!("MFA-00{i}"))).collect();
    let mut phase_a: Vec<serde_json::Value> = highs.iter().map(|(id, f)| finding(id, f, "high")).collect();
    phase_a.extend(lows.iter().map(|(id, f)| finding(id, f, "low")));
    publish(&bins, &url, tmp.path(), &phase_a).await;
    ok.wait_for_requests(10, deadline).await;
    digest.wait_for_requests(6, deadline).await;
    slow.wait_for_requests(1, deadline).await;
    let flaky_id = id_of("flaky");
    let slow_id = id_of("slow");
    let last = Arc::new(Mutex::new(None::<String>));
    wait_until(deadline, "flaky's 8 deliveries wait (retries and parked), slow's lane holds 6 or 7 (one in flight)", || {
        let mut conn = conn.clone();
        let (flaky_id, slow_id, last) = (flaky_id.clone(), slow_id.clone(), Arc::clone(&last));
        async move {
            let (retries, parked) = waiting_for(&mut conn, &flaky_id).await;
            let (_, slow_lane) = waiting_for(&mut conn, &slow_id).await;
            let dead: usize = redis::cmd("LLEN").arg(keys().dlq()).query_async(&mut conn).await.expect("llen");
            let ready: usize = redis::cmd("LLEN").arg(keys().ready()).query_async(&mut conn).await.expect("llen");
            let state = format!("flaky retries {retries} parked {parked}, slow lane {slow_lane}, dead {dead}, ready {ready}");
            if last.lock().expect("lock").replace(state.clone()).as_ref() != Some(&state) {
                eprintln!("{state}");
            }
            retries >= 4 && parked >= 1 && retries + parked == 8 && slow_lane >= 6 && dead == 2 && ready == 0
        }
    })
    .await;
    // SIGKILL: slow's delivery in flight stays on the dead worker's processing list.
    worker.start_kill().expect("kill the old worker");
    let _ = worker.wait().await;

    // Phase B, no worker: a replayed dead letter, a finding and the scan's end wait in ready.
    let dead: serde_json::Value =
        serde_json::from_str(&cli(&bins, &url, &["--json", "dlq", "list"]).await).expect("dlq json");
    let dead_ids: Vec<String> = dead
        .as_array()
        .or_else(|| dead["dead_letters"].as_array())
        .expect("a list of dead letters")
        .iter()
        .map(|d| d["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(dead_ids.len(), 2, "{dead}");
    cli(&bins, &url, &["dlq", "replay", &dead_ids[0]]).await;
    let late = EventId::generate();
    let end = EventId::generate();
    publish(&bins, &url, tmp.path(), &[finding(&late, "PIM-007", "high"), scan_completed(&end)]).await;

    // What a drain by a later worker owes: every event to each endpoint subscribed to it that
    // has not answered 2xx yet (ok and digest answered every one so far); low findings reach
    // the digest endpoint inside its finding.digest.
    let mut deliveries: BTreeSet<(String, String)> = BTreeSet::new();
    for (id, _) in highs.iter().chain(&lows) {
        deliveries.insert(("slow".into(), id.to_string()));
        deliveries.insert(("flaky".into(), id.to_string()));
    }
    for id in &fails {
        deliveries.insert(("rejecting".into(), id.to_string()));
    }
    for role in ["ok", "digest", "slow", "flaky"] {
        deliveries.insert((role.into(), late.to_string()));
    }
    for role in ["ok", "digest"] {
        deliveries.insert((role.into(), end.to_string()));
    }
    let digested = lows.iter().map(|(_, f)| ("digest".to_owned(), f.clone())).collect();
    let now_ms: i64 = {
        let (s, us): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await.expect("time");
        s * 1000 + us / 1000
    };
    let fixture = Fixture {
        written_by: commit.clone(),
        scenario: "the release's own CLI and worker: ok/digest delivered, slow hanging (SIGKILLed in flight, lane), flaky failing (retries, breaker open, lane), rejecting dead-lettered (one replayed), then a finding and the scan's end published with no worker".into(),
        captured_at_ms: now_ms,
        endpoints,
        expect: Expect { deliveries: deliveries.into_iter().collect(), digested, dead_letters: vec![dead_ids[1].clone()] },
        keys: dump(&mut conn).await,
    };
    fixture.write(&out);
    eprintln!("wrote {} ({} keys) from {commit}", out.display(), fixture.keys.len());
}
