//! Queue shards: every command sees and writes the right shard.

use super::*;

/// Queue shards (`NOTIFY_QUEUE_SHARDS`) on one redis-server: shards are key tags, which one
/// server holds as well as a cluster.
const SHARDS: u16 = 3;

/// The shards the CLI uses with `NOTIFY_QUEUE_SHARDS=3`, on the test's connection.
async fn sharded(redis: &RedisServer) -> Shards {
    let layout = ShardLayout::new(&KeySpace::default(), SHARDS, None).expect("layout");
    Shards::on(&queue(redis).await, layout)
}

/// An endpoint id whose deliveries and state live in shard `k`.
fn endpoint_in(shards: &Shards, k: usize) -> EndpointId {
    shards.layout().endpoint_id_in(k)
}

/// A dead letter of a delivery to `endpoint`, made in the endpoint's shard as a worker does.
async fn dead_in_shard(shards: &Shards, endpoint: &EndpointId, reason: &str) -> (String, DeliveryJob) {
    let mut job = failed_delivery(&[500]);
    job.endpoint_id = endpoint.clone();
    let id = deliver_and_die(shards.for_endpoint(endpoint), &job, reason).await;
    (id, job)
}

/// The deliveries waiting in one shard (ready, then retry list), by delivery id; events (a
/// breaker's announcement) are left out.
async fn waiting_in(shards: &Shards, k: usize) -> Vec<String> {
    let q = &shards.served()[k];
    let mut conn = q.connection();
    let mut raw: Vec<String> = conn.lrange(q.keys().ready(), 0, -1).await.expect("lrange");
    let retry: Vec<String> = conn.lrange(q.keys().retry(), 0, -1).await.expect("lrange");
    raw.extend(retry);
    raw.iter()
        .filter_map(|r| match Job::decode(r.as_bytes()).expect("job decodes") {
            Job::Delivery(d) => Some(d.delivery_id.to_string()),
            _ => None,
        })
        .collect()
}

/// Empties one shard's ready and retry lists.
async fn clear_waiting(shards: &Shards, k: usize) {
    let q = &shards.served()[k];
    let mut conn = q.connection();
    let _: () = conn.del(&[q.keys().ready(), q.keys().retry()]).await.expect("del");
}

/// Dead letters of endpoints in shards 1 and 2 are listed together, shown, replayed into the
/// shard they died in, and purged, one or all; with one shard the CLI sees only shard 0's.
#[tokio::test]
async fn dlq_commands_see_every_queue_shard() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let shards = sharded(&redis).await;
    let env = [("NOTIFY_QUEUE_SHARDS", "3")];
    let (e1, e2) = (endpoint_in(&shards, 1), endpoint_in(&shards, 2));
    let (d1, _) = dead_in_shard(&shards, &e1, "gave up in shard 1").await;
    let (d2, job2) = dead_in_shard(&shards, &e2, "gave up in shard 2").await;

    let ids = |v: serde_json::Value| -> Vec<String> {
        let mut ids: Vec<String> =
            v.as_array().expect("array").iter().filter_map(|e| e["id"].as_str().map(str::to_owned)).collect();
        ids.sort();
        ids
    };
    let mut both = vec![d1.clone(), d2.clone()];
    both.sort();
    let list = cli.run_with(&["--json", "dlq", "list"], None, &env).await.json();
    assert_eq!(ids(list), both, "every shard's dead letters are listed");
    // The flag works like the variable; one shard (the default) sees shard 0 only.
    let flag = cli.run(&["--json", "--queue-shards", "3", "dlq", "list"]).await.json();
    assert_eq!(ids(flag), both);
    assert_eq!(cli.run(&["--json", "dlq", "list"]).await.json(), serde_json::json!([]));
    // Paging walks the merged list.
    let first = cli.run_with(&["--json", "dlq", "list", "--limit", "1"], None, &env).await.json();
    let second =
        cli.run_with(&["--json", "dlq", "list", "--limit", "1", "--offset", "1"], None, &env).await.json();
    let mut paged = [ids(first), ids(second)].concat();
    paged.sort();
    assert_eq!(paged, both, "two pages of one hold both");
    let mine = cli.run_with(&["--json", "dlq", "list", "--endpoint", e2.as_str()], None, &env).await.json();
    assert_eq!(ids(mine), vec![d2.clone()]);
    let table = cli.run_with(&["dlq", "list"], None, &env).await;
    assert!(table.ok().contains(&d1) && table.stdout.contains(&d2), "{}", table.stdout);

    // Show finds it in its shard.
    let shown = cli.run_with(&["dlq", "show", &d2], None, &env).await;
    assert_eq!(line_value(shown.ok(), "reason"), "gave up in shard 2");
    cli.run(&["dlq", "show", &d2]).await.fails(1, "not found");

    // Replay one: back in shard 2's lists, not shard 0's.
    cli.run(&["dlq", "replay", &d2]).await.fails(1, "not found");
    let replayed = cli.run_with(&["dlq", "replay", &d2], None, &env).await;
    assert_eq!(replayed.ok().trim(), format!("replayed {d2}"));
    assert_eq!(waiting_in(&shards, 2).await, vec![job2.delivery_id.to_string()]);
    assert!(waiting_in(&shards, 0).await.is_empty() && waiting_in(&shards, 1).await.is_empty());
    let left = cli.run_with(&["--json", "dlq", "list"], None, &env).await.json();
    assert_eq!(ids(left), vec![d1.clone()]);

    // Purge one finds it in shard 1.
    cli.run(&["dlq", "purge", &d1]).await.fails(1, "not found");
    assert_eq!(cli.run_with(&["dlq", "purge", &d1], None, &env).await.ok().trim(), format!("purged {d1}"));
    assert_eq!(shards.served()[1].stats().await.expect("stats").dead, 0);

    // Replay all and purge all go through every shard.
    clear_waiting(&shards, 2).await;
    let e0 = endpoint_in(&shards, 0);
    for e in [&e0, &e1, &e2] {
        dead_in_shard(&shards, e, "gave up").await;
    }
    let all =
        cli.run_with(&["--json", "dlq", "replay", "--all", "--endpoint", e1.as_str()], None, &env).await;
    assert_eq!(all.json(), serde_json::json!({ "replayed": 1, "not_replayable": 0 }));
    assert_eq!(waiting_in(&shards, 1).await.len(), 1, "replayed in shard 1");
    let purged = cli.run_with(&["dlq", "purge", "--all", "--yes"], None, &env).await;
    assert_eq!(purged.ok().trim(), "purged 2");
    assert_eq!(shards.stats().await.expect("stats").dead, 0);
}

/// `stats` sums the shards and, with more than one, prints each (its tag and depths) and the
/// events forwarding between them; one shard prints the one-row table.
#[tokio::test]
async fn stats_sum_queue_shards_and_show_each() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let shards = sharded(&redis).await;
    let env = [("NOTIFY_QUEUE_SHARDS", "3")];
    let tags: Vec<String> = shards.served().iter().map(|q| q.keys().tag().to_owned()).collect();
    // Shard 0: one ready job; shard 1: two ready jobs and one forwarded event waiting in its
    // outbox for shard 2; shard 2: a dead letter.
    shards.served()[0].push(&["{\"x\":0}".to_owned()]).await.expect("push");
    shards.served()[1].push(&["{\"x\":1}".to_owned(), "{\"x\":2}".to_owned()]).await.expect("push");
    let mut conn = redis.connection().await;
    let _: () = conn.zadd(shards.served()[1].keys().outbox(2), "{\"x\":3}", 1).await.expect("zadd");
    dead_in_shard(&shards, &endpoint_in(&shards, 2), "gave up").await;

    let stats = cli.run_with(&["--json", "stats"], None, &env).await.json();
    assert_eq!(
        (stats["ready"].clone(), stats["dead"].clone(), stats["forwarding"].clone()),
        (3.into(), 1.into(), 1.into()),
        "summed: {stats}"
    );
    let rows = stats["shards"].as_array().expect("one row per shard");
    let row = |tag: &str, ready: u64, dead: u64, forwarding: u64| {
        serde_json::json!({
            "shard": tag, "draining": false, "ready": ready, "retrying": 0, "parked": 0, "processing": 0,
            "scheduled": 0, "dead": dead, "forwarding": forwarding,
        })
    };
    assert_eq!(
        rows,
        &vec![row(&tags[0], 1, 0, 0), row(&tags[1], 2, 0, 1), row(&tags[2], 0, 1, 0)],
        "{stats}"
    );

    let table = cli.run_with(&["stats"], None, &env).await;
    let lines: Vec<Vec<&str>> = table.ok().lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0].last(), Some(&"forwarding"), "{}", table.stdout);
    // The dead letter's event body is kept once (`event_bodies` 1).
    assert_eq!(
        lines[1],
        vec!["3", "0", "0", "0", "0", "0", "1", "0", "0", "0", "0", "1", "1"],
        "{}",
        table.stdout
    );
    assert!(lines[2].is_empty(), "{}", table.stdout);
    assert_eq!(
        lines[3],
        vec!["shard", "ready", "retrying", "parked", "processing", "scheduled", "dead", "forwarding"]
    );
    assert_eq!(lines[4], vec![tags[0].as_str(), "1", "0", "0", "0", "0", "0", "0"]);
    assert_eq!(lines[5], vec![tags[1].as_str(), "2", "0", "0", "0", "0", "0", "1"]);
    assert_eq!(lines[6], vec![tags[2].as_str(), "0", "0", "0", "0", "0", "1", "0"]);
    assert_eq!(lines.len(), 7, "{}", table.stdout);

    // One shard: shard 0's figures, no per-shard rows.
    let one = cli.run(&["--json", "stats"]).await.json();
    assert_eq!((one["ready"].clone(), one["dead"].clone()), (1.into(), 0.into()), "{one}");
    assert!(one.get("shards").is_none(), "{one}");
    assert_eq!(cli.run(&["stats"]).await.ok().lines().count(), 2);

    // Shards of an earlier count still drained are counted, and marked.
    let drain = cli
        .run_with(&["--json", "stats"], None, &[("NOTIFY_QUEUE_SHARDS", "2"), ("NOTIFY_DRAIN_SHARDS", "3")])
        .await
        .json();
    let layout = ShardLayout::new(&KeySpace::default(), 2, Some(3)).expect("layout");
    let rows = drain["shards"].as_array().expect("rows");
    assert_eq!(rows.len(), layout.served().count(), "{drain}");
    let draining: Vec<bool> = rows.iter().map(|r| r["draining"] == true).collect();
    assert_eq!(draining, (0..rows.len()).map(|i| i >= 2).collect::<Vec<_>>(), "{drain}");
}

/// An endpoint homed in a shard other than 0: `endpoint show`, `deliveries`, `redeliver`,
/// `reset` and `enable` read and write its breaker, lane and history in that shard, while its
/// record stays in shard 0.
#[tokio::test]
async fn endpoint_state_is_read_and_written_in_its_shard() {
    use entraguard_core::breaker::{BreakerSettings, BreakerState, Report};
    use entraguard_core::history::{AttemptResult, DeliveryRecord};
    use entraguard_core::store::EndpointStore;

    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let shards = sharded(&redis).await;
    let env = [("NOTIFY_QUEUE_SHARDS", "3")];
    let id = endpoint_in(&shards, 2);
    let draft: entraguard_core::EndpointDraft = serde_json::from_value(serde_json::json!({
        "name": "Shard two", "channel": "webhook", "target": HOOK, "events": ["all"]
    }))
    .expect("draft");
    let ep = draft
        .validate_as(id.clone(), Timestamp::now(), entraguard_core::TargetPolicy { allow_http: false })
        .expect("valid");
    EndpointStore::new(shards.home().connection(), KeySpace::default()).put(&ep).await.expect("stored");

    // Its state, written where the workers write it: shard 2.
    let q = &shards.served()[2];
    let settings = BreakerSettings { failures: 1, ..BreakerSettings::default() };
    let failure = Report::Failure { error: "HTTP 503 from the receiver", probe: false };
    q.breaker_report(&id, None, failure, &settings).await.expect("breaker opens");
    let worker = WorkerId::generate();
    let job = DeliveryJob::new(Event::from_json(SCAN_FAILED.as_bytes()).expect("event"), id.clone());
    let raw = Job::Delivery(job.clone()).encode();
    q.push(std::slice::from_ref(&raw)).await.expect("push");
    let mut fetcher = q.fetcher(&worker, Duration::from_millis(100)).await.expect("fetcher");
    let taken = fetcher.try_fetch().await.expect("fetch").expect("the job");
    assert!(q.park(&taken, &job, Duration::from_secs(600)).await.expect("park"), "parked");
    let attempt =
        AttemptRecord { attempt: 1, at: Timestamp::now(), duration_ms: 40, status: Some(503), error: None };
    q.record_history(&id, &[DeliveryRecord::new(&job, &attempt, AttemptResult::Retry, [], None)])
        .await
        .expect("history");
    let mut conn = redis.connection().await;
    let _: () = conn.hset(q.keys().suppressed(), id.as_str(), 4).await.expect("hset");

    // Show: the breaker, the parked delivery and the suppressed count of shard 2.
    let shown = cli.run_with(&["--json", "endpoint", "show", id.as_str()], None, &env).await.json();
    assert_eq!(shown["name"], "Shard two", "the record is read from shard 0: {shown}");
    assert_eq!(
        (shown["breaker"]["state"].clone(), shown["breaker"]["parked"].clone(), shown["suppressed"].clone()),
        ("open".into(), 1.into(), 4.into()),
        "{shown}"
    );
    let unsharded = cli.run(&["--json", "endpoint", "show", id.as_str()]).await.json();
    assert_eq!(unsharded["breaker"]["state"], "closed", "shard 0 knows nothing of it: {unsharded}");
    let text = cli.run_with(&["endpoint", "show", id.as_str()], None, &env).await;
    assert!(line_value(text.ok(), "breaker").starts_with("open"), "{}", text.stdout);

    // Recent Deliveries from shard 2; Redeliver into shard 2.
    let history = cli.run_with(&["--json", "endpoint", "deliveries", id.as_str()], None, &env).await.json();
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
    assert_eq!(history[0]["delivery_id"], job.delivery_id.as_str());
    let none = cli.run(&["--json", "endpoint", "deliveries", id.as_str()]).await.json();
    assert_eq!(none, serde_json::json!([]));
    let dlv = job.delivery_id.to_string();
    let again = cli.run_with(&["endpoint", "redeliver", id.as_str(), &dlv], None, &env).await;
    assert_eq!(again.ok().trim(), format!("redelivering {dlv}"));
    assert_eq!(waiting_in(&shards, 2).await, vec![dlv.clone()]);
    assert!(waiting_in(&shards, 0).await.is_empty(), "nothing in shard 0");

    // Reset closes shard 2's breaker and releases its lane there.
    let reset = cli.run_with(&["endpoint", "reset", id.as_str()], None, &env).await;
    assert!(reset.ok().contains("breaker closed; 1 waiting delivery resumes"), "{}", reset.stdout);
    let status = q.breaker_status(&id).await.expect("status");
    assert_eq!((status.state, status.parked), (BreakerState::Closed, 0));
    assert_eq!(waiting_in(&shards, 2).await, vec![dlv.clone(), dlv.clone()], "released into shard 2");
    assert!(waiting_in(&shards, 0).await.is_empty(), "nothing in shard 0");

    // Enable (after disable) resets the breaker in shard 2 too.
    q.breaker_report(&id, None, failure, &settings).await.expect("breaker opens again");
    cli.run_with(&["endpoint", "disable", id.as_str()], None, &env).await.ok();
    let enabled = cli.run_with(&["endpoint", "enable", id.as_str()], None, &env).await;
    assert!(enabled.ok().contains(&format!("enabled {id}")), "{}", enabled.stdout);
    assert_eq!(q.breaker_status(&id).await.expect("status").state, BreakerState::Closed);
}

/// `shards` names each shard's tag, slot and lists without reaching Redis (none runs here): the
/// lists a KEDA trigger watches. Three shards land in three thirds of the slot range.
#[tokio::test]
async fn shards_are_named_without_redis() {
    let out = tokio::process::Command::new(BIN)
        .args(["--redis-url", "redis://127.0.0.1:1", "--queue-shards", "3", "--json", "shards"])
        .env_remove("REDIS_URL")
        .env_remove("NOTIFY_QUEUE_SHARDS")
        .env_remove("NOTIFY_DRAIN_SHARDS")
        .output()
        .await
        .expect("cli runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["ready"], "{entraguard}:ready");
    let mut thirds: Vec<u64> = rows.iter().map(|r| r["slot"].as_u64().expect("slot") * 3 / 16384).collect();
    thirds.sort_unstable();
    assert_eq!(thirds, vec![0, 1, 2], "{rows:?}");
    for r in rows {
        let tag = r["tag"].as_str().expect("tag");
        assert_eq!(r["retry"], format!("{tag}:retry"));
    }
}

/// `layout raise` and `layout lower` set every shard's layout version, shard 0 first going up
/// and last going down (what a release without fair share checks at its start); on version 3
/// each shard keeps its fresh events in its own tenant flows (the first to the ready list, to
/// wake a worker), and lowering moves each shard's flows to its own ready list.
#[tokio::test]
async fn layout_raises_and_lowers_every_shard() {
    use entraguard_core::queue::Publishing;
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let shards = sharded(&redis).await;
    let env = [("NOTIFY_QUEUE_SHARDS", "3")];
    let tags: Vec<String> = shards.served().iter().map(|q| q.keys().tag().to_owned()).collect();
    let column = |v: &serde_json::Value, field: &str| -> Vec<serde_json::Value> {
        v.as_array().expect("rows").iter().map(|r| r[field].clone()).collect()
    };
    let raised = cli.run_with(&["--json", "layout", "raise"], None, &env).await.json();
    assert_eq!(column(&raised, "shard"), tags.iter().map(|t| serde_json::json!(t)).collect::<Vec<_>>());
    assert_eq!(column(&raised, "set"), vec![serde_json::json!(true); 3]);
    for k in [1, 2] {
        let jobs: Vec<Publishing> = (0..3)
            .map(|i| Publishing {
                id: format!("evt-{k}-{i}"),
                urgent: false,
                tenant: Some(format!("tenant-{i}")),
                job: format!("{{\"x\":\"{k}-{i}\"}}"),
            })
            .collect();
        shards.served()[k].publish(&jobs, Duration::from_secs(60)).await.expect("publish");
    }
    let shown = cli.run_with(&["--json", "layout"], None, &env).await.json();
    assert_eq!(column(&shown, "version"), vec![serde_json::json!("3"); 3]);
    assert_eq!(column(&shown, "flows"), [0, 2, 2].map(|n| serde_json::json!(n)).to_vec(), "{shown}");
    assert_eq!(column(&shown, "waiting_in_flows"), [0, 2, 2].map(|n| serde_json::json!(n)).to_vec());
    let stats = cli.run_with(&["--json", "stats"], None, &env).await.json();
    assert_eq!((&stats["ready"], &stats["flows"]), (&serde_json::json!(6), &serde_json::json!(4)), "{stats}");

    let lowered = cli.run_with(&["--json", "layout", "lower"], None, &env).await.json();
    let mut down: Vec<serde_json::Value> = tags.iter().map(|t| serde_json::json!(t)).collect();
    down.reverse();
    assert_eq!(column(&lowered, "shard"), down, "shard 0 last");
    assert_eq!(column(&lowered, "moved"), [2, 2, 0].map(|n| serde_json::json!(n)).to_vec());
    for k in [1, 2] {
        let q = &shards.served()[k];
        let ready: Vec<String> = q.connection().lrange(q.keys().ready(), 0, -1).await.expect("lrange");
        assert_eq!(
            ready,
            (0..3).map(|i| format!("{{\"x\":\"{k}-{i}\"}}")).collect::<Vec<_>>(),
            "shard {k}: every event on its ready list, in order"
        );
    }
    let shown = cli.run_with(&["--json", "layout"], None, &env).await.json();
    assert_eq!(column(&shown, "version"), vec![serde_json::json!("1"); 3]);
    assert_eq!(column(&shown, "flows"), vec![serde_json::json!(0); 3]);
}
