//! What operators and analysts see and do: health events, unheard news, resets, oldest-first
//! drains, a changed URL.

use super::*;

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
