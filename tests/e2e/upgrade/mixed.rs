//! A rolling upgrade: the previous release's worker binary (built from its commit by the
//! testkit, once per machine) beside today's on one Redis while events flow. Nothing may be
//! lost: every event reaches every endpoint subscribed to it at least once; duplicates are
//! counted and printed (at least once allows them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use entraguard_testkit::{HttpReceiver, Recorded, Reply, release_bin_dir, wait_until};
use tokio::process::Child;

use super::PREVIOUS_RELEASE;
use crate::harness::{Stack, finding_event, spawn_worker_binary_at};

/// Every worker's settings in this test: retries in milliseconds, more of them than the flaky
/// endpoint's failures, so nothing dies of a failure window both versions share.
const SETTINGS: &[&str] = &[
    "--retry-schedule",
    "100ms,200ms,300ms,400ms,500ms,600ms,700ms,800ms,900ms,1s",
    "--endpoint-concurrency",
    "2",
    "--concurrency",
    "8",
];

/// Events published, and how many of the flaky endpoint's first requests fail.
const EVENTS: usize = 240;
const FLAKY_FAILURES: usize = 8;

fn spawn(bin: &std::path::Path, url: &str) -> Child {
    spawn_worker_binary_at(bin, url, SETTINGS)
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
}

/// `entraguard-notify --json layout <args>`, as an operator runs it.
fn layout(url: &str, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(entraguard_testkit::bin_path("entraguard-notify"))
        .args(["--redis-url", url, "--json", "layout"])
        .args(args)
        .output()
        .expect("cli runs");
    assert!(out.status.success(), "layout {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

/// How many times each event id reached `requests`.
fn per_event(requests: &[Recorded]) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for r in requests {
        if let Some(id) = r.json()["id"].as_str() {
            *n.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    n
}

/// Old workers, then today's beside them, then the old ones stopped (one SIGTERMed, one
/// SIGKILLed mid-flow), while 240 events are published: a flaky endpoint (8 requests fail while
/// both versions run: retries in the delayed set and its breaker opening, parked deliveries in
/// its lane across versions) and a slow one (deliveries parked as `delivery_ref.v1` behind its
/// in-flight cap, released by either version) among four endpoints. 0 lost. Then a rollback:
/// a worker of the previous release alone again on what today's wrote, delivering.
#[tokio::test]
async fn the_previous_release_beside_todays_worker_loses_nothing() {
    let old_bin = tokio::task::spawn_blocking(|| release_bin_dir(PREVIOUS_RELEASE))
        .await
        .expect("build")
        .join("entraguard-worker");
    let new_bin = entraguard_testkit::bin_path("entraguard-worker");
    let stack = Stack::start().await;
    let url = stack.redis.url();
    let fast = HttpReceiver::start();
    let urgent = HttpReceiver::start();
    let slow = HttpReceiver::with_default(Reply::status(200).delay(Duration::from_millis(40)));
    let flaky = HttpReceiver::with_default(Reply::status(200));
    let both: &[&str] = &["finding.new", "scan.failed"];
    let endpoints: [(&str, &HttpReceiver, &[&str]); 4] = [
        ("fast", &fast, both),
        ("slow", &slow, &["finding.new"]),
        ("flaky", &flaky, both),
        ("urgent", &urgent, &["scan.failed"]),
    ];
    for (name, receiver, kinds) in &endpoints {
        let secret = (*name == "fast").then_some("a-long-random-signing-secret");
        stack.add_endpoint("webhook", &receiver.url_for(&format!("/{name}")), kinds, secret).await;
    }

    let mut old_a = spawn(&old_bin, &url);
    let mut old_b = spawn(&old_bin, &url);
    let published = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let producer = stack.producer.clone();
        let published = Arc::clone(&published);
        tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for i in 0..EVENTS {
                tick.tick().await;
                let mut event = finding_event(&format!("tenant-{}", i % 7));
                if i % 5 == 0 {
                    event = entraguard_producer::Event::from_json(
                        format!(
                            r#"{{"event":"scan.failed","tenant_id":"tenant-{i}","tenant_name":"t","scan_id":"scan_{i}","scan":{{"run_id":"r{i}","kind":"full","environment":"prod","error":{{"kind":"network","message":"graph timed out"}}}}}}"#
                        )
                        .as_bytes(),
                    )
                    .expect("valid scan.failed");
                }
                let id = producer.publish(&event).await.expect("publish");
                sent.push((id.to_string(), event.kind().to_string()));
                published.fetch_add(1, Ordering::SeqCst);
            }
            sent
        })
    };
    // The rollout, step by step as the fast endpoint's deliveries come in (events flowing all
    // along): the old workers alone; a new worker beside them (its lease seen); one old worker
    // stopped with SIGTERM (it hands its jobs back) and a second new one started; the last old
    // one SIGKILLed (today's workers hand its jobs back when its lease runs out).
    let step = async |n: usize, what: &str| {
        wait_until(
            Duration::from_secs(120),
            &format!("{n} deliveries to the fast endpoint ({what})"),
            || async { fast.requests().len() >= n || publisher.is_finished() },
        )
        .await
    };
    let workers = async |n: u64| {
        wait_until(Duration::from_secs(60), &format!("{n} live workers"), || async {
            stack.queue.stats().await.is_ok_and(|s| s.workers == n)
        })
        .await
    };
    step(EVENTS / 6, "old workers only").await;
    workers(2).await;
    let new_a = spawn(&new_bin, &url);
    workers(3).await;
    // The flaky endpoint fails now, with both versions running: its retries, its breaker
    // opening and the deliveries parked in its lane are written by either and read by either.
    flaky.push_replies((0..FLAKY_FAILURES).map(|_| Reply::status(503)));
    step(EVENTS / 3, "old and new").await;
    sigterm(&old_a);
    let new_b = spawn(&new_bin, &url);
    step(EVENTS / 2, "an old one stopping, two new").await;
    old_b.start_kill().expect("kill");
    let sent = publisher.await.expect("publisher");
    let status =
        tokio::time::timeout(Duration::from_secs(30), old_a.wait()).await.expect("exits").expect("status");
    assert!(status.success(), "the old worker stopped cleanly on SIGTERM: {status}");
    let _ = old_b.wait().await;

    let owed_to: Vec<(usize, Vec<String>)> = endpoints
        .iter()
        .enumerate()
        .map(|(i, (_, _, kinds))| {
            (i, sent.iter().filter(|(_, k)| kinds.contains(&k.as_str())).map(|(id, _)| id.clone()).collect())
        })
        .collect();
    let lost = || -> usize {
        owed_to
            .iter()
            .map(|(i, ids)| {
                let got = per_event(&endpoints[*i].1.requests());
                ids.iter().filter(|id| !got.contains_key(*id)).count()
            })
            .sum()
    };
    wait_until(Duration::from_secs(120), "every event reached every endpoint subscribed to it", || async {
        lost() == 0
    })
    .await;
    stack.wait_drained(Duration::from_secs(60)).await;
    let s = stack.stats().await;
    let mut report = Vec::new();
    for (i, ids) in &owed_to {
        let got = per_event(&endpoints[*i].1.requests());
        let mut dup: usize = ids.iter().map(|id| got.get(id).copied().unwrap_or(0).saturating_sub(1)).sum();
        if endpoints[*i].0 == "flaky" {
            // Its failed attempts are requests too, not duplicates.
            dup = dup.saturating_sub(FLAKY_FAILURES);
        }
        report.push(format!("{}: {} owed, {dup} duplicates", endpoints[*i].0, ids.len()));
    }
    eprintln!("mixed versions, 0 lost; {}", report.join("; "));
    assert_eq!(s.dead, 0, "no delivery died between the versions: {s:?}");
    assert!(flaky.requests().len() > FLAKY_FAILURES, "the flaky endpoint failed and then took deliveries");

    // Fair share after the rollout (`layout raise`, layout version 2): today's workers deliver
    // low findings through the flows.
    assert_eq!(layout(&url, &["raise"])[0]["was"], "1", "the old workers recorded version 1");
    let low = |tenant: String| {
        let json =
            serde_json::to_string(&finding_event(&tenant)).expect("json").replace(r#""high""#, r#""low""#);
        entraguard_producer::Event::from_json(json.as_bytes()).expect("a low finding")
    };
    let publish_low = async |prefix: &str| {
        let mut ids = Vec::new();
        for i in 0..20 {
            let id = stack.producer.publish(&low(format!("{prefix}-{}", i % 3))).await.expect("publish");
            ids.push(id.to_string());
        }
        ids
    };
    let fair_ids = publish_low("tenant-fair").await;
    wait_until(Duration::from_secs(60), "today's workers deliver the flows' 20 events", || async {
        let got = per_event(&fast.requests());
        fair_ids.iter().all(|id| got.contains_key(id))
    })
    .await;

    // A rollback: today's workers stop with work waiting in flows; `layout lower` records
    // version 1 again and moves the flows to the ready list; a worker of the previous release
    // then starts (it would refuse version 2) and delivers what waited and what comes next.
    for w in [&new_a, &new_b] {
        sigterm(w);
    }
    for mut w in [new_a, new_b] {
        let status =
            tokio::time::timeout(Duration::from_secs(30), w.wait()).await.expect("exits").expect("status");
        assert!(status.success(), "today's worker stopped cleanly: {status}");
    }
    let waiting = publish_low("tenant-wait").await;
    assert_eq!(stack.stats().await.flows, 3, "the waiting events are in three tenants' flows");
    let shown = layout(&url, &[]);
    let in_flows = shown[0]["waiting_in_flows"].as_u64().expect("a count");
    assert!(in_flows >= 19, "all but the one that woke no worker wait in flows: {shown}");
    let lowered = layout(&url, &["lower"]);
    assert_eq!(
        (&lowered[0]["was"], lowered[0]["moved"].as_u64()),
        (&serde_json::json!("3"), Some(in_flows)),
        "{lowered}"
    );
    let _old_again = spawn(&old_bin, &url);
    wait_until(
        Duration::from_secs(60),
        "the rolled-back worker delivers the 20 events that waited in flows",
        || async {
            let got = per_event(&fast.requests());
            waiting.iter().all(|id| got.contains_key(id))
        },
    )
    .await;
    let after: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..10 {
            ids.push(
                stack
                    .producer
                    .publish(&finding_event(&format!("tenant-back-{i}")))
                    .await
                    .expect("publish")
                    .to_string(),
            );
        }
        ids
    };
    wait_until(Duration::from_secs(60), "the rolled-back worker delivers 10 more events to fast", || async {
        let got = per_event(&fast.requests());
        after.iter().all(|id| got.contains_key(id))
    })
    .await;
}

/// The previous release's binaries, built (once per machine) or found: `./dev test` runs this in
/// its build stage, so the mixed-version test does not build while other tests run. Prints what
/// the build cost when it built.
#[test]
#[ignore = "run by ./dev test's build stage: builds the previous release once per machine"]
fn the_previous_release_builds() {
    let started = std::time::Instant::now();
    let dir = release_bin_dir(PREVIOUS_RELEASE);
    eprintln!(
        "previous release {PREVIOUS_RELEASE} ready in {} after {:.1?}",
        dir.display(),
        started.elapsed()
    );
}
