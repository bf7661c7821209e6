//! Queue shards (`NOTIFY_QUEUE_SHARDS`): events placed by event id, deliveries by endpoint, the
//! fan-out handing other shards' endpoints their events through an outbox moved exactly once;
//! on a real local Redis Cluster (one shard per primary) and, where the cluster adds nothing, on
//! one server (shards are hash tags; one server holds them all).

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use entraguard_core::endpoint::{Endpoint, EndpointDraft, TargetPolicy};
use entraguard_core::event::Event;
use entraguard_core::job::{EventJob, Job};
use entraguard_core::queue::{QueueStats, Shards};
use entraguard_core::redis_conn::{RedisConfig, RedisUrl};
use entraguard_core::shards::ShardLayout;
use entraguard_core::store::EndpointStore;
use entraguard_producer::{Producer, ProducerConfig};
use entraguard_testkit::{HttpReceiver, RedisCluster, RedisServer, Reply, bin_path, wait_until};
use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

use crate::harness::{finding_event, keys, low_finding_event, spawn_worker_binary};

mod layout;

const SHARDS: u16 = 3;

/// A deployment with three queue shards, reached through `url` (one server or a cluster).
struct Sharded {
    url: String,
    layout: ShardLayout,
    shards: Shards,
    store: EndpointStore,
    producer: Producer,
}

impl Sharded {
    async fn on(url: String) -> Sharded {
        let layout = ShardLayout::new(&keys(), SHARDS, None).expect("layout");
        let shards = Shards::connect(&RedisConfig::new(RedisUrl::parse(&url).expect("url")), layout.clone())
            .await
            .expect("shards connect");
        let store = EndpointStore::new(shards.connection(), keys());
        let config = ProducerConfig::from_url(&url).expect("url").with_queue_shards(SHARDS).expect("count");
        let producer = Producer::connect(&config).await.expect("producer");
        Sharded { url, layout, shards, store, producer }
    }

    fn worker(&self, overrides: &[&str]) -> tokio::process::Child {
        let mut args = vec!["--queue-shards", "3"];
        args.extend_from_slice(overrides);
        spawn_worker_binary(&self.url, &args)
    }

    /// A webhook endpoint to `target` whose id lands in shard `shard`.
    async fn endpoint_in(&self, shard: usize, target: &str, rules: &str) -> Endpoint {
        let mut ep = EndpointDraft {
            name: format!("shard {shard}"),
            channel: "webhook".into(),
            target: target.into(),
            events: vec!["finding.new".into()],
            enabled: true,
            secret: None,
            ed25519: None,
            teams_format: None,
            rate_limit: None,
            rules: serde_json::from_str(rules).expect("rules draft"),
        }
        .validate(TargetPolicy { allow_http: true })
        .expect("valid endpoint");
        ep.id = self.layout.endpoint_id_in(shard);
        self.store.put(&ep).await.expect("endpoint stored");
        ep
    }

    /// A finding event for `tenant` whose id lands in shard `shard`.
    fn event_in(&self, shard: usize, tenant: &str) -> Event {
        (0..1000)
            .map(|_| finding_event(tenant))
            .find(|e| self.layout.of_event(&e.id.to_string()) == shard)
            .expect("an event id for the shard")
    }

    async fn stats(&self) -> QueueStats {
        self.shards.stats().await.expect("stats over the shards")
    }

    async fn wait_drained(&self, deadline: Duration) {
        wait_until(deadline, "every shard drained, outboxes empty", || async {
            self.shards.stats().await.is_ok_and(|s| s.is_drained())
        })
        .await;
    }

    async fn int(&self, cmd: &mut redis::Cmd) -> i64 {
        let mut conn = self.shards.connection();
        cmd.query_async(&mut conn).await.expect("redis answers")
    }
}

fn event_id(r: &entraguard_testkit::Recorded) -> String {
    r.json()["id"].as_str().unwrap_or_default().to_owned()
}

/// Three shards on a 3-primary cluster, one per primary; one endpoint homed in each; 60 events
/// (half urgent, half through the fair-share flows of four tenants) published (placed by id over
/// the shards) while two worker processes serve every shard. Each
/// endpoint gets each event exactly once; each event was published into one shard only and
/// moved into each other shard exactly once; each endpoint's deliveries ran in its own shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_on_the_cluster_deliver_every_event_once_to_every_shard() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start).await.expect("cluster starts");
    let d = Sharded::on(cluster.url()).await;
    let owners: HashSet<usize> =
        (0..d.layout.count()).map(|i| cluster.primary_for(&d.layout.keys(i).ready())).collect();
    assert_eq!(owners.len(), 3, "one shard per primary: {owners:?}");

    let receivers: Vec<HttpReceiver> = (0..3).map(|_| HttpReceiver::start()).collect();
    let mut endpoints = Vec::new();
    for (shard, r) in receivers.iter().enumerate() {
        endpoints.push(d.endpoint_in(shard, &r.url(), "{}").await);
    }
    let mut workers = [d.worker(&[]), d.worker(&[])];
    // The first worker records fair share (layout version 3) on every shard: each shard's
    // scripts read their own shard's record.
    for i in 0..d.layout.count() {
        wait_until(Duration::from_secs(60), &format!("shard {i} records version 3"), || async {
            d.shards.served()[i].fair_share().await.is_ok_and(|f| f.version.as_deref() == Some("3"))
        })
        .await;
    }
    // Every other event low: not urgent, so it waits in its tenant's flow, then (moved in from
    // another shard's outbox) in the target shard's, and its deliveries in their endpoint's.
    let sent: Vec<Event> = (0..60)
        .map(|i| {
            let tenant = format!("t-sharded-{}", i % 4);
            if i % 2 == 0 { finding_event(&tenant) } else { low_finding_event(&tenant) }
        })
        .collect();
    d.producer.publish_batch(&sent).await.expect("published over the shards");

    let want: HashSet<String> = sent.iter().map(|e| e.id.to_string()).collect();
    for r in &receivers {
        let got = r.wait_for_requests(60, Duration::from_secs(90)).await;
        let ids: HashSet<String> = got.iter().map(event_id).collect();
        assert_eq!(ids, want, "every event reached the endpoint");
    }
    d.wait_drained(Duration::from_secs(60)).await;
    for r in &receivers {
        assert_eq!(r.requests().len(), 60, "each event once, nothing twice");
    }

    let mut placed = 0;
    for i in 0..d.layout.count() {
        let k = d.layout.keys(i);
        let here = sent.iter().filter(|e| d.layout.of_event(&e.id.to_string()) == i).count();
        let published = d.int(redis::cmd("ZCARD").arg(k.published())).await;
        assert_eq!(published, i64::try_from(here).unwrap_or(0), "shard {i} took the events its ids name");
        placed += published;
        // Every event homed elsewhere was moved in exactly once (its endpoint lives here).
        let forwarded = d.int(redis::cmd("ZCARD").arg(k.forwarded())).await;
        assert_eq!(forwarded, 60 - published, "shard {i} received the other shards' events once each");
        for (j, ep) in endpoints.iter().enumerate() {
            let history = d.int(redis::cmd("EXISTS").arg(k.history(ep.id.as_str()))).await;
            assert_eq!(
                history == 1,
                i == j,
                "endpoint {j}'s deliveries ran in its shard only (looked in {i})"
            );
        }
    }
    assert_eq!(placed, 60);
    for w in &mut workers {
        w.kill().await.expect("worker stopped");
    }
}

/// A dedupe window is decided in the endpoint's shard: the same finding sent twice as two
/// events placed in two different shards reaches the endpoint once, and the second is counted
/// as suppressed in the endpoint's shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedupe_window_holds_across_events_placed_in_different_shards() {
    let redis = RedisServer::start();
    let d = Sharded::on(redis.url()).await;
    let receiver = HttpReceiver::start();
    let ep = d.endpoint_in(2, &receiver.url(), r#"{"dedupe_window":"1h"}"#).await;
    let mut worker = d.worker(&[]);
    let first = d.event_in(0, "t-dedupe");
    let second = d.event_in(1, "t-dedupe");
    d.producer.publish(&first).await.expect("published");
    receiver.wait_for_requests(1, Duration::from_secs(60)).await;
    d.producer.publish(&second).await.expect("published");
    let home = d.shards.for_endpoint(&ep.id);
    wait_until(Duration::from_secs(60), "the second finding suppressed in the endpoint's shard", || async {
        home.suppressed_count(&ep.id).await.is_ok_and(|n| n == 1)
    })
    .await;
    d.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(receiver.requests().len(), 1, "the same finding once, whichever shard took its events");
    worker.kill().await.expect("worker stopped");
}

/// A worker killed after its fan-out step and before moving the outbox entry (reproduced by
/// writing the entry as that step does, with no worker to move it), and a worker killed after
/// the move and before the outbox removal (the entry still in the outbox, its copy already in
/// the target shard): a worker starting later sweeps both, so the first event is delivered
/// once and the second once, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_entries_left_behind_are_moved_once() {
    let redis = RedisServer::start();
    let d = Sharded::on(redis.url()).await;
    let receiver = HttpReceiver::start();
    let ep = d.endpoint_in(1, &receiver.url(), "{}").await;
    let forward = |tenant: &str| {
        let event = d.event_in(0, tenant);
        let job =
            Job::Event(EventJob { endpoints: Some(vec![ep.id.clone()]), ..EventJob::new(event.clone()) })
                .encode();
        (event, job)
    };
    let (never_moved, never_moved_job) = forward("t-left-1");
    let (moved, moved_job) = forward("t-left-2");
    let outbox = d.layout.keys(0).outbox(1);
    for job in [&never_moved_job, &moved_job, &"not a job".to_owned()] {
        // Scored long ago, as if its worker died then.
        let _: i64 = d.int(redis::cmd("ZADD").arg(&outbox).arg(1).arg(job)).await;
    }
    // The second was moved already: in shard 1's ready list, its id in shard 1's forwarded set.
    let target = d.layout.keys(1);
    let _: i64 = d.int(redis::cmd("RPUSH").arg(target.ready()).arg(&moved_job)).await;
    let now = d.shards.home().redis_time_ms().await.expect("time");
    let _: i64 = d.int(redis::cmd("ZADD").arg(target.forwarded()).arg(now).arg(moved.id.to_string())).await;

    let mut worker = d.worker(&[]);
    let got = receiver.wait_for_requests(2, Duration::from_secs(60)).await;
    d.wait_drained(Duration::from_secs(60)).await;
    let ids: Vec<String> = receiver.requests().iter().map(event_id).collect();
    assert_eq!(ids.len(), 2, "each once: {ids:?}");
    let ids: HashSet<String> = got.iter().map(event_id).collect();
    assert!(ids.contains(&never_moved.id.to_string()) && ids.contains(&moved.id.to_string()), "{ids:?}");
    assert_eq!(d.int(redis::cmd("ZCARD").arg(&outbox)).await, 0, "the outbox is empty");
    let dead =
        d.shards.dead_letter_summaries_matching(&Default::default(), 0, 10).await.expect("dead letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].reason.contains("undecodable"), "the corrupt entry, with the reason: {dead:?}");
    assert_eq!(d.int(redis::cmd("LLEN").arg(target.dlq())).await, 1, "in the target shard");
    worker.kill().await.expect("worker stopped");
}

/// A breaker that disables an endpoint homed outside shard 0 cannot write the endpoint's
/// record (in shard 0) in its own step; the worker writes it right after, so the record, the
/// page and the CLI say disabled too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_disabling_an_endpoint_in_another_shard_marks_its_record() {
    let redis = RedisServer::start();
    let d = Sharded::on(redis.url()).await;
    let receiver = HttpReceiver::with_default(Reply::status(503));
    let ep = d.endpoint_in(1, &receiver.url(), "{}").await;
    let mut worker = d.worker(&["--breaker-probe", "200ms", "--endpoint-disable-after", "1s"]);
    let events: Vec<Event> = (0..5).map(|i| d.event_in(0, &format!("t-disable-{i}"))).collect();
    d.producer.publish_batch(&events).await.expect("published");
    let home = d.shards.for_endpoint(&ep.id);
    wait_until(Duration::from_secs(60), "the breaker disabled the endpoint in its shard", || async {
        home.breaker_status(&ep.id)
            .await
            .is_ok_and(|s| s.state == entraguard_core::breaker::BreakerState::Disabled)
    })
    .await;
    wait_until(Duration::from_secs(30), "the endpoint's record says disabled", || async {
        d.store.get(&ep.id).await.is_ok_and(|e| e.is_some_and(|e| !e.enabled))
    })
    .await;
    worker.kill().await.expect("worker stopped");
}

/// Retry → dead letter → replay with the failing endpoint homed in a shard other than 0: the
/// dead letter lives in that shard, `stats` and the CLI see it, and the CLI replays it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_in_another_shard_is_listed_and_replayed_on_the_cluster() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start).await.expect("cluster starts");
    let d = Sharded::on(cluster.url()).await;
    let receiver = HttpReceiver::with_default(Reply::status(503));
    let ep = d.endpoint_in(2, &receiver.url(), "{}").await;
    let mut worker = d.worker(&[]);
    d.producer.publish(&d.event_in(0, "t-dead")).await.expect("published");
    wait_until(Duration::from_secs(60), "one dead letter", || async {
        d.shards.stats().await.is_ok_and(|s| s.dead == 1)
    })
    .await;
    assert_eq!(receiver.requests().len(), 4, "the first attempt and three retries");
    let home = d.shards.for_endpoint(&ep.id);
    let in_its_shard = d.int(redis::cmd("LLEN").arg(home.keys().dlq())).await;
    assert_eq!(in_its_shard, 1, "dead-lettered in the endpoint's shard");

    receiver.set_default(Reply::status(200));
    let cli = |args: &'static [&'static str]| {
        Command::new(bin_path("entraguard-notify"))
            .args(["--redis-url", &d.url, "--queue-shards", "3"])
            .args(args)
            .env_remove("REDIS_URL")
            .stderr(Stdio::piped())
            .output()
    };
    let list = cli(&["dlq", "list", "--json"]).await.expect("cli runs");
    assert!(list.status.success(), "dlq list: {}", String::from_utf8_lossy(&list.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    let listed =
        listed.as_array().cloned().or_else(|| listed["items"].as_array().cloned()).unwrap_or_default();
    assert_eq!(listed.len(), 1, "the CLI lists the dead letter of shard 2: {listed:?}");
    let out = cli(&["dlq", "replay", "--all"]).await.expect("cli runs");
    assert!(out.status.success(), "dlq replay: {}", String::from_utf8_lossy(&out.stderr));
    let got = receiver.wait_for_requests(5, Duration::from_secs(60)).await;
    assert_eq!(event_id(&got[4]), event_id(&got[0]), "the same event, replayed");
    d.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(d.stats().await.dead, 0);
    worker.kill().await.expect("worker stopped");
}

/// A worker SIGKILLed while a delivery of an endpoint homed in shard 1 hangs: a replacement
/// takes the same delivery over from the dead worker's processing list in that shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_delivery_loses_nothing_with_shards() {
    crate::cluster::killed_worker_run(SHARDS).await;
}

/// An idle worker serving three shards sends each shard at most one command a second (counted
/// with `MONITOR`, which shows what clients send apart from what scripts run inside Redis),
/// with the production defaults for the fetch block and the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_sends_each_shard_at_most_one_command_a_second() {
    let redis = RedisServer::start();
    let d = Sharded::on(redis.url()).await;
    let mut monitor = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "monitor"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-cli monitor");
    let mut lines = tokio::io::BufReader::new(monitor.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next_line().await.expect("monitor answers").as_deref(), Some("OK"));
    let mut worker = d.worker(&["--fetch-block", "5s", "--lease", "15s"]);
    // Past start-up: the last thing a worker does then is sweep each shard's outboxes once.
    let mut swept: HashSet<usize> = HashSet::new();
    let start_up = Instant::now() + Duration::from_secs(120);
    while swept.len() < d.layout.count() {
        let line = tokio::time::timeout_at(start_up.into(), lines.next_line())
            .await
            .expect("the worker swept every shard's outboxes at start-up")
            .expect("monitor runs")
            .expect("monitor runs");
        if let Some(i) = (0..d.layout.count()).find(|i| {
            line.contains("\"ZRANGE\"") && line.contains(&format!("\"{}:outbox:", d.layout.keys(*i).tag()))
        }) {
            swept.insert(i);
        }
    }
    let window = Duration::from_secs(30);
    let until = Instant::now() + window;
    let mut per_shard: HashMap<String, usize> = HashMap::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout_at(until.into(), lines.next_line()).await {
        if line.contains("lua]") {
            continue;
        }
        // Attribute each client command to the shard whose tag it names (keyless: TIME).
        let shard = (0..d.layout.count())
            .find(|i| line.contains(&format!("\"{}:", d.layout.keys(*i).tag())))
            .map_or_else(|| "keyless".to_owned(), |i| i.to_string());
        *per_shard.entry(shard).or_default() += 1;
    }
    monitor.kill().await.expect("monitor stopped");
    let keyless = per_shard.get("keyless").copied().unwrap_or(0);
    println!("figure: idle worker, 3 shards, commands in {window:?}: {per_shard:?}");
    for i in 0..d.layout.count() {
        let n = per_shard.get(&i.to_string()).copied().unwrap_or(0);
        assert!(n > 0, "shard {i} is served (its lease is renewed): {per_shard:?}");
        // Keyless commands (the sweep's TIME) are charged to every shard, to be strict.
        let rate = (n + keyless) as f64 / window.as_secs_f64();
        assert!(rate <= 1.0, "shard {i}: {rate:.2} commands/s idle: {per_shard:?}");
    }
    worker.kill().await.expect("worker stopped");
}

/// An outbox entry leaves its outbox only once the target shard's replicas hold the moved copy,
/// when the deployment asks for replicas (`NOTIFY_PUBLISH_REPLICAS`, which workers read too):
/// otherwise a failover of the target's primary right after the move loses an event whose
/// publish a replica confirmed. On one server there is no replica, so the move is refused as
/// not replicated and the entry stays for the sweep; moved again without the wait, it is
/// removed and enqueued once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_entry_stays_until_the_target_shards_replicas_hold_it() {
    let redis = RedisServer::start();
    let d = Sharded::on(redis.url()).await;
    let job = Job::Event(EventJob::new(finding_event("t-forward"))).encode();
    let (from, to) = (d.layout.keys(0), d.layout.keys(1));
    let _: i64 = d.int(redis::cmd("ZADD").arg(from.outbox(1)).arg(1).arg(&job)).await;
    let waiting = d.shards.clone().with_forward_replicas(1, Duration::from_millis(200));
    let e = waiting.forward(0, 1, std::slice::from_ref(&job)).await.expect_err("no replica holds the copy");
    assert!(matches!(e, entraguard_core::queue::QueueError::NotReplicated { wanted: 1, got: 0, .. }), "{e}");
    assert_eq!(d.int(redis::cmd("ZCARD").arg(from.outbox(1))).await, 1, "still in the outbox");
    assert_eq!(d.int(redis::cmd("LLEN").arg(to.ready())).await, 1, "the primary has the copy");
    let f = d.shards.forward(0, 1, std::slice::from_ref(&job)).await.expect("moved without the wait");
    assert_eq!((f.moved, f.duplicates), (0, 1), "moving again enqueues nothing twice");
    assert_eq!(d.int(redis::cmd("ZCARD").arg(from.outbox(1))).await, 0, "gone from the outbox");
    assert_eq!(d.int(redis::cmd("LLEN").arg(to.ready())).await, 1, "enqueued once");
}

/// The primary owning shard 1 SIGKILLed while 5 000 events flow over three shards (every
/// delivery goes to an endpoint homed in shard 1, through the outboxes): its replica takes
/// over, the workers carry on, and with `NOTIFY_PUBLISH_REPLICAS=1` no acknowledged publish is
/// lost; without it, loss is reported (replication is asynchronous).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_owning_a_shard_killed_while_events_flow_loses_no_replicated_publish() {
    for replicas in [0u32, 1] {
        let lost = crate::cluster::failover_run(replicas, SHARDS).await;
        println!(
            "figure: failover of shard 1's primary with NOTIFY_PUBLISH_REPLICAS={replicas}: {lost} lost"
        );
        if replicas > 0 {
            assert_eq!(lost, 0, "a publish confirmed by a replica survives the failover");
        }
    }
}
