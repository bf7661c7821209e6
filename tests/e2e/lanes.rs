//! Endpoint lanes and priority (issue 12, first part): a hanging endpoint's backlog waits in
//! its lane without cycling through Redis and costs the other endpoints nothing; fresh alerts
//! overtake a backlog of retries; urgent events jump the queue.

use std::time::{Duration, Instant};

use entraguard_core::job::{DeliveryJob, Job};
use entraguard_producer::Event;
use entraguard_testkit::{HttpReceiver, Reply, wait_until};
use redis::AsyncCommands;

use crate::harness::{PREFIX, Stack, finding_event};

fn finding(tenant: &str, severity: &str) -> Event {
    let mut v = serde_json::to_value(finding_event(tenant)).expect("json");
    v["finding"]["severity"] = serde_json::Value::String(severity.to_owned());
    v.as_object_mut().expect("object").remove("id");
    Event::from_json(v.to_string().as_bytes()).expect("valid")
}

/// One endpoint hangs (each attempt times out) with 200 deliveries waiting for it; another is
/// healthy. The healthy one gets all of its deliveries at once, and the hanging one's backlog
/// waits in its lane: Redis sees a handful of commands a second, not a storm of deferrals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoints_backlog_waits_in_its_lane_and_costs_the_others_nothing() {
    const N: usize = 200;
    let stack = Stack::start().await;
    let hanging = HttpReceiver::with_default(Reply::status(200).delay(Duration::from_secs(30)));
    let healthy = HttpReceiver::start();
    stack.add_endpoint("webhook", &hanging.url(), &["finding.new"], None).await;
    stack.add_endpoint("webhook", &healthy.url(), &["finding.new"], None).await;
    let worker = stack.spawn_worker(&[
        "--concurrency",
        "16",
        "--endpoint-concurrency",
        "2",
        "--delivery-timeout",
        "3s",
        "--retry-schedule",
        "10s",
    ]);
    let evs: Vec<Event> = (0..N).map(|i| finding(&format!("hang-{i}"), "medium")).collect();
    stack.producer.publish_batch(&evs).await.expect("published");
    healthy.wait_for_requests(N, Duration::from_secs(60)).await;
    wait_until(Duration::from_secs(60), "the hanging endpoint's backlog parked in its lane", || async {
        stack.stats().await.parked >= (N - 10) as u64
    })
    .await;

    // Three seconds of the backlog waiting: count what it costs Redis.
    let before = stack.redis.command_count().await;
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await; // the measuring window itself
    let per_s = (stack.redis.command_count().await - before) as f64 / window.elapsed().as_secs_f64();
    println!("figure: hanging endpoint with {N} parked: {per_s:.0} redis commands/s");
    // The old deferral loop sent each waiting delivery through the delayed set every 30 ms
    // here: tens of thousands of commands a second.
    assert!(per_s < 300.0, "{per_s:.0} commands/s while the backlog waits");
    worker.stop().await;
}

/// 3 000 retries fall due at once (a receiver back from an outage); a fresh alert published
/// right after is delivered before the backlog, not behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_alert_overtakes_a_backlog_of_due_retries() {
    const BACKLOG: usize = 3_000;
    let stack = Stack::start().await;
    let recovered = HttpReceiver::with_default(Reply::status(200).delay(Duration::from_millis(2)));
    let soar = HttpReceiver::start();
    let back = stack.add_endpoint("webhook", &recovered.url(), &["scan.completed"], None).await;
    stack.add_endpoint("webhook", &soar.url(), &["finding.new"], None).await;
    // The retries, due now: a delivery job each for the recovered endpoint.
    let mut conn = stack.redis.connection().await;
    let delayed = format!("{{{PREFIX}}}:delayed");
    for chunk in (0..BACKLOG).collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for i in chunk {
            let job = Job::Delivery(DeliveryJob::new(finding_event(&format!("retry-{i}")), back.id.clone()));
            pipe.zadd(&delayed, job.encode(), 0).ignore();
        }
        pipe.query_async::<()>(&mut conn).await.expect("retries scheduled");
    }
    let worker = stack.spawn_worker(&["--concurrency", "4"]);
    recovered.wait_for_requests(50, Duration::from_secs(60)).await;
    stack.producer.publish(&finding("fresh", "medium")).await.expect("published");
    soar.wait_for_requests(1, Duration::from_secs(60)).await;
    let done_before = recovered.requests().len();
    println!("figure: fresh alert delivered after {done_before} of {BACKLOG} due retries");
    assert!(done_before < BACKLOG / 6, "the fresh alert waited behind {done_before} retries");
    stack.wait_drained(Duration::from_secs(120)).await;
    let _: () = conn.del(&delayed).await.expect("clean");
    worker.stop().await;
}

/// 300 low findings wait; then one critical finding is published. It is delivered first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_finding_jumps_the_queue() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let lows: Vec<Event> = (0..300).map(|i| finding(&format!("low-{i}"), "low")).collect();
    stack.producer.publish_batch(&lows).await.expect("published");
    let critical = finding("critical", "critical");
    stack.producer.publish(&critical).await.expect("published");
    let worker = stack.spawn_worker(&["--concurrency", "1"]);
    receiver.wait_for_requests(301, Duration::from_secs(60)).await;
    let position = receiver
        .requests()
        .iter()
        .position(|r| r.json()["id"].as_str() == Some(critical.id.as_str()))
        .expect("the critical finding arrived");
    assert_eq!(position, 0, "the critical finding came at position {position}");
    worker.stop().await;
}

/// Issue 22: how a worker process is replaced in a rolling restart.
#[derive(Clone, Copy, Debug)]
enum Replace {
    /// SIGTERM (a rolling deploy), then a new worker.
    Term,
    /// SIGKILL (a crashed node), then a new worker.
    Kill,
}

/// Deliveries per second the receiver gets over `window`, starting now.
async fn rate(receiver: &HttpReceiver, window: Duration) -> f64 {
    let before = receiver.requests().len();
    let start = Instant::now();
    tokio::time::sleep(window).await; // the measuring window itself
    (receiver.requests().len() - before) as f64 / start.elapsed().as_secs_f64()
}

/// A backlog of `N` waits for a slow endpoint (100 ms per delivery, 8 at once); the worker
/// delivering it is replaced (`how`) halfway through. The new worker drains at (about) the rate
/// of the old one, not at the one-a-second of the lane's safety look; with `breaker`, the backlog
/// first waits behind an open breaker and the worker is replaced while the recovery drains it.
/// Everything arrives, each delivery once.
async fn backlog_survives_a_worker_replacement(how: Replace, breaker: bool) {
    const N: usize = 800;
    let stack = Stack::start().await;
    let slow = Reply::status(200).delay(Duration::from_millis(100));
    let receiver = HttpReceiver::with_default(if breaker { Reply::status(503) } else { slow.clone() });
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let args = ["--endpoint-concurrency", "8", "--concurrency", "32", "--breaker-probe", "500ms"];
    let mut a = stack.spawn_worker_process(&args);
    let evs: Vec<Event> = (0..N).map(|i| finding(&format!("restart-{i}"), "medium")).collect();
    for chunk in evs.chunks(500) {
        stack.producer.publish_batch(chunk).await.expect("published");
    }
    if breaker {
        wait_until(Duration::from_secs(60), "the backlog parked behind the open breaker", || async {
            stack.stats().await.parked >= (N - 20) as u64
        })
        .await;
        receiver.set_default(slow.clone());
    }
    let warm = receiver.requests().len() + 30;
    wait_until(Duration::from_secs(60), "the backlog draining", || async {
        receiver.requests().len() >= warm
    })
    .await;
    let before = rate(&receiver, Duration::from_secs(3)).await;

    let pid = a.id().expect("worker pid").to_string();
    match how {
        Replace::Term => {
            let status =
                std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
            assert!(status.success(), "SIGTERM sent");
            tokio::time::timeout(Duration::from_secs(30), a.wait())
                .await
                .expect("worker stops within 30 s of SIGTERM")
                .expect("worker exit status");
        }
        Replace::Kill => a.kill().await.expect("SIGKILL and reaped"),
    }
    let at_replace = receiver.requests().len();
    let b = stack.spawn_worker_process(&args);
    // The new process starts delivering; then the same window as before.
    wait_until(Duration::from_secs(60), "the new worker delivering", || async {
        receiver.requests().len() >= at_replace + 20
    })
    .await;
    let after = rate(&receiver, Duration::from_secs(3)).await;
    let waiting = stack.stats().await.parked;
    println!(
        "figure: {how:?}{}: {before:.1}/s before, {after:.1}/s after ({:.0} %), {waiting} still waiting",
        if breaker { " after breaker recovery" } else { "" },
        100.0 * after / before.max(0.1)
    );
    // 80 % on a quiet machine (the bench); here with a wide margin for a busy one. The old lane
    // moved one a second after a restart.
    assert!(after >= before * 0.5, "drain after the replacement {after:.1}/s vs {before:.1}/s before");

    stack.wait_drained(Duration::from_secs(120)).await;
    let ids: std::collections::HashSet<String> = receiver
        .requests()
        .iter()
        .filter(|r| r.json()["event"] == "finding.new")
        .map(|r| r.header("x-coderaft-delivery").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids.len(), N, "every delivery arrived");
    assert_eq!(stack.stats().await.dead, 0, "nothing dead-lettered");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_drains_at_the_same_rate_after_a_sigterm_restart() {
    backlog_survives_a_worker_replacement(Replace::Term, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_drains_at_the_same_rate_after_a_sigkill() {
    backlog_survives_a_worker_replacement(Replace::Kill, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_recovery_drains_at_the_same_rate_after_a_sigkill() {
    backlog_survives_a_worker_replacement(Replace::Kill, true).await;
}

/// Issue 22: one dead endpoint cannot grow its lane without bound. Redis runs as a queue should
/// (`maxmemory` 50 MB, `noeviction`); 10× the lane cap is published for an endpoint that answers
/// 503 while a healthy endpoint gets the same events. The lane stops at its cap; the overflow is
/// dead-lettered with the reason "endpoint lane full" and counted; every publish succeeds and the
/// healthy endpoint gets everything; once the endpoint is back, a replay delivers the overflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoints_lane_stops_at_its_cap_and_the_overflow_is_dead_lettered() {
    const CAP: usize = 200;
    const N: usize = 10 * CAP;
    let redis = entraguard_testkit::RedisServer::builder()
        .arg("--maxmemory")
        .arg("50mb")
        .arg("--maxmemory-policy")
        .arg("noeviction")
        .start();
    let stack = Stack::on(redis).await;
    let dead = HttpReceiver::with_default(Reply::status(503));
    let healthy = HttpReceiver::start();
    let dead_ep = stack.add_endpoint("webhook", &dead.url(), &["finding.new"], None).await;
    stack.add_endpoint("webhook", &healthy.url(), &["finding.new"], None).await;
    let worker = stack.spawn_worker(&["--lane-max", &CAP.to_string(), "--breaker-probe", "60s"]);
    let evs: Vec<Event> = (0..N).map(|i| finding(&format!("full-{i}"), "medium")).collect();
    for chunk in evs.chunks(250) {
        stack.producer.publish_batch(chunk).await.expect("every publish accepted");
    }
    healthy.wait_for_requests(N, Duration::from_secs(120)).await;
    let keys = crate::harness::keys();
    let mut conn = stack.redis.connection().await;
    wait_until(Duration::from_secs(120), "every delivery parked or dead-lettered", || async {
        let s = stack.stats().await;
        s.ready == 0 && s.retrying == 0 && s.processing == 0 && s.scheduled == 0
    })
    .await;
    let lane: usize = conn.llen(keys.lane(dead_ep.id.as_str())).await.expect("llen");
    let stats = stack.stats().await;
    let full: u64 = conn.hget(keys.lane_full(), dead_ep.id.as_str()).await.expect("hget");
    println!(
        "figure: lane cap {CAP}, {N} published: {lane} waiting, {} dead ({full} as lane full), {} B used",
        stats.dead,
        stack.redis.info_used_memory().await
    );
    assert!(lane <= CAP, "the lane holds {lane}, over its cap of {CAP}");
    assert_eq!(stats.lane_full, full, "stats count the overflow");
    assert_eq!(lane as u64 + stats.dead, N as u64, "every delivery to the dead endpoint waits or is dead");
    assert_eq!(full, stats.dead, "every dead letter is an overflow");
    let letters = stack.queue.dead_letter_summaries(0, 5).await.expect("dead letters");
    assert!(letters.iter().all(|l| l.reason == "endpoint lane full"), "{letters:?}");
    // What one waiting and one dead delivery cost (for the sizing of NOTIFY_LANE_MAX in
    // docs/guarantees.md).
    // Each event has one delivery here (waiting or dead), so each keeps one body of its own.
    let bodies =
        stack.redis.memory_usage(&keys.bodies()).await + stack.redis.memory_usage(&keys.body_refs()).await;
    assert_eq!(stats.event_bodies, N as u64, "one body per event that waits or died");
    let body = bodies / N as u64;
    let per_waiting = stack.redis.memory_usage(&keys.lane(dead_ep.id.as_str())).await / lane as u64;
    let entry = stack.redis.memory_usage(&keys.dlq_entry(&letters[0].id)).await;
    let per_listed = stack.redis.memory_usage(&keys.dlq()).await / stats.dead;
    println!(
        "figure: {} B per waiting delivery ({per_waiting} B lane entry + {body} B its body), {} B per dead one ({entry} B entry + {per_listed} B listed + {body} B its body)",
        per_waiting + body,
        entry + per_listed + body
    );

    // The endpoint is back: the lane drains by itself after a reset, the overflow by a replay.
    dead.set_default(Reply::status(200));
    let from = dead.requests().len();
    entraguard_core::operator::reset(&stack.queue, &dead_ep).await.expect("reset");
    let replayed =
        stack.queue.replay_matching(&entraguard_core::queue::ReplayFilter::default()).await.expect("replay");
    assert_eq!(replayed.replayed as u64, full);
    stack.wait_drained(Duration::from_secs(120)).await;
    let ids: std::collections::HashSet<String> = dead.requests()[from..]
        .iter()
        .filter(|r| r.json()["event"] == "finding.new")
        .map(|r| r.header("x-coderaft-delivery").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids.len(), N, "every event reached the endpoint once it was back");
    assert_eq!(stack.stats().await.event_bodies, 0, "every body went with its last delivery");
    worker.stop().await;
}

/// `stats` is one snapshot: a delivery moving between an endpoint's lane and the ready list (a
/// release, a park) while the depths are read is counted exactly once, never in neither place,
/// so "drained" is never said of a queue with work. A mover flips one job between the two, one
/// atomic `LMOVE` at a time, while `stats` is read 1 000 times (read one list at a time, the
/// depths said 0 in 420 and 2 in 428 of 1 000 reads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_never_lose_a_delivery_moving_between_a_lane_and_ready() {
    let stack = Stack::start().await;
    let keys = crate::harness::keys();
    let (lane, ready, lanes) = (keys.lane("ep_moving"), keys.ready(), keys.lanes());
    let mut conn = stack.redis.connection().await;
    let _: () = conn.rpush(&lane, "a-delivery").await.expect("parked");
    let _: () = conn.zadd(&lanes, "ep_moving", 1).await.expect("lane listed");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mover = {
        let (mut conn, stop) = (stack.redis.connection().await, stop.clone());
        let (lane, ready) = (lane.clone(), ready.clone());
        tokio::spawn(async move {
            let mut moves = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (from, to) = if moves.is_multiple_of(2) { (&lane, &ready) } else { (&ready, &lane) };
                let _: Option<String> = redis::cmd("LMOVE")
                    .arg(from)
                    .arg(to)
                    .arg("LEFT")
                    .arg("LEFT")
                    .query_async(&mut conn)
                    .await
                    .expect("moved");
                moves += 1;
            }
            moves
        })
    };
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..1_000 {
        let s = stack.queue.stats().await.expect("stats");
        *seen.entry(s.ready + s.parked).or_insert(0u32) += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let moves = mover.await.expect("mover");
    println!("figure: 1 000 stats reads during {moves} moves: ready + parked seen as {seen:?}");
    assert!(moves > 100, "the job kept moving while stats were read ({moves} moves)");
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), vec![1], "counted once in every read: {seen:?}");
}
