//! The circuit breaker per endpoint (issue 12, part 3): five retryable failures in a row open
//! it; while open the endpoint's deliveries park in its lane (no attempts, no dead letters) and
//! one probe at a time tests it; a probe's success closes it and the lane drains, each delivery
//! once with its original id. State lives in Redis, so a killed worker loses nothing; open too
//! long, the endpoint is disabled with its work kept until `endpoint enable`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use entraguard_core::breaker::BreakerState;
use entraguard_core::endpoint::Endpoint;
use entraguard_core::job::{Job, WaitingDelivery};
use entraguard_core::queue::Claimed;
use entraguard_testkit::{HttpReceiver, Reply, bin_path, free_port, wait_until};
use redis::AsyncCommands;

use crate::harness::{PREFIX, Stack, finding_event};

/// Probes spend attempts like any request, so the schedule leaves room for a few of them.
const BREAKER: [&str; 4] =
    ["--breaker-probe", "300ms", "--retry-schedule", "50ms,100ms,150ms,150ms,150ms,150ms,150ms,150ms,150ms"];

async fn state(stack: &Stack, ep: &Endpoint) -> BreakerState {
    stack.queue.breaker_status(&ep.id).await.map(|s| s.state).unwrap_or(BreakerState::Closed)
}

async fn wait_state(stack: &Stack, ep: &Endpoint, want: BreakerState) {
    wait_until(Duration::from_secs(60), &format!("breaker {want}"), || async {
        state(stack, ep).await == want
    })
    .await;
}

async fn publish(stack: &Stack, n: usize, tag: &str) {
    for i in 0..n {
        stack.producer.publish(&finding_event(&format!("{tag}-{i}"))).await.expect("published");
    }
}

/// The delivery ids parked in the endpoint's lane.
async fn parked_ids(stack: &Stack, ep: &Endpoint) -> HashSet<String> {
    let mut conn = stack.redis.connection().await;
    let jobs: Vec<Vec<u8>> =
        conn.lrange(format!("{{{PREFIX}}}:lane:{}", ep.id), 0, -1).await.expect("lane readable");
    jobs.iter()
        .map(|raw| WaitingDelivery::decode(raw).expect("a waiting delivery").delivery_id.to_string())
        .collect()
}

/// Runs the CLI against the test's Redis.
async fn cli(stack: &Stack, args: &[&str]) -> std::io::Result<std::process::Output> {
    tokio::process::Command::new(bin_path("entraguard-notify"))
        .args(["--redis-url", &stack.redis.url()])
        .args(args)
        .output()
        .await
}

fn delivery_id(r: &entraguard_testkit::Recorded) -> String {
    r.header("x-coderaft-delivery").unwrap_or_default().to_owned()
}

mod counting;
mod fanout_parking;
mod operator;

/// Takes one delivery job for `ep` onto a worker's processing list, as a fetch would.
async fn fetched_delivery(stack: &Stack, ep: &Endpoint) -> (entraguard_core::queue::WorkerId, Claimed) {
    use entraguard_core::job::DeliveryJob;
    let worker = entraguard_core::queue::WorkerId::generate();
    let job = Job::Delivery(DeliveryJob::new(finding_event("t"), ep.id.clone())).encode();
    stack.queue.push(std::slice::from_ref(&job)).await.expect("pushed");
    let mut fetcher = stack.queue.fetcher(&worker, Duration::from_secs(1)).await.expect("fetcher");
    let got = fetcher.fetch().await.expect("fetched");
    assert_eq!(got.jobs.len(), 1);
    (worker, got.jobs.into_iter().next().expect("one job"))
}

/// Each delivery's requests carry distinct `X-Coderaft-Attempt` numbers (1, 2, 3 … in order)
/// and there are no more of them than its attempts allow (`max`).
fn assert_attempts_honest(requests: &[entraguard_testkit::Recorded], max: usize) {
    let mut per: std::collections::HashMap<String, Vec<u32>> = std::collections::HashMap::new();
    for r in requests {
        let n = r.header("x-coderaft-attempt").and_then(|v| v.parse().ok()).unwrap_or(0);
        per.entry(delivery_id(r)).or_default().push(n);
    }
    let worst = per.values().map(Vec::len).max().unwrap_or(0);
    println!("figure: {} deliveries, at most {worst} requests for one", per.len());
    for (id, seen) in &per {
        assert!(seen.len() <= max, "{id} POSTed {} times, {max} allowed: attempts {seen:?}", seen.len());
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        let want: Vec<u32> = (1..=u32::try_from(seen.len()).unwrap_or(0)).collect();
        assert_eq!(sorted, want, "{id}: one request per attempt number, each counted: {seen:?}");
    }
}

/// The announcements waiting on the ready list (taken off it).
async fn take_announcements(stack: &Stack) -> Vec<serde_json::Value> {
    let ready = format!("{{{PREFIX}}}:ready");
    let mut conn = stack.redis.connection().await;
    let jobs: Vec<Vec<u8>> = conn.lrange(&ready, 0, -1).await.expect("lrange");
    let _: () = conn.del(&ready).await.expect("del");
    jobs.iter()
        .filter_map(|raw| match Job::decode(raw).expect("valid") {
            Job::Event(e) => Some(serde_json::to_value(&e.event).expect("json")["endpoint"].clone()),
            _ => None,
        })
        .collect()
}

/// Opens after five 503s; 20 events published while open reach the receiver only as probes, and
/// nothing is dead-lettered; once the receiver recovers the next probe closes the breaker and
/// every parked delivery arrives once, with its original delivery id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_after_five_failures_parks_while_open_and_drains_once_on_recovery() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(503));
    let ep = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut flags = BREAKER.to_vec();
    flags.extend(["--health-addr", &addr]);
    let worker = stack.spawn_worker(&flags);
    publish(&stack, 2, "before").await;
    wait_state(&stack, &ep, BreakerState::Open).await;
    let at_open = receiver.requests().len();
    println!("figure: breaker open after {at_open} attempts");
    assert!((5..=6).contains(&at_open), "opened after {at_open} attempts");

    publish(&stack, 20, "while-open").await;
    wait_until(Duration::from_secs(60), "22 deliveries parked", || async {
        stack.queue.breaker_status(&ep.id).await.is_ok_and(|s| s.parked >= 21)
    })
    .await;
    // Let a few probes go.
    wait_until(Duration::from_secs(60), "two probes", || async { receiver.requests().len() >= at_open + 2 })
        .await;
    let open_since = Instant::now();
    let probes_before = receiver.requests().len() - at_open;
    wait_until(Duration::from_secs(60), "one more probe", || async {
        receiver.requests().len() > at_open + probes_before
    })
    .await;
    let probes = receiver.requests().len() - at_open;
    println!("figure: {probes} probes while open ({:?} for the last)", open_since.elapsed());
    assert!(probes <= 6, "{probes} requests while open: only probes expected");
    assert_eq!(stack.stats().await.dead, 0, "nothing dead-lettered for the outage");
    // The gauges, read from Redis at scrape time.
    let metrics =
        reqwest::get(format!("http://{addr}/metrics")).await.expect("scrape").text().await.expect("body");
    let gauge = |name: &str| {
        let prefix = format!("{name}{{endpoint=\"{}\"}} ", ep.id);
        metrics.lines().find_map(|l| l.strip_prefix(prefix.as_str())).and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(gauge("entraguard_endpoint_breaker_open"), Some(1.0), "{metrics}");
    assert!(gauge("entraguard_endpoint_parked").is_some_and(|n| n >= 21.0), "{metrics}");
    let mut expected = parked_ids(&stack, &ep).await;
    for r in receiver.requests() {
        expected.insert(delivery_id(&r));
    }
    assert_eq!(expected.len(), 22, "22 deliveries in all");

    // In one step, so a probe arriving at the switch is counted on the side whose answer it got.
    let recovered_from = receiver.switch_default(Reply::status(200));
    wait_state(&stack, &ep, BreakerState::Closed).await;
    stack.wait_drained(Duration::from_secs(60)).await;
    let delivered: Vec<String> = receiver.requests()[recovered_from..].iter().map(delivery_id).collect();
    let unique: HashSet<String> = delivered.iter().cloned().collect();
    println!("figure: {} deliveries after recovery", delivered.len());
    assert_eq!(delivered.len(), 22, "each parked delivery once: {delivered:?}");
    assert_eq!(unique, expected, "the original delivery ids");
    assert_eq!(stack.stats().await.dead, 0);
    // Issue 24 (7): every request, probes included, carries its own attempt number.
    assert_attempts_honest(&receiver.requests(), 10);
    worker.stop().await;
}

/// `endpoint.health_changed` reaches a subscribed Slack endpoint when the breaker opens and when
/// it closes, and never the endpoint it is about (subscribed to it too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_event_reaches_slack_on_open_and_close_and_never_the_broken_endpoint() {
    let stack = Stack::start().await;
    let broken = HttpReceiver::with_default(Reply::status(503));
    let slack = HttpReceiver::start();
    let ep =
        stack.add_endpoint("webhook", &broken.url(), &["finding.new", "endpoint.health_changed"], None).await;
    stack
        .add_endpoint("slack", &slack.url_for("/services/T0/B0/x"), &["endpoint.health_changed"], None)
        .await;
    let mut flags = BREAKER.to_vec();
    flags.extend(["--slack-pace", "0s"]);
    let worker = stack.spawn_worker(&flags);
    publish(&stack, 2, "health").await;
    let got = slack.wait_for_requests(1, Duration::from_secs(60)).await;
    let text = String::from_utf8_lossy(&got[0].body).into_owned();
    assert!(text.contains("open") && text.contains(ep.id.as_str()), "{text}");
    broken.set_default(Reply::status(200));
    let got = slack.wait_for_requests(2, Duration::from_secs(60)).await;
    let text = String::from_utf8_lossy(&got[1].body).into_owned();
    assert!(text.contains("closed"), "{text}");
    stack.wait_drained(Duration::from_secs(60)).await;
    assert_eq!(slack.requests().len(), 2, "one message per state change");
    for r in broken.requests() {
        assert_eq!(r.json()["event"], "finding.new", "the broken endpoint never gets news of itself");
    }
    worker.stop().await;
}

/// A worker process killed while the breaker is open, then another killed while its probe is in
/// flight: the next worker carries on from Redis (the probe is taken over after its deadline),
/// and everything is delivered after recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_while_open_and_mid_probe_lose_nothing() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(503));
    let ep = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let mut a = stack.spawn_worker_process(&["--breaker-probe", "1s"]);
    publish(&stack, 10, "kill").await;
    wait_state(&stack, &ep, BreakerState::Open).await;
    let mut all: HashSet<String> = receiver.requests().iter().map(delivery_id).collect();
    a.kill().await.expect("SIGKILL worker A");

    // The next probe hangs; worker B is killed while it waits for the answer.
    receiver.set_default(Reply::status(200).delay(Duration::from_secs(30)));
    let before = receiver.requests().len();
    let mut b = stack.spawn_worker_process(&["--breaker-probe", "1s"]);
    wait_until(Duration::from_secs(60), "a probe in flight", || async { receiver.requests().len() > before })
        .await;
    b.kill().await.expect("SIGKILL worker B mid-probe");
    assert_eq!(state(&stack, &ep).await, BreakerState::HalfOpen, "the probe was claimed");

    receiver.set_default(Reply::status(200));
    let recovered_from = receiver.requests().len();
    let c = stack.spawn_worker(&["--breaker-probe", "1s"]);
    wait_state(&stack, &ep, BreakerState::Closed).await;
    stack.wait_drained(Duration::from_secs(60)).await;
    all.extend(receiver.requests().iter().map(delivery_id));
    let delivered: HashSet<String> = receiver.requests()[recovered_from..].iter().map(delivery_id).collect();
    println!(
        "figure: {} distinct deliveries after recovery, {} requests in all",
        delivered.len(),
        receiver.requests().len()
    );
    assert_eq!(delivered.len(), 10, "all ten delivered after recovery");
    assert_eq!(delivered, all);
    assert_eq!(stack.stats().await.dead, 0);
    c.stop().await;
}

/// Open longer than `--endpoint-disable-after`: the endpoint is disabled (the flag flipped in
/// its stored record), its parked deliveries kept; `endpoint enable` drains them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_disable_keeps_parked_work_and_enable_drains_it() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(503));
    let ep = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let worker = stack.spawn_worker(&[
        "--breaker-probe",
        "200ms",
        // Probes spend attempts: room for the ones before it is disabled.
        "--retry-schedule",
        "50ms,100ms,150ms,150ms,150ms,150ms,150ms,150ms,150ms",
        "--endpoint-disable-after",
        "1s",
    ]);
    let t0 = Instant::now();
    publish(&stack, 5, "disable").await;
    wait_state(&stack, &ep, BreakerState::Disabled).await;
    println!("figure: disabled after {:?}", t0.elapsed());
    let stored = stack.store.get(&ep.id).await.expect("read").expect("still there");
    assert!(!stored.enabled, "disabled in its record");
    wait_until(Duration::from_secs(30), "5 kept in the lane", || async {
        stack.queue.breaker_status(&ep.id).await.is_ok_and(|s| s.parked == 5)
    })
    .await;
    // A disabled endpoint gets no new deliveries.
    publish(&stack, 3, "after-disable").await;
    wait_until(Duration::from_secs(30), "events fanned out", || async {
        stack.stats().await.ready == 0 && stack.stats().await.processing == 0
    })
    .await;
    println!("figure: fanned out after {:?}", t0.elapsed());
    let kept = parked_ids(&stack, &ep).await;
    assert_eq!(kept.len(), 5, "the parked work is kept");
    let show = cli(&stack, &["endpoint", "show", ep.id.as_str()]).await.expect("cli runs");
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(shown.contains("breaker:   disabled") && shown.contains("parked:    5"), "{shown}");
    assert!(shown.contains("HTTP 503"), "the last error is shown: {shown}");
    assert_eq!(stack.stats().await.dead, 0);

    receiver.set_default(Reply::status(200));
    let recovered_from = receiver.requests().len();
    let out = cli(&stack, &["endpoint", "enable", ep.id.as_str()]).await.expect("cli runs");
    assert!(out.status.success(), "endpoint enable failed: {}", String::from_utf8_lossy(&out.stderr));
    println!("figure: {} at {:?}", String::from_utf8_lossy(&out.stdout).trim(), t0.elapsed());
    stack.wait_drained(Duration::from_secs(60)).await;
    let delivered: Vec<String> = receiver.requests()[recovered_from..].iter().map(delivery_id).collect();
    assert_eq!(delivered.len(), 5, "{delivered:?}");
    assert_eq!(delivered.into_iter().collect::<HashSet<_>>(), kept);
    assert_eq!(state(&stack, &ep).await, BreakerState::Closed);
    assert!(stack.store.get(&ep.id).await.expect("read").expect("there").enabled);
    worker.stop().await;
}

/// Permanent failures (a 4xx that dead-letters: Slack's 404 `no_service`; custom webhooks retry
/// every non-2xx) say nothing about the endpoint's health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_do_not_open_the_breaker() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(404).body("no_service"));
    let ep =
        stack.add_endpoint("slack", &receiver.url_for("/services/T0/B0/x"), &["finding.new"], None).await;
    let mut flags = BREAKER.to_vec();
    flags.extend(["--slack-pace", "0s"]);
    let worker = stack.spawn_worker(&flags);
    publish(&stack, 8, "permanent").await;
    stack.wait_dead(8, Duration::from_secs(60)).await;
    let status = stack.queue.breaker_status(&ep.id).await.expect("status");
    assert_eq!(status.state, BreakerState::Closed);
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(receiver.requests().len(), 8, "one attempt each, no probes");
    receiver.set_default(Reply::status(200).body("ok"));
    publish(&stack, 1, "after").await;
    receiver.wait_for_requests(9, Duration::from_secs(60)).await;
    stack.wait_drained(Duration::from_secs(60)).await;
    assert_eq!(stack.stats().await.dead, 8);
    worker.stop().await;
}
