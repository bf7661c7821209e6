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

/// "N failures in a row" means in a row across workers: a success acknowledged by any worker
/// ends the run. (Before, a worker whose cache said "closed, clean" did not tell the breaker
/// of its success, so another worker's failures before and after it added up and opened it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_on_any_worker_ends_the_run_of_failures() {
    use entraguard_core::breaker::{BreakerSettings, Report};
    use entraguard_core::queue::Acked;
    let stack = Stack::start().await;
    let ep = stack.add_endpoint("webhook", "http://127.0.0.1:9/x", &["finding.new"], None).await;
    let settings = BreakerSettings::default();
    let fail = Report::Failure { error: "503", probe: false };
    for _ in 0..settings.failures - 1 {
        stack.queue.breaker_report(&ep.id, Some(&ep.name), fail, &settings).await.expect("reported");
    }
    let (_worker, raw) = fetched_delivery(&stack, &ep).await;
    let acked = stack.queue.ack_delivered(&raw, &ep.id).await.expect("acked");
    assert_eq!(acked, Acked::Done);
    let answer = stack.queue.breaker_report(&ep.id, Some(&ep.name), fail, &settings).await.expect("reported");
    assert_eq!(answer.state, BreakerState::Closed, "one failure after a success does not open it");
    assert_eq!(answer.failures, 1);
    // An open breaker is left to the explicit report, and the acknowledgement says so.
    for _ in 0..settings.failures {
        stack.queue.breaker_report(&ep.id, Some(&ep.name), fail, &settings).await.expect("reported");
    }
    assert_eq!(state(&stack, &ep).await, BreakerState::Open);
    // Its announcement waits on the ready list; a fetch would take it first.
    let mut conn = stack.redis.connection().await;
    let _: () = conn.del(format!("{{{PREFIX}}}:ready")).await.expect("del");
    let (_worker, raw) = fetched_delivery(&stack, &ep).await;
    let acked = stack.queue.ack_delivered(&raw, &ep.id).await.expect("acked");
    assert_eq!(acked, Acked::BreakerOpen);
    assert_eq!(state(&stack, &ep).await, BreakerState::Open);
}

/// A breaker's state change and its `endpoint.health_changed` announcement are one step: the
/// report that opens (or closes) the breaker leaves the event on the ready list itself, so a
/// worker that dies right after the change cannot lose the news, and a report with no change
/// announces nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_change_and_its_announcement_are_one_step() {
    use entraguard_core::breaker::{BreakerSettings, Report};
    let stack = Stack::start().await;
    let ep = stack.add_endpoint("webhook", "http://127.0.0.1:9/x", &["finding.new"], None).await;
    let settings = BreakerSettings { failures: 2, ..BreakerSettings::default() };
    let ready = format!("{{{PREFIX}}}:ready");
    let mut conn = stack.redis.connection().await;
    let fail = Report::Failure { error: "HTTP 503 from \"receiver\"", probe: false };
    stack.queue.breaker_report(&ep.id, Some(&ep.name), fail, &settings).await.expect("reported");
    let n: usize = conn.llen(&ready).await.expect("llen");
    assert_eq!(n, 0, "no change, no announcement");
    let answer = stack.queue.breaker_report(&ep.id, Some(&ep.name), fail, &settings).await.expect("reported");
    assert!(answer.changed && answer.state == BreakerState::Open);
    let jobs: Vec<Vec<u8>> = conn.lrange(&ready, 0, -1).await.expect("lrange");
    assert_eq!(jobs.len(), 1, "the change announced itself");
    let Job::Event(job) = Job::decode(&jobs[0]).expect("a valid job") else { panic!("an event job") };
    let health = job.event.about_endpoint().map(str::to_owned);
    assert_eq!(health.as_deref(), Some(ep.id.as_str()));
    let v = serde_json::to_value(&job.event).expect("json");
    assert_eq!(v["endpoint"]["state"], "open");
    assert_eq!(v["endpoint"]["name"], ep.name.as_str());
    assert_eq!(v["endpoint"]["last_error"], "HTTP 503 from \"receiver\"");
    let _: () = conn.del(&ready).await.expect("del");
    // Park two deliveries, then close it by hand: the announcement counts what was released.
    for _ in 0..2 {
        let (_worker, raw) = fetched_delivery(&stack, &ep).await;
        let Job::Delivery(waiting) = raw.decode().expect("a job") else { panic!("a delivery") };
        assert!(stack.queue.park(&raw, &waiting, Duration::from_secs(60)).await.expect("parked"));
    }
    let reset = entraguard_core::operator::reset(&stack.queue, &ep).await.expect("reset");
    assert_eq!(reset.waiting, 2);
    let jobs: Vec<Vec<u8>> = conn.lrange(&ready, 0, -1).await.expect("lrange");
    let events: Vec<serde_json::Value> = jobs
        .iter()
        .filter_map(|raw| match Job::decode(raw).expect("valid") {
            Job::Event(e) => Some(serde_json::to_value(&e.event).expect("json")),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["endpoint"]["state"], "closed");
    assert_eq!(events[0]["endpoint"]["parked"], 2);
    assert!(events[0]["endpoint"]["last_error"].is_null(), "present, and null: {events:?}");
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

/// Issue 22 (4): with 16 deliveries in flight to an endpoint that starts failing, the breaker
/// opens at exactly its threshold: the in-flight attempts' failures are not added to the count
/// (before: 16 to 18), and no new attempt is started once failures are counted beyond what
/// could still open it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_at_exactly_n_failures_with_16_in_flight() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(503).delay(Duration::from_millis(400)));
    let ep = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let worker = stack.spawn_worker(&[
        "--endpoint-concurrency",
        "16",
        "--breaker-probe",
        "60s",
        "--retry-schedule",
        "50ms,100ms,150ms",
    ]);
    publish(&stack, 40, "inflight").await;
    wait_state(&stack, &ep, BreakerState::Open).await;
    // Every delivery ends up waiting in the lane (none is dead: each spent one attempt).
    wait_until(Duration::from_secs(60), "all 40 parked", || async {
        stack.queue.breaker_status(&ep.id).await.is_ok_and(|s| s.parked == 40)
    })
    .await;
    let status = stack.queue.breaker_status(&ep.id).await.expect("status");
    let sent = receiver.requests().len();
    println!("figure: opened with {} failures counted, {sent} requests sent", status.consecutive_failures);
    assert_eq!(status.consecutive_failures, 5, "opens at N, the in-flight failures not added");
    assert!(sent <= 16, "{sent} requests: nothing started beyond the 16 in flight");
    assert_eq!(stack.stats().await.dead, 0);
    assert_attempts_honest(&receiver.requests(), 4);
    worker.stop().await;
}

/// Issue 22 (4) and issue 24 (7): a flapping receiver (5 failures, 1 success, repeat) with a
/// 1 s probe. Before: 97 openings announced in 12 s, one delivery POSTed 14 times, 5 of them as
/// attempt 1. Now: at most one opening (and its closing) announced per probe interval (2
/// allowed), no delivery POSTed more than its 4 attempts allow, each request its own attempt
/// number; everything ends delivered or dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_receiver_is_damped_and_attempts_are_counted_honestly() {
    let stack = Stack::start().await;
    let flapping = HttpReceiver::with_default(Reply::status(200));
    let mut pattern = Vec::new();
    for _ in 0..300 {
        pattern.extend(std::iter::repeat_with(|| Reply::status(503)).take(5));
        pattern.push(Reply::status(200));
    }
    flapping.push_replies(pattern);
    let news = HttpReceiver::start();
    let ep = stack
        .add_endpoint("webhook", &flapping.url(), &["finding.new", "endpoint.health_changed"], None)
        .await;
    stack.add_endpoint("webhook", &news.url(), &["endpoint.health_changed"], None).await;
    let probe = Duration::from_secs(1);
    let worker = stack.spawn_worker(&[
        "--endpoint-concurrency",
        "16",
        "--breaker-probe",
        "1s",
        "--retry-schedule",
        "50ms,100ms,150ms",
    ]);
    let t0 = Instant::now();
    // Events keep coming for 12 s, as the run did.
    while t0.elapsed() < Duration::from_secs(12) {
        publish(&stack, 5, "flap").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = t0.elapsed();
    let states: Vec<String> = news
        .requests()
        .iter()
        .map(|r| r.json()["endpoint"]["state"].as_str().unwrap_or("").to_owned())
        .collect();
    let opened = states.iter().filter(|s| *s == "open").count();
    let closed = states.iter().filter(|s| *s == "closed").count();
    let intervals = (elapsed.as_secs_f64() / probe.as_secs_f64()).ceil() as usize;
    println!(
        "figure: {opened} openings and {closed} closings announced in {elapsed:?} ({intervals} probe intervals)"
    );
    assert!(opened >= 1, "the breaker opened and said so: {states:?}");
    assert!(
        opened <= 2 * intervals && closed <= 2 * intervals,
        "{opened} openings, {closed} closings: {states:?}"
    );
    // No more than one pair in any probe interval (2 allowed): per pair of announcements.
    let times: Vec<Instant> = news
        .requests()
        .iter()
        .filter(|r| r.json()["endpoint"]["state"] == "open")
        .map(|r| r.received_at)
        .collect();
    for w in times.windows(3) {
        assert!(w[2] - w[0] >= probe, "three openings announced within one probe interval: {states:?}");
    }
    // Drain: the receiver recovers.
    flapping.clear_replies();
    stack.wait_drained(Duration::from_secs(180)).await;
    let requests = flapping.requests();
    let failed = stack.stats().await.dead;
    println!("figure: {} requests, {failed} dead-lettered", requests.len());
    assert_attempts_honest(&requests, 4);
    assert_eq!(state(&stack, &ep).await, BreakerState::Closed);
    worker.stop().await;
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

/// Issue 22 (4), in the breaker script itself: a success that began before the breaker opened
/// does not close it (before: any success closed it, so 16 deliveries in flight closed it right
/// after it opened); failures of attempts that began before it closed do not re-open it; a
/// re-opening inside the probe interval after an announced one is not announced, and the first
/// failed probe after that interval announces it, with the count of changes left unsaid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_outcomes_change_nothing_and_announcements_are_damped() {
    use entraguard_core::breaker::{AttemptFacts, BreakerSettings, Report};
    let stack = Stack::start().await;
    let ep = stack.add_endpoint("webhook", "http://127.0.0.1:9/x", &["finding.new"], None).await;
    let settings =
        BreakerSettings { failures: 2, probe: Duration::from_millis(600), ..BreakerSettings::default() };
    let q = &stack.queue;
    let name = Some(ep.name.as_str());
    let fail = Report::Failure { error: "HTTP 503", probe: false };
    let at = |generation: u64| AttemptFacts { generation: Some(generation), ..AttemptFacts::default() };
    // Generation 0: two failures open it (generation 1); a third in-flight one adds nothing.
    q.breaker_report_attempt(&ep.id, name, fail, &settings, at(0)).await.expect("report");
    let opened = q.breaker_report_attempt(&ep.id, name, fail, &settings, at(0)).await.expect("report");
    assert!(opened.changed && opened.announced && opened.state == BreakerState::Open);
    assert_eq!(opened.generation, 1);
    q.breaker_report_attempt(&ep.id, name, fail, &settings, at(0)).await.expect("report");
    assert_eq!(q.breaker_status(&ep.id).await.expect("status").consecutive_failures, 2);
    // A success that began before it opened: still open.
    let stale = Report::Success { probe: false };
    let answer = q.breaker_report_attempt(&ep.id, name, stale, &settings, at(0)).await.expect("report");
    assert_eq!((answer.state, answer.changed), (BreakerState::Open, false), "a stale success closes nothing");
    // The probe's success closes it (generation 2), announced: its opening was.
    let probe_ok = Report::Success { probe: true };
    let closed = q.breaker_report_attempt(&ep.id, name, probe_ok, &settings, at(1)).await.expect("report");
    assert!(closed.changed && closed.announced && closed.state == BreakerState::Closed);
    // Failures of attempts from before the closing do not re-open it.
    for g in [0, 1, 1] {
        let a = q.breaker_report_attempt(&ep.id, name, fail, &settings, at(g)).await.expect("report");
        assert_eq!(a.state, BreakerState::Closed, "a failure from generation {g} counts toward nothing");
    }
    let news = take_announcements(&stack).await;
    assert_eq!(
        news.iter().map(|n| n["state"].as_str().unwrap_or("").to_owned()).collect::<Vec<_>>(),
        ["open", "closed"]
    );
    assert_eq!(news[1]["last_error"], serde_json::Value::Null, "present, and null: {news:?}");
    // Two fresh failures re-open it within the probe interval: not announced.
    q.breaker_report_attempt(&ep.id, name, fail, &settings, at(2)).await.expect("report");
    let again = q.breaker_report_attempt(&ep.id, name, fail, &settings, at(2)).await.expect("report");
    assert!(again.changed && !again.announced && again.state == BreakerState::Open);
    assert!(take_announcements(&stack).await.is_empty(), "damped");
    // Re-opening right after closing continues the back-off: the next probe is later.
    assert!(again.probe_in > settings.probe, "{:?}", again.probe_in);
    // The first failed probe after the interval announces the opening, with the changes left unsaid.
    tokio::time::sleep(again.probe_in + Duration::from_millis(50)).await;
    assert_eq!(
        q.breaker_admit(&ep.id, Duration::from_secs(5), 2, 0).await.expect("admit"),
        entraguard_core::breaker::Admit::Probe { generation: 3 }
    );
    let probe_fail = Report::Failure { error: "HTTP 503", probe: true };
    let late = q.breaker_report_attempt(&ep.id, name, probe_fail, &settings, at(3)).await.expect("report");
    assert!(late.announced && late.quiet == 1, "{late:?}");
    let news = take_announcements(&stack).await;
    assert_eq!(news.len(), 1, "{news:?}");
    assert_eq!(news[0]["state"], "open");
}

/// Issue 22 (4): once a closed breaker has counted a failure, admissions are trials, let
/// through only while failures + trials + the asking worker's attempts in flight stay under the
/// threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_with_failures_admits_only_what_cannot_overshoot() {
    use entraguard_core::breaker::{Admit, AttemptFacts, BreakerSettings, Report};
    let stack = Stack::start().await;
    let ep = stack.add_endpoint("webhook", "http://127.0.0.1:9/x", &["finding.new"], None).await;
    let settings = BreakerSettings::default();
    let q = &stack.queue;
    let deadline = Duration::from_secs(5);
    assert_eq!(
        q.breaker_admit(&ep.id, deadline, 5, 15).await.expect("admit"),
        Admit::Closed { generation: 0 }
    );
    let fail = Report::Failure { error: "HTTP 503", probe: false };
    q.breaker_report(&ep.id, None, fail, &settings).await.expect("report");
    // One failure counted, 3 others in flight here: one more may go.
    assert_eq!(q.breaker_admit(&ep.id, deadline, 5, 3).await.expect("admit"), Admit::Trial { generation: 0 });
    assert_eq!(q.breaker_admit(&ep.id, deadline, 5, 3).await.expect("admit"), Admit::Wait);
    assert_eq!(q.breaker_admit(&ep.id, deadline, 5, 15).await.expect("admit"), Admit::Wait);
    // The trial's failure gives its slot back and counts.
    let trial = AttemptFacts { trial: true, ..AttemptFacts::default() };
    let a = q.breaker_report_attempt(&ep.id, None, fail, &settings, trial).await.expect("report");
    assert_eq!((a.state, a.failures), (BreakerState::Closed, 2));
    assert_eq!(q.breaker_admit(&ep.id, deadline, 5, 0).await.expect("admit"), Admit::Trial { generation: 0 });
    assert_eq!(q.breaker_admit(&ep.id, deadline, 5, 2).await.expect("admit"), Admit::Wait);
    // A trial that ends without a failure report (a permanent failure) gives its slot back.
    q.breaker_report_attempt(&ep.id, None, Report::Release, &settings, trial).await.expect("release");
    assert_eq!(q.breaker_admit(&ep.id, deadline, 5, 2).await.expect("admit"), Admit::Trial { generation: 0 });
    assert_eq!(q.breaker_status(&ep.id).await.expect("status").consecutive_failures, 2, "nothing counted");
}

/// Issue 22 (6): `NOTIFY_BREAKER_FAILURES=off` turns the breaker off (before: exit 2): a
/// failing endpoint's deliveries retry on the schedule and are dead-lettered, nothing parks and
/// the breaker never opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_can_be_turned_off() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(503));
    let ep = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let worker = stack.spawn_worker(&["--breaker-failures", "off", "--retry-schedule", "50ms,100ms,150ms"]);
    publish(&stack, 3, "off").await;
    stack.wait_dead(3, Duration::from_secs(60)).await;
    stack.wait_drained(Duration::from_secs(60)).await;
    let status = stack.queue.breaker_status(&ep.id).await.expect("status");
    assert_eq!((status.state, status.consecutive_failures), (BreakerState::Closed, 0));
    assert_eq!(receiver.requests().len(), 12, "four attempts each, nothing parked");
    assert_attempts_honest(&receiver.requests(), 4);
    worker.stop().await;
}

/// Issue 24 (7): `endpoint.health_changed` carries every field docs/channels.md lists in every
/// state (`last_error: null` when closed), and the opening counts the failing delivery that
/// parks with it (before: `parked 0`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_events_carry_every_field_in_every_state() {
    let stack = Stack::start().await;
    let broken = HttpReceiver::with_default(Reply::status(503));
    let news = HttpReceiver::start();
    let ep = stack.add_endpoint("webhook", &broken.url(), &["finding.new"], None).await;
    stack.add_endpoint("webhook", &news.url(), &["endpoint.health_changed"], None).await;
    let worker = stack.spawn_worker(&[
        "--breaker-failures",
        "1",
        "--breaker-probe",
        "200ms",
        "--retry-schedule",
        "50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms",
        "--endpoint-disable-after",
        "1s",
    ]);
    publish(&stack, 1, "fields").await;
    wait_state(&stack, &ep, BreakerState::Disabled).await;
    broken.set_default(Reply::status(200));
    let out = cli(&stack, &["endpoint", "enable", ep.id.as_str()]).await.expect("cli runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    stack.wait_drained(Duration::from_secs(60)).await;
    let got = news.wait_for_requests(3, Duration::from_secs(60)).await;
    let bodies: Vec<serde_json::Value> = got.iter().map(|r| r.json()["endpoint"].clone()).collect();
    println!("figure: {bodies:?}");
    let states: Vec<&str> = bodies.iter().map(|b| b["state"].as_str().unwrap_or("")).collect();
    assert_eq!(states, ["open", "disabled", "closed"]);
    for b in &bodies {
        for field in ["id", "name", "state", "last_error", "parked", "since"] {
            assert!(b.get(field).is_some(), "{field} missing: {b}");
        }
        assert_eq!(b["id"], ep.id.as_str());
    }
    assert_eq!(bodies[0]["parked"], 1, "the failing delivery parks with the opening");
    assert_eq!(bodies[0]["last_error"], "HTTP 503");
    assert_eq!(bodies[1]["parked"], 1);
    assert_eq!(bodies[2]["parked"], 1, "released");
    assert_eq!(bodies[2]["last_error"], serde_json::Value::Null);
    assert_attempts_honest(&broken.requests(), 16);
    worker.stop().await;
}

/// Issue 22 (6): a health event no endpoint hears of (the only subscriber is the broken endpoint
/// itself) is logged at `warn` with its text (before: nowhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unheard_health_news_is_logged_at_warn() {
    let stack = Stack::start().await;
    let broken = HttpReceiver::with_default(Reply::status(503));
    let ep =
        stack.add_endpoint("webhook", &broken.url(), &["finding.new", "endpoint.health_changed"], None).await;
    let mut worker = tokio::process::Command::new(bin_path("entraguard-worker"))
        .args(crate::harness::merge_args(stack.worker_args(), &["--breaker-failures", "1"]))
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn")
        .env("NOTIFY_LOG_FORMAT", "text")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("worker starts");
    publish(&stack, 1, "unheard").await;
    wait_state(&stack, &ep, BreakerState::Open).await;
    wait_until(Duration::from_secs(60), "the news fanned out", || async {
        let s = stack.stats().await;
        s.ready == 0 && s.processing == 0
    })
    .await;
    let _ = worker.start_kill();
    let out = worker.wait_with_output().await.expect("worker output");
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log.lines().find(|l| l.contains("no endpoint is subscribed")).unwrap_or_default();
    println!("figure: {line}");
    assert!(line.contains("WARN"), "{log}");
    assert!(line.contains(&format!("({}) is open", ep.id)) && line.contains("HTTP 503"), "{log}");
}

/// Issue 22: `endpoint reset` acts at once, whatever the workers cached. With a 60 s probe the
/// breaker opens and 20 deliveries park; the receiver recovers and an operator resets the breaker:
/// everything is delivered within seconds, not at the next probe a minute later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_delivers_the_parked_work_within_seconds_with_a_minute_long_probe() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(503));
    let ep = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let worker = stack.spawn_worker(&["--breaker-probe", "60s"]);
    publish(&stack, 20, "reset").await;
    wait_state(&stack, &ep, BreakerState::Open).await;
    wait_until(Duration::from_secs(60), "all 20 parked", || async { stack.stats().await.parked == 20 }).await;
    receiver.set_default(Reply::status(200));
    let before = receiver.requests().len();
    let start = std::time::Instant::now();
    let reset = entraguard_core::operator::reset(&stack.queue, &ep).await.expect("reset");
    assert_eq!(reset, entraguard_core::operator::Reset { closed_now: true, waiting: 20 }, "says what it did");
    wait_until(Duration::from_secs(60), "all 20 delivered", || async {
        receiver.requests()[before..].iter().filter(|r| r.json()["event"] == "finding.new").count() >= 20
    })
    .await;
    let took = start.elapsed();
    println!("figure: reset with a 60 s probe: 20 parked delivered {:.2} s after it", took.as_secs_f64());
    assert!(took < Duration::from_secs(10), "delivered {took:?} after the reset (the probe was 60 s away)");
    worker.stop().await;
}

/// Issue 22: parked work drains oldest first, as docs/guarantees.md says. 150 deliveries park
/// behind an open breaker (in the lane's order); the receiver recovers; with one delivery at a
/// time they arrive exactly in that order (main delivered them in no particular order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_work_drains_oldest_first() {
    const N: usize = 150;
    let stack = Stack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(503));
    let ep = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let worker = stack.spawn_worker(&["--endpoint-concurrency", "1", "--breaker-probe", "1s"]);
    publish(&stack, N, "order").await;
    // The lane read whole: a probe out (taken from the lane's front, failing, parked at the
    // front again) would leave one missing from the snapshot, so read until all N are there.
    let mut conn = stack.redis.connection().await;
    let lane_key = format!("{{{PREFIX}}}:lane:{}", ep.id);
    let give_up = Instant::now() + Duration::from_secs(60);
    let jobs = loop {
        let jobs: Vec<Vec<u8>> = conn.lrange(&lane_key, 0, -1).await.expect("lane readable");
        if jobs.len() == N {
            break jobs;
        }
        assert!(Instant::now() < give_up, "all {N} parked: the lane holds {}", jobs.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let lane: Vec<String> = jobs
        .iter()
        .map(|raw| WaitingDelivery::decode(raw).expect("a waiting delivery").delivery_id.to_string())
        .collect();
    let from = receiver.requests().len();
    receiver.set_default(Reply::status(200));
    stack.wait_drained(Duration::from_secs(60)).await;
    let got: Vec<String> = receiver.requests()[from..]
        .iter()
        .filter(|r| r.json()["event"] == "finding.new")
        .map(delivery_id)
        .collect();
    let position: std::collections::HashMap<&str, usize> =
        lane.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let order: Vec<usize> = got.iter().filter_map(|id| position.get(id.as_str()).copied()).collect();
    let inversions = order.windows(2).filter(|w| w[1] < w[0]).count();
    println!(
        "figure: {N} parked drained with {inversions} inversions of {} neighbouring pairs",
        order.len() - 1
    );
    assert_eq!(order.len(), N, "each parked delivery arrived once");
    assert_eq!(inversions, 0, "arrived in the lane's order: {order:?}");
    worker.stop().await;
}

/// Issue 22: a changed URL acts at once. The breaker opened on the old URL (60 s probe) with
/// deliveries parked; `endpoint update --target` moves the endpoint to a working receiver: the
/// parked work arrives there within seconds, not at the next probe, and the CLI says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_url_sends_the_parked_work_there_at_once() {
    let stack = Stack::start().await;
    let old = HttpReceiver::with_default(Reply::status(503));
    let new = HttpReceiver::start();
    let ep = stack.add_endpoint("webhook", &old.url(), &["finding.new"], None).await;
    let worker = stack.spawn_worker(&["--breaker-probe", "60s"]);
    publish(&stack, 10, "moved").await;
    wait_state(&stack, &ep, BreakerState::Open).await;
    wait_until(Duration::from_secs(60), "all 10 parked", || async { stack.stats().await.parked == 10 }).await;
    // The clock starts after one CLI run: a first exec of a freshly built binary can take tens of
    // seconds on a busy machine, which is not what this measures.
    let shown = cli(&stack, &["endpoint", "show", ep.id.as_str()]).await.expect("cli runs");
    assert!(shown.status.success());
    let start = Instant::now();
    let out = cli(&stack, &["--allow-http", "endpoint", "update", ep.id.as_str(), "--target", &new.url()])
        .await
        .expect("cli runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "update failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("new URL: breaker closed; 10 waiting deliveries resume"), "{said}");
    new.wait_for_requests(10, Duration::from_secs(60)).await;
    let took = start.elapsed();
    println!(
        "figure: URL changed with a 60 s probe: 10 parked delivered to the new URL {:.2} s after",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(10), "delivered {took:?} after the change");
    assert_eq!(state(&stack, &ep).await, BreakerState::Closed);
    worker.stop().await;
}
