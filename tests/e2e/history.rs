//! Recent Deliveries in Redis: the history list's bounds (newest first, 200 entries, 7 days, a
//! TTL on write), Redeliver through the production path, and the in-flight count.

use std::time::Duration;

use entraguard_core::history::{AttemptResult, DeliveryRecord, HISTORY_MAX_AGE, HISTORY_MAX_ENTRIES};
use entraguard_core::job::{AttemptRecord, DeliveryJob};
use entraguard_core::queue::{Park, Parked};
use entraguard_core::timestamp::Timestamp;
use entraguard_testkit::{HttpReceiver, Reply};
use redis::AsyncCommands;

use crate::harness::{PREFIX, Stack, finding_event};

fn record(job: &DeliveryJob, n: u32, at: Timestamp) -> DeliveryRecord {
    let attempt = AttemptRecord {
        attempt: n,
        at,
        duration_ms: 12,
        status: Some(500),
        error: Some(format!("boom {n}")),
    };
    DeliveryRecord::new(
        job,
        &attempt,
        AttemptResult::Retry,
        [("x-coderaft-delivery", job.delivery_id.as_str()), ("x-coderaft-signature", "sha256=SECRETSIG")],
        Some("database is down"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_newest_first_bounded_and_expires() {
    let stack = Stack::start().await;
    let ep = stack.add_endpoint("webhook", "http://127.0.0.1:9/hook", &["finding.new"], None).await;
    let job = DeliveryJob::new(finding_event("t-hist"), ep.id.clone());
    let now = Timestamp::now();
    let old =
        Timestamp::from_unix_millis((now.unix_seconds() - HISTORY_MAX_AGE.as_secs() as i64 - 60) * 1000);

    // An entry older than 7 days, then 250 fresh ones: 200 are kept, the stale one is gone.
    stack.queue.record_history(&ep.id, &[record(&job, 0, old)]).await.expect("record");
    let fresh: Vec<DeliveryRecord> = (1..=250).map(|n| record(&job, n, now)).collect();
    stack.queue.record_history(&ep.id, &fresh).await.expect("record");

    let mut conn = stack.redis.connection().await;
    let key = format!("{{{PREFIX}}}:history:{}", ep.id);
    let len: usize = conn.llen(&key).await.expect("llen");
    assert_eq!(len, HISTORY_MAX_ENTRIES, "trimmed to 200");
    let ttl: i64 = conn.pttl(&key).await.expect("pttl");
    assert!(ttl > 0 && ttl <= HISTORY_MAX_AGE.as_millis() as i64, "a 7-day TTL on write, got {ttl}");
    let raw: String = conn.lindex(&key, 0).await.expect("lindex");
    assert!(!raw.contains("SECRETSIG"), "signature values are masked in Redis: {raw}");

    let got = stack.queue.recent_deliveries(&ep.id, 10).await.expect("read");
    assert_eq!(got.iter().map(|r| r.attempt).collect::<Vec<_>>(), (241..=250).rev().collect::<Vec<_>>());
    assert_eq!(got[0].response_body.as_deref(), Some("database is down"));

    // A stale entry at the head (written by hand) is skipped by readers.
    stack.queue.record_history(&ep.id, &[record(&job, 999, old)]).await.expect("record");
    let got = stack.queue.recent_deliveries(&ep.id, 3).await.expect("read");
    assert!(got.iter().all(|r| r.attempt != 999), "entries older than 7 days are not shown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliver_sends_the_same_delivery_id_again_through_the_worker() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(200));
    let ep = stack
        .add_endpoint("webhook", &receiver.url_for("/hook"), &["finding.new"], Some("s3cret-signing-key"))
        .await;
    let job = DeliveryJob::new(finding_event("t-redeliver"), ep.id.clone());
    stack.queue.record_history(&ep.id, &[record(&job, 1, Timestamp::now())]).await.expect("record");

    // The CLI's Redeliver (the API's and the page's take the same path in the queue).
    let cli = |args: Vec<String>| {
        let url = stack.redis.url();
        async move {
            tokio::process::Command::new(entraguard_testkit::bin_path("entraguard-notify"))
                .args(["--redis-url", &url, "endpoint", "redeliver"])
                .args(args)
                .env_remove("REDIS_URL")
                .output()
                .await
                .expect("cli runs")
        }
    };
    let unknown = cli(vec![ep.id.to_string(), "dlv_01J0000000000000000000000".into()]).await;
    assert_eq!(unknown.status.code(), Some(1), "{}", String::from_utf8_lossy(&unknown.stderr));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not found"));
    let out = cli(vec![ep.id.to_string(), job.delivery_id.to_string()]).await;
    assert!(out.status.success(), "redeliver: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("redelivering {}", job.delivery_id));
    let worker = stack.spawn_worker(&[]);
    let got = receiver.wait_for_requests(1, Duration::from_secs(60)).await;
    assert_eq!(got[0].header("x-coderaft-delivery"), Some(job.delivery_id.as_str()), "same delivery id");
    assert_eq!(got[0].header("x-coderaft-attempt"), Some("1"), "a fresh attempt count");
    assert!(got[0].header("x-coderaft-signature").is_some(), "signed like any delivery");
    stack.wait_drained(Duration::from_secs(60)).await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_counts_an_endpoints_deliveries_on_processing_lists() {
    let stack = Stack::start().await;
    let ep = stack.add_endpoint("webhook", "http://127.0.0.1:9/a", &["finding.new"], None).await;
    let other = stack.add_endpoint("webhook", "http://127.0.0.1:9/b", &["finding.new"], None).await;
    assert_eq!(stack.queue.in_flight(&ep.id).await.expect("count"), 0);
    let mut conn = stack.redis.connection().await;
    let _: () = conn.zadd(format!("{{{PREFIX}}}:leases"), "w1", i64::MAX).await.expect("zadd");
    let mine =
        entraguard_core::job::Job::Delivery(DeliveryJob::new(finding_event("t1"), ep.id.clone())).encode();
    let theirs =
        entraguard_core::job::Job::Delivery(DeliveryJob::new(finding_event("t2"), other.id.clone())).encode();
    let _: () =
        conn.rpush(format!("{{{PREFIX}}}:processing:w1"), &[&mine, &mine, &theirs]).await.expect("rpush");
    assert_eq!(stack.queue.in_flight(&ep.id).await.expect("count"), 2);
    assert_eq!(stack.queue.in_flight(&other.id).await.expect("count"), 1);
}

/// The worker records every attempt in the endpoint's history as it records the outcome: a
/// failed attempt (retry), the delivered retry, a dead letter and a parked attempt, each with
/// the headers sent (signatures masked), the receiver's answer and the event, newest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_records_every_attempt_with_what_was_sent_and_answered() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(200).body("thanks"));
    receiver.push_replies([Reply::status(503).body("busy, come back")]);
    let ep = stack
        .add_endpoint("webhook", &receiver.url_for("/hook"), &["finding.new"], Some("s3cret-signing-key"))
        .await;
    let worker = stack.spawn_worker(&["--breaker-failures", "10000"]);
    stack.producer.publish(&finding_event("t-history")).await.expect("published");
    receiver.wait_for_requests(2, Duration::from_secs(60)).await;
    stack.wait_drained(Duration::from_secs(60)).await;
    let got = stack.queue.recent_deliveries(&ep.id, 10).await.expect("read");
    assert_eq!(got.len(), 2, "{got:?}");
    let (delivered, retried) = (&got[0], &got[1]);
    assert_eq!(
        (delivered.result, delivered.attempt, delivered.status),
        (AttemptResult::Delivered, 2, Some(200))
    );
    assert_eq!((retried.result, retried.attempt, retried.status), (AttemptResult::Retry, 1, Some(503)));
    assert_eq!(retried.response_body.as_deref(), Some("busy, come back"));
    assert_eq!(delivered.response_body.as_deref(), Some("thanks"));
    assert_eq!(delivered.delivery_id, retried.delivery_id);
    let header = |r: &DeliveryRecord, name: &str| {
        r.request_headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    };
    assert_eq!(header(delivered, "x-coderaft-signature").as_deref(), Some("****"));
    assert_eq!(header(delivered, "webhook-signature").as_deref(), Some("****"));
    assert_eq!(header(delivered, "x-coderaft-attempt").as_deref(), Some("2"));
    assert!(delivered.redeliverable(), "the event is kept for Redeliver");
    assert_eq!(delivered.event.as_ref().map(|e| e.tenant_id.as_str()), Some("t-history"));
    let raw: Vec<String> = stack
        .redis
        .connection()
        .await
        .lrange(format!("{{{PREFIX}}}:history:{}", ep.id), 0, -1)
        .await
        .expect("lrange");
    assert!(
        raw.iter().all(|r| !r.contains("s3cret") && !r.contains("sha256=")),
        "no secret or signature stored"
    );

    // A delivery that fails to the end: each attempt is recorded, the last as dead.
    receiver.set_default(Reply::status(400).body("bad request"));
    stack.producer.publish(&finding_event("t-dead")).await.expect("published");
    stack.wait_dead(1, Duration::from_secs(60)).await;
    // The dead-lettered attempt's entry is written in the dead-letter step itself: it is there
    // as soon as the dead letter is.
    let got = stack.queue.recent_deliveries(&ep.id, 10).await.expect("read");
    let dead = &got[0];
    assert_eq!((dead.result, dead.status), (AttemptResult::Dead, Some(400)));
    assert_eq!(dead.response_body.as_deref(), Some("bad request"));
    let attempts = got.iter().filter(|r| r.delivery_id == dead.delivery_id).count();
    assert_eq!(attempts, usize::try_from(dead.attempt).expect("small"), "one entry per attempt");
    assert_eq!(got.len(), attempts + 2);
    worker.stop().await;
}

/// A dead letter and its last attempt's history entry are one step, and so are a parked delivery
/// and the failed attempt that parked it: both written, or (the lease lost) neither. Before, the
/// entry was written by a second command after the step, which a worker killed in between lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_or_a_parked_delivery_and_its_history_entry_are_one_step() {
    use entraguard_core::job::Job;
    use entraguard_core::queue::{DeadLetterDraft, WorkerId};
    let stack = Stack::start().await;
    let ep = stack.add_endpoint("webhook", "http://127.0.0.1:9/hook", &["finding.new"], None).await;
    let worker = WorkerId::generate();
    let mut fetcher = stack.queue.fetcher(&worker, Duration::from_secs(1)).await.expect("fetcher");
    let entry = |job: &DeliveryJob, result: AttemptResult| {
        let mut r = record(job, 1, Timestamp::now());
        r.result = result;
        r.encode()
    };

    // Lease lost (the job is not on this worker's list): nothing is written, not even the entry.
    let lost = DeliveryJob::new(finding_event("t-lost"), ep.id.clone());
    let raw = Job::Delivery(lost.clone()).encode();
    stack.queue.push(std::slice::from_ref(&raw)).await.expect("push");
    let taken = fetcher.try_fetch().await.expect("fetch").expect("job");
    let mut conn = stack.redis.connection().await;
    let _: i64 =
        conn.lrem(crate::harness::keys().processing(worker.as_str()), 1, taken.bytes()).await.expect("lrem");
    let draft = DeadLetterDraft {
        id: lost.delivery_id.to_string(),
        reason: "gave up".into(),
        delivery: Some(lost.clone()),
    };
    let done = stack
        .queue
        .dead_letter_recorded(&taken, &draft, Some((&ep.id, &entry(&lost, AttemptResult::Dead))))
        .await
        .expect("script ran");
    assert!(!done);
    assert!(
        stack.queue.recent_deliveries(&ep.id, 10).await.expect("read").is_empty(),
        "no entry without its step"
    );

    // Taken: the dead letter and its entry together.
    let dead = DeliveryJob::new(finding_event("t-dead"), ep.id.clone());
    stack.queue.push(&[Job::Delivery(dead.clone()).encode()]).await.expect("push");
    let taken = fetcher.try_fetch().await.expect("fetch").expect("job");
    let draft = DeadLetterDraft {
        id: dead.delivery_id.to_string(),
        reason: "gave up".into(),
        delivery: Some(dead.clone()),
    };
    assert!(
        stack
            .queue
            .dead_letter_recorded(&taken, &draft, Some((&ep.id, &entry(&dead, AttemptResult::Dead))))
            .await
            .expect("dead")
    );
    let got = stack.queue.recent_deliveries(&ep.id, 10).await.expect("read");
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].result, got[0].delivery_id.as_str()),
        (AttemptResult::Dead, dead.delivery_id.as_str())
    );

    // Parked: the lane holds the delivery and the history its failed attempt.
    let parked = DeliveryJob::new(finding_event("t-park"), ep.id.clone());
    stack.queue.push(&[Job::Delivery(parked.clone()).encode()]).await.expect("push");
    let taken = fetcher.try_fetch().await.expect("fetch").expect("job");
    let e = entry(&parked, AttemptResult::Parked);
    assert!(
        stack
            .queue
            .park_job(
                &taken,
                &parked,
                Park { wake_in: Duration::from_secs(60), front: true, history: Some(&e), lane_max: 0 },
                0
            )
            .await
            .expect("park")
            .0
            == Parked::Parked
    );
    let got = stack.queue.recent_deliveries(&ep.id, 10).await.expect("read");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].result, AttemptResult::Parked);
    assert_eq!(stack.stats().await.parked, 1);
}
