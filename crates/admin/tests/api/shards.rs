//! Queue shards: dead letters, stats and endpoint state in the right shard.

use super::*;

/// An endpoint id whose deliveries and state live in queue shard `k`.
fn endpoint_in(shards: &entraguard_core::queue::Shards, k: usize) -> entraguard_core::EndpointId {
    shards.layout().endpoint_id_in(k)
}

/// Dead-letters a delivery to `endpoint` in its shard, as a worker does; returns its id.
async fn dead_in_shard(
    shards: &entraguard_core::queue::Shards,
    endpoint: &entraguard_core::EndpointId,
) -> String {
    let queue = shards.for_endpoint(endpoint);
    let worker = WorkerId::generate();
    let mut fetcher = queue.fetcher(&worker, Duration::from_secs(1)).await.expect("fetcher");
    let job = DeliveryJob::new(entraguard_worker::delivery::test_event(), endpoint.clone());
    queue.push(&[Job::Delivery(job.clone()).encode()]).await.expect("push");
    let taken = fetcher.try_fetch().await.expect("fetch").expect("job");
    let id = job.delivery_id.to_string();
    let draft = DeadLetterDraft { id: id.clone(), reason: "gave up".into(), delivery: Some(job) };
    assert!(queue.dead_letter(&taken, &draft).await.expect("dead"));
    id
}

/// The delivery ids waiting in one shard's ready and retry lists.
async fn waiting_in(shards: &entraguard_core::queue::Shards, k: usize) -> Vec<String> {
    let q = &shards.served()[k];
    let mut conn = q.connection();
    let mut raw: Vec<String> =
        redis::AsyncCommands::lrange(&mut conn, q.keys().ready(), 0, -1).await.expect("lrange");
    let retry: Vec<String> =
        redis::AsyncCommands::lrange(&mut conn, q.keys().retry(), 0, -1).await.expect("lrange");
    raw.extend(retry);
    raw.iter()
        .filter_map(|r| match Job::decode(r.as_bytes()) {
            Ok(Job::Delivery(d)) => Some(d.delivery_id.to_string()),
            _ => None,
        })
        .collect()
}

/// With `NOTIFY_QUEUE_SHARDS=3` (on one redis-server: shards are key tags): dead letters of
/// every shard are listed, shown, replayed into their shard and purged; stats sum the shards and
/// list each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_dead_letters_and_stats() {
    use reqwest::Method as M;
    let redis = RedisServer::start();
    let admin = common::start_sharded(&redis, 3).await;
    let api = Api { http: reqwest::Client::new(), base: admin.base.clone() };
    let shards = &admin.shards;
    let (e1, e2) = (endpoint_in(shards, 1), endpoint_in(shards, 2));
    let d1 = dead_in_shard(shards, &e1).await;
    let d2 = dead_in_shard(shards, &e2).await;

    let ids = |v: &Value| -> Vec<String> {
        let mut ids: Vec<String> =
            v.as_array().expect("array").iter().filter_map(|e| e["id"].as_str().map(str::to_owned)).collect();
        ids.sort();
        ids
    };
    let mut both = vec![d1.clone(), d2.clone()];
    both.sort();
    let (status, list) = api.call(M::GET, "/api/dlq", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(ids(&list), both, "every shard's dead letters: {list}");
    let (_, mine) = api.call(M::GET, &format!("/api/dlq?endpoint_id={e1}"), None).await;
    assert_eq!(ids(&mine), vec![d1.clone()]);
    let (_, p1) = api.call(M::GET, "/api/dlq?limit=1", None).await;
    let (_, p2) = api.call(M::GET, "/api/dlq?limit=1&offset=1", None).await;
    let mut paged = [ids(&p1), ids(&p2)].concat();
    paged.sort();
    assert_eq!(paged, both, "two pages of one");
    let (status, one) = api.call(M::GET, &format!("/api/dlq/{d2}"), None).await;
    assert_eq!((status, one["endpoint_id"].clone()), (200, json!(e2.as_str())), "{one}");

    // Stats: summed, and one row per shard with its tag.
    let (_, stats) = api.call(M::GET, "/api/stats", None).await;
    assert_eq!(stats["dead"], 2, "{stats}");
    let rows = stats["shards"].as_array().expect("per shard");
    let tags: Vec<&str> = shards.served().iter().map(|q| q.keys().tag()).collect();
    assert_eq!(rows.iter().map(|r| r["shard"].as_str().unwrap_or("")).collect::<Vec<_>>(), tags, "{stats}");
    assert_eq!(rows.iter().map(|r| r["dead"].as_u64().unwrap_or(9)).collect::<Vec<_>>(), vec![0, 1, 1]);
    assert_eq!(stats["forwarding"], 0, "{stats}");

    // Replay one from shard 2: back in shard 2's lists.
    let (status, r) = api.call(M::POST, &format!("/api/dlq/{d2}/replay"), None).await;
    assert_eq!((status, r["replayed"].clone()), (200, json!(1)), "{r}");
    let d2_id = d2.clone();
    assert_eq!(waiting_in(shards, 2).await, vec![d2_id]);
    assert!(waiting_in(shards, 0).await.is_empty(), "nothing replayed into shard 0");
    let (_, stats) = api.call(M::GET, "/api/stats", None).await;
    assert_eq!(
        stats["shards"][2]["ready"].as_u64().unwrap_or(0)
            + stats["shards"][2]["retrying"].as_u64().unwrap_or(0),
        1,
        "{stats}"
    );

    // Purge one finds it in shard 1; then replay-all and purge-all span the shards.
    assert_eq!(api.call(M::DELETE, &format!("/api/dlq/{d1}"), None).await.0, 204);
    assert_eq!(api.call(M::DELETE, &format!("/api/dlq/{d1}"), None).await.0, 404);
    let e0 = endpoint_in(shards, 0);
    dead_in_shard(shards, &e0).await;
    dead_in_shard(shards, &e1).await;
    let (_, r) = api.call(M::POST, "/api/dlq/replay", Some(json!({"endpoint_id": e1.as_str()}))).await;
    assert_eq!(r["replayed"], 1, "{r}");
    assert_eq!(waiting_in(shards, 1).await.len(), 1, "replayed in shard 1");
    let (_, r) = api.call(M::DELETE, "/api/dlq", None).await;
    assert_eq!(r["purged"], 1, "{r}");
    assert_eq!(api.call(M::GET, "/api/dlq", None).await.1, json!([]));
}

/// An endpoint homed in shard 2: the API reads its breaker, history, health and suppressed
/// count there, records Send test there, redelivers into it and resets its breaker there; the
/// record itself stays in shard 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_endpoint_state_lives_in_its_shard() {
    use entraguard_core::breaker::{BreakerSettings, BreakerState, Report};
    use entraguard_core::history::{AttemptResult, DeliveryRecord};
    use entraguard_core::job::AttemptRecord;
    use entraguard_core::store::EndpointStore;
    use entraguard_core::timestamp::Timestamp;
    use reqwest::Method as M;

    let redis = RedisServer::start();
    let admin = common::start_sharded(&redis, 3).await;
    let api = Api { http: reqwest::Client::new(), base: admin.base.clone() };
    let shards = &admin.shards;
    let receiver = HttpReceiver::with_default(Reply::status(200).body("thanks"));
    let id = endpoint_in(shards, 2);
    let draft: entraguard_core::EndpointDraft = serde_json::from_value(json!({
        "name": "Shard two", "channel": "webhook", "target": receiver.url_for("/hook"), "events": ["all"]
    }))
    .expect("draft");
    let ep = draft
        .validate_as(id.clone(), Timestamp::now(), entraguard_core::TargetPolicy { allow_http: true })
        .expect("valid");
    EndpointStore::new(admin.queue.connection(), entraguard_core::KeySpace::default())
        .put(&ep)
        .await
        .expect("stored in shard 0");

    let q = &shards.served()[2];
    let settings = BreakerSettings { failures: 1, ..BreakerSettings::default() };
    let failure = Report::Failure { error: "HTTP 503 from the receiver", probe: false };
    q.breaker_report(&id, None, failure, &settings).await.expect("breaker opens");
    let job = DeliveryJob::new(entraguard_worker::delivery::test_event(), id.clone());
    let attempt =
        AttemptRecord { attempt: 1, at: Timestamp::now(), duration_ms: 40, status: Some(503), error: None };
    q.record_history(&id, &[DeliveryRecord::new(&job, &attempt, AttemptResult::Retry, [], None)])
        .await
        .expect("history");
    let mut conn = redis.connection().await;
    let _: () =
        redis::AsyncCommands::hset(&mut conn, q.keys().suppressed(), id.as_str(), 4).await.expect("hset");

    let (status, shown) = api.call(M::GET, &format!("/api/endpoints/{id}"), None).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(
        (shown["name"].clone(), shown["breaker"]["state"].clone(), shown["suppressed"].clone()),
        (json!("Shard two"), json!("open"), json!(4)),
        "{shown}"
    );
    let (_, health) = api.call(M::GET, &format!("/api/endpoints/{id}/health"), None).await;
    assert_eq!(health["breaker"]["state"], "open", "{health}");
    assert_eq!(health["success_rate_24h"], 0.0, "one failed attempt recorded in shard 2: {health}");
    let (_, list) = api.call(M::GET, &format!("/api/endpoints/{id}/deliveries"), None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["delivery_id"], job.delivery_id.as_str());

    // Redeliver into shard 2.
    let dlv = job.delivery_id.to_string();
    let (status, r) =
        api.call(M::POST, &format!("/api/endpoints/{id}/deliveries/{dlv}/redeliver"), None).await;
    assert_eq!(status, 202, "{r}");
    assert_eq!(waiting_in(shards, 2).await, vec![dlv.clone()]);
    assert!(waiting_in(shards, 0).await.is_empty(), "nothing in shard 0");

    // Send test is sent at once, here; its record goes to shard 2's Recent Deliveries.
    let (_, report) = api.call(M::POST, &format!("/api/endpoints/{id}/test"), None).await;
    assert_eq!(report["delivered"], true, "{report}");
    let recorded = q.recent_deliveries(&id, 10).await.expect("history");
    assert_eq!(recorded[0].delivery_id.as_str(), report["delivery_id"].as_str().unwrap_or(""));
    assert!(admin.queue.recent_deliveries(&id, 10).await.expect("history").is_empty());

    // Enable resets the breaker in shard 2.
    let (status, _) = api.call(M::POST, &format!("/api/endpoints/{id}/enable"), None).await;
    assert_eq!(status, 200);
    assert_eq!(q.breaker_status(&id).await.expect("status").state, BreakerState::Closed);
    let (_, shown) = api.call(M::GET, &format!("/api/endpoints/{id}"), None).await;
    assert_eq!(shown["breaker"]["state"], "closed", "{shown}");

    // Sessions and the endpoint store stay in shard 0.
    let keys: Vec<String> =
        redis::AsyncCommands::keys(&mut conn, "{entraguard}:endpoints").await.expect("keys");
    assert_eq!(keys.len(), 1, "the endpoints hash is shard 0's");
}
