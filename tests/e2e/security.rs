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
        rate_limit: None,
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

/// A third party's Ed25519 check (Python's `cryptography`, not our code): reads
/// `{"public_keys", "id", "timestamp", "body_b64", "signature"}` and answers which `whpk_` keys
/// verify one of the header's `v1a,` entries over `id.timestamp.body`.
const PY_VERIFY_V1A: &str = r#"
import base64, json, sys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
req = json.load(sys.stdin)
signed = f"{req['id']}.{req['timestamp']}.".encode() + base64.b64decode(req["body_b64"])
sigs = [base64.b64decode(s[4:]) for s in req["signature"].split(" ") if s.startswith("v1a,")]
verified = []
for pk in req["public_keys"]:
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(pk.removeprefix("whpk_")))
    for sig in sigs:
        try:
            key.verify(sig, signed)
            verified.append(pk)
            break
        except InvalidSignature:
            pass
print(json.dumps({"v1a": len(sigs), "verified": verified}))
"#;

/// Runs [`PY_VERIFY_V1A`] on a received request (its body replaced by `body` when given):
/// how many `v1a` entries it carried, and which of `public_keys` verified.
async fn python_verify(req: &Recorded, body: Option<&[u8]>, public_keys: &[&str]) -> (usize, Vec<String>) {
    use tokio::io::AsyncWriteExt;
    let input = serde_json::json!({
        "public_keys": public_keys,
        "id": req.header("webhook-id").expect("webhook-id"),
        "timestamp": req.header("webhook-timestamp").expect("webhook-timestamp"),
        "body_b64": B64.encode(body.unwrap_or(&req.body)),
        "signature": req.header("webhook-signature").expect("webhook-signature"),
    });
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", PY_VERIFY_V1A])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (./dev test installs python3-cryptography)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.to_string().as_bytes()).await.expect("write");
    drop(stdin);
    let out = child.wait_with_output().await.expect("python3 ends");
    assert!(out.status.success(), "python verifier failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("verifier JSON");
    let n = v["v1a"].as_u64().expect("count") as usize;
    let verified =
        v["verified"].as_array().expect("list").iter().filter_map(|k| k.as_str().map(str::to_owned));
    (n, verified.collect())
}

/// The value after `name:` on a line of the CLI's text output.
fn line_after(out: &str, name: &str) -> Option<String> {
    out.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned())
}

/// Issue 28: an endpoint with an Ed25519 key (made by the CLI, sealed at rest) gets `v1a`
/// signatures that Python's `cryptography` verifies with the `whpk_` key the CLI and the API
/// show, beside the HMAC `v1`; a tampered body fails; a rotation signs with both keys during
/// its grace and then with the new one only; the private key is in no API answer, CLI output or
/// log line, and the stored record holds it only sealed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_signatures_verify_with_python_rotate_and_the_private_key_stays_sealed() {
    use std::process::Stdio;

    use entraguard_testkit::{bin_path, free_port, wait_until};
    use tokio::process::Command;

    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    let url = stack.redis.url();
    let enc_key = B64.encode([9u8; 32]);
    let logs = tempfile::tempdir().expect("tempdir");
    let cli = |args: Vec<String>| {
        let url = url.clone();
        let enc_key = enc_key.clone();
        async move {
            let out = Command::new(bin_path("entraguard-notify"))
                .args(["--redis-url", &url])
                .args(&args)
                .env_remove("REDIS_URL")
                .env("NOTIFY_ENCRYPTION_KEY", &enc_key)
                .env("NOTIFY_ALLOW_HTTP", "true")
                .env("RUST_LOG", "debug")
                .stdin(Stdio::null())
                .output()
                .await
                .expect("cli runs");
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
            assert!(out.status.success(), "{args:?}: {stderr}");
            (stdout, stderr)
        }
    };
    let s = |v: &[&str]| v.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();

    // Created by the CLI with an HMAC secret and a key: its output shows the public key.
    let (added, mut cli_logs) = cli(s(&[
        "endpoint",
        "add",
        "--name",
        "SOAR",
        "--channel",
        "webhook",
        "--target",
        &receiver.url(),
        "--events",
        "finding.new",
        "--secret",
        "HMACSECRET-0123456789",
        "--ed25519",
    ]))
    .await;
    let first_pk = line_after(&added, "ed25519:").expect("add prints the public key");
    assert!(first_pk.starts_with("whpk_"), "{added}");
    let id = line_after(&added, "id:").expect("id");
    let cipher = std::sync::Arc::new(Cipher::new(&Secret::new(enc_key.clone()), &[]).expect("key"));
    let sealed_store = EndpointStore::new(stack.queue.connection(), keys()).with_cipher(Some(cipher));
    let ep_id: EndpointId = id.parse().expect("id");
    let stored = sealed_store.get(&ep_id).await.expect("read").expect("stored");
    let first_sk = stored.signing_key.clone().expect("has a key").to_secret().expose().to_owned();
    assert_eq!(stored.signing_key.as_ref().map(|k| k.public_key()), Some(first_pk.clone()));

    // Sealed at rest: the record holds neither the whsk_ text nor the seed in any form.
    let raw_record = |conn: redis::aio::MultiplexedConnection| {
        let id = id.clone();
        async move {
            let mut conn = conn;
            let v: String = conn.hget(keys().endpoints(), &id).await.expect("hget");
            v
        }
    };
    let seed_forms = |sk: &str| {
        let seed = B64.decode(&sk["whsk_".len()..]).expect("seed");
        assert_eq!(seed.len(), 32);
        (seed.clone(), vec![sk.to_owned(), sk["whsk_".len()..].to_owned(), hex::encode(&seed)])
    };
    let (seed, forms) = seed_forms(&first_sk);
    let record = raw_record(stack.redis.connection().await).await;
    let json: serde_json::Value = serde_json::from_str(&record).expect("record JSON");
    assert!(json["signing_key"].as_str().is_some_and(|v| v.starts_with("enc:v1:")), "{json}");
    assert!(!record.contains("whsk_"), "{record}");
    for f in &forms {
        assert!(!record.contains(f.as_str()), "the stored record holds the private key in clear");
    }
    assert!(!record.as_bytes().windows(32).any(|w| w == seed.as_slice()), "raw seed bytes in the record");

    // The admin API (with the key, as deployed) shows the public key and never the private one.
    let admin_addr = format!("127.0.0.1:{}", free_port());
    let admin_log = std::fs::File::create(logs.path().join("admin.log")).expect("log file");
    let mut admin = Command::new(bin_path("entraguard-admin"))
        .args(["--redis-url", &url, "--insecure-local-only"])
        .env_remove("REDIS_URL")
        .env("NOTIFY_ADMIN_ADDR", &admin_addr)
        .env("NOTIFY_ENCRYPTION_KEY", &enc_key)
        .env("NOTIFY_ALLOW_HTTP", "true")
        .env("NOTIFY_ALLOW_PRIVATE_TARGETS", "127.0.0.1/32")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(admin_log)
        .kill_on_drop(true)
        .spawn()
        .expect("admin starts");
    let api = format!("http://{admin_addr}/api/endpoints/{id}");
    let mut api_bodies = Vec::new();
    wait_until(Duration::from_secs(60), "the admin API shows the endpoint", || async {
        matches!(reqwest::get(&api).await, Ok(r) if r.status().is_success())
    })
    .await;
    for path in [api.clone(), format!("http://{admin_addr}/api/endpoints")] {
        api_bodies.push(reqwest::get(&path).await.expect("GET").text().await.expect("body"));
    }
    let shown: serde_json::Value = serde_json::from_str(&api_bodies[0]).expect("JSON");
    assert_eq!(shown["public_key"], first_pk.as_str(), "{shown}");
    // The endpoint as GET shows it goes back through PUT unchanged, keeping its key.
    let put = reqwest::Client::new()
        .put(&api)
        .header("content-type", "application/json")
        .body(api_bodies[0].clone())
        .send()
        .await
        .expect("PUT");
    let status = put.status();
    let put = put.text().await.expect("body");
    assert_eq!(status, 200, "{put}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&put).expect("JSON")["public_key"],
        first_pk.as_str()
    );
    api_bodies.push(put);

    // A delivery: v1 and v1a beside each other; Python verifies v1a with the whpk_ key.
    let worker_log = std::fs::File::create(logs.path().join("worker.log")).expect("log file");
    let mut worker = Command::new(bin_path("entraguard-worker"))
        .args(Stack::worker_args_for(&url))
        .env_remove("REDIS_URL")
        .env("NOTIFY_ENCRYPTION_KEY", &enc_key)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(worker_log)
        .kill_on_drop(true)
        .spawn()
        .expect("worker starts");
    stack.producer.publish(&finding_event("ed-1")).await.expect("published");
    let got = receiver.wait_for_requests(1, Duration::from_secs(30)).await;
    let header = got[0].header("webhook-signature").expect("signed").to_owned();
    let kinds: Vec<&str> = header.split(' ').map(|e| e.split(',').next().unwrap_or("")).collect();
    assert_eq!(kinds, ["v1", "v1a"], "{header}");
    verify_standard(&got[0], "HMACSECRET-0123456789", now(), 300).expect("the HMAC still verifies");
    let (n, ok) = python_verify(&got[0], None, &[&first_pk]).await;
    assert_eq!((n, ok), (1, vec![first_pk.clone()]), "Python verifies the v1a signature");
    let mut tampered = got[0].body.clone();
    tampered.extend_from_slice(b" ");
    let (_, ok) = python_verify(&got[0], Some(&tampered), &[&first_pk]).await;
    assert!(ok.is_empty(), "a tampered body fails verification");
    let other = entraguard_core::signing_key::SigningKey::generate().expect("key").public_key();
    assert!(python_verify(&got[0], None, &[&other]).await.1.is_empty(), "another key does not verify");

    // Rotation by the CLI: two v1a entries during the grace period, each verifying.
    let (rotated, stderr) = cli(s(&["endpoint", "rotate-signing-key", &id, "--grace", "1h"])).await;
    cli_logs.push_str(&stderr);
    let new_pk = line_after(&rotated, "ed25519:").expect("rotate prints the new public key");
    assert_ne!(new_pk, first_pk);
    assert!(rotated.contains(&first_pk), "rotate names the previous key: {rotated}");
    stack.producer.publish(&finding_event("ed-2")).await.expect("published");
    let got = receiver.wait_for_requests(2, Duration::from_secs(30)).await;
    let (n, ok) = python_verify(&got[1], None, &[&new_pk, &first_pk]).await;
    assert_eq!((n, ok), (2, vec![new_pk.clone(), first_pk.clone()]), "both keys sign during the grace");
    let (shown, stderr) = cli(s(&["endpoint", "show", &id])).await;
    cli_logs.push_str(&stderr);
    let (shown_json, stderr) = cli(s(&["--json", "endpoint", "show", &id])).await;
    cli_logs.push_str(&stderr);
    let v: serde_json::Value = serde_json::from_str(&shown_json).expect("JSON");
    assert_eq!(
        (v["public_key"].as_str(), v["previous_public_key"].as_str()),
        (Some(&*new_pk), Some(&*first_pk))
    );
    api_bodies.push(reqwest::get(&api).await.expect("GET").text().await.expect("body"));

    // The grace period over: the new key alone.
    let mut ep = sealed_store.get(&ep_id).await.expect("read").expect("stored");
    let new_sk = ep.signing_key.clone().expect("key").to_secret().expose().to_owned();
    ep.previous_signing_key_until = Some(entraguard_core::timestamp::Timestamp::from_unix_millis(0));
    sealed_store.put(&ep).await.expect("grace over");
    stack.producer.publish(&finding_event("ed-3")).await.expect("published");
    let got = receiver.wait_for_requests(3, Duration::from_secs(30)).await;
    let (n, ok) = python_verify(&got[2], None, &[&new_pk, &first_pk]).await;
    assert_eq!((n, ok), (1, vec![new_pk.clone()]), "after the grace only the new key signs");

    // Neither private key in any API answer, CLI output or log, nor in clear in Redis.
    worker.kill().await.expect("worker stopped");
    admin.kill().await.expect("admin stopped");
    let worker_log = std::fs::read_to_string(logs.path().join("worker.log")).expect("worker log");
    let admin_log = std::fs::read_to_string(logs.path().join("admin.log")).expect("admin log");
    assert!(worker_log.contains("delivered"), "the worker logged at debug: {worker_log}");
    let record = raw_record(stack.redis.connection().await).await;
    let (new_seed, new_forms) = seed_forms(&new_sk);
    let outputs = [
        ("API", api_bodies.join("\n")),
        ("CLI output", format!("{added}{rotated}{shown}{shown_json}")),
        ("CLI log", cli_logs),
        ("worker log", worker_log),
        ("admin log", admin_log),
        ("stored record", record.clone()),
    ];
    for (what, text) in &outputs {
        assert!(!text.contains("whsk_"), "{what} holds a whsk_ key");
        for f in forms.iter().chain(&new_forms) {
            assert!(!text.contains(f.as_str()), "{what} holds a private key");
        }
    }
    for s in [&seed, &new_seed] {
        assert!(!record.as_bytes().windows(32).any(|w| w == s.as_slice()), "raw seed bytes in the record");
    }
}
