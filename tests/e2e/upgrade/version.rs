//! The layout version in Redis (`{entraguard}:layout`, field `version`): recorded by the first
//! worker, and a worker that finds one it cannot read refuses to start, saying what to do.

use std::time::Duration;

use entraguard_core::layout_version::LAYOUT_VERSION;
use entraguard_testkit::wait_until;

use crate::harness::{Stack, finding_event, keys, refused_worker_binary};

/// A worker binary that must refuse to start: its stderr, once it exited with a failure.
async fn refused_worker(url: &str) -> String {
    let (code, stderr) = refused_worker_binary(url, &[], "reading a layout it does not know").await;
    assert_eq!(code, Some(1), "refused with exit status 1: {stderr}");
    stderr
}

async fn recorded_version(stack: &Stack) -> Option<String> {
    let mut conn = stack.queue.connection();
    redis::cmd("HGET").arg(keys().layout()).arg("version").query_async(&mut conn).await.expect("hget")
}

async fn set_version(stack: &Stack, v: &str) {
    let mut conn = stack.queue.connection();
    let _: () = redis::cmd("HSET")
        .arg(keys().layout())
        .arg("version")
        .arg(v)
        .query_async(&mut conn)
        .await
        .expect("hset");
}

/// A deployment that ran only releases before the field (the layout hash has `count`, no
/// `version`) gets this release's version from its first worker, which then serves.
#[tokio::test]
async fn the_first_worker_records_the_layout_version_and_serves() {
    let stack = Stack::start().await;
    // The producer records the shard count, as the previous release's did; no version yet.
    stack.producer.publish(&finding_event("t-version")).await.expect("publish");
    assert_eq!(recorded_version(&stack).await, None, "a producer records no version");
    let mut worker = stack.spawn_worker_process(&[]);
    wait_until(Duration::from_secs(30), "the worker records the layout version", || async {
        recorded_version(&stack).await.as_deref() == Some(LAYOUT_VERSION.to_string().as_str())
    })
    .await;
    // It serves: the event (no endpoint subscribed) is taken and acknowledged.
    stack.wait_drained(Duration::from_secs(30)).await;
    assert!(worker.try_wait().expect("wait").is_none(), "the worker keeps running");
}

/// A layout version this release cannot read, newer or older or not a number: the worker exits
/// with status 1 and a message that names the version, the key and what to do, and takes
/// nothing (the job it would have misread stays where it was).
#[tokio::test]
async fn a_worker_refuses_a_layout_it_cannot_read_and_takes_nothing() {
    let stack = Stack::start().await;
    stack.producer.publish(&finding_event("t-version")).await.expect("publish");
    for (version, wants) in [
        (
            "4",
            &[
                "queue layout version 4",
                "newer than this worker's 3",
                "Run workers of the newer release",
                "HSET",
            ][..],
        ),
        (
            "0",
            &["queue layout version 0", "no longer reads (it reads 1 to 3)", "Upgrade through a release"][..],
        ),
        ("two", &["queue layout version \"two\"", "no version number", "HSET"][..]),
    ] {
        set_version(&stack, version).await;
        let stderr = refused_worker(&stack.redis.url()).await;
        for want in wants.iter().chain(&["{entraguard}:layout"]) {
            assert!(stderr.contains(want), "version {version}: {want:?} in the message: {stderr}");
        }
        assert_eq!(recorded_version(&stack).await.as_deref(), Some(version), "the record is left alone");
        let s = stack.stats().await;
        assert_eq!((s.ready, s.processing), (1, 0), "version {version}: the job waits untaken: {s:?}");
    }
}

/// A deployment with no version recorded whose Redis is full (`maxmemory`, `noeviction`): the
/// first worker cannot record the version, and must start all the same: delivering is what frees
/// memory (stress run found it: a worker retried the record forever while its events waited).
#[tokio::test]
async fn a_full_redis_without_a_recorded_version_still_gets_a_worker() {
    let stack = Stack::start().await;
    let receiver = entraguard_testkit::HttpReceiver::start();
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let event = finding_event("t-full");
    stack.producer.publish(&event).await.expect("publish");
    assert_eq!(recorded_version(&stack).await, None);
    let mut conn = stack.queue.connection();
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(1).query_async(&mut conn).await.expect("full");
    let refused: Result<bool, redis::RedisError> =
        redis::cmd("HSETNX").arg(keys().layout()).arg("probe").arg("1").query_async(&mut conn).await;
    assert!(refused.is_err_and(|e| e.code() == Some("OOM")), "Redis refuses writes now");

    let worker = stack.spawn_worker(&[]);
    let got = receiver.wait_for_requests(1, Duration::from_secs(60)).await;
    assert_eq!(got[0].json()["id"], event.id.to_string());
    assert_eq!(recorded_version(&stack).await, None, "nothing recorded while full");
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0).query_async(&mut conn).await.expect("room");
    worker.stop().await;
}
