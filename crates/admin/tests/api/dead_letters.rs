//! Dead letters: list, show, replay, purge, filters, bounded reads.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_list_show_replay_by_endpoint_and_purge() {
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let api = Api { http: reqwest::Client::new(), base: admin.base.clone() };
    use reqwest::Method as M;

    assert_eq!(api.call(M::GET, "/api/dlq", None).await.1, json!([]));
    // Dead letters made through the real queue path: push, take, dead-letter.
    let worker = WorkerId::generate();
    let mut fetcher = admin.queue.fetcher(&worker, Duration::from_secs(1)).await.expect("fetcher");
    let event = entraguard_worker::delivery::test_event();
    for endpoint in ["ep_01AAAA", "ep_01AAAA", "ep_01BBBB"] {
        let job = DeliveryJob::new(event.clone(), endpoint.parse().expect("id"));
        let raw = Job::Delivery(job.clone()).encode();
        admin.queue.push(std::slice::from_ref(&raw)).await.expect("push");
        let taken = fetcher.try_fetch().await.expect("fetch").expect("job");
        let draft = DeadLetterDraft {
            id: job.delivery_id.to_string(),
            reason: "gave up after 4 attempts: HTTP 500".into(),
            delivery: Some(job),
        };
        assert!(admin.queue.dead_letter(&taken, &draft).await.expect("dead"));
    }
    let (_, list) = api.call(M::GET, "/api/dlq?limit=10", None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(3));
    let first = list[0]["id"].as_str().expect("id").to_owned();
    let (status, one) = api.call(M::GET, &format!("/api/dlq/{first}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(one["reason"], "gave up after 4 attempts: HTTP 500");
    assert_eq!(api.call(M::GET, "/api/dlq/dlv_nope", None).await.0, 404);

    let (_, r) = api
        .call(
            M::POST,
            "/api/dlq/replay",
            Some(json!({"endpoint_id": "ep_01AAAA", "since": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(r["replayed"], 2, "{r}");
    // Replays wait behind first attempts: the first to the empty ready list, the rest to retry.
    let stats = api.call(M::GET, "/api/stats", None).await.1;
    assert_eq!(stats["ready"].as_u64().unwrap_or(0) + stats["retrying"].as_u64().unwrap_or(0), 2, "{stats}");
    let (status, r) = api.call(M::POST, "/api/dlq/replay", Some(json!({"since": "yesterday"}))).await;
    assert_eq!((status, r["field"].clone()), (422, json!("since")));
    let (_, rest) = api.call(M::GET, "/api/dlq", None).await;
    let last = rest[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(api.call(M::DELETE, &format!("/api/dlq/{last}"), None).await.0, 204);
    assert_eq!(api.call(M::GET, "/api/stats", None).await.1["dead"], 0);
}

/// Replay-all while a worker sends each replayed delivery straight back to the dead-letter queue
/// (its endpoint answers 500 and there are no retries): every entry is replayed once per call,
/// not again each time it reappears at the head of the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_all_replays_each_dead_letter_once_while_replays_fail_again() {
    use entraguard_core::queue::QueueStats;
    use entraguard_testkit::wait_until;
    use reqwest::Method as M;

    const N: usize = 30;
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let api = Api { http: reqwest::Client::new(), base: admin.base.clone() };
    let receiver = HttpReceiver::with_default(Reply::status(500).body("down"));
    let (status, ep) = api
        .call(
            M::POST,
            "/api/endpoints",
            Some(json!({
                "name": "Failing", "channel": "webhook", "target": receiver.url(), "events": ["finding.new"]
            })),
        )
        .await;
    assert_eq!(status, 201, "{ep}");
    let endpoint = ep["id"].as_str().expect("id").parse().expect("endpoint id");

    let config = entraguard_worker::WorkerConfig::from_args([
        "entraguard-worker",
        "--redis-url",
        &redis.url(),
        "--retry-schedule",
        "none",
        // Every failure dead-letters here: the circuit breaker (which would park them) is kept
        // out of it.
        "--breaker-failures",
        "10000",
        "--allow-http=true",
        "--allow-private-targets",
        "127.0.0.1/32",
        "--fetch-block",
        "1s",
        "--delivery-timeout",
        "2s",
    ])
    .expect("worker config");
    let (stop_worker, shutdown) = entraguard_worker::Shutdown::new();
    let worker = tokio::spawn(entraguard_worker::run(config, shutdown));

    let event = entraguard_worker::delivery::test_event();
    let jobs: Vec<String> = (0..N)
        .map(|_| Job::Delivery(DeliveryJob::new(event.clone(), Clone::clone(&endpoint))).encode())
        .collect();
    admin.queue.push(&jobs).await.expect("push");
    let settled = |dead: u64| {
        let queue = admin.queue.clone();
        move || {
            let queue = queue.clone();
            async move {
                queue.stats().await.is_ok_and(|s: QueueStats| {
                    s.dead == dead && s.ready == 0 && s.processing == 0 && s.scheduled == 0
                })
            }
        }
    };
    wait_until(Duration::from_secs(20), "30 deliveries dead-lettered", settled(N as u64)).await;
    assert_eq!(receiver.requests().len(), N);

    let (status, r) = api.call(M::POST, "/api/dlq/replay", Some(json!({}))).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["replayed"], N, "each dead letter replayed once: {r}");
    wait_until(Duration::from_secs(20), "the replays dead-lettered again", settled(N as u64)).await;
    assert_eq!(receiver.requests().len(), 2 * N, "one more delivery attempt per dead letter");
    let (_, list) = api.call(M::GET, "/api/dlq?limit=100", None).await;
    let ids: Vec<String> =
        list.as_array().expect("array").iter().filter_map(|d| d["id"].as_str().map(str::to_owned)).collect();
    assert_eq!(ids.len(), N);
    for id in ids {
        let (_, d) = api.call(M::GET, &format!("/api/dlq/{id}"), None).await;
        let job: Value = serde_json::from_str(d["job"].as_str().expect("job")).expect("job JSON");
        assert_eq!(job["replays"], 1, "{id} replayed once");
    }
    stop_worker.trigger();
    worker.await.expect("worker task").expect("worker ran");
}

/// A poison job of 50 MB was dead-lettered whole (before workers kept only a prefix): the list
/// answers bounded summaries without the job, and one entry's job is cut to 64 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_dead_letter_is_listed_and_shown_bounded() {
    const HUGE: usize = 50 * 1024 * 1024;
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let api = Api { http: reqwest::Client::new(), base: admin.base.clone() };
    let id = "job_01JHUGEHUGEHUGEHUGEHUGEHU";
    let attempts = json!([
        {"attempt": 1, "at": "2025-06-01T00:00:00Z", "duration_ms": 3, "status": 500, "error": "first"},
        {"attempt": 2, "at": "2025-06-01T00:00:10Z", "duration_ms": 4, "status": 503, "error": "e".repeat(20_000)},
    ]);
    let mut conn = redis.connection().await;
    // Writing 50 MB takes longer than the default 500 ms on a busy machine.
    conn.set_response_timeout(Duration::from_secs(30));
    redis::cmd("HSET")
        .arg(format!("{{entraguard}}:dlq:{id}"))
        .arg(&[
            ("id", id.to_owned()),
            ("reason", format!("undecodable job: {}", "r".repeat(20_000))),
            ("failed_at", "2025-06-01T00:00:11Z".to_owned()),
            ("attempts", attempts.to_string()),
            ("job", "x".repeat(HUGE)),
        ])
        .exec_async(&mut conn)
        .await
        .expect("hset");
    redis::cmd("LPUSH").arg("{entraguard}:dlq").arg(id).exec_async(&mut conn).await.expect("lpush");

    let (status, text) = api.get_text("/api/dlq").await;
    assert_eq!(status, 200);
    assert!(text.len() < 64 * 1024, "GET /api/dlq answered {} bytes", text.len());
    let list: Value = serde_json::from_str(&text).expect("json");
    let d = &list[0];
    assert_eq!(d["id"], id);
    assert!(d.get("job").is_none(), "no job in a summary");
    assert!(d["reason"].as_str().is_some_and(|r| r.starts_with("undecodable job: rrr") && r.len() <= 1024));
    assert_eq!((d["attempt_count"].clone(), d["last_status"].clone()), (json!(2), json!(503)));
    assert!(d["last_error"].as_str().is_some_and(|e| e.starts_with("eee") && e.len() <= 1024));
    assert_eq!(d["replayable"], false);

    let (status, text) = api.get_text(&format!("/api/dlq/{id}")).await;
    assert_eq!(status, 200);
    assert!(text.len() < 200 * 1024, "GET /api/dlq/{{id}} answered {} bytes", text.len());
    let one: Value = serde_json::from_str(&text).expect("json");
    assert_eq!((one["job_truncated"].clone(), one["job_bytes"].clone()), (json!(true), json!(HUGE)));
    assert!(one["job"].as_str().is_some_and(|j| j.len() == 64 * 1024 && j.bytes().all(|b| b == b'x')));
    assert_eq!(one["attempts"].as_array().map(Vec::len), Some(2));
}

/// `GET /api/dlq` narrows by endpoint and time like `dlq list --endpoint --since`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_list_filters_by_endpoint_and_since() {
    use reqwest::Method as M;
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let api = Api { http: reqwest::Client::new(), base: admin.base.clone() };
    let worker = WorkerId::generate();
    let mut fetcher = admin.queue.fetcher(&worker, Duration::from_secs(1)).await.expect("fetcher");
    for endpoint in ["ep_01AAAA", "ep_01BBBB", "ep_01AAAA"] {
        let job = DeliveryJob::new(entraguard_worker::delivery::test_event(), endpoint.parse().expect("id"));
        admin.queue.push(&[Job::Delivery(job.clone()).encode()]).await.expect("push");
        let taken = fetcher.try_fetch().await.expect("fetch").expect("job");
        let draft = DeadLetterDraft {
            id: job.delivery_id.to_string(),
            reason: "gave up".into(),
            delivery: Some(job),
        };
        assert!(admin.queue.dead_letter(&taken, &draft).await.expect("dead"));
    }
    let (status, list) = api.call(M::GET, "/api/dlq?endpoint_id=ep_01AAAA", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    assert!(list.as_array().expect("list").iter().all(|d| d["endpoint_id"] == "ep_01AAAA"));
    let (_, page) = api.call(M::GET, "/api/dlq?endpoint_id=ep_01AAAA&offset=1&limit=5", None).await;
    assert_eq!(page.as_array().map(Vec::len), Some(1));
    let (_, none) = api.call(M::GET, "/api/dlq?since=2999-01-01T00:00:00Z", None).await;
    assert_eq!(none, json!([]));
    let (status, bad) = api.call(M::GET, "/api/dlq?since=yesterday", None).await;
    assert_eq!((status, bad["field"].clone()), (422, json!("since")));
}
