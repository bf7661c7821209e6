//! Issue 26 (4): fan-out puts a fresh delivery to an endpoint whose breaker is open straight into
//! the endpoint's lane, in the step that acknowledges the event: never fetched, never admitted,
//! never parked by a second call. Once the endpoint is back, every one of them is delivered once.

use super::*;

/// The value of an unlabelled counter in a scrape.
fn counter(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(&format!("{name} ")[..])).and_then(|v| v.parse().ok())
}

async fn scrape(addr: &str) -> String {
    reqwest::get(format!("http://{addr}/metrics")).await.expect("scrape").text().await.expect("body")
}

/// A worker process (its own counters) opens the breaker after five 503s; 30 events published
/// then all go into the lane at fan-out (its counter says 30, the receiver sees no attempt), each
/// kept by reference with its event body held once; after the receiver recovers and an operator
/// reset closes the breaker, all 32 deliveries arrive once and the bodies are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breakers_new_deliveries_go_into_its_lane_at_fan_out() {
    const N: usize = 30;
    let stack = Stack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(503));
    let ep = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let addr = format!("127.0.0.1:{}", free_port());
    // A probe a minute away: nothing leaves the lane until the reset below.
    let mut worker = stack.spawn_worker_process(&[
        "--breaker-probe",
        "60s",
        "--retry-schedule",
        "50ms,100ms,150ms,150ms,150ms,150ms,150ms,150ms,150ms",
        "--health-addr",
        &addr,
    ]);
    publish(&stack, 2, "before").await;
    wait_state(&stack, &ep, BreakerState::Open).await;
    wait_until(Duration::from_secs(60), "the first two parked", || async { stack.stats().await.parked == 2 })
        .await;
    let attempts_at_open = receiver.requests().len();
    let metrics = scrape(&addr).await;
    assert_eq!(counter(&metrics, "entraguard_deliveries_parked_at_fanout_total"), Some(0.0), "{metrics}");

    publish(&stack, N, "while-open").await;
    wait_until(Duration::from_secs(60), "all parked", || async {
        stack.stats().await.parked == 2 + N as u64
    })
    .await;
    let metrics = scrape(&addr).await;
    assert_eq!(
        counter(&metrics, "entraguard_deliveries_parked_at_fanout_total"),
        Some(N as f64),
        "every new delivery went into the lane at fan-out, none through a fetch: {metrics}"
    );
    assert_eq!(receiver.requests().len(), attempts_at_open, "no attempt while open");
    // Kept as a fetched-then-parked delivery is: by reference, its body once per event.
    let mut conn = stack.redis.connection().await;
    let lane: Vec<Vec<u8>> =
        conn.lrange(format!("{{{PREFIX}}}:lane:{}", ep.id), 0, -1).await.expect("lane readable");
    let bodies: usize = conn.hlen(format!("{{{PREFIX}}}:bodies")).await.expect("hlen");
    assert_eq!(bodies, 2 + N, "one body per event");
    for raw in &lane[2..] {
        let waiting = WaitingDelivery::decode(raw).expect("a waiting delivery");
        assert!(raw.starts_with(b"{\"type\":\"delivery_ref.v1\","), "{}", String::from_utf8_lossy(raw));
        let body: Option<String> =
            conn.hget(format!("{{{PREFIX}}}:bodies"), &waiting.body_id).await.expect("hget");
        let body = body.expect("its body is held");
        let event: entraguard_core::event::Event = serde_json::from_str(&body).expect("the event");
        let stored = entraguard_core::job::DeliveryJob {
            delivery_id: waiting.delivery_id.clone(),
            ..entraguard_core::job::DeliveryJob::new(event, ep.id.clone())
        }
        .stored();
        assert_eq!(stored.job.as_bytes(), &raw[..], "byte for byte what park.lua keeps");
        assert_eq!(stored.body_id, waiting.body_id);
    }
    let expected = parked_ids(&stack, &ep).await;
    assert_eq!(expected.len(), 2 + N);

    receiver.set_default(Reply::status(200));
    let before = receiver.requests().len();
    entraguard_core::operator::reset(&stack.queue, &ep).await.expect("reset");
    stack.wait_drained(Duration::from_secs(60)).await;
    let delivered: Vec<String> = receiver.requests()[before..].iter().map(delivery_id).collect();
    let unique: HashSet<String> = delivered.iter().cloned().collect();
    assert_eq!(delivered.len(), 2 + N, "each once: {delivered:?}");
    assert_eq!(unique, expected, "the parked ones, by their ids");
    assert_eq!(stack.stats().await.dead, 0);
    let bodies: usize = conn.hlen(format!("{{{PREFIX}}}:bodies")).await.expect("hlen");
    assert_eq!(bodies, 0, "the bodies went with their last delivery");
    let _ = worker.kill().await;
}

/// Two endpoints with open breakers, 20 events each parked at fan-out for both: every body is
/// held once with a count of 2 references, kept by one read and one write of the counts per
/// batch (no `HINCRBY` a body, issue 26's "≤ 1 extra command per parked delivery"), and after
/// both breakers are reset all 40 deliveries arrive once and the bodies and counts are gone (a
/// count short by one would drop a body its second delivery still needs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_parked_for_two_endpoints_counts_both_in_one_write_a_batch() {
    const N: usize = 20;
    let stack = Stack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(200));
    let a = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let b = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let mut conn = stack.redis.connection().await;
    let now_ms: u64 = stack.queue.redis_time_ms().await.expect("time").try_into().expect("after 1970");
    let next_probe = (now_ms + 600_000).to_string();
    for ep in [&a, &b] {
        let key = format!("{{{PREFIX}}}:breaker:{}", ep.id);
        let _: () = conn
            .hset_multiple(&key, &[("state", "open"), ("next_probe", &next_probe)])
            .await
            .expect("breaker");
    }
    publish(&stack, N, "two-down").await;
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut conn).await.expect("resetstat");
    let mut worker = stack.spawn_worker_process(&[]);
    wait_until(Duration::from_secs(60), "all parked", || async {
        stack.stats().await.parked == 2 * N as u64
    })
    .await;
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await.expect("info");
    assert!(!info.contains("cmdstat_hincrby:"), "no HINCRBY a body: {info}");
    assert!(receiver.requests().is_empty(), "nothing sent while open");
    let refs: std::collections::HashMap<String, i64> =
        conn.hgetall(format!("{{{PREFIX}}}:body_refs")).await.expect("hgetall");
    assert_eq!(refs.len(), N, "one count per body: {refs:?}");
    assert!(refs.values().all(|&n| n == 2), "each body parked for both endpoints: {refs:?}");

    for ep in [&a, &b] {
        entraguard_core::operator::reset(&stack.queue, ep).await.expect("reset");
    }
    stack.wait_drained(Duration::from_secs(60)).await;
    let delivered: Vec<String> = receiver.requests().iter().map(delivery_id).collect();
    let unique: HashSet<String> = delivered.iter().cloned().collect();
    assert_eq!((delivered.len(), unique.len()), (2 * N, 2 * N), "each once: {delivered:?}");
    assert_eq!(stack.stats().await.dead, 0);
    let bodies: usize = conn.hlen(format!("{{{PREFIX}}}:bodies")).await.expect("hlen");
    let counts: usize = conn.hlen(format!("{{{PREFIX}}}:body_refs")).await.expect("hlen");
    assert_eq!((bodies, counts), (0, 0), "the bodies and their counts went with their last delivery");
    let _ = worker.kill().await;
}
