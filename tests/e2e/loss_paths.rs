//! The loss paths found by trying the promise as a hostile operator would (issue 11): a fetch
//! answer lost to a paused Redis, a late fetch after a graceful stop, a killed worker's jobs
//! coming back late, a full Redis, half-published batches and repeated publishes, unreadable
//! endpoints, oversized poison jobs. Each test reproduces the fault on a real redis-server.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use entraguard_core::crypto::Cipher;
use entraguard_core::job::{DeliveryJob, Job};
use entraguard_core::queue::{MAX_JOB_BYTES, WorkerId};
use entraguard_core::secret::Secret;
use entraguard_core::store::EndpointStore;
use entraguard_producer::{Event, Producer, ProducerConfig, PublishError};
use entraguard_testkit::{HttpReceiver, RedisServer, Reply, bin_path, wait_until};
use redis::AsyncCommands;

use crate::harness::{PREFIX, Stack, endpoint, finding_event, keys};

fn ready_key() -> String {
    format!("{{{PREFIX}}}:ready")
}

fn events(n: usize, tenant: &str) -> Vec<Event> {
    (0..n).map(|i| finding_event(&format!("{tenant}-{i}"))).collect()
}

/// Event ids received by one receiver, with how many times each came.
fn event_counts(receiver: &HttpReceiver) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in receiver.requests() {
        *m.entry(r.json()["id"].as_str().unwrap_or_default().to_owned()).or_insert(0) += 1;
    }
    m
}

/// Every processing list in Redis whose worker is not listed in the leases set: work no reaper
/// would ever look at.
async fn orphaned_processing_lists(redis: &RedisServer) -> Vec<String> {
    let mut conn = redis.connection().await;
    let lists: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{PREFIX}}}:processing:*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    let listed: Vec<String> = conn.zrange(format!("{{{PREFIX}}}:leases"), 0, -1).await.expect("leases");
    lists.into_iter().filter(|k| !listed.iter().any(|w| k.ends_with(&format!(":processing:{w}")))).collect()
}

/// Item 1: Redis frozen (SIGSTOP) longer than the fetch block plus the command timeout while
/// a worker drains a deep queue: the fetch answers it gave up on are moved jobs all the same.
/// The worker must notice them on its own processing list and hand them back, so every event
/// arrives and nothing stays in processing — without stopping the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_whose_fetch_answer_was_lost_to_a_paused_redis_are_handed_back() {
    const N: usize = 3_000;
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let mut worker = stack.spawn_worker_process(&[
        "--redis-timeout",
        "1s",
        "--fetch-block",
        "1s",
        "--lease",
        "3s",
        "--concurrency",
        "32",
    ]);
    let evs = events(N, "pause");
    for chunk in evs.chunks(500) {
        stack.producer.publish_batch(chunk).await.expect("published");
    }
    receiver.wait_for_requests(200, Duration::from_secs(60)).await;
    stack.redis.pause();
    tokio::time::sleep(Duration::from_secs(4)).await; // the fault itself: Redis frozen 4 s
    stack.redis.resume();

    let want: HashSet<String> = evs.iter().map(|e| e.id.to_string()).collect();
    wait_until(Duration::from_secs(120), "every event delivered after the pause", || async {
        event_counts(&receiver).len() >= N
    })
    .await;
    stack.wait_drained(Duration::from_secs(60)).await;
    assert_eq!(event_counts(&receiver).keys().cloned().collect::<HashSet<_>>(), want);
    assert!(worker.try_wait().expect("wait").is_none(), "the same worker, never restarted, did it");
    worker.kill().await.expect("stop");
}

/// Item 2: a fetch that Redis serves after the worker has released its jobs and gone (a
/// blocking fetch sent before SIGTERM; a command that waited in a paused Redis). The worker
/// stays listed after its release, so the reapers of the others hand that job back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_served_after_a_graceful_stop_is_still_handed_back() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    let ep = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    // The gone worker: registered, then released as at shutdown…
    let gone = WorkerId::generate();
    stack.queue.heartbeat(&gone, Duration::from_secs(1)).await.expect("heartbeat");
    assert_eq!(stack.queue.release(&gone).await.expect("release"), 0);
    // …and then Redis serves its late fetch.
    let job = Job::Delivery(DeliveryJob::new(finding_event("late-fetch"), ep.id.clone())).encode();
    let mut conn = stack.redis.connection().await;
    let _: () = conn.rpush(stack.queue.keys().processing(gone.as_str()), &job).await.expect("late fetch");
    assert!(orphaned_processing_lists(&stack.redis).await.is_empty(), "every processing list has a reaper");

    let worker = stack.spawn_worker(&[]);
    receiver.wait_for_requests(1, Duration::from_secs(30)).await;
    stack.wait_drained(Duration::from_secs(30)).await;
    worker.stop().await;
}

/// Item 2 under load: worker processes stopped with SIGTERM again and again while events
/// trickle in. Nothing is lost and no processing list is left without a reaper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_sigterms_under_a_trickle_orphan_nothing() {
    const ROUNDS: usize = 12;
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let producer = stack.producer.clone();
    let trickle = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..(ROUNDS * 40) {
            let e = finding_event(&format!("trickle-{i}"));
            producer.publish(&e).await.expect("published");
            ids.push(e.id.to_string());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        ids
    });
    let _ = bin_path("entraguard-worker");
    let mut stopped = 0;
    let mut own = Vec::new();
    while !trickle.is_finished() && stopped < ROUNDS {
        let mut w = stack.spawn_worker_process(&["--fetch-block", "200ms"]);
        let before = receiver.requests().len();
        wait_until(Duration::from_secs(60), "the worker delivers", || async {
            receiver.requests().len() > before || trickle.is_finished()
        })
        .await;
        if receiver.requests().len() == before {
            // The trickle ended while this worker was starting: a SIGTERM now could arrive
            // before its handler is installed (the process then dies of the signal; `./dev
            // stress` caught it, issue 23). A delivery of its own says it is up.
            let e = finding_event(&format!("last-{stopped}"));
            stack.producer.publish(&e).await.expect("published");
            own.push(e.id.to_string());
            wait_until(Duration::from_secs(60), "the worker delivers", || async {
                receiver.requests().len() > before
            })
            .await;
        }
        let pid = w.id().expect("running").to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
        let exit =
            tokio::time::timeout(Duration::from_secs(30), w.wait()).await.expect("exits").expect("wait");
        assert!(exit.success(), "{exit}");
        stopped += 1;
    }
    let mut ids = trickle.await.expect("trickle");
    ids.extend(own);
    assert!(orphaned_processing_lists(&stack.redis).await.is_empty(), "a processing list without a reaper");
    let rest = stack.spawn_worker(&[]);
    wait_until(Duration::from_secs(120), "every trickled event delivered", || async {
        let got = event_counts(&receiver);
        ids.iter().all(|id| got.contains_key(id))
    })
    .await;
    stack.wait_drained(Duration::from_secs(30)).await;
    println!("figure: sigterm_rounds={stopped} events={} orphaned=0 lost=0", ids.len());
    rest.stop().await;
}

/// Item 4: a SIGKILLed worker's jobs are back within `NOTIFY_LEASE` (plus a second of slack
/// for a busy machine), not a lease plus a reaper period later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_jobs_are_back_within_the_lease() {
    const LEASE: Duration = Duration::from_secs(4);
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    // The first attempt hangs until its worker is killed; the second is answered at once.
    receiver.push_replies([Reply::status(200).delay(Duration::from_secs(60))]);
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let args = ["--lease", "4s", "--delivery-timeout", "90s"];
    let mut doomed = stack.spawn_worker_process(&args);
    stack.producer.publish(&finding_event("killed")).await.expect("published");
    receiver.wait_for_requests(1, Duration::from_secs(30)).await;
    let survivor = stack.spawn_worker(&args);
    wait_until(Duration::from_secs(30), "two workers listed", || async { stack.stats().await.workers == 2 })
        .await;
    let killed_at = Instant::now();
    doomed.kill().await.expect("SIGKILL");
    let got = receiver.wait_for_requests(2, Duration::from_secs(60)).await;
    assert_eq!(got[0].header("x-coderaft-delivery"), got[1].header("x-coderaft-delivery"));
    let back_after = got[1].received_at.duration_since(killed_at);
    println!("figure: killed worker's job delivered again {back_after:?} after the kill (lease {LEASE:?})");
    assert!(back_after <= LEASE + Duration::from_secs(1), "back after {back_after:?}, lease {LEASE:?}");
    survivor.stop().await;
}

/// Item 5: Redis at its maxmemory with `noeviction`. Publishes are refused with an error that
/// says so, and nothing of a refused batch is enqueued (item 6); the worker keeps delivering,
/// which frees memory; afterwards publishes work again and nothing is stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_refuses_publishes_whole_while_workers_drain_it() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let mut conn = stack.redis.connection().await;
    let used = stack.redis.info_used_memory().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used + 3 * 1024 * 1024)
        .query_async(&mut conn)
        .await
        .expect("CONFIG SET maxmemory");

    // Fill it.
    let mut accepted = Vec::new();
    let mut i = 0;
    let full = loop {
        let batch = events(200, &format!("fill-{i}"));
        i += 1;
        match stack.producer.publish_batch(&batch).await {
            Ok(ids) => accepted.extend(ids.into_iter().map(|id| id.to_string())),
            Err(e) => break e,
        }
        assert!(i < 1_000, "3 MB never filled up");
    };
    assert!(matches!(full, PublishError::RedisFull), "{full:?}");
    assert!(full.to_string().contains("Redis is full"), "{full}");
    let ready: usize = conn.llen(ready_key()).await.expect("llen");
    assert_eq!(ready, accepted.len(), "a refused batch left part of itself behind");

    // A batch of 5 000 is refused whole.
    let big = events(5_000, "refused-whole");
    assert!(stack.producer.publish_batch(&big).await.is_err());
    let ready_after: usize = conn.llen(ready_key()).await.expect("llen");
    assert_eq!(ready_after, ready, "none of a refused batch is enqueued");

    // A worker started now drains what was accepted, although Redis is full.
    let worker = stack.spawn_worker(&["--concurrency", "16"]);
    wait_until(Duration::from_secs(120), "every accepted event delivered", || async {
        let got = event_counts(&receiver);
        accepted.iter().all(|id| got.contains_key(id))
    })
    .await;
    stack.wait_drained(Duration::from_secs(30)).await;
    stack.producer.publish(&finding_event("after-full")).await.expect("publishes work again");
    receiver.wait_for_requests(accepted.len() + 1, Duration::from_secs(30)).await;
    stack.wait_drained(Duration::from_secs(30)).await;
    println!("figure: full_redis accepted={} delivered_while_full=all stuck=0", accepted.len());
    worker.stop().await;
}

/// Item 6: publishing an event id again — a retry after a timeout, a batch sent twice, the CLI
/// run twice on one file — is acknowledged without a second job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_an_event_id_again_is_acknowledged_without_a_second_job() {
    let stack = Stack::start().await;
    let mut conn = stack.redis.connection().await;
    let one = finding_event("again");
    let first = stack.producer.publish(&one).await.expect("published");
    let second = stack.producer.publish(&one).await.expect("acknowledged again");
    assert_eq!(first, second);
    let batch = events(50, "batch-again");
    stack.producer.publish_batch(&batch).await.expect("batch");
    let report = stack.producer.publish_batch_report(&batch).await.expect("batch again");
    assert!(report.iter().all(|(_, p)| *p == entraguard_producer::Published::Duplicate));
    let ready: usize = conn.llen(ready_key()).await.expect("llen");
    assert_eq!(ready, 51, "one job per event id");

    // The CLI, twice on one file with ids.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("events.json");
    let with_ids: Vec<serde_json::Value> =
        events(20, "cli-again").iter().map(|e| serde_json::to_value(e).expect("json")).collect();
    std::fs::write(&file, serde_json::to_vec(&with_ids).expect("json")).expect("write");
    for _ in 0..2 {
        let out = tokio::process::Command::new(bin_path("entraguard-notify"))
            .args(["--redis-url", &stack.redis.url(), "publish"])
            .arg(&file)
            .output()
            .await
            .expect("cli runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 20, "every id printed each time");
    }
    let ready: usize = conn.llen(ready_key()).await.expect("llen");
    assert_eq!(ready, 71);

    // A short window forgets: the same id is a new publish after it.
    let mut cfg = ProducerConfig::from_url(&stack.redis.url()).expect("url");
    cfg.dedupe_window = Duration::from_millis(200);
    let short = Producer::connect(&cfg).await.expect("connects");
    let e = finding_event("window");
    short.publish(&e).await.expect("published");
    tokio::time::sleep(Duration::from_millis(300)).await; // the window passing is the subject
    short.publish(&e).await.expect("published again after the window");
    let ready: usize = conn.llen(ready_key()).await.expect("llen");
    assert_eq!(ready, 73);
}

/// Item 7: an endpoint record the worker cannot read (corrupt JSON) with as many deliveries
/// waiting for it as the worker has slots. They fail like any attempt — retried, then dead-
/// lettered with the reason — and never hold a slot: a fresh event for a good endpoint goes
/// through at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_endpoint_fails_its_deliveries_and_holds_no_slot() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let mut conn = stack.redis.connection().await;
    let bad = entraguard_core::ids::EndpointId::generate();
    let _: () = conn
        .hset(stack.queue.keys().endpoints(), bad.as_str(), r#"{"not":"an endpoint"}"#)
        .await
        .expect("corrupt record");
    for i in 0..4 {
        let job = Job::Delivery(DeliveryJob::new(finding_event(&format!("stuck-{i}")), bad.clone())).encode();
        let _: () = conn.rpush(ready_key(), job).await.expect("push");
    }
    let worker = stack.spawn_worker(&["--concurrency", "4"]);
    // The corrupt record also receives this event (it cannot say what it subscribes to), and
    // that delivery fails the same way.
    stack.producer.publish(&finding_event("fresh")).await.expect("published");
    receiver.wait_for_requests(1, Duration::from_secs(10)).await;
    stack.wait_dead(5, Duration::from_secs(30)).await;
    let dead = stack.queue.dead_letters(0, 10).await.expect("list");
    assert_eq!(dead.len(), 5);
    for d in &dead {
        assert!(d.reason.contains(&format!("endpoint {bad} in Redis is unreadable")), "{}", d.reason);
        assert_eq!(d.attempts.len(), 4, "retried on the schedule first");
    }
    worker.stop().await;
}

/// Item 8: an endpoint sealed with a key this worker lacks is not skipped at fan-out: its
/// delivery fails with the reason and ends in the dead-letter queue, where it can be replayed
/// once the worker has the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_sealed_with_another_key_dead_letters_instead_of_being_skipped() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    let other = Secret::new(B64.encode([9u8; 32]));
    let ours = Secret::new(B64.encode([3u8; 32]));
    let sealed = EndpointStore::new(stack.queue.connection(), keys())
        .with_cipher(Some(std::sync::Arc::new(Cipher::new(&other, &[]).expect("key"))));
    let ep = endpoint("webhook", &receiver.url(), &["finding.new"], Some("a-signing-secret-123"));
    sealed.put(&ep).await.expect("stored");
    let worker = stack.spawn_worker(&["--encryption-key", ours.expose()]);
    stack.producer.publish(&finding_event("sealed-elsewhere")).await.expect("published");
    stack.wait_dead(1, Duration::from_secs(30)).await;
    let dead = stack.queue.dead_letters(0, 1).await.expect("list");
    assert_eq!(dead[0].endpoint_id.as_deref(), Some(ep.id.as_str()));
    assert!(dead[0].reason.contains("encrypted with key"), "{}", dead[0].reason);
    assert!(receiver.requests().is_empty());
    worker.stop().await;
}

/// Item 10: a 50 MB string pushed onto the ready list is dead-lettered without the worker
/// keeping it: the dead letter holds a bounded prefix, and the worker's memory comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_poison_job_is_dead_lettered_with_a_prefix_and_the_worker_stays_small() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let mut worker = stack.spawn_worker_process(&["--concurrency", "8"]);
    let pid = worker.id().expect("running");
    stack.producer.publish(&finding_event("before")).await.expect("published");
    receiver.wait_for_requests(1, Duration::from_secs(30)).await;
    // 50 MB take a while to write: no response timeout on this connection.
    let mut conn = stack
        .redis
        .client()
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new().set_response_timeout(None),
        )
        .await
        .expect("connection");
    let huge = vec![b'x'; 50 * 1024 * 1024];
    // One taken by the idle worker's blocking fetch…
    let _: () = conn.rpush(ready_key(), &huge).await.expect("push huge");
    stack.wait_dead(1, Duration::from_secs(60)).await;
    // …and one by a batch fetch, behind ordinary events.
    let mut batch: Vec<Vec<u8>> = events(20, "behind")
        .into_iter()
        .map(|event| Job::Event(entraguard_core::job::EventJob::new(event)).encode().into_bytes())
        .collect();
    batch.push(huge);
    let _: () = conn.rpush(ready_key(), &batch).await.expect("push batch");
    drop(batch);
    stack.wait_dead(2, Duration::from_secs(60)).await;
    receiver.wait_for_requests(21, Duration::from_secs(30)).await;
    stack.wait_drained(Duration::from_secs(30)).await;
    let dead = stack.queue.dead_letters(0, 10).await.expect("list");
    assert_eq!(dead.len(), 2);
    for d in &dead {
        assert!(d.job.len() <= 16 * 1024, "the dead letter keeps {} bytes", d.job.len());
        assert!(d.reason.contains(&format!("over the {MAX_JOB_BYTES}-byte limit")), "{}", d.reason);
    }
    let rss_mb = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        .map(|kb| kb / 1024)
        .expect("worker RSS");
    println!("figure: worker RSS after two 50 MB poison jobs: {rss_mb} MiB");
    assert!(rss_mb < 64, "the worker holds {rss_mb} MiB after dead-lettering");
    worker.kill().await.expect("stop");
}
