//! The webhook transport over TLS, end to end with the worker binary: a receiver's certificate
//! is verified against the platform's roots (`SSL_CERT_FILE` adds a private CA, as an operator
//! with an internal SOAR would), a certificate no trusted CA signed never gets the body, and
//! deliveries to one endpoint share one kept-alive connection; a receiver that offers HTTP/2
//! gets it, signed the same way.

use std::time::Duration;

use entraguard_testkit::{HttpReceiver, HttpsFront, TestCa, bin_path, wait_until};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::harness::{Stack, finding_event, scan_completed, worker_command_at};

/// The worker binary, HTTPS only, with `ca` as its roots (`SSL_CERT_FILE`).
fn worker_trusting(stack: &Stack, ca: &TestCa) -> tokio::process::Child {
    worker_command_at(&bin_path("entraguard-worker"), &stack.redis.url(), &["--allow-http=false"])
        .env("SSL_CERT_FILE", ca.ca_path())
        .spawn()
        .expect("worker binary starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_webhooks_verify_the_receivers_certificate_and_keep_one_connection_alive() {
    let stack = Stack::start().await;
    let (trusted, stranger) = (TestCa::new(), TestCa::new());
    let receiver = HttpReceiver::start();
    let good = HttpsFront::start(&trusted, receiver.port());
    let bad = HttpsFront::start(&stranger, receiver.port());
    let secret = "an-https-signing-secret-0123456789";
    stack.add_endpoint("webhook", &good.url_for("/good"), &["finding.new"], Some(secret)).await;
    // One event only for the untrusted one: its four failed attempts stay under the breaker's
    // threshold, so it is dead-lettered rather than parked.
    stack.add_endpoint("webhook", &bad.url_for("/bad"), &["scan.completed"], Some(secret)).await;
    let _worker = worker_trusting(&stack, &trusted);

    // One after another, each published once the last is acknowledged (its answer read, its
    // connection idle in the pool): the client races a new connection against the pool's
    // checkout, so a delivery sent while the last answer is still being read opens another.
    for n in 1..=3 {
        stack.producer.publish(&finding_event(&format!("tenant-{n}"))).await.expect("published");
        let got = receiver.wait_for_requests(n, Duration::from_secs(60)).await;
        assert_eq!(got.len(), n, "delivery {n} over https");
        stack.wait_drained(Duration::from_secs(60)).await;
    }
    let got = receiver.requests();
    for req in &got {
        assert_eq!(req.path, "/good");
        assert!(req.header("x-coderaft-signature").is_some_and(|s| s.starts_with("sha256=")), "{req:?}");
        assert_eq!(req.header("host"), Some(format!("localhost:{}", good.port()).as_str()));
    }
    assert_eq!(good.handshakes(), vec![Some("http/1.1".to_owned())], "three deliveries, one TLS connection");

    stack.producer.publish(&scan_completed("tenant-1")).await.expect("published");
    stack.wait_dead(1, Duration::from_secs(60)).await;
    let dead = stack.queue.dead_letters(0, 10).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("certificate"), "the reason names the certificate: {}", dead[0].reason);
    assert_eq!(dead[0].attempts.len(), 4, "a certificate error is retried (it may be a deploy in progress)");
    assert!(bad.handshakes().is_empty(), "no handshake with an untrusted certificate completed");
    assert!(
        receiver.requests().iter().all(|r| r.path == "/good"),
        "nothing went through the untrusted front"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_go_over_http2_when_the_receiver_offers_it_and_their_signatures_verify() {
    let stack = Stack::start().await;
    let ca = TestCa::new();
    let h2 = HttpsFront::start_h2(&ca);
    let secret = "an-h2-signing-secret-0123456789";
    stack.add_endpoint("webhook", &h2.url_for("/h2"), &["finding.new"], Some(secret)).await;
    let _worker = worker_trusting(&stack, &ca);
    for n in 1..=3 {
        stack.producer.publish(&finding_event(&format!("tenant-{n}"))).await.expect("published");
    }
    wait_until(Duration::from_secs(60), "three deliveries over HTTP/2", || async {
        h2.requests().len() >= 3
    })
    .await;
    let got = h2.requests();
    assert_eq!(got.len(), 3, "each delivery once");
    for req in &got {
        assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/h2"));
        assert_eq!(req.header("host"), Some(format!("localhost:{}", h2.port()).as_str()));
        assert_eq!(req.header("content-type"), Some("application/json"));
        // The receiver's check, written here from the seed's definition: HMAC-SHA256 of the
        // exact body bytes with the secret.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(&req.body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(req.header("x-coderaft-signature"), Some(expected.as_str()), "{req:?}");
        assert_eq!(req.json()["event"], "finding.new");
    }
    let handshakes = h2.handshakes();
    assert!(
        !handshakes.is_empty() && handshakes.iter().all(|p| p.as_deref() == Some("h2")),
        "{handshakes:?}"
    );
}
