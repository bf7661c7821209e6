//! Event bodies stored once (issue 22): a delivery that waits in its endpoint's lane or lies in
//! the dead-letter queue keeps `"event":{"$ref":"<body id>"}`, and the event's JSON is kept once
//! in `{p}:bodies`, however many deliveries of it wait or died. Released and replayed deliveries
//! get their body back byte for byte; the last reference to go takes the body with it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use entraguard_core::job::{DELIVERY_REF_START, DeliveryJob, Job};
use entraguard_core::queue::{DeadLetterDraft, Queue, ReplayOutcome, WorkerId};
use entraguard_producer::Event;
use entraguard_testkit::{HttpReceiver, Reply, wait_until};
use redis::AsyncCommands;

use crate::harness::{Stack, finding_event, keys};

/// How many bodies are kept, and how many references they have in all.
async fn bodies(conn: &mut redis::aio::MultiplexedConnection) -> (usize, i64) {
    let k = keys();
    let n: usize = conn.hlen(k.bodies()).await.expect("hlen");
    let refs: HashMap<String, i64> = conn.hgetall(k.body_refs()).await.expect("hgetall");
    (n, refs.values().sum())
}

/// Three endpoints hang (one delivery each in flight, the rest wait in their lanes) and a fourth
/// is healthy. Each event's body is kept once for its three waiting deliveries, and a waiting
/// delivery is a small reference. Once the receivers answer, every endpoint gets every event
/// once with the event as published, and no body is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_waiting_for_three_endpoints_is_stored_once_and_comes_back_whole() {
    const N: usize = 60;
    let stack = Stack::start().await;
    let hanging: Vec<HttpReceiver> = (0..3)
        .map(|_| HttpReceiver::with_default(Reply::status(200).delay(Duration::from_secs(30))))
        .collect();
    let healthy = HttpReceiver::start();
    let mut eps = Vec::new();
    for r in &hanging {
        eps.push(stack.add_endpoint("webhook", &r.url(), &["finding.new"], None).await);
    }
    stack.add_endpoint("webhook", &healthy.url(), &["finding.new"], None).await;
    let worker = stack.spawn_worker(&[
        "--endpoint-concurrency",
        "1",
        "--delivery-timeout",
        "2s",
        "--retry-schedule",
        "100ms",
    ]);
    let evs: Vec<Event> = (0..N).map(|i| finding_event(&format!("body-{i}"))).collect();
    stack.producer.publish_batch(&evs).await.expect("published");
    healthy.wait_for_requests(N, Duration::from_secs(60)).await;
    let k = keys();
    let mut conn = stack.redis.connection().await;
    wait_until(Duration::from_secs(60), "all but one delivery per hanging endpoint waiting", || async {
        stack.stats().await.parked >= 3 * (N as u64 - 1)
    })
    .await;

    let (kept, refs) = bodies(&mut conn).await;
    let parked = stack.stats().await.parked;
    println!("figure: {parked} waiting deliveries of {N} events keep {kept} bodies");
    assert_eq!(refs as u64, parked, "one reference per waiting delivery");
    assert!(kept <= N, "{kept} bodies for {N} events: each kept once");
    assert!(kept >= N - 3, "{kept} bodies: only events with no waiting delivery have none");
    for ep in &eps {
        let lane: Vec<String> = conn.lrange(k.lane(ep.id.as_str()), 0, -1).await.expect("lrange");
        assert!(lane.len() >= N - 1);
        for job in &lane {
            assert!(job.starts_with(DELIVERY_REF_START), "a reference: {job}");
            assert!(!job.contains("tenant_id"), "no event in a waiting delivery: {job}");
        }
    }
    let lanes: u64 = {
        let mut sum = 0;
        for ep in &eps {
            sum += stack.redis.memory_usage(&k.lane(ep.id.as_str())).await;
        }
        sum
    };
    let stored = stack.redis.memory_usage(&k.bodies()).await + stack.redis.memory_usage(&k.body_refs()).await;
    let copy = Job::Delivery(DeliveryJob::new(evs[0].clone(), eps[0].id.clone())).encode().len() as u64;
    println!(
        "figure: {} B per waiting delivery ({} B lane entry + {} B its share of the bodies), a full copy {copy} B",
        (lanes + stored) / parked,
        lanes / parked,
        stored / parked
    );

    for r in &hanging {
        r.set_default(Reply::status(200));
    }
    stack.wait_drained(Duration::from_secs(120)).await;
    let published: HashMap<String, serde_json::Value> =
        evs.iter().map(|e| (e.id.to_string(), serde_json::to_value(e).expect("json"))).collect();
    for r in &hanging {
        let mut seen = HashSet::new();
        for req in r.requests().iter().filter(|q| q.json()["event"] == "finding.new") {
            let body = req.json();
            let id = body["id"].as_str().expect("an event id").to_owned();
            let sent = &published[&id];
            assert_eq!(body["tenant_id"], sent["tenant_id"], "the event as published");
            assert_eq!(body["finding"], sent["finding"], "the event as published");
            seen.insert(id);
        }
        assert_eq!(seen.len(), N, "every event reached every endpoint");
    }
    assert_eq!(bodies(&mut conn).await, (0, 0), "the last release took each body with it");
    worker.stop().await;
}

/// Dead-letters `job` the way a worker does, as its delivery `d`.
async fn kill(queue: &Queue, d: &DeliveryJob) {
    let worker = WorkerId::generate();
    let raw = Job::Delivery(d.clone()).encode();
    queue.push(std::slice::from_ref(&raw)).await.expect("push");
    let mut fetcher = queue.fetcher(&worker, Duration::from_millis(100)).await.expect("fetcher");
    let taken = fetcher.try_fetch().await.expect("fetch").expect("a ready job");
    assert_eq!(taken.bytes(), raw.as_bytes());
    let draft = DeadLetterDraft {
        id: d.delivery_id.to_string(),
        reason: "HTTP 503".into(),
        delivery: Some(d.clone()),
    };
    assert!(queue.dead_letter(&taken, &draft).await.expect("dead letter"));
}

/// Two endpoints' deliveries of one event die: one body, two references, and no copy of the job
/// in either entry. `dlq show` gives the job as it died, the event in it; a replay re-enqueues
/// the full job; a delivery that dies again keeps one reference; a purge drops the last one and
/// the body with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_share_one_body_through_show_replay_and_purge() {
    let stack = Stack::start().await;
    let q = &stack.queue;
    let mut conn = stack.redis.connection().await;
    let k = keys();
    let event = finding_event("dead-body");
    let a = DeliveryJob::new(event.clone(), "ep_01JAAAAAAAAAAAAAAAAAAAAAAA".parse().expect("id"));
    let b = DeliveryJob::new(event.clone(), "ep_01JBBBBBBBBBBBBBBBBBBBBBBB".parse().expect("id"));
    kill(q, &a).await;
    kill(q, &b).await;
    assert_eq!(bodies(&mut conn).await, (1, 2), "one body, two references");
    // The entry keeps no copy of the job, only the body's id.
    let entry: HashMap<String, String> =
        conn.hgetall(k.dlq_entry(a.delivery_id.as_str())).await.expect("hgetall");
    assert!(!entry.contains_key("job") && !entry.contains_key("replay_job"), "{entry:?}");
    assert!(entry.values().all(|v| !v.contains("tenant_id")), "no event in the entry: {entry:?}");
    assert_eq!(entry.get("body"), Some(&a.stored().body_id));

    let shown = q.dead_letter_by_id(a.delivery_id.as_str()).await.expect("read").expect("there");
    assert_eq!(shown.job, Job::Delivery(a.clone()).encode(), "shown as it died, the event in it");
    assert_eq!(bodies(&mut conn).await, (1, 2), "reading changes nothing");

    // A replay puts the full job back; the same delivery dying again holds one reference.
    assert_eq!(q.replay(a.delivery_id.as_str()).await.expect("replay"), ReplayOutcome::Replayed);
    assert_eq!(bodies(&mut conn).await, (1, 1));
    let ready: Vec<String> = conn.lrange(k.retry(), 0, -1).await.expect("lrange");
    let ready: Vec<String> =
        if ready.is_empty() { conn.lrange(k.ready(), 0, -1).await.expect("lrange") } else { ready };
    assert_eq!(ready, vec![Job::Delivery(a.for_replay()).encode()], "the replay job, byte for byte");
    let _: () = conn.del(&[k.ready(), k.retry()]).await.expect("del");
    kill(q, &a.for_replay()).await;
    kill(q, &a.for_replay()).await; // a duplicate (at least once) dies too: the entry is written over
    assert_eq!(bodies(&mut conn).await, (1, 2), "one reference per entry");

    assert!(q.purge(a.delivery_id.as_str()).await.expect("purge"));
    assert_eq!(bodies(&mut conn).await, (1, 1));
    assert_eq!(q.purge_all().await.expect("purge"), 1);
    assert_eq!(bodies(&mut conn).await, (0, 0), "the last purge took the body with it");
}

/// A waiting delivery whose body was deleted by hand is not lost silently and does not crash
/// the worker: it is dead-lettered with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_delivery_whose_body_is_gone_is_dead_lettered_with_the_reason() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    let ep = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let d = DeliveryJob::new(finding_event("gone"), ep.id.clone());
    let stored = d.stored();
    let mut conn = stack.redis.connection().await;
    let k = keys();
    // As a park leaves it, minus the body.
    let _: () = conn.rpush(k.lane(ep.id.as_str()), &stored.job).await.expect("rpush");
    let _: () = conn.zadd(k.lanes(), ep.id.as_str(), 0).await.expect("zadd");
    let worker = stack.spawn_worker(&[]);
    stack.wait_dead(1, Duration::from_secs(30)).await;
    let letters = stack.queue.dead_letter_summaries(0, 1).await.expect("read");
    assert!(letters[0].reason.contains("event body is gone"), "{:?}", letters[0].reason);
    assert!(receiver.requests().is_empty(), "nothing was sent");
    worker.stop().await;
}

/// The by-hand replay that docs/redis-layout.md gives (`redis-cli EVAL …`), run as written
/// against a real dead letter: the delivery is re-enqueued byte for byte as `dlq replay` would,
/// and the body goes with the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_redis_cli_replay_delivers_the_dead_letter() {
    let stack = Stack::start().await;
    let mut conn = stack.redis.connection().await;
    let k = keys();
    let mut d =
        DeliveryJob::new(finding_event("by-hand"), "ep_01JAAAAAAAAAAAAAAAAAAAAAAA".parse().expect("id"));
    d.replays = 2;
    kill(&stack.queue, &d).await;
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/redis-layout.md"))
        .expect("the doc");
    let start = doc.find("redis-cli EVAL").expect("the recipe");
    let recipe = &doc[start..start + doc[start..].find("\n```").expect("its block's end")];
    let command = recipe
        .replacen("redis-cli", &format!("redis-cli -p {}", stack.redis.port()), 1)
        .replace("dlv_01J…", d.delivery_id.as_str());
    let out = std::process::Command::new("bash").arg("-c").arg(&command).output().expect("bash runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{}", String::from_utf8_lossy(&out.stderr));
    let ready: Vec<String> = conn.lrange(k.ready(), 0, -1).await.expect("lrange");
    assert_eq!(ready, vec![Job::Delivery(d.for_replay()).encode()], "what `dlq replay` enqueues");
    assert_eq!(bodies(&mut conn).await, (0, 0));
    assert_eq!(stack.stats().await.dead, 0);
}

/// During a rolling upgrade a worker of the release before bodies were kept once takes a
/// waiting delivery out of a lane (`delivery_ref.v1`, which it cannot read) and dead-letters it
/// as it came, as a poison job. Nothing is lost: `dlq show` gives the full job, a replay
/// re-enqueues it with its body, and the body goes with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_an_older_worker_dead_lettered_replays_whole() {
    let stack = Stack::start().await;
    let mut conn = stack.redis.connection().await;
    let k = keys();
    let d =
        DeliveryJob::new(finding_event("old-worker"), "ep_01JAAAAAAAAAAAAAAAAAAAAAAA".parse().expect("id"));
    let stored = d.stored();
    // What park.lua wrote, then what the older worker's poison path wrote (the raw job only).
    let _: () = conn.hset(k.bodies(), &stored.body_id, &stored.body).await.expect("hset");
    let _: () = conn.hset(k.body_refs(), &stored.body_id, 1).await.expect("hset");
    let worker = WorkerId::generate();
    stack.queue.push(std::slice::from_ref(&stored.job)).await.expect("push");
    let mut fetcher = stack.queue.fetcher(&worker, Duration::from_millis(100)).await.expect("fetcher");
    let taken = fetcher.try_fetch().await.expect("fetch").expect("the job");
    let draft =
        DeadLetterDraft { id: "job_01JOLDWORKER".into(), reason: "undecodable job".into(), delivery: None };
    assert!(stack.queue.dead_letter(&taken, &draft).await.expect("dead letter"));

    let shown = stack.queue.dead_letter_by_id("job_01JOLDWORKER").await.expect("read").expect("there");
    assert_eq!(shown.job, Job::Delivery(d.clone()).encode(), "shown whole");
    assert!(shown.replayable);
    assert_eq!(stack.queue.replay("job_01JOLDWORKER").await.expect("replay"), ReplayOutcome::Replayed);
    let ready: Vec<String> = conn.lrange(k.ready(), 0, -1).await.expect("lrange");
    assert_eq!(ready, vec![Job::Delivery(d).encode()], "the full job, byte for byte");
    assert_eq!(bodies(&mut conn).await, (0, 0));
}
