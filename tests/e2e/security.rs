//! The delivery path is safe by construction: SSRF refused after DNS, redirects never followed,
//! HTTPS-only, signatures a receiver can verify (Standard Webhooks with rotation), and no secret
//! in clear in Redis.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use entraguard_core::crypto::Cipher;
use entraguard_core::endpoint::{EndpointDraft, Target, TargetPolicy};
use entraguard_core::ids::EndpointId;
use entraguard_core::secret::Secret;
use entraguard_core::store::EndpointStore;
use entraguard_testkit::{HttpReceiver, Recorded, Reply};
use hmac::{Hmac, KeyInit, Mac};
use redis::AsyncCommands;
use sha2::Sha256;

use crate::harness::{Stack, endpoint, finding_event, keys};

/// A receiver's Standard Webhooks check, written here from the specification (not the code
/// under test): any of the `v1,` signatures must match, and the timestamp must be within
/// `tolerance` of `now`.
fn verify_standard(req: &Recorded, secret: &str, now: i64, tolerance: i64) -> Result<(), String> {
    let id = req.header("webhook-id").ok_or("no webhook-id")?;
    let ts: i64 =
        req.header("webhook-timestamp").ok_or("no webhook-timestamp")?.parse().map_err(|_| "bad ts")?;
    if (now - ts).abs() > tolerance {
        return Err(format!("timestamp {ts} outside tolerance"));
    }
    let key = match secret.strip_prefix("whsec_") {
        Some(b) => B64.decode(b).map_err(|_| "bad secret")?,
        None => secret.as_bytes().to_vec(),
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).map_err(|_| "key")?;
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&req.body);
    let expected = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
    let header = req.header("webhook-signature").ok_or("no webhook-signature")?;
    if header.split(' ').any(|s| s == expected) {
        Ok(())
    } else {
        Err(format!("no signature matches in {header}"))
    }
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs(),
    )
    .expect("fits")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_loopback_and_metadata_targets_are_refused_without_a_connection() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    let port = receiver.port();
    let targets = [
        format!("http://127.0.0.1:{port}/x"),
        format!("http://localhost:{port}/x"),
        format!("http://[::1]:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
        "http://10.0.0.1/x".to_owned(),
    ];
    for t in &targets {
        stack.add_endpoint("webhook", t, &["finding.new"], None).await;
    }
    // A cloud metadata address is refused at creation now; one stored before that check (or
    // written by hand) must still be refused by the worker's guard, without a connection.
    let metadata = "http://169.254.169.254/latest/meta-data/";
    let draft = EndpointDraft {
        name: "metadata".into(),
        channel: "webhook".into(),
        target: metadata.into(),
        events: vec!["finding.new".into()],
        enabled: true,
        secret: None,
        ed25519: None,
        teams_format: None,
        rules: Default::default(),
    };
    let refused = draft.validate(TargetPolicy { allow_http: true }).expect_err("refused at creation");
    assert!(refused.to_string().contains("cloud metadata"), "{refused}");
    let mut stored = endpoint("webhook", &targets[0], &["finding.new"], None);
    stored.id = EndpointId::generate();
    stored.target = Target::Url(metadata.parse().expect("url"));
    stack.store.put(&stored).await.expect("stored by hand");
    let endpoints = targets.len() + 1;
    // Loopback allowed only for 127.0.0.2/32, and metadata's whole /16: neither opens these.
    let worker = stack.spawn_worker(&["--allow-private-targets", "127.0.0.2/32,169.254.0.0/16"]);
    stack.producer.publish(&finding_event("ssrf")).await.expect("published");
    stack.wait_dead(endpoints as u64, Duration::from_secs(60)).await;
    let dead = stack.queue.dead_letters(0, 20).await.expect("list");
    for d in &dead {
        assert!(d.reason.contains("refused to connect"), "{}", d.reason);
        assert_eq!(d.attempts.len(), 1, "a refusal is permanent: {}", d.reason);
    }
    assert!(dead.iter().any(|d| d.reason.contains("cloud metadata")), "{dead:?}");
    assert!(dead.iter().any(|d| d.reason.contains("loopback")), "{dead:?}");
    assert_eq!(receiver.requests().len(), 0, "no connection reached the receiver");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_never_followed_and_plain_http_needs_the_setting() {
    let stack = Stack::start().await;
    let inner = HttpReceiver::start();
    let redirector = HttpReceiver::with_default(Reply::status(302).header("location", inner.url()));
    stack.add_endpoint("webhook", &redirector.url(), &["finding.new"], None).await;
    let worker = stack.spawn_worker(&["--retry-schedule", "none"]);
    stack.producer.publish(&finding_event("redirect")).await.expect("published");
    stack.wait_dead(1, Duration::from_secs(30)).await;
    assert_eq!(redirector.requests().len(), 1);
    assert_eq!(inner.requests().len(), 0, "the redirect was not followed");
    let d = &stack.queue.dead_letters(0, 1).await.expect("list")[0];
    assert!(d.reason.contains("302"), "{}", d.reason);
    worker.stop().await;

    // A worker without NOTIFY_ALLOW_HTTP refuses an http:// endpoint even if one was stored.
    let plain = HttpReceiver::start();
    stack.add_endpoint("webhook", &plain.url(), &["scan.failed"], None).await;
    let worker = stack.spawn_worker(&["--allow-http=false"]);
    let e = entraguard_producer::Event::from_json(
        br#"{"event":"scan.failed","tenant_id":"t","scan":{"run_id":"r","kind":"full","environment":"e","error":{"kind":"network","message":"m"}}}"#,
    )
    .expect("valid");
    stack.producer.publish(&e).await.expect("published");
    stack.wait_dead(2, Duration::from_secs(30)).await;
    assert_eq!(plain.requests().len(), 0);
    let d = &stack.queue.dead_letters(0, 1).await.expect("list")[0];
    assert!(d.reason.contains("plain http"), "{}", d.reason);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_webhooks_signatures_verify_independently_and_carry_both_secrets_during_rotation() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let new = "a-brand-new-signing-secret-0123456789";
    let mut ep = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], Some(old)).await;
    let worker = stack.spawn_worker(&[]);
    stack.producer.publish(&finding_event("sig-1")).await.expect("published");
    let got = receiver.wait_for_requests(1, Duration::from_secs(30)).await;
    verify_standard(&got[0], old, now(), 300).expect("verifies with the secret");
    assert!(verify_standard(&got[0], new, now(), 300).is_err());
    assert_eq!(got[0].header("webhook-id"), got[0].header("x-coderaft-delivery"));
    // An old timestamp is rejected by the receiver's tolerance.
    assert!(verify_standard(&got[0], old, now() + 3600, 300).is_err(), "a replay an hour later is refused");

    ep.rotate_secret(Secret::new(new), Duration::from_secs(3600));
    stack.store.put(&ep).await.expect("rotated");
    stack.producer.publish(&finding_event("sig-2")).await.expect("published");
    let got = receiver.wait_for_requests(2, Duration::from_secs(30)).await;
    let during = &got[1];
    assert_eq!(during.header("webhook-signature").map(|h| h.split(' ').count()), Some(2));
    verify_standard(during, new, now(), 300).expect("new secret verifies");
    verify_standard(during, old, now(), 300).expect("old secret still verifies during the grace period");
    // X-Coderaft-Signature moves to the new secret.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(new.as_bytes()).expect("key");
    mac.update(&during.body);
    assert_eq!(
        during.header("x-coderaft-signature"),
        Some(format!("sha256={}", hex::encode(mac.finalize().into_bytes())).as_str())
    );

    ep.previous_secret_until = Some(entraguard_core::timestamp::Timestamp::from_unix_millis(0));
    stack.store.put(&ep).await.expect("grace over");
    stack.producer.publish(&finding_event("sig-3")).await.expect("published");
    let got = receiver.wait_for_requests(3, Duration::from_secs(30)).await;
    assert!(
        verify_standard(&got[2], old, now(), 300).is_err(),
        "after the grace period the old secret no longer signs"
    );
    verify_standard(&got[2], new, now(), 300).expect("new secret verifies");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_no_secret_or_slack_token_in_clear() {
    let stack = Stack::start().await;
    let key = Secret::new(B64.encode([7u8; 32]));
    let cipher = std::sync::Arc::new(Cipher::new(&key, &[]).expect("key"));
    let store = EndpointStore::new(stack.queue.connection(), keys()).with_cipher(Some(cipher));
    let receiver = HttpReceiver::start();
    let token_url = format!("{}/services/T0AAAA/B0BBBB/SLACKTOKENxyz", receiver.url());
    let slack = endpoint("slack", &token_url, &["finding.new"], None);
    let hook = endpoint(
        "webhook",
        &format!("{}/hook?token=QUERYTOKEN", receiver.url()),
        &["finding.new"],
        Some("HMACSECRET-0123456789"),
    );
    store.put(&slack).await.expect("stored");
    store.put(&hook).await.expect("stored");

    // Every key, every value: none holds a secret in clear.
    let mut conn = stack.redis.connection().await;
    let all_keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.expect("keys");
    let mut dump = String::new();
    for k in &all_keys {
        let kind: String = redis::cmd("TYPE").arg(k).query_async(&mut conn).await.expect("type");
        if kind == "hash" {
            let all: Vec<(String, String)> = conn.hgetall(k).await.expect("hgetall");
            for (f, v) in all {
                dump.push_str(&f);
                dump.push_str(&v);
            }
        }
    }
    for needle in ["SLACKTOKENxyz", "QUERYTOKEN", "HMACSECRET", "/services/"] {
        assert!(!dump.contains(needle), "{needle} is in Redis in clear");
    }
    assert!(dump.contains("enc:v1:"));

    // A worker with the key delivers to the real URLs; one without it cannot read them.
    let worker = stack.spawn_worker(&["--encryption-key", key.expose(), "--slack-pace", "0s"]);
    stack.producer.publish(&finding_event("sealed")).await.expect("published");
    let got = receiver.wait_for_requests(2, Duration::from_secs(30)).await;
    let paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    assert!(
        paths.contains(&"/services/T0AAAA/B0BBBB/SLACKTOKENxyz") && paths.contains(&"/hook"),
        "{paths:?}"
    );
    worker.stop().await;
    let plain = EndpointStore::new(stack.queue.connection(), keys());
    assert!(
        plain.get(&slack.id).await.is_err(),
        "without the key a sealed endpoint is an error, not garbage"
    );
}

/// Issue 24: kinds only the notifier makes cannot be forged. The producer refuses
/// `endpoint.health_changed` and `finding.digest` with one error; a health event pushed by hand
/// into the ready list (a job the notifier did not make) is dead-lettered with that reason and
/// never delivered, while the notifier's own announcement (`EventJob::notifier`) is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifier_only_events_are_refused_at_publish_and_dead_lettered_when_pushed_by_hand() {
    use entraguard_core::event::{EndpointHealth, Event, EventError, EventKind};
    use entraguard_core::job::{EventJob, Job};
    use entraguard_producer::PublishError;

    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    let ep = stack
        .add_endpoint("webhook", &receiver.url(), &["finding.new", "endpoint.health_changed"], None)
        .await;
    let forged = |state: entraguard_core::breaker::BreakerState| {
        Event::endpoint_health(EndpointHealth {
            id: "ep_01JFORGEDFORGEDFORGEDFORGE".into(),
            name: "payments webhook".into(),
            state,
            last_error: Some("HTTP 503".into()),
            parked: 999,
            since: entraguard_core::timestamp::Timestamp::now(),
        })
    };
    let mut event = forged(entraguard_core::breaker::BreakerState::Disabled);
    event.tenant_id = "8d6310d1-5e4b-4e1c-9d7a-3f0f7a4f2b11".into();
    let err = stack.producer.publish(&event).await.expect_err("refused");
    assert!(
        matches!(err, PublishError::InvalidEvent(EventError::NotifierOnly(EventKind::EndpointHealthChanged))),
        "{err:?}"
    );
    let err = stack.producer.publish_batch(&[finding_event("t1"), event.clone()]).await.expect_err("refused");
    let message = err.to_string();
    assert!(message.contains("made only by the notifier and cannot be published"), "{message}");
    assert_eq!(stack.stats().await.ready, 0, "nothing of a refused batch is enqueued");

    // By hand: the forged job first, then the notifier's own announcement, then a published event.
    let mut conn = stack.redis.connection().await;
    let ready = keys().ready();
    let _: () = conn.rpush(&ready, Job::Event(EventJob::new(event.clone())).encode()).await.expect("rpush");
    let own = forged(entraguard_core::breaker::BreakerState::Open);
    let _: () =
        conn.rpush(&ready, Job::Event(EventJob::notifier(own.clone())).encode()).await.expect("rpush");
    let published = finding_event("t1");
    stack.producer.publish(&published).await.expect("published");
    let worker = stack.spawn_worker(&[]);
    stack.wait_dead(1, Duration::from_secs(60)).await;
    receiver.wait_for_requests(2, Duration::from_secs(60)).await;
    stack.wait_drained(Duration::from_secs(30)).await;
    worker.stop().await;

    let ids: Vec<String> =
        receiver.requests().iter().map(|r| r.json()["id"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&own.id.to_string()) && ids.contains(&published.id.to_string()), "{ids:?}");
    assert!(!ids.contains(&event.id.to_string()), "the forged health event was delivered");
    let dead = stack.queue.dead_letters(0, 10).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains(&event.id.to_string()), "{}", dead[0].reason);
    assert!(
        dead[0].reason.contains("`endpoint.health_changed` is made only by the notifier"),
        "{}",
        dead[0].reason
    );
    let _ = ep;
}
