//! Recent Deliveries, Redeliver and endpoint health.

use super::*;

/// Recent Deliveries as the worker records them, Redeliver onto the queue with the same
/// delivery id, Send test in the history, health figures; `["all"]` for events like the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_deliveries_redeliver_and_health() {
    use entraguard_core::history::{AttemptResult, DeliveryRecord};
    use entraguard_core::job::AttemptRecord;
    use entraguard_core::timestamp::Timestamp;
    use reqwest::Method as M;

    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let api = Api { http: reqwest::Client::new(), base: admin.base.clone() };
    let receiver = HttpReceiver::with_default(Reply::status(200).body("thanks"));
    let (status, ep) = api
        .call(
            M::POST,
            "/api/endpoints",
            Some(json!({"name": "SOAR", "channel": "webhook", "target": receiver.url_for("/hook"),
                        "events": ["all"], "secret": "a-long-random-signing-secret"})),
        )
        .await;
    assert_eq!(status, 201, "the API takes [\"all\"] like the CLI's --events all: {ep}");
    assert_eq!(ep["events"].as_array().map(Vec::len), Some(6), "{ep}");
    let id = ep["id"].as_str().expect("id").to_owned();
    let endpoint_id = id.parse().expect("endpoint id");

    // Two attempts of one delivery, as the worker records them: a 500, then delivered.
    let job = DeliveryJob::new(entraguard_worker::delivery::test_event(), Clone::clone(&endpoint_id));
    let headers =
        [("x-coderaft-delivery", job.delivery_id.as_str()), ("x-coderaft-signature", "sha256=deadbeef")];
    let failed = AttemptRecord {
        attempt: 1,
        at: Timestamp::now(),
        duration_ms: 40,
        status: Some(500),
        error: Some("HTTP 500".into()),
    };
    let ok =
        AttemptRecord { attempt: 2, at: Timestamp::now(), duration_ms: 30, status: Some(200), error: None };
    admin
        .queue
        .record_history(
            &endpoint_id,
            &[
                DeliveryRecord::new(&job, &failed, AttemptResult::Retry, headers, Some("database is down")),
                DeliveryRecord::new(&job, &ok, AttemptResult::Delivered, headers, Some("thanks")),
            ],
        )
        .await
        .expect("record");

    let (status, list) = api.call(M::GET, &format!("/api/endpoints/{id}/deliveries?limit=10"), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    assert_eq!((list[0]["result"].clone(), list[0]["status"].clone()), (json!("delivered"), json!(200)));
    assert_eq!(list[1]["response_body"], "database is down");
    assert!(!list.to_string().contains("deadbeef"), "signature values are masked: {list}");
    assert_eq!(api.call(M::GET, "/api/endpoints/ep_nope/deliveries", None).await.0, 404);

    // Health: one of two attempts delivered, the last error, nothing in flight or waiting.
    let (status, health) = api.call(M::GET, &format!("/api/endpoints/{id}/health"), None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["success_rate_24h"], 0.5, "{health}");
    assert_eq!(health["last_error"], "HTTP 500");
    assert_eq!((health["in_flight"].clone(), health["waiting"].clone()), (json!(0), json!(0)));
    assert_eq!(health["breaker"]["state"], "closed");

    // Redeliver: the same delivery id goes back on the queue with a fresh attempt count.
    let dlv = job.delivery_id.to_string();
    let (status, r) =
        api.call(M::POST, &format!("/api/endpoints/{id}/deliveries/{dlv}/redeliver"), None).await;
    assert_eq!((status, r["delivery_id"].clone()), (202, json!(dlv)), "{r}");
    let mut conn = redis.connection().await;
    let ready: Vec<String> =
        redis::AsyncCommands::lrange(&mut conn, "{entraguard}:ready", 0, -1).await.expect("lrange");
    assert_eq!(ready.len(), 1);
    let Ok(Job::Delivery(queued)) = Job::decode(ready[0].as_bytes()) else {
        panic!("a delivery job: {}", ready[0])
    };
    assert_eq!(
        (queued.delivery_id, queued.endpoint_id, queued.attempts.len()),
        (job.delivery_id.clone(), endpoint_id, 0)
    );
    assert_eq!(
        api.call(M::POST, &format!("/api/endpoints/{id}/deliveries/dlv_01NOPE/redeliver"), None).await.0,
        404
    );

    // Send test shows in Recent Deliveries as a test, which cannot be redelivered.
    let (_, report) = api.call(M::POST, &format!("/api/endpoints/{id}/test"), None).await;
    assert_eq!(report["delivered"], true, "{report}");
    let (_, list) = api.call(M::GET, &format!("/api/endpoints/{id}/deliveries"), None).await;
    assert_eq!(
        (list[0]["result"].clone(), list[0]["delivery_id"].clone()),
        (json!("test"), report["delivery_id"].clone())
    );
    let test_id = report["delivery_id"].as_str().expect("id");
    let (status, r) =
        api.call(M::POST, &format!("/api/endpoints/{id}/deliveries/{test_id}/redeliver"), None).await;
    assert_eq!((status, r["field"].clone()), (422, json!("delivery_id")), "{r}");
}
