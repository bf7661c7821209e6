//! `publish`: valid events enqueued, bad input refused whole.

use super::*;

#[tokio::test]
async fn publish_enqueues_valid_events_and_refuses_bad_input_whole() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let mut conn = redis.connection().await;

    let out = cli.run_with(&["publish"], Some(SCAN_FAILED), &[]).await;
    let id = out.ok().trim().to_owned();
    assert!(id.starts_with("evt_") && !id.contains('\n'), "one event id: {id:?}");
    let ready: Vec<String> = conn.lrange("{entraguard}:ready", 0, -1).await.expect("lrange");
    assert_eq!(ready.len(), 1);
    match Job::decode(ready[0].as_bytes()).expect("the job decodes") {
        Job::Event(job) => assert_eq!(job.event.id.to_string(), id),
        other => panic!("expected an event job, got {other:?}"),
    }

    let batch = format!("[{SCAN_FAILED}, {SCAN_FAILED}]");
    for (input, must_name) in [
        ("{not json", "invalid event JSON"),
        (r#"{"event":"finding.exploded","tenant_id":"t"}"#, "finding.exploded"),
        (r#"{"event":"scan.failed","tenant_id":"t"}"#, "scan"),
        (&format!("[{SCAN_FAILED}, {{\"event\":\"scan.failed\"}}]"), "event #1"),
        ("[1, 2", "invalid event JSON array"),
        ("", "no input"),
        ("   \n", "no input"),
    ] {
        cli.run_with(&["publish"], Some(input), &[]).await.fails(2, must_name);
    }
    let n: u64 = conn.llen("{entraguard}:ready").await.expect("llen");
    assert_eq!(n, 1, "nothing enqueued by a refused publish");

    // A batch from a file, with --json; `-` reads stdin.
    let file = cli.dir.path().join("events.json");
    std::fs::write(&file, &batch).expect("write events");
    let ids = cli.run(&["publish", "--json", "events.json"]).await.json();
    assert_eq!(ids.as_array().map(Vec::len), Some(2), "{ids}");
    assert!(ids[0].as_str().is_some_and(|s| s.starts_with("evt_")));
    let out = cli.run_with(&["publish", "-"], Some(SCAN_FAILED), &[]).await;
    assert_eq!(out.ok().lines().count(), 1);
    let n: u64 = conn.llen("{entraguard}:ready").await.expect("llen");
    assert_eq!(n, 4);

    cli.run(&["publish", "missing.json"]).await.fails(2, "missing.json");
}

/// Issue 24: kinds only the notifier makes are refused with the producer's one message, and a
/// batch over the limit is bad input: both exit 2, as the help says, and nothing is enqueued.
#[tokio::test]
async fn publish_refuses_notifier_only_kinds_and_oversized_batches_as_bad_input() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let mut conn = redis.connection().await;
    let health = r#"{"event":"endpoint.health_changed","tenant_id":"8d6310d1-0000","endpoint":{"id":"ep_01JSAMPLE","name":"SOAR","state":"disabled","parked":999,"since":"2026-04-28T07:12:43Z"}}"#;
    let digest = r#"{"event":"finding.digest","tenant_id":"t","digest":{}}"#;
    let out = cli.run_with(&["publish"], Some(health), &[]).await;
    out.fails(2, "`endpoint.health_changed` is made only by the notifier and cannot be published");
    assert!(!out.stderr.contains("finding.digest"), "{}", out.stderr);
    let in_batch = format!("[{SCAN_FAILED}, {health}]");
    cli.run_with(&["publish"], Some(&in_batch), &[]).await.fails(2, "event #1 of the array");
    // A digest body that does not even parse still names the kind's refusal or the body.
    let out = cli.run_with(&["publish"], Some(digest), &[]).await;
    assert_eq!(out.code, Some(2), "{}", out.all());
    let out = cli.run_with(&["publish"], Some(r#"{"event":"finding.exploded","tenant_id":"t"}"#), &[]).await;
    out.fails(2, "expected one of scan.completed");
    assert!(
        !out.stderr.contains("finding.digest") && !out.stderr.contains("health_changed"),
        "{}",
        out.stderr
    );

    let many = format!("[{}]", vec![SCAN_FAILED; 10_001].join(","));
    cli.run_with(&["publish"], Some(&many), &[]).await.fails(2, "at most 10000 events; this one has 10001");
    let n: u64 = conn.llen("{entraguard}:ready").await.expect("llen");
    assert_eq!(n, 0, "nothing enqueued by a refused publish");
}
