//! The producer against real `redis-server`s of the test's own (free ports, temp dirs): TLS
//! (`rediss://`, with the `tls` feature) and a Redis Cluster (`redis+cluster://`, with the
//! `cluster` feature); without a feature, such a URL is refused by name before any connection.
//!
//! Each publish is checked in Redis itself: the job on the ready list, and the same event
//! published again acknowledged as a duplicate.

use entraguard_producer::ProducerConfig;

/// A high finding (urgent: it goes to the front of the ready list).
#[cfg(any(feature = "tls", feature = "cluster"))]
fn finding_event(tenant: &str) -> entraguard_producer::Event {
    entraguard_producer::Event::from_json(
        format!(
            r#"{{
            "event": "finding.new",
            "tenant_id": "{tenant}",
            "tenant_name": "contoso.onmicrosoft.com",
            "scan_id": "scan_2026-04-28T07:00Z",
            "finding": {{
                "id": "PIM-002",
                "title": "Excessive permanent privileged roles",
                "severity": "high",
                "category": "privileged-access",
                "affected": ["admin@contoso.com"],
                "remediation_url": "https://entraguard.example.com/api/entraguard/findings/PIM-002"
            }}
        }}"#
        )
        .as_bytes(),
    )
    .expect("sample event is valid")
}

/// Publishes one event through a producer for `config`, then checks in Redis (through the same
/// kind of connection) that its job is on the ready list and that publishing it again is
/// acknowledged without a second job.
#[cfg(any(feature = "tls", feature = "cluster"))]
async fn publish_and_check(config: ProducerConfig) {
    use entraguard_core::queue::Published;

    let producer = entraguard_producer::Producer::connect(&config).await.expect("producer connects");
    let event = finding_event("contoso");
    let first = producer.publish_batch_report(std::slice::from_ref(&event)).await.expect("published");
    assert!(matches!(first[..], [(_, Published::Enqueued)]), "expected one enqueued event, got {first:?}");

    let mut conn =
        entraguard_core::redis_conn::connect(&config.redis, Some(std::time::Duration::from_secs(10)))
            .await
            .expect("a check connection");
    let ready: Vec<String> = redis::cmd("LRANGE")
        .arg(config.keys.ready())
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("LRANGE");
    assert_eq!(ready.len(), 1, "expected the one job on {}, found {ready:?}", config.keys.ready());
    assert!(ready[0].contains(event.id.as_str()), "expected the job of {}, found {}", event.id, ready[0]);

    let again = producer.publish_batch_report(std::slice::from_ref(&event)).await.expect("published again");
    assert!(matches!(again[..], [(_, Published::Duplicate)]), "expected a duplicate, got {again:?}");
}

/// `rediss://` with a password, against a redis-server that serves TLS only, with a certificate
/// from a throwaway CA the producer is told to trust.
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_over_tls_to_a_rediss_url() {
    use entraguard_testkit::{RedisServer, TestCa};

    let ca = TestCa::new();
    let redis = RedisServer::builder().tls(&ca).password("s3cret-pw").start();
    let url = redis.url();
    assert!(url.starts_with("rediss://"), "expected a rediss:// URL, got {url}");

    // Without the CA the certificate is not trusted: a clear failure, never a plaintext fallback.
    let untrusted =
        entraguard_producer::Producer::connect(&ProducerConfig::from_url(&url).expect("url")).await;
    assert!(untrusted.is_err(), "connected without trusting the CA");

    let mut config = ProducerConfig::from_url(&url).expect("url");
    config.redis.ca_cert = Some(ca.ca_pem.clone());
    publish_and_check(config).await;
}

/// `redis+cluster://` through one seed node of a local 3 + 3 Redis Cluster: the client learns the
/// rest and the job lands on the primary that owns the queue's hash tag.
#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_to_a_redis_cluster() {
    let cluster =
        tokio::task::spawn_blocking(entraguard_testkit::RedisCluster::start).await.expect("cluster starts");
    let url = cluster.url();
    assert!(url.starts_with("redis+cluster://"), "expected a redis+cluster:// URL, got {url}");
    publish_and_check(ProducerConfig::from_url(&url).expect("url")).await;
}

/// Built without `tls` or `cluster`, a producer refuses such a URL at connect, naming the
/// feature, before it opens any connection (the ports below are never dialled).
#[cfg(not(all(feature = "tls", feature = "cluster")))]
#[tokio::test]
async fn a_url_whose_feature_is_off_is_refused_by_name() {
    let mut refused = Vec::new();
    #[cfg(not(feature = "tls"))]
    refused.push(("rediss://127.0.0.1:1", "`tls`"));
    #[cfg(not(feature = "cluster"))]
    refused.push(("redis+cluster://127.0.0.1:1", "`cluster`"));
    for (url, feature) in refused {
        let config = ProducerConfig::from_url(url).expect("a valid URL");
        let err = match entraguard_producer::Producer::connect(&config).await {
            Ok(_) => panic!("{url}: connected without the {feature} feature"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(feature), "{url}: expected the error to name {feature}, got: {err}");
    }
}
