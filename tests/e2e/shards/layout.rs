//! Changing the shard count: draining the old shards (`drain-shards`), and a process started on
//! another count than the one Redis records refused loudly with nothing stranded.

use super::*;

/// Going from 3 shards to 4 (the procedure in docs/deploy-and-scaling.md; shard 1's tag moves, so
/// one old shard is no longer placed in): events published with the old count wait in that shard; a
/// worker with only the new count leaves them there, and one given `NOTIFY_DRAIN_SHARDS` = the old
/// count delivers them, with the events published under the new count, each once to every endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_shard_count_drains_the_old_shards_with_drain_shards() {
    let redis = RedisServer::start();
    let d = Sharded::on(redis.url()).await;
    let config = RedisConfig::new(RedisUrl::parse(&d.url).expect("url"));
    let new = ShardLayout::new(&keys(), 4, None).expect("layout");
    let new_shards = Shards::connect(&config, new.clone()).await.expect("shards");
    let gone: Vec<_> = (0..d.layout.count())
        .map(|i| d.layout.keys(i).clone())
        .filter(|k| !(0..new.count()).any(|j| new.keys(j) == k))
        .collect();
    assert!(!gone.is_empty(), "the old count has a shard the new one lacks");
    let receivers: Vec<HttpReceiver> = (0..3).map(|_| HttpReceiver::start()).collect();
    for (shard, r) in receivers.iter().enumerate() {
        d.endpoint_in(shard, &r.url(), "{}").await;
    }
    let before: Vec<Event> = (0..30).map(|i| finding_event(&format!("t-old-{i}"))).collect();
    d.producer.publish_batch(&before).await.expect("published under the old count");
    let waiting_in_gone = || async {
        let mut n = 0;
        for k in &gone {
            n += d.int(redis::cmd("LLEN").arg(k.ready())).await;
        }
        n
    };
    let stranded = waiting_in_gone().await;
    assert!(stranded > 0, "some events went to a shard the new count lacks");

    // The new count alone (NOTIFY_DRAIN_SHARDS forgotten) refuses to start: it would leave the
    // old shard's events there; nothing is touched.
    let new_worker = |extra: &[&str]| {
        let mut args = vec!["--queue-shards", "4"];
        args.extend_from_slice(extra);
        spawn_worker_binary(&d.url, &args)
    };
    let refused = refused_worker(&d.url, &["--queue-shards", "4"]).await;
    assert!(refused.contains("NOTIFY_DRAIN_SHARDS=3"), "the fix is named: {refused}");
    assert_eq!(waiting_in_gone().await, stranded, "a refused worker leaves everything where it was");
    let early = Producer::connect(
        &ProducerConfig::from_url(&d.url).expect("url").with_queue_shards(4).expect("count"),
    )
    .await;
    assert!(
        matches!(early, Err(entraguard_producer::PublishError::ShardLayout(_))),
        "a producer on the new count before any worker changed it is refused"
    );

    // With NOTIFY_DRAIN_SHARDS = the old count, the worker records the new count and drains.
    let mut draining = new_worker(&["--drain-shards", "3"]);
    wait_until(Duration::from_secs(60), "the worker recorded the new count", || async {
        recorded_count(&d.url).await == Some(4)
    })
    .await;
    let producer = Producer::connect(
        &ProducerConfig::from_url(&d.url).expect("url").with_queue_shards(4).expect("count"),
    )
    .await
    .expect("producer");
    let after: Vec<Event> = (0..30).map(|i| finding_event(&format!("t-new-{i}"))).collect();
    producer.publish_batch(&after).await.expect("published under the new count");
    let want: HashSet<String> = before.iter().chain(&after).map(|e| e.id.to_string()).collect();
    for r in &receivers {
        let got = r.wait_for_requests(60, Duration::from_secs(90)).await;
        let ids: HashSet<String> = got.iter().map(event_id).collect();
        assert_eq!(ids, want, "every event, old count or new, reached the endpoint");
    }
    let with_drain = Shards::connect(&config, ShardLayout::new(&keys(), 4, Some(3)).expect("layout"))
        .await
        .expect("shards");
    wait_until(Duration::from_secs(60), "old and new shards drained", || async {
        with_drain.stats().await.is_ok_and(|s| {
            s.ready == 0 && s.retrying == 0 && s.processing == 0 && s.scheduled == 0 && s.forwarding == 0
        })
    })
    .await;
    assert_eq!(waiting_in_gone().await, 0);
    for r in &receivers {
        assert_eq!(r.requests().len(), 60, "nothing twice");
    }
    let (old_producer, stale) = (d.producer.clone(), finding_event("t-stale"));
    tokio::time::sleep(entraguard_producer::LAYOUT_RECHECK).await;
    let e = old_producer.publish(&stale).await.expect_err("a producer left on the old count is refused");
    assert!(e.to_string().contains("records 4"), "{e}");
    draining.kill().await.expect("worker stopped");
    // Work left in an old shard once no worker drains it is still counted by `stats` (the CLI
    // on the new count, without NOTIFY_DRAIN_SHARDS): the recorded layout names the old count.
    let left = Job::Event(EventJob::new(finding_event("t-left"))).encode();
    let _: i64 = d.int(redis::cmd("RPUSH").arg(gone[0].ready()).arg(&left)).await;
    let stats = cli_output(&d.url, &["--queue-shards", "4", "--json", "stats"]).await;
    assert!(stats.status.success(), "{}", String::from_utf8_lossy(&stats.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("stats JSON");
    assert_eq!(stats["ready"], 1, "the old shard's job is counted: {stats}");
    let rows = stats["shards"].as_array().cloned().unwrap_or_default();
    assert!(
        rows.iter().any(|r| r["shard"] == gone[0].tag() && r["ready"] == 1 && r["draining"] == true),
        "the old shard has its row: {stats}"
    );
    let _ = new_shards;
}

/// The count recorded in the deployment's layout hash.
async fn recorded_count(url: &str) -> Option<u16> {
    let shards =
        Shards::connect(&RedisConfig::new(RedisUrl::parse(url).expect("url")), ShardLayout::single(keys()))
            .await
            .ok()?;
    shards.recorded_layout().await.ok()?.count
}

/// Runs the CLI against `url` with `args`, and its output.
async fn cli_output(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(bin_path("entraguard-notify"))
        .args(["--redis-url", url])
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("NOTIFY_QUEUE_SHARDS")
        .env_remove("NOTIFY_DRAIN_SHARDS")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("cli runs")
}

/// Starts a worker binary with `overrides` that must refuse to start; its stderr, once it
/// exited with a failure naming the shard counts.
async fn refused_worker(url: &str, overrides: &[&str]) -> String {
    let (code, stderr) =
        crate::harness::refused_worker_binary(url, overrides, "serving the wrong shards").await;
    assert!(code.is_some_and(|c| c != 0), "refused with a failure exit: {stderr}");
    assert!(stderr.contains("queue shard") && stderr.contains("NOTIFY_QUEUE_SHARDS="), "{stderr}");
    stderr
}

/// The mismatch, both ways, on one server. A producer on 3 shards and the only worker
/// on 1: the worker refuses to start (naming both counts and the fix), so nothing waits in
/// shards it would never serve; a worker on 3 then delivers all 30 events. The reverse, a
/// worker on 1 first: a producer on 3 is refused and enqueues nothing. A CLI or admin server
/// left on 1 against the 3-shard deployment refuses instead of reporting "breaker: closed" for
/// breakers it does not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_on_another_shard_count_is_refused_loudly_and_nothing_is_stranded() {
    // Producer 3, worker 1.
    let redis = RedisServer::start();
    let d = Sharded::on(redis.url()).await;
    let receiver = HttpReceiver::start();
    let ep = d.endpoint_in(1, &receiver.url(), "{}").await;
    let sent: Vec<Event> = (0..30).map(|i| finding_event(&format!("t-mismatch-{i}"))).collect();
    d.producer.publish_batch(&sent).await.expect("published over three shards");
    let refused = refused_worker(&d.url, &["--queue-shards", "1"]).await;
    for want in ["NOTIFY_QUEUE_SHARDS=1", "records 3", "{entraguard}:layout", "NOTIFY_QUEUE_SHARDS=3"] {
        assert!(refused.contains(want), "{want:?} in: {refused}");
    }
    // The CLI and the admin server on 1 shard refuse too, exit 1, naming both counts.
    let id = ep.id.to_string();
    for args in [vec!["stats"], vec!["endpoint", "show", &id], vec!["endpoint", "reset", &id]] {
        let out = cli_output(&d.url, &args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?} refused: {stderr}");
        assert!(
            stderr.contains("NOTIFY_QUEUE_SHARDS=1") && stderr.contains("records 3"),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?} reports nothing it did not read");
    }
    let admin = Command::new(bin_path("entraguard-admin"))
        .args(["--redis-url", &d.url, "--insecure-local-only"])
        .env_remove("REDIS_URL")
        .env_remove("NOTIFY_QUEUE_SHARDS")
        .env("NOTIFY_ADMIN_ADDR", format!("127.0.0.1:{}", entraguard_testkit::free_port()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let admin =
        tokio::time::timeout(Duration::from_secs(60), admin).await.expect("admin exits").expect("admin runs");
    let stderr = String::from_utf8_lossy(&admin.stderr);
    assert!(!admin.status.success() && stderr.contains("records 3"), "admin refused: {stderr}");
    // Nothing was stranded: a worker on the recorded count delivers every event.
    let mut worker = d.worker(&[]);
    let got = receiver.wait_for_requests(30, Duration::from_secs(90)).await;
    let ids: HashSet<String> = got.iter().map(event_id).collect();
    assert_eq!(ids.len(), 30, "all 30 events delivered");
    d.wait_drained(Duration::from_secs(60)).await;
    worker.kill().await.expect("worker stopped");

    // Worker 1 first (records 1), producer 3.
    let redis = RedisServer::start();
    let url = redis.url();
    let mut worker = spawn_worker_binary(&url, &[]);
    wait_until(Duration::from_secs(60), "the first worker recorded its count", || async {
        recorded_count(&url).await == Some(1)
    })
    .await;
    let three = ProducerConfig::from_url(&url).expect("url").with_queue_shards(3).expect("count");
    let e = Producer::connect(&three).await.err().expect("a producer on 3 shards is refused");
    assert!(matches!(e, entraguard_producer::PublishError::ShardLayout(_)), "{e}");
    let text = e.to_string();
    assert!(text.contains("NOTIFY_QUEUE_SHARDS=3") && text.contains("records 1"), "{text}");
    let layout = ShardLayout::new(&keys(), 3, None).expect("layout");
    let shards = Shards::connect(&RedisConfig::new(RedisUrl::parse(&url).expect("url")), layout)
        .await
        .expect("shards");
    let stats = shards.stats().await.expect("stats");
    assert_eq!((stats.ready, stats.retrying), (0, 0), "nothing enqueued in any of the 3 shards");
    // The CLI on 3 shards is refused the same way.
    let out = cli_output(&url, &["--queue-shards", "3", "stats"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    worker.kill().await.expect("worker stopped");
}
