//! The delivery promise broken on purpose: workers killed under load, Redis restarted, Redis
//! down, receivers down or hanging, shutdown under load, scale-out, hostile input, a long run.
//! Loads are bounded and every wait has a deadline. Figures are printed for the closing notes.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use entraguard_core::endpoint::Endpoint;
use entraguard_producer::{Event, Producer, ProducerConfig};
use entraguard_testkit::{HttpReceiver, RedisServer, Reply, bin_path, wait_until};
use redis::AsyncCommands;

use crate::harness::{PREFIX, Stack, finding_event};

/// Event ids received by one receiver, with how many times each came.
fn event_counts(receiver: &HttpReceiver) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in receiver.requests() {
        let id = r.json()["id"].as_str().unwrap_or_default().to_owned();
        *m.entry(id).or_insert(0) += 1;
    }
    m
}

fn events(n: usize, tenant: &str) -> Vec<Event> {
    (0..n).map(|i| finding_event(&format!("{tenant}-{i}"))).collect()
}

async fn publish_all(producer: &Producer, events: &[Event]) {
    for chunk in events.chunks(500) {
        producer.publish_batch(chunk).await.expect("batch published");
    }
}

/// Scenario 1: 2 000 events × 3 endpoints, one of two worker processes SIGKILLed mid-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_delivers_every_pair_and_duplicates_only_in_flight_ones() {
    const EVENTS: usize = 2_000;
    const CONCURRENCY: usize = 16;
    let stack = Stack::start().await;
    let receivers: Vec<HttpReceiver> = (0..3)
        .map(|_| HttpReceiver::with_default(Reply::status(200).delay(Duration::from_millis(5))))
        .collect();
    for r in &receivers {
        stack.add_endpoint("webhook", &r.url(), &["finding.new"], None).await;
    }
    let conc = CONCURRENCY.to_string();
    let mut a = stack.spawn_worker_process(&["--concurrency", &conc]);
    let mut b = stack.spawn_worker_process(&["--concurrency", &conc]);
    let evs = events(EVENTS, "kill");
    publish_all(&stack.producer, &evs).await;

    // Kill one worker once deliveries are flowing.
    receivers[0].wait_for_requests(300, Duration::from_secs(60)).await;
    a.kill().await.expect("SIGKILL");
    let mut c = stack.spawn_worker_process(&["--concurrency", &conc]);

    let want: HashSet<String> = evs.iter().map(|e| e.id.to_string()).collect();
    for r in &receivers {
        wait_until(Duration::from_secs(120), "every event at every endpoint", || async {
            event_counts(r).len() >= EVENTS
        })
        .await;
    }
    stack.wait_drained(Duration::from_secs(30)).await;
    let mut duplicates = 0;
    for r in &receivers {
        let counts = event_counts(r);
        let got: HashSet<String> = counts.keys().cloned().collect();
        assert_eq!(got, want, "each endpoint got every event");
        duplicates += counts.values().map(|n| n - 1).sum::<usize>();
    }
    println!(
        "figure: sigkill_under_load duplicates={duplicates} (events={EVENTS}, endpoints=3, killed worker concurrency={CONCURRENCY})"
    );
    // Each slot of the killed worker had at most one request in flight and one delivered job
    // whose acknowledgement was on its way (a slot sends its next delivery beside the last
    // one's acknowledgement: crates/worker/src/slot.rs).
    assert!(
        duplicates <= 2 * CONCURRENCY,
        "{duplicates} duplicates, but at most {CONCURRENCY} requests were in flight at the kill and {CONCURRENCY} acknowledgements on their way"
    );
    assert_eq!(stack.stats().await.dead, 0);
    b.kill().await.expect("stop b");
    c.kill().await.expect("stop c");
}

/// Scenario 2: Redis SIGKILLed and restarted on its AOF mid-run (appendfsync always).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_with_aof_loses_nothing_acknowledged_and_retries_still_fire() {
    let mut stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    let retrying = HttpReceiver::start();
    // The retrying endpoint fails twice: its retries are in the delayed set across the restart.
    retrying.push_replies([Reply::status(500), Reply::status(500)]);
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    stack.add_endpoint("webhook", &retrying.url(), &["scan.failed"], None).await;
    let worker = stack.spawn_worker(&["--retry-schedule", "1500ms,1500ms"]);

    let failed = Event::from_json(
        br#"{"event":"scan.failed","tenant_id":"t","scan":{"run_id":"r1","kind":"full","environment":"prod","error":{"kind":"network","message":"graph unreachable"}}}"#,
    )
    .expect("valid");
    stack.producer.publish(&failed).await.expect("published");
    retrying.wait_for_requests(1, Duration::from_secs(30)).await;

    // Publish steadily while Redis dies and comes back; count what was acknowledged.
    let producer = stack.producer.clone();
    let publisher = tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut refused = 0;
        let until = Instant::now() + Duration::from_secs(4);
        let mut i = 0;
        while Instant::now() < until {
            let e = finding_event(&format!("restart-{i}"));
            i += 1;
            match producer.publish(&e).await {
                Ok(id) => acked.push(id.to_string()),
                Err(_) => refused += 1,
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (acked, refused)
    });
    // Kill Redis once publishes are flowing and being delivered, keep it down for half a second.
    wait_until(Duration::from_secs(30), "deliveries flowing before the kill", || async {
        event_counts(&receiver).len() >= 20
    })
    .await;
    stack.redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await; // the outage itself, not a wait
    stack.redis.restart();
    let (acked, refused) = publisher.await.expect("publisher");
    assert!(!acked.is_empty());

    wait_until(Duration::from_secs(60), "every acknowledged event delivered", || async {
        let got = event_counts(&receiver);
        acked.iter().all(|id| got.contains_key(id))
    })
    .await;
    retrying.wait_for_requests(3, Duration::from_secs(30)).await;
    println!("figure: redis_restart acknowledged={} refused_during_outage={refused} lost=0", acked.len());
    stack.wait_drained(Duration::from_secs(20)).await;
    worker.stop().await;
}

/// Scenario 2b: the everysec loss window, measured for a Redis process crash.
///
/// With `everysec`, Redis writes each command to the AOF file (the kernel's page cache) before
/// it answers, and a process crash keeps what the kernel has — except while a background fsync
/// is still running: then Redis postpones the write for up to 2 s (`flushAppendOnlyFile`,
/// "disk is busy"), so on a slow disk a SIGKILL loses what it answered in those seconds. Found
/// by `./dev stress` (issue 23): 876 of 5 000 acknowledged jobs lost beside a CPU hog, where an
/// idle machine loses none. The test holds the bound that Redis promises: nothing acknowledged
/// more than 3 s (2 s plus the cron's tick and margin) before the kill is lost, while publishing
/// for 6 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everysec_process_crash_loss_is_measured() {
    let mut redis = RedisServer::builder().appendfsync("everysec").start();
    let producer =
        Producer::connect(&ProducerConfig::from_url(&redis.url()).expect("url")).await.expect("connects");
    // Publish for twice the window (at least 5 000 events), so that most acknowledged jobs are
    // older than the window and the bound says something.
    let started = Instant::now();
    let mut acked_at = Vec::new();
    let mut i = 0usize;
    while i < 5_000 || started.elapsed() < Duration::from_secs(6) {
        if producer.publish(&finding_event(&format!("everysec-{i}"))).await.is_ok() {
            acked_at.push(Instant::now());
        }
        i += 1;
    }
    let killed_at = Instant::now();
    redis.kill();
    redis.restart();
    let mut conn = redis.connection().await;
    let kept: usize = conn.llen(format!("{{{PREFIX}}}:ready")).await.expect("llen");
    let acked = acked_at.len();
    let lost = acked.saturating_sub(kept);
    let window = Duration::from_secs(3);
    let in_window = acked_at.iter().filter(|t| killed_at.duration_since(**t) <= window).count();
    println!(
        "figure: everysec_process_crash acknowledged={acked} kept={kept} lost={lost} (acknowledged in the last {window:?}: {in_window})"
    );
    assert!(
        lost <= in_window,
        "a Redis process crash with everysec lost {lost} acknowledged jobs, more than the {in_window} acknowledged in the last {window:?}"
    );
}

/// Scenario 3: Redis down at start-up, then down for 30 s mid-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_startup_and_for_thirty_seconds_mid_run() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.kill();

    // The producer fails fast with a clear error instead of hanging.
    let mut cfg = ProducerConfig::from_url(&url).expect("url");
    cfg.redis.connect_timeout = Duration::from_secs(1);
    cfg.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let err = Producer::connect(&cfg).await.err().expect("refused while Redis is down");
    assert!(started.elapsed() < Duration::from_secs(5), "connect gave up after {:?}", started.elapsed());
    assert!(err.to_string().contains("cannot reach Redis"), "{err}");

    // A worker started now waits for Redis.
    let receiver = HttpReceiver::start();
    let stack_args = Stack::worker_args_for(&url);
    let mut worker = tokio::process::Command::new(bin_path("entraguard-worker"))
        .args(&stack_args)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("worker starts");
    tokio::time::sleep(Duration::from_secs(2)).await; // two seconds of Redis being down
    assert!(worker.try_wait().expect("wait").is_none(), "the worker waits for Redis instead of exiting");
    redis.restart();
    let stack = Stack::on(redis).await;
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    stack.producer.publish(&finding_event("after-start")).await.expect("published");
    receiver.wait_for_requests(1, Duration::from_secs(60)).await;

    // Down for 30 s mid-run.
    let mut stack = stack;
    stack.redis.kill();
    let mut cfg = ProducerConfig::from_url(&url).expect("url");
    cfg.timeout = Duration::from_secs(1);
    let outage_started = Instant::now();
    let err = stack.producer.publish(&finding_event("during-outage")).await.expect_err("no silent drop");
    assert!(
        outage_started.elapsed() < Duration::from_secs(5),
        "publish hung for {:?}",
        outage_started.elapsed()
    );
    println!("figure: publish during outage failed after {:?}: {err}", outage_started.elapsed());
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(outage_started.elapsed())).await;
    assert!(worker.try_wait().expect("wait").is_none(), "the worker survived 30 s without Redis");
    stack.redis.restart();
    let producer =
        Producer::connect(&ProducerConfig::from_url(&url).expect("url")).await.expect("reconnects");
    producer.publish(&finding_event("after-outage")).await.expect("published");
    receiver.wait_for_requests(2, Duration::from_secs(60)).await;
    worker.kill().await.expect("stop");
}

/// Scenario 4: a receiver down longer than the schedule, then back, then `dlq replay --all`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_outage_dead_letters_then_cli_replay_delivers_each_once_with_the_same_ids() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    let url = receiver.url();
    stack.add_endpoint("webhook", &url, &["finding.new"], None).await;
    receiver.stop();
    // The retry schedule's path: the circuit breaker (which would park the outage's deliveries
    // instead of dead-lettering them, see breaker.rs) is kept out of it.
    let worker = stack.spawn_worker(&["--breaker-failures", "10000"]);
    let evs = events(20, "outage");
    publish_all(&stack.producer, &evs).await;
    stack.wait_dead(20, Duration::from_secs(30)).await;
    stack.wait_drained(Duration::from_secs(30)).await;
    let dead: HashSet<String> =
        stack.queue.dead_letters(0, 100).await.expect("list").into_iter().map(|d| d.id).collect();
    assert_eq!(dead.len(), 20);

    receiver.restart();
    let out = tokio::process::Command::new(bin_path("entraguard-notify"))
        .args(["--redis-url", &stack.redis.url(), "dlq", "replay", "--all"])
        .output()
        .await
        .expect("cli runs");
    assert!(out.status.success(), "dlq replay failed: {}", String::from_utf8_lossy(&out.stderr));
    let got = receiver.wait_for_requests(20, Duration::from_secs(60)).await;
    stack.wait_drained(Duration::from_secs(30)).await;
    let got = if got.len() > 20 { receiver.requests() } else { got };
    let ids: Vec<String> =
        got.iter().map(|r| r.header("x-coderaft-delivery").unwrap_or_default().to_owned()).collect();
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), 20, "each delivered exactly once more");
    assert_eq!(unique, dead, "with the dead-lettered delivery ids");
    assert_eq!(stack.stats().await.dead, 0);
    worker.stop().await;
}

/// Scenario 5: an endpoint that hangs 30 s: attempts time out and retry, and the healthy
/// endpoints keep their latency because a hanging endpoint holds only its own slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_times_out_and_does_not_starve_the_others() {
    let stack = Stack::start().await;
    let hanging = HttpReceiver::with_default(Reply::status(200).delay(Duration::from_secs(30)));
    let healthy = HttpReceiver::start();
    stack.add_endpoint("webhook", &hanging.url(), &["finding.new"], None).await;
    stack.add_endpoint("webhook", &healthy.url(), &["finding.new"], None).await;
    // Timeouts dead-letter on the schedule here: the circuit breaker is kept out of it.
    let worker = stack.spawn_worker(&[
        "--breaker-failures",
        "10000",
        "--concurrency",
        "8",
        "--endpoint-concurrency",
        "2",
        "--delivery-timeout",
        "1s",
        "--retry-schedule",
        "100ms",
    ]);

    let evs = events(40, "slow");
    let published = Instant::now();
    publish_all(&stack.producer, &evs).await;
    let got = healthy.wait_for_requests(40, Duration::from_secs(20)).await;
    let last = got.iter().map(|r| r.received_at).max().expect("requests");
    let healthy_all_in = last.duration_since(published);
    println!("figure: healthy endpoint got 40 deliveries in {healthy_all_in:?} while the other hangs");
    assert!(healthy_all_in < Duration::from_secs(5), "healthy endpoint starved: {healthy_all_in:?}");

    stack.wait_dead(40, Duration::from_secs(60)).await;
    let dead = stack.queue.dead_letters(0, 1).await.expect("list");
    assert!(dead[0].reason.contains("timed out"), "{}", dead[0].reason);
    assert_eq!(dead[0].attempts.len(), 2);
    assert!(
        dead[0].attempts.iter().all(|a| a.duration_ms >= 900 && a.duration_ms < 3000),
        "{:?}",
        dead[0].attempts
    );
    worker.stop().await;
}

/// The lease is renewed while a delivery runs: a receiver slower than the lease never gets a
/// second, concurrent delivery from another worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_slower_than_the_lease_is_not_taken_over() {
    let stack = Stack::start().await;
    let slow = HttpReceiver::start();
    slow.push_replies([Reply::status(200).delay(Duration::from_secs(4))]);
    stack.add_endpoint("webhook", &slow.url(), &["finding.new"], None).await;
    let a = stack.spawn_worker(&["--lease", "1s", "--delivery-timeout", "8s"]);
    stack.producer.publish(&finding_event("lease")).await.expect("published");
    slow.wait_for_requests(1, Duration::from_secs(30)).await;
    let b = stack.spawn_worker(&["--lease", "1s", "--delivery-timeout", "8s"]);
    stack.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(slow.requests().len(), 1, "no second delivery while the first was still running");
    a.stop().await;
    b.stop().await;
}

/// Scenario 6: SIGTERM under load: no new jobs, in-flight finished or handed back, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_zero_within_grace_and_loses_nothing() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(200).delay(Duration::from_millis(50)));
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let mut worker = stack.spawn_worker_process(&["--concurrency", "16", "--shutdown-grace", "5s"]);
    let evs = events(500, "term");
    publish_all(&stack.producer, &evs).await;
    receiver.wait_for_requests(50, Duration::from_secs(30)).await;
    let pid = worker.id().expect("running").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let exit = tokio::time::timeout(Duration::from_secs(8), worker.wait())
        .await
        .expect("exits within the grace period")
        .expect("wait");
    assert!(exit.success(), "{exit}");
    assert_eq!(stack.stats().await.processing, 0, "nothing left on the stopped worker's processing list");

    let rest = stack.spawn_worker(&[]);
    let want: HashSet<String> = evs.iter().map(|e| e.id.to_string()).collect();
    wait_until(Duration::from_secs(60), "all 500 delivered", || async {
        event_counts(&receiver).len() >= want.len()
    })
    .await;
    let counts = event_counts(&receiver);
    assert_eq!(counts.keys().cloned().collect::<HashSet<_>>(), want);
    let dups: usize = counts.values().map(|n| n - 1).sum();
    assert_eq!(dups, 0, "a graceful stop finishes in-flight deliveries: no duplicates");
    rest.stop().await;
}

/// Scenario 7: 1, 2 and 4 worker processes: all delivered, no duplicates, throughput of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_delivers_everything_once_with_one_two_and_four_workers() {
    for workers in [1usize, 2, 4] {
        let stack = Stack::start().await;
        let receiver = HttpReceiver::start();
        stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
        let evs = events(2_000, &format!("scale{workers}"));
        publish_all(&stack.producer, &evs).await;
        // Build the binaries before the clock starts.
        let _ = bin_path("entraguard-worker");
        let started = Instant::now();
        let mut procs: Vec<_> =
            (0..workers).map(|_| stack.spawn_worker_process(&["--concurrency", "32"])).collect();
        receiver.wait_for_requests(evs.len(), Duration::from_secs(120)).await;
        let elapsed = started.elapsed();
        stack.wait_drained(Duration::from_secs(30)).await;
        let counts = event_counts(&receiver);
        assert_eq!(counts.len(), evs.len());
        assert!(counts.values().all(|n| *n == 1), "duplicates with {workers} workers");
        println!(
            "figure: scale_out workers={workers} deliveries={} seconds={:.2} per_second={:.0} (includes process start-up)",
            evs.len(),
            elapsed.as_secs_f64(),
            evs.len() as f64 / elapsed.as_secs_f64()
        );
        for p in &mut procs {
            p.kill().await.expect("stop");
        }
    }
}

/// Scenario 8: hostile input: a 1 MiB field, an unknown kind, a delivery for an unknown
/// endpoint, bytes that are not UTF-8 — dead letters with reasons; the worker keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_jobs_are_dead_lettered_with_reasons_and_the_worker_keeps_serving() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;

    let mut big = finding_event("big");
    big.tenant_name = Some("x".repeat(1024 * 1024));
    let err = stack.producer.publish(&big).await.expect_err("1 MiB field refused");
    assert!(err.to_string().contains("tenant_name"), "{err}");

    let mut conn = stack.redis.connection().await;
    let ready = format!("{{{PREFIX}}}:ready");
    let mut raw_big = serde_json::json!({"type": "event.v1", "event": serde_json::to_value(finding_event("raw-big")).expect("json")});
    // Half a MiB: over every field limit, under the 1 MiB a worker reads at all.
    raw_big["event"]["finding"]["title"] = serde_json::Value::String("y".repeat(512 * 1024));
    let unknown_kind =
        serde_json::json!({"type": "event.v1", "event": {"event": "finding.exploded", "tenant_id": "t"}});
    let ghost = serde_json::json!({"type": "delivery.v1", "delivery_id": "dlv_ghost", "endpoint_id": "ep_ghost", "event": serde_json::to_value(finding_event("ghost")).expect("json")});
    for job in [
        raw_big.to_string().into_bytes(),
        unknown_kind.to_string().into_bytes(),
        ghost.to_string().into_bytes(),
        vec![0xc3, 0x28, 0xa0, 0xa1],
    ] {
        let _: () = conn.rpush(&ready, job).await.expect("push");
    }
    let worker = stack.spawn_worker(&[]);
    stack.producer.publish(&finding_event("still-served")).await.expect("published");
    receiver.wait_for_requests(1, Duration::from_secs(30)).await;
    stack.wait_dead(4, Duration::from_secs(30)).await;
    let reasons: Vec<String> =
        stack.queue.dead_letters(0, 10).await.expect("list").into_iter().map(|d| d.reason).collect();
    assert!(reasons.iter().any(|r| r.contains("finding.title")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("finding.exploded")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("ep_ghost was deleted")), "{reasons:?}");
    assert!(reasons.iter().filter(|r| r.starts_with("undecodable job")).count() >= 2, "{reasons:?}");
    stack.wait_drained(Duration::from_secs(30)).await;
    worker.stop().await;
}

/// Scenario 9: a long run leaves nothing behind in Redis: 20 000 deliveries here, in CI time;
/// the benchmark's drain runs push 100 000 each through one worker (figures in
/// docs/performance.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_run_leaves_redis_memory_where_it_started() {
    const N: usize = 20_000;
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    let ep: Endpoint = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    // The keys' data (`used_memory_dataset`): the server's own overhead (every script it caches,
    // client buffers under load) is not what piles up, and moved the total by up to 1 MB.
    let before = stack.redis.info_used_memory_dataset().await;
    let mut w = stack.spawn_worker_process(&["--concurrency", "64"]);
    let evs = events(N, "soak");
    publish_all(&stack.producer, &evs).await;
    // A deadline, not a speed: 38 s alone on an idle 2-core machine, 187 s beside a CPU hog on
    // every core with five other tests (`./dev stress`, issue 23).
    receiver.wait_for_requests(N, Duration::from_secs(600)).await;
    stack.wait_drained(Duration::from_secs(30)).await;
    // The publish dedupe index keeps each event id for its window (an hour by default): that
    // is by design and bounded by the window, so it is measured apart.
    let mut conn = stack.redis.connection().await;
    let published = format!("{{{PREFIX}}}:published");
    let index = stack.redis.memory_usage(&published).await;
    // So does the endpoint's Recent Deliveries: bounded to its last 200 attempts.
    let history = format!("{{{PREFIX}}}:history:{}", ep.id);
    let kept: u64 = conn.llen(&history).await.expect("llen");
    assert_eq!(kept, entraguard_core::history::HISTORY_MAX_ENTRIES as u64, "history bounded");
    let history_bytes = stack.redis.memory_usage(&history).await;
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.expect("keys");
    keys.sort();
    assert_eq!(
        keys,
        vec![
            format!("{{{PREFIX}}}:endpoints"),
            format!("{{{PREFIX}}}:endpoints:rev"),
            history.clone(),
            format!("{{{PREFIX}}}:layout"),
            format!("{{{PREFIX}}}:leases"),
            published.clone(),
            format!("{{{PREFIX}}}:sealing"),
        ],
        "only configuration (the endpoints, the shard layout), the live worker's lease and the dedupe index remain"
    );
    // Both are measured apart: gone, they leave what else the run left, the keys' data alone.
    let _: () = conn.del(&[&published, &history]).await.expect("del");
    let after = stack.redis.info_used_memory_dataset().await;
    println!(
        "figure: long_run deliveries={N} redis_used_memory_dataset before={before} after={after} (dedupe index {index} and history {history_bytes} bytes apart)"
    );
    // 20 000 finished jobs kept would be over 10 MB. What remains is about 0.7 MB that no key
    // holds (`MEMORY STATS`: 5 keys, the configuration's, yet 1.0 MB of dataset): the server's
    // own, after a peak of 15 MB; it moved the old measure (all of `used_memory`) past 1 MB on
    // a busy machine.
    assert!(
        after < before + 2 * 1024 * 1024,
        "redis grew from {before} to {after} bytes: finished jobs pile up"
    );
    w.kill().await.expect("stop");
}
