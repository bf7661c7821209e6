use std::time::{Duration, Instant};

use entraguard_core::job::{DeliveryJob, Job};
use entraguard_core::queue::ReplayOutcome;
use entraguard_testkit::{HttpReceiver, Recorded, Reply, wait_until};
use hmac::{Hmac, KeyInit, Mac};
use redis::AsyncCommands;
use sha2::Sha256;

use crate::harness::{PREFIX, Stack, finding_event};

const SECRET: &str = "whsec_test_0123456789abcdef";

fn delivery_id(r: &Recorded) -> String {
    r.header("x-coderaft-delivery").expect("delivery header").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_gets_the_seed_shaped_body_with_a_valid_signature() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    stack.add_endpoint("webhook", &receiver.url_for("/soar"), &["finding.new"], Some(SECRET)).await;
    let worker = stack.spawn_worker(&[]);

    let event = finding_event("8d6310d1-aaaa");
    let id = stack.producer.publish(&event).await.expect("published");
    let got = receiver.wait_for_requests(1, Duration::from_secs(30)).await;
    let req = &got[0];

    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/soar");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("x-coderaft-event"), Some("finding.new"));
    assert!(delivery_id(req).starts_with("dlv_"));
    let ts: i64 =
        req.header("x-coderaft-timestamp").expect("timestamp header").parse().expect("unix seconds");
    assert!((ts - time_now()).abs() < 60, "timestamp {ts} is not now");
    assert!(req.header("user-agent").expect("user agent").starts_with("EntraGuard-Notify/"));

    // The signature, checked with HMAC computed here, not by the code under test.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(&req.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(req.header("x-coderaft-signature"), Some(expected.as_str()));

    let body = req.json();
    assert_eq!(body["event"], "finding.new");
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["tenant_id"], "8d6310d1-aaaa");
    assert_eq!(body["scan_id"], "scan_2026-04-28T07:00Z");
    assert_eq!(body["finding"]["id"], "PIM-002");
    assert_eq!(body["finding"]["severity"], "high");
    assert_eq!(body["finding"]["affected"][1], "ops@contoso.com");
    assert!(body["timestamp"].as_str().expect("timestamp").ends_with('Z'));

    stack.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(receiver.requests().len(), 1, "delivered exactly once");
    worker.stop().await;
}

fn time_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs(),
    )
    .expect("fits")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_at_the_scheduled_delays() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    receiver.push_replies([Reply::status(500), Reply::status(503), Reply::status(500)]);
    stack.add_endpoint("webhook", &receiver.url_for("/hook"), &["finding.new"], None).await;
    let worker = stack.spawn_worker(&["--retry-schedule", "200ms,400ms,600ms"]);

    stack.producer.publish(&finding_event("t-retry")).await.expect("published");
    let got = receiver.wait_for_requests(4, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 4);
    let id = delivery_id(&got[0]);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(delivery_id(r), id, "attempt {} keeps the delivery id", i + 1);
        assert_eq!(r.header("x-coderaft-attempt"), Some((i + 1).to_string().as_str()));
        assert_eq!(r.body, got[0].body, "the same body on every attempt");
    }
    for (i, want) in [200u64, 400, 600].iter().enumerate() {
        let gap = got[i + 1].received_at.duration_since(got[i].received_at);
        assert!(
            gap >= Duration::from_millis(*want),
            "retry {} came after {gap:?}, before its {want} ms delay",
            i + 1
        );
        assert!(
            gap < Duration::from_millis(want + 800),
            "retry {} came after {gap:?}, long after its {want} ms delay",
            i + 1
        );
    }
    stack.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(stack.stats().await.dead, 0);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_delivery_is_dead_lettered_with_every_attempt_then_replayed_with_the_same_id() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(500).body("database is down"));
    let ep = stack.add_endpoint("webhook", &receiver.url_for("/hook"), &["finding.new"], None).await;
    let worker = stack.spawn_worker(&[]);

    let event = finding_event("t-dead");
    stack.producer.publish(&event).await.expect("published");
    stack.wait_dead(1, Duration::from_secs(30)).await;
    let got = receiver.requests();
    assert_eq!(got.len(), 4, "first attempt plus three retries");
    let id = delivery_id(&got[0]);

    // Readable with plain Redis commands, as docs/redis-layout.md documents.
    let mut conn = stack.redis.connection().await;
    let ids: Vec<String> = conn.lrange(format!("{{{PREFIX}}}:dlq"), 0, -1).await.expect("lrange");
    assert_eq!(ids, vec![id.clone()]);
    let reason: String = conn.hget(format!("{{{PREFIX}}}:dlq:{id}"), "reason").await.expect("hget");
    assert!(reason.contains("gave up after 4 attempts") && reason.contains("database is down"), "{reason}");

    let dl = stack.queue.dead_letter_by_id(&id).await.expect("read").expect("entry exists");
    assert_eq!(dl.endpoint_id.as_deref(), Some(ep.id.as_str()));
    assert_eq!(dl.event_id.as_deref(), Some(event.id.as_str()));
    assert_eq!(dl.attempts.len(), 4);
    assert!(dl.attempts.iter().all(|a| a.status == Some(500)));
    assert_eq!(dl.attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    // The stored job is the delivery as it died: the same four attempts `dlq show` lists.
    let Ok(entraguard_core::job::Job::Delivery(stored)) =
        entraguard_core::job::Job::decode(dl.job.as_bytes())
    else {
        panic!("the stored job is a delivery: {}", dl.job)
    };
    assert_eq!(stored.attempts, dl.attempts, "dlq show's attempts and the stored job's agree");
    assert!(dl.replayable);

    receiver.set_default(Reply::status(200));
    assert_eq!(stack.queue.replay(&id).await.expect("replay"), ReplayOutcome::Replayed);
    let got = receiver.wait_for_requests(5, Duration::from_secs(30)).await;
    assert_eq!(delivery_id(&got[4]), id, "replay keeps the delivery id");
    assert_eq!(got[4].header("x-coderaft-attempt"), Some("1"), "replay starts a fresh attempt count");
    stack.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(stack.stats().await.dead, 0);
    assert_eq!(stack.queue.replay(&id).await.expect("replay"), ReplayOutcome::NotFound);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_endpoints_and_unsubscribed_events_receive_nothing() {
    let stack = Stack::start().await;
    let (on, off, other) = (HttpReceiver::start(), HttpReceiver::start(), HttpReceiver::start());
    stack.add_endpoint("webhook", &on.url(), &["finding.new"], None).await;
    let disabled = stack.add_endpoint("webhook", &off.url(), &["finding.new"], None).await;
    stack.store.set_enabled(&disabled.id, false).await.expect("disable");
    stack.add_endpoint("webhook", &other.url(), &["scan.failed", "compliance.report_ready"], None).await;
    let worker = stack.spawn_worker(&[]);

    for i in 0..3 {
        stack.producer.publish(&finding_event(&format!("t{i}"))).await.expect("published");
    }
    on.wait_for_requests(3, Duration::from_secs(30)).await;
    stack.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(on.requests().len(), 3);
    assert_eq!(off.requests().len(), 0, "a disabled endpoint receives nothing");
    assert_eq!(other.requests().len(), 0, "an endpoint not subscribed to finding.new receives nothing");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_does_not_touch_the_healthy_one() {
    let stack = Stack::start().await;
    let healthy = HttpReceiver::start();
    let broken = HttpReceiver::with_default(Reply::status(502));
    stack.add_endpoint("webhook", &healthy.url(), &["finding.new"], None).await;
    stack.add_endpoint("webhook", &broken.url(), &["finding.new"], None).await;
    let worker = stack.spawn_worker(&[]);

    stack.producer.publish(&finding_event("t-iso")).await.expect("published");
    stack.wait_dead(1, Duration::from_secs(30)).await;
    stack.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(healthy.requests().len(), 1, "the healthy endpoint gets exactly one delivery");
    assert_eq!(broken.requests().len(), 4);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_events_are_refused_by_the_producer_and_nothing_is_enqueued() {
    let stack = Stack::start().await;
    let err = entraguard_producer::Event::from_json(br#"{"event":"finding.exploded","tenant_id":"t"}"#)
        .expect_err("unknown kind");
    assert!(err.to_string().contains("finding.exploded"), "{err}");
    let err = entraguard_producer::Event::from_json(b"{not json").expect_err("bad json");
    assert!(err.to_string().contains("invalid event JSON"), "{err}");

    let mut event = finding_event("t");
    event.tenant_id = "   ".into();
    let err = stack.producer.publish(&event).await.expect_err("refused");
    assert!(err.to_string().contains("tenant_id"), "{err}");
    let good = finding_event("t2");
    let err = stack.producer.publish_batch(&[good, event]).await.expect_err("batch refused whole");
    assert!(err.to_string().contains("tenant_id"), "{err}");
    assert_eq!(stack.stats().await.ready, 0, "nothing enqueued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_jobs_are_dead_lettered_and_the_worker_keeps_serving() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let mut conn = stack.redis.connection().await;
    let ready = format!("{{{PREFIX}}}:ready");
    let _: () = conn.rpush(&ready, b"{\"type\":\"delivery.v1\",\"garbage".to_vec()).await.expect("push");
    let _: () = conn.rpush(&ready, vec![0xff_u8, 0xfe, 0x00, 0x41]).await.expect("push");
    let _: () = conn.rpush(&ready, br#"{"type":"event.v9","event":{}}"#.to_vec()).await.expect("push");
    let worker = stack.spawn_worker(&[]);
    stack.producer.publish(&finding_event("after-poison")).await.expect("published");

    receiver.wait_for_requests(1, Duration::from_secs(30)).await;
    stack.wait_dead(3, Duration::from_secs(30)).await;
    let dead = stack.queue.dead_letters(0, 10).await.expect("list");
    assert_eq!(dead.len(), 3);
    for d in &dead {
        assert!(d.reason.starts_with("undecodable job"), "{}", d.reason);
        assert!(!d.replayable);
    }
    assert!(dead.iter().any(|d| d.job.contains("garbage")));
    stack.wait_drained(Duration::from_secs(30)).await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_to_a_deleted_endpoint_is_dead_lettered_with_the_reason() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(500));
    let ep = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let worker = stack.spawn_worker(&["--retry-schedule", "300ms"]);
    stack.producer.publish(&finding_event("t-del")).await.expect("published");
    receiver.wait_for_requests(1, Duration::from_secs(30)).await;
    assert!(stack.store.delete(&ep.id).await.expect("delete"));
    stack.wait_dead(1, Duration::from_secs(30)).await;
    let dead = stack.queue.dead_letters(0, 1).await.expect("list");
    assert!(dead[0].reason.contains("was deleted"), "{}", dead[0].reason);
    assert_eq!(dead[0].attempts.len(), 1);
    assert_eq!(receiver.requests().len(), 1);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    receiver.push_replies([Reply::status(429).header("retry-after", "1")]);
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let worker = stack.spawn_worker(&[]);
    stack.producer.publish(&finding_event("t-429")).await.expect("published");
    let got = receiver.wait_for_requests(2, Duration::from_secs(30)).await;
    let gap = got[1].received_at.duration_since(got[0].received_at);
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}, before Retry-After: 1");
    assert!(gap < Duration::from_secs(3), "retried after {gap:?}");
    worker.stop().await;
}

/// The real default schedule (10 s, 1 min, 5 min): checked on the due time Redis holds, without
/// waiting ten seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_schedule_puts_the_first_retry_ten_seconds_out_on_the_redis_clock() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(500));
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let config = stack.worker_config(&[]);
    let mut args: Vec<String> = vec!["entraguard-worker".into()];
    args.extend(stack.worker_args().into_iter().filter(|a| a != "50ms,100ms,150ms"));
    // Drop the test schedule: the worker runs on its default.
    let pos = args.iter().position(|a| a == "--retry-schedule").expect("flag present");
    args.remove(pos);
    let default_config = entraguard_worker::WorkerConfig::from_args(args).expect("parses");
    assert_eq!(default_config.retry_schedule.to_string(), "10s,1m,5m");
    assert_ne!(config.retry_schedule, default_config.retry_schedule);
    let (trigger, shutdown) = entraguard_worker::Shutdown::new();
    let task = tokio::spawn(entraguard_worker::run(default_config, shutdown));

    stack.producer.publish(&finding_event("t-default")).await.expect("published");
    receiver.wait_for_requests(1, Duration::from_secs(30)).await;
    let mut conn = stack.redis.connection().await;
    let delayed = format!("{{{PREFIX}}}:delayed");
    wait_until(Duration::from_secs(5), "a retry in the delayed set", || {
        let mut c = conn.clone();
        let k = delayed.clone();
        async move { c.zcard::<_, u64>(&k).await.unwrap_or(0) == 1 }
    })
    .await;
    let scheduled: Vec<(String, f64)> = conn.zrange_withscores(&delayed, 0, 0).await.expect("zrange");
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await.expect("time");
    let now_ms = secs * 1000 + micros / 1000;
    let due_in = scheduled[0].1 as i64 - now_ms;
    assert!((8_500..=10_000).contains(&due_in), "first retry due in {due_in} ms, expected about 10 s");
    let job = Job::decode(scheduled[0].0.as_bytes()).expect("decodes");
    let Job::Delivery(DeliveryJob { attempts, .. }) = job else { panic!("expected a delivery job") };
    assert_eq!(attempts.len(), 1);
    assert_eq!(receiver.requests().len(), 1, "no early retry");
    trigger.trigger();
    task.await.expect("joined").expect("ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_delivery_loses_nothing() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    // The first request hangs long enough for the worker to be killed while it waits.
    receiver.push_replies([Reply::status(200).delay(Duration::from_secs(3))]);
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let mut victim = stack.spawn_worker_process(&[]);
    stack.producer.publish(&finding_event("t-kill")).await.expect("published");
    let first = receiver.wait_for_requests(1, Duration::from_secs(60)).await;
    assert_eq!(stack.stats().await.processing, 1, "the delivery is in flight");
    victim.kill().await.expect("SIGKILL and reaped");

    let killed_at = Instant::now();
    let replacement = stack.spawn_worker(&[]);
    let got = receiver.wait_for_requests(2, Duration::from_secs(60)).await;
    assert_eq!(delivery_id(&got[1]), delivery_id(&first[0]), "the same delivery, taken over");
    assert!(killed_at.elapsed() < Duration::from_secs(10), "taken over within seconds");
    stack.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(stack.stats().await.dead, 0);
    replacement.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_in_flight_delivery_finish_and_exits_zero() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    receiver.push_replies([Reply::status(200).delay(Duration::from_millis(1500))]);
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let mut worker = stack.spawn_worker_process(&[]);
    stack.producer.publish(&finding_event("t-term")).await.expect("published");
    receiver.wait_for_requests(1, Duration::from_secs(60)).await;
    let pid = worker.id().expect("running").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), worker.wait())
        .await
        .expect("worker exits within 10 s of SIGTERM")
        .expect("wait");
    assert!(exit.success(), "exit status {exit}");
    let s = stack.stats().await;
    assert_eq!(
        (s.ready, s.processing, s.scheduled, s.dead),
        (0, 0, 0, 0),
        "the delivery finished, nothing left behind"
    );
    assert_eq!(receiver.requests().len(), 1);
}

/// The worker caches endpoints (issue 13) and still applies every change to every delivery
/// fetched after it was written: a new URL, a rotated secret (with no grace, the old one stops
/// signing at once), a disabled and a deleted endpoint. The fetch reads the endpoints' revision
/// in the same step as the jobs; a cache without it served the old URL and secret here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_changes_reach_every_delivery_fetched_after_them() {
    let stack = Stack::start().await;
    let a = HttpReceiver::start();
    let b = HttpReceiver::start();
    let mut ep = stack.add_endpoint("webhook", &a.url_for("/a"), &["finding.new"], Some(SECRET)).await;
    let worker = stack.spawn_worker(&[]);
    let batch = |tag: &str| (0..20).map(|i| finding_event(&format!("{tag}-{i}"))).collect::<Vec<_>>();
    let sign = |secret: &str, body: &[u8]| {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };

    // Warm: the worker has read (and cached) the endpoint.
    stack.producer.publish_batch(&batch("warm")).await.expect("published");
    a.wait_for_requests(20, Duration::from_secs(60)).await;
    stack.wait_drained(Duration::from_secs(60)).await;

    // A new URL.
    ep.target = crate::harness::endpoint("webhook", &b.url_for("/b"), &["finding.new"], None).target;
    stack.store.put(&ep).await.expect("updated");
    stack.producer.publish_batch(&batch("moved")).await.expect("published");
    b.wait_for_requests(20, Duration::from_secs(60)).await;
    stack.wait_drained(Duration::from_secs(60)).await;
    assert_eq!(a.requests().len(), 20, "nothing fetched after the change went to the old URL");

    // A rotated secret, no grace: only the new one signs.
    const NEW: &str = "whsec_rotated_fedcba9876543210";
    ep.rotate_secret(entraguard_core::secret::Secret::new(NEW), Duration::ZERO);
    stack.store.put(&ep).await.expect("rotated");
    stack.producer.publish_batch(&batch("rotated")).await.expect("published");
    let got = b.wait_for_requests(40, Duration::from_secs(60)).await;
    stack.wait_drained(Duration::from_secs(60)).await;
    for r in &got[20..] {
        assert_eq!(r.header("x-coderaft-signature"), Some(sign(NEW, &r.body).as_str()));
        let standard = r.header("webhook-signature").expect("standard signature");
        assert_eq!(standard.split(' ').count(), 1, "the old secret no longer signs: {standard}");
    }

    // Disabled: no new fan-out to it.
    stack.store.set_enabled(&ep.id, false).await.expect("disabled");
    stack.producer.publish_batch(&batch("disabled")).await.expect("published");
    stack.wait_drained(Duration::from_secs(60)).await;
    assert_eq!(b.requests().len(), 40, "a disabled endpoint gets no new deliveries");

    // Enabled again, then deleted.
    stack.store.set_enabled(&ep.id, true).await.expect("enabled");
    stack.producer.publish_batch(&batch("again")).await.expect("published");
    b.wait_for_requests(60, Duration::from_secs(60)).await;
    stack.wait_drained(Duration::from_secs(60)).await;
    assert!(stack.store.delete(&ep.id).await.expect("deleted"));
    stack.producer.publish_batch(&batch("deleted")).await.expect("published");
    stack.wait_drained(Duration::from_secs(60)).await;
    assert_eq!(b.requests().len(), 60, "a deleted endpoint gets no new deliveries");
    assert_eq!(stack.stats().await.dead, 0);
    worker.stop().await;
}
