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
