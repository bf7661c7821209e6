//! What ops run on: health, readiness and Prometheus metrics served by a real worker process,
//! scraped while deliveries happen.

use std::time::Duration;

use entraguard_testkit::{HttpReceiver, Reply, free_port, wait_until};

use crate::harness::{Stack, finding_event};

/// A worker process serving its health endpoints on a free port, once `/readyz` answers 200;
/// with the endpoints' base URL.
async fn ready_worker(stack: &Stack) -> (tokio::process::Child, String) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let addr = format!("127.0.0.1:{port}");
    let worker = stack.spawn_worker_process(&["--health-addr", &addr]);
    let ready_url = format!("{base}/readyz");
    wait_until(Duration::from_secs(60), "/readyz answers 200", || {
        let u = ready_url.clone();
        async move { get(&u).await.0 == 200 }
    })
    .await;
    (worker, base)
}

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

/// The value of one sample line (`name{labels} value`) in Prometheus text.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_follow_the_deliveries() {
    let stack = Stack::start().await;
    let ok = HttpReceiver::start();
    let broken = HttpReceiver::with_default(Reply::status(500));
    stack.add_endpoint("webhook", &ok.url(), &["finding.new"], None).await;
    let slack = stack.add_endpoint("slack", &broken.url(), &["finding.new"], None).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let addr = format!("127.0.0.1:{port}");
    // The broken endpoint's deliveries dead-letter on the schedule (breaker kept out of it).
    let mut worker = stack.spawn_worker_process(&[
        "--breaker-failures",
        "10000",
        "--health-addr",
        &addr,
        "--retry-schedule",
        "100ms",
        "--slack-pace",
        "0s",
    ]);
    let ready_url = format!("{base}/readyz");
    wait_until(Duration::from_secs(60), "/readyz answers 200", || {
        let u = ready_url.clone();
        async move { get(&u).await.0 == 200 }
    })
    .await;
    assert_eq!(get(&format!("{base}/healthz")).await, (200, "ok".to_owned()));

    let (status, before) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert_eq!(sample(&before, "entraguard_queue_ready"), Some(0.0), "{before}");
    assert_eq!(sample(&before, "entraguard_workers"), Some(1.0));

    for i in 0..3 {
        stack.producer.publish(&finding_event(&format!("metrics-{i}"))).await.expect("published");
    }
    ok.wait_for_requests(3, Duration::from_secs(30)).await;
    stack.wait_dead(3, Duration::from_secs(30)).await;
    let metrics_url = format!("{base}/metrics");
    wait_until(Duration::from_secs(30), "delivery counters in /metrics", || {
        let u = metrics_url.clone();
        async move {
            let (_, m) = get(&u).await;
            sample(&m, "entraguard_deliveries_total{channel=\"webhook\",outcome=\"delivered\"}") == Some(3.0)
                && sample(&m, "entraguard_deliveries_total{channel=\"slack\",outcome=\"dead\"}") == Some(3.0)
        }
    })
    .await;
    let (_, after) = get(&metrics_url).await;
    assert_eq!(sample(&after, "entraguard_queue_dead_letters"), Some(3.0), "{after}");
    assert_eq!(sample(&after, "entraguard_events_fanned_out_total"), Some(3.0));
    assert!(
        sample(&after, "entraguard_delivery_duration_seconds_count{channel=\"webhook\"}")
            .is_some_and(|n| n >= 3.0)
    );
    assert!(
        sample(&after, "entraguard_delivery_attempts_total{channel=\"slack\"}").is_some_and(|n| n >= 6.0)
    );
    // Per-endpoint breaker gauges, read at scrape time (below its threshold here: closed).
    let open = format!("entraguard_endpoint_breaker_open{{endpoint=\"{}\"}}", slack.id);
    let parked = format!("entraguard_endpoint_parked{{endpoint=\"{}\"}}", slack.id);
    assert_eq!(sample(&after, &open), Some(0.0), "{after}");
    assert_eq!(sample(&after, &parked), Some(0.0), "{after}");

    // Redis gone: not ready (the orchestrator stops routing), still alive (no restart loop).
    let mut stack = stack;
    stack.redis.kill();
    wait_until(Duration::from_secs(30), "/readyz answers 503 without Redis", || {
        let u = ready_url.clone();
        async move { get(&u).await.0 == 503 }
    })
    .await;
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    stack.redis.restart();
    wait_until(Duration::from_secs(60), "/readyz back to 200", || {
        let u = ready_url.clone();
        async move { get(&u).await.0 == 200 }
    })
    .await;
    worker.kill().await.expect("stop");
}

/// Managed Redis speaks TLS with a password: `rediss://default:<pw>@host:port`, here against a
/// local redis-server serving TLS only, with a certificate from a throwaway CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_password_and_a_private_ca() {
    use entraguard_core::queue::Queue;
    use entraguard_core::redis_conn::{RedisConfig, RedisUrl};
    use entraguard_core::store::EndpointStore;
    use entraguard_producer::{Producer, ProducerConfig};
    use entraguard_testkit::{RedisServer, TestCa};

    let ca = TestCa::new();
    let redis = RedisServer::builder().tls(&ca).password("s3cret-pw").start();
    let url = redis.url();
    assert!(url.starts_with("rediss://default:s3cret-pw@127.0.0.1:"), "{url}");

    // Without the CA the certificate is not trusted: a clear failure, not a plaintext fallback.
    let untrusted =
        Queue::connect(&RedisConfig::new(RedisUrl::parse(&url).expect("url")), crate::harness::keys()).await;
    assert!(untrusted.is_err(), "connected without trusting the CA");

    let mut config = RedisConfig::new(RedisUrl::parse(&url).expect("url"));
    config.ca_cert = Some(ca.ca_pem.clone());
    let queue = Queue::connect(&config, crate::harness::keys()).await.expect("TLS connect with the CA");
    let store = EndpointStore::new(queue.connection(), crate::harness::keys());
    let receiver = HttpReceiver::start();
    let ep = crate::harness::endpoint("webhook", &receiver.url(), &["finding.new"], None);
    store.put(&ep).await.expect("stored over TLS");

    let mut pcfg = ProducerConfig::from_url(&url).expect("url");
    pcfg.redis.ca_cert = Some(ca.ca_pem.clone());
    let producer = Producer::connect(&pcfg).await.expect("producer over TLS");

    let ca_path = ca.ca_path().to_string_lossy().into_owned();
    let args = crate::harness::Stack::worker_args_for(&url);
    let mut argv = vec!["entraguard-worker".to_owned()];
    argv.extend(args);
    argv.extend(["--redis-ca-cert".to_owned(), ca_path]);
    let worker_config = entraguard_worker::WorkerConfig::from_args(argv).expect("config");
    let (trigger, shutdown) = entraguard_worker::Shutdown::new();
    let task = tokio::spawn(entraguard_worker::run(worker_config, shutdown));

    producer.publish(&finding_event("over-tls")).await.expect("published over TLS");
    let got = receiver.wait_for_requests(1, Duration::from_secs(60)).await;
    assert_eq!(got[0].json()["tenant_id"], "over-tls");
    trigger.trigger();
    task.await.expect("joined").expect("worker ok");
}

/// Issue 24: right after Redis refused a batch for memory, `/readyz` is 503 and
/// `entraguard_redis_full` 1, although the refused batch's own size was freed with the refusal
/// (used memory is back under maxmemory): the refusal is recorded for a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_metrics_say_full_right_after_a_batch_is_refused_for_memory() {
    let stack = Stack::start().await;
    let (mut worker, base) = ready_worker(&stack).await;
    let ready_url = format!("{base}/readyz");
    let mut conn = stack.redis.connection().await;
    let used = stack.redis.info_used_memory().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used + 3 * 1024 * 1024)
        .query_async(&mut conn)
        .await
        .expect("CONFIG SET");
    let batch: Vec<_> = (0..10_000).map(|i| finding_event(&format!("tenant-{i}"))).collect();
    let err =
        stack.producer.publish_batch(&batch).await.expect_err("a 10 000-event batch does not fit in 3 MB");
    assert!(matches!(err, entraguard_producer::PublishError::RedisFull), "{err:?}");
    assert!(
        stack.redis.info_used_memory().await < used + 3 * 1024 * 1024,
        "used memory is back under the limit"
    );
    let (status, body) = get(&ready_url).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("refused a publish for memory"), "{body}");
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(sample(&metrics, "entraguard_redis_full"), Some(1.0), "{metrics}");
    let ttl: i64 =
        redis::cmd("PTTL").arg("{entraguard}:publish_refused").query_async(&mut conn).await.expect("PTTL");
    assert!((1..=60_000).contains(&ttl), "the record lasts a minute: {ttl}");
    // Once the minute is over (here: the record removed), ready again.
    let _: () =
        redis::cmd("DEL").arg("{entraguard}:publish_refused").query_async(&mut conn).await.expect("DEL");
    assert_eq!(get(&ready_url).await.0, 200);
    worker.kill().await.expect("stop");
}

/// Redis at its maxmemory: `/readyz` says so (503, with the reason) and `entraguard_redis_full`
/// is 1; both clear once Redis has room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_metrics_say_when_redis_is_full() {
    let stack = Stack::start().await;
    let (mut worker, base) = ready_worker(&stack).await;
    let ready_url = format!("{base}/readyz");
    let mut conn = stack.redis.connection().await;
    let set_max = |bytes: u64| redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(bytes).to_owned();
    let used = stack.redis.info_used_memory().await;
    let _: () = set_max(used / 2).query_async(&mut conn).await.expect("CONFIG SET");
    let (status, body) = get(&ready_url).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("maxmemory"), "{body}");
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(sample(&metrics, "entraguard_redis_full"), Some(1.0), "{metrics}");
    let _: () = set_max(0).query_async(&mut conn).await.expect("CONFIG SET");
    assert_eq!(get(&ready_url).await.0, 200);
    worker.kill().await.expect("stop");
}

/// `THP_enabled` of a running process (`/proc/<pid>/status`, Linux 5.0 and later): `false` once
/// it has turned transparent huge pages off for itself.
fn thp_enabled(pid: u32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let value = status.lines().find_map(|l| l.strip_prefix("THP_enabled:"))?;
    Some(value.trim() == "1")
}

/// The worker turns transparent huge pages off for itself (mimalloc would otherwise keep whole
/// 2 MiB pages resident: docs/performance.md), and leaves them on when `MIMALLOC_ALLOW_THP` says so.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_without_transparent_huge_pages_unless_told_otherwise() {
    let stack = Stack::start().await;
    let bin = entraguard_testkit::bin_path("entraguard-worker");
    let url = stack.redis.url();
    let mut seen = Vec::new();
    let mut workers = Vec::new(); // killed when dropped
    for (allow, expected_workers) in [(None, 1), (Some("1"), 2)] {
        let mut command = crate::harness::worker_command_at(&bin, &url, &[]);
        command.env_remove("MIMALLOC_ALLOW_THP");
        if let Some(v) = allow {
            command.env("MIMALLOC_ALLOW_THP", v);
        }
        let child = command.spawn().expect("worker binary starts");
        // Registered: past `main`'s first line, where the switch is made.
        wait_until(Duration::from_secs(60), "the worker registers", || async {
            stack.queue.stats().await.is_ok_and(|s| s.workers >= expected_workers)
        })
        .await;
        let pid = child.id().expect("the worker runs");
        let Some(enabled) = thp_enabled(pid) else {
            eprintln!("this kernel does not report THP_enabled; nothing to check");
            return;
        };
        seen.push((allow, enabled));
        workers.push(child);
    }
    if seen.get(1) == Some(&(Some("1"), false)) {
        eprintln!(
            "this kernel has no transparent huge pages (THP_enabled 0 even when allowed); nothing to check"
        );
        return;
    }
    assert_eq!(seen, vec![(None, false), (Some("1"), true)], "(MIMALLOC_ALLOW_THP, THP on)");
}
