//! The queue on a real local Redis Cluster (3 primaries + 3 replicas): every binary speaks the
//! cluster protocol through any seed node; publish → delivery, retry → dead letter → replay and a
//! SIGKILLed worker behave as on one server; a primary killed while events flow fails over to its
//! replica and the workers carry on without a restart.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use entraguard_core::endpoint::Endpoint;
use entraguard_core::queue::{Queue, QueueStats, Shards};
use entraguard_core::redis_conn::{RedisConfig, RedisUrl};
use entraguard_core::shards::ShardLayout;
use entraguard_core::store::EndpointStore;
use entraguard_producer::{Event, Producer, ProducerConfig, PublishError};
use entraguard_testkit::{HttpReceiver, RedisCluster, Reply, bin_path, test_log_filter, wait_until};
use tokio::process::{Child, Command};

use crate::harness::{endpoint, finding_event, keys, spawn_worker_binary};

/// The key whose slot holds the whole queue (every key shares the `{entraguard}` hash tag).
const QUEUE_KEY: &str = "{entraguard}:ready";

/// One test's cluster and handles on it, reached through `url`.
struct ClusterStack {
    cluster: RedisCluster,
    url: String,
    producer: Producer,
    queue: Queue,
    store: EndpointStore,
}

impl ClusterStack {
    async fn start() -> ClusterStack {
        Self::start_sharded(1).await
    }

    /// A cluster whose deployment runs `shards` queue shards: the stack's own producer is the
    /// first process to connect, so it records that count (`{entraguard}:layout`).
    async fn start_sharded(shards: u16) -> ClusterStack {
        let cluster = tokio::task::spawn_blocking(RedisCluster::start).await.expect("cluster starts");
        let url = cluster.url();
        Self::via_sharded(cluster, url, shards).await
    }

    async fn via(cluster: RedisCluster, url: String) -> ClusterStack {
        Self::via_sharded(cluster, url, 1).await
    }

    async fn via_sharded(cluster: RedisCluster, url: String, shards: u16) -> ClusterStack {
        let config = ProducerConfig::from_url(&url).expect("url").with_queue_shards(shards).expect("count");
        let producer = Producer::connect(&config).await.expect("producer");
        let queue = Queue::connect(&RedisConfig::new(RedisUrl::parse(&url).expect("url")), keys())
            .await
            .expect("queue connects to the cluster");
        let store = EndpointStore::new(queue.connection(), keys());
        ClusterStack { cluster, url, producer, queue, store }
    }

    fn spawn_worker_process(&self, overrides: &[&str]) -> Child {
        spawn_worker_binary(&self.url, overrides)
    }

    async fn add_endpoint(&self, target: &str) -> Endpoint {
        let ep = endpoint("webhook", target, &["finding.new"], None);
        self.store.put(&ep).await.expect("endpoint stored on the cluster");
        ep
    }

    async fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin_path("entraguard-notify"))
            .args(["--redis-url", &self.url])
            .args(args)
            .env_remove("REDIS_URL")
            .output()
            .await
            .expect("cli runs")
    }

    async fn wait_stats(&self, what: &str, deadline: Duration, ok: impl Fn(&QueueStats) -> bool) {
        wait_until(deadline, what, || async { self.queue.stats().await.is_ok_and(|s| ok(&s)) }).await;
    }

    async fn wait_drained(&self, deadline: Duration) {
        self.wait_stats("queue drained on the cluster", deadline, |s| {
            s.ready == 0 && s.retrying == 0 && s.parked == 0 && s.processing == 0 && s.scheduled == 0
        })
        .await;
    }
}

fn events(n: usize, tag: &str) -> Vec<Event> {
    (0..n).map(|i| finding_event(&format!("t-{tag}-{i}"))).collect()
}

/// The event id a webhook request carries.
fn event_id(r: &entraguard_testkit::Recorded) -> String {
    r.json()["id"].as_str().unwrap_or_default().to_owned()
}

/// The report, reproduced and closed: a single-node URL pointed at a node that does not
/// own the queue's slot is answered `MOVED`; a `redis+cluster://` URL naming that same node as
/// its only seed works for the CLI, the producer and the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_works_through_a_seed_node_that_does_not_own_the_queue() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start).await.expect("cluster starts");
    let other = cluster.node_not_owning(QUEUE_KEY);
    let port = cluster.node(other).port();

    let single = format!("redis://127.0.0.1:{port}");
    let out = Command::new(bin_path("entraguard-notify"))
        .args(["--redis-url", &single, "stats"])
        .env_remove("REDIS_URL")
        .output()
        .await
        .expect("cli runs");
    let said = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(!out.status.success() && said.contains("moved"), "a single-node URL is answered MOVED: {said}");
    assert!(said.contains("redis+cluster://"), "the error names the fix: {said}");

    let url = cluster.url_via(other);
    let stack = ClusterStack::via(cluster, url).await;
    let receiver = HttpReceiver::start();
    let add = stack
        .cli(&[
            "endpoint",
            "add",
            "--name",
            "soc",
            "--channel",
            "webhook",
            "--target",
            &receiver.url(),
            "--events",
            "finding.new",
        ])
        .await;
    // The CLI refuses plain-HTTP targets by default; store it directly then (the point here is
    // that the CLI reached the cluster: a MOVED error would name the slot).
    let add_err = String::from_utf8_lossy(&add.stderr).to_lowercase();
    assert!(!add_err.contains("moved"), "endpoint add reached the cluster: {add_err}");
    if !add.status.success() {
        stack.add_endpoint(&receiver.url()).await;
    }
    let stats = stack.cli(&["stats", "--json"]).await;
    assert!(stats.status.success(), "stats on the cluster: {}", String::from_utf8_lossy(&stats.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("stats JSON");
    assert_eq!(stats["endpoints"], 1, "{stats}");

    // The admin server too: its API reads the cluster (stats and the endpoint list).
    let admin_addr = format!("127.0.0.1:{}", entraguard_testkit::free_port());
    let mut admin = Command::new(bin_path("entraguard-admin"))
        .args(["--redis-url", &stack.url, "--insecure-local-only"])
        .env_remove("REDIS_URL")
        .env("NOTIFY_ADMIN_ADDR", &admin_addr)
        .env("RUST_LOG", test_log_filter())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("admin binary starts");
    let api = format!("http://{admin_addr}/api/endpoints");
    wait_until(Duration::from_secs(60), "the admin API lists the endpoint from the cluster", || async {
        match reqwest::get(&api).await {
            Ok(r) if r.status().is_success() => {
                let body = r.text().await.unwrap_or_default();
                serde_json::from_str::<serde_json::Value>(&body)
                    .is_ok_and(|v| v.as_array().is_some_and(|a| a.len() == 1))
            }
            _ => false,
        }
    })
    .await;
    admin.kill().await.expect("admin stopped");

    let mut worker = stack.spawn_worker_process(&[]);
    let sent = events(20, "seed");
    stack.producer.publish_batch(&sent).await.expect("published to the cluster");
    let got = receiver.wait_for_requests(20, Duration::from_secs(60)).await;
    let tenants: HashSet<String> = got.iter().map(event_id).collect();
    assert_eq!(tenants.len(), 20, "every event delivered once: {tenants:?}");
    stack.wait_drained(Duration::from_secs(30)).await;
    worker.kill().await.expect("worker stopped");
}

/// Retry → dead letter → replay on the cluster: the failed attempts are re-scheduled through the
/// delayed set, the dead letter is listed and replayed by the CLI, and arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_dead_letter_and_replay_on_the_cluster() {
    let stack = ClusterStack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(503));
    stack.add_endpoint(&receiver.url()).await;
    let mut worker = stack.spawn_worker_process(&[]);
    stack.producer.publish(&finding_event("t-dead")).await.expect("published");
    stack.wait_stats("one dead letter", Duration::from_secs(60), |s| s.dead == 1).await;
    assert_eq!(receiver.requests().len(), 4, "the first attempt and three retries");

    receiver.set_default(Reply::status(200));
    let out = stack.cli(&["dlq", "replay", "--all"]).await;
    assert!(out.status.success(), "dlq replay: {}", String::from_utf8_lossy(&out.stderr));
    let got = receiver.wait_for_requests(5, Duration::from_secs(60)).await;
    assert_eq!(event_id(&got[4]), event_id(&got[0]), "the same event, replayed");
    stack.wait_drained(Duration::from_secs(30)).await;
    stack.wait_stats("dead letter gone", Duration::from_secs(30), |s| s.dead == 0).await;
    assert_eq!(receiver.requests().len(), 5, "delivered once more, once");
    worker.kill().await.expect("worker stopped");
}

/// A worker SIGKILLed while a delivery hangs: another worker takes the delivery over from the
/// dead one's processing list, on the cluster as on one server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_delivery_loses_nothing_on_the_cluster() {
    killed_worker_run(1).await;
}

/// With `shards` queue shards: the endpoint homed in shard 1 (its delivery crosses shards
/// through an outbox) and the event placed wherever its id says.
pub(crate) async fn killed_worker_run(shards: u16) {
    let stack = ClusterStack::start_sharded(shards).await;
    let layout = ShardLayout::new(&keys(), shards, None).expect("layout");
    let producer = Producer::connect(
        &ProducerConfig::from_url(&stack.url).expect("url").with_queue_shards(shards).expect("count"),
    )
    .await
    .expect("producer");
    let all_shards =
        Shards::connect(&RedisConfig::new(RedisUrl::parse(&stack.url).expect("url")), layout.clone())
            .await
            .expect("shards");
    let receiver = HttpReceiver::start();
    receiver.push_replies([Reply::status(200).delay(Duration::from_secs(3))]);
    let mut ep = endpoint("webhook", &receiver.url(), &["finding.new"], None);
    ep.id = layout.endpoint_id_in(usize::from(shards > 1));
    stack.store.put(&ep).await.expect("endpoint stored on the cluster");
    let count = shards.to_string();
    let mut victim = stack.spawn_worker_process(&["--queue-shards", &count]);
    producer.publish(&finding_event("t-kill")).await.expect("published");
    let first = receiver.wait_for_requests(1, Duration::from_secs(60)).await;
    victim.kill().await.expect("SIGKILL and reaped");
    let mut replacement = stack.spawn_worker_process(&["--queue-shards", &count]);
    let got = receiver.wait_for_requests(2, Duration::from_secs(60)).await;
    assert_eq!(
        got[1].header("x-coderaft-delivery"),
        first[0].header("x-coderaft-delivery"),
        "the same delivery, taken over"
    );
    wait_until(Duration::from_secs(30), "every shard drained", || async {
        all_shards.stats().await.is_ok_and(|s| s.is_drained())
    })
    .await;
    replacement.kill().await.expect("worker stopped");
}

/// What a failover costs, measured: 5 000 events published in batches of 50 while two workers
/// deliver; the primary owning the queue is SIGKILLed a third of the way in and its replica
/// takes over. Counted: events whose publish was acknowledged vs events delivered. Without
/// `NOTIFY_PUBLISH_REPLICAS` an acknowledged publish may be lost (asynchronous replication);
/// with 1, none may be. Either way nothing is stuck afterwards and the workers were never
/// restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_while_events_flow_fails_over_and_loses_no_replicated_publish() {
    for replicas in [0u32, 1] {
        let lost = failover_run(replicas, 1).await;
        println!(
            "figure: failover with NOTIFY_PUBLISH_REPLICAS={replicas}: {lost} acknowledged publishes lost"
        );
        if replicas > 0 {
            assert_eq!(lost, 0, "a publish confirmed by a replica survives the failover");
        }
    }
}

/// With `shards` queue shards (`NOTIFY_QUEUE_SHARDS`): events spread over every shard, the
/// endpoint homed in shard 1 (so every delivery crosses shards through an outbox), and the
/// primary killed is the one owning shard 1.
pub(crate) async fn failover_run(replicas: u32, shards: u16) -> usize {
    const TOTAL: usize = 5_000;
    const BATCH: usize = 50;
    let mut stack = ClusterStack::start_sharded(shards).await;
    let layout = ShardLayout::new(&keys(), shards, None).expect("layout");
    let target = usize::from(shards > 1);
    let producer = Producer::connect(
        &ProducerConfig::from_url(&stack.url)
            .expect("url")
            .with_publish_replicas(replicas)
            .with_queue_shards(shards)
            .expect("count"),
    )
    .await
    .expect("producer");
    let all_shards =
        Shards::connect(&RedisConfig::new(RedisUrl::parse(&stack.url).expect("url")), layout.clone())
            .await
            .expect("shards");
    let receiver = HttpReceiver::start();
    let mut ep = endpoint("webhook", &receiver.url(), &["finding.new"], None);
    ep.id = layout.endpoint_id_in(target);
    stack.store.put(&ep).await.expect("endpoint stored on the cluster");
    let count = shards.to_string();
    // Workers wait for the same replicas when they move an event between shards' outboxes.
    let waits = replicas.to_string();
    let args = ["--queue-shards", &count, "--publish-replicas", &waits];
    let mut workers = [stack.spawn_worker_process(&args), stack.spawn_worker_process(&args)];
    let queue_key = layout.keys(target).ready();

    // The scanner's side: publishes batch after batch, retrying a refused or unanswered one as
    // a scanner would (the event id makes a retry of one that did land harmless). Only events
    // whose publish was acknowledged are counted.
    let all = events(TOTAL, &format!("fo{replicas}"));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let publisher = {
        let acked = acked.clone();
        tokio::spawn(async move {
            for batch in all.chunks(BATCH) {
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    match producer.publish_batch(batch).await {
                        Ok(_) => {
                            acked.lock().expect("lock").extend(batch.iter().map(|e| e.id.to_string()));
                            break;
                        }
                        Err(
                            e @ (PublishError::Redis(_)
                            | PublishError::Timeout(_)
                            | PublishError::NotReplicated { .. }),
                        ) => {
                            assert!(
                                Instant::now() < deadline,
                                "publishing never recovered after the failover: {e}"
                            );
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("unexpected publish error: {e}"),
                    }
                }
            }
        })
    };

    // Kill the queue's primary while publishes and deliveries are in flight.
    wait_until(Duration::from_secs(120), "a third of the events published", || async {
        acked.lock().expect("lock").len() >= TOTAL / 3
    })
    .await;
    let owner = stack.cluster.primary_for(&queue_key);
    let killed_at = Instant::now();
    stack.cluster.node_mut(owner).kill();
    let new_owner = {
        let c = &stack.cluster;
        tokio::task::block_in_place(|| c.wait_failover(&queue_key, owner, Duration::from_secs(60)))
    };
    let failover = killed_at.elapsed();
    // The orchestrator restarts the dead node; it rejoins as the new primary's replica (until
    // then a publish that asks for a replica is refused: there is none).
    tokio::task::block_in_place(|| stack.cluster.node_mut(owner).restart());
    publisher.await.expect("the publisher finished");
    let acked: HashSet<String> = acked.lock().expect("lock").iter().cloned().collect();

    // Nothing stuck: the queue drains on the promoted replica, with the same worker processes.
    wait_until(Duration::from_secs(120), "every shard drained after the failover", || async {
        all_shards.stats().await.is_ok_and(|s| s.is_drained())
    })
    .await;
    for w in &mut workers {
        assert!(w.try_wait().expect("worker status").is_none(), "a worker exited during the failover");
    }
    let delivered: HashSet<String> = receiver.requests().iter().map(event_id).collect();
    let lost = acked.difference(&delivered).count();
    println!(
        "figure: failover ({replicas} replicas, {shards} shards): primary {owner} killed, node {new_owner} promoted after {failover:?}; \
         {} acknowledged, {} delivered (unique), {} requests, {lost} acknowledged but lost",
        acked.len(),
        delivered.len(),
        receiver.requests().len()
    );
    for w in &mut workers {
        w.kill().await.expect("worker stopped");
    }
    lost
}

/// TLS and a password on every node (client links, cluster bus, replication): the producer, the
/// queue and a worker process reach the cluster through `rediss+cluster://default:…@` with the
/// private CA, as they reach one server over TLS; without the CA nothing connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_a_password_on_the_cluster() {
    use entraguard_testkit::TestCa;
    let ca = TestCa::new();
    let cluster = {
        let builder = RedisCluster::builder().tls(&ca).password("s3cret-pw");
        tokio::task::spawn_blocking(move || builder.start()).await.expect("cluster starts")
    };
    let url = cluster.url();
    assert!(url.starts_with("rediss+cluster://default:s3cret-pw@127.0.0.1:"), "{url}");

    let untrusted = Queue::connect(&RedisConfig::new(RedisUrl::parse(&url).expect("url")), keys()).await;
    assert!(untrusted.is_err(), "connected without trusting the CA");

    let mut config = RedisConfig::new(RedisUrl::parse(&url).expect("url"));
    config.ca_cert = Some(ca.ca_pem.clone());
    let queue = Queue::connect(&config, keys()).await.expect("TLS connect with the CA");
    let store = EndpointStore::new(queue.connection(), keys());
    let receiver = HttpReceiver::start();
    store.put(&endpoint("webhook", &receiver.url(), &["finding.new"], None)).await.expect("stored");
    let mut pcfg = ProducerConfig::from_url(&url).expect("url");
    pcfg.redis.ca_cert = Some(ca.ca_pem.clone());
    let producer = Producer::connect(&pcfg).await.expect("producer over TLS");

    let ca_path = ca.ca_path().to_string_lossy().into_owned();
    let mut worker = spawn_worker_binary(&url, &["--redis-ca-cert", &ca_path]);
    let sent = events(5, "tls");
    producer.publish_batch(&sent).await.expect("published over TLS");
    let got = receiver.wait_for_requests(5, Duration::from_secs(60)).await;
    let ids: HashSet<String> = got.iter().map(event_id).collect();
    assert_eq!(ids, sent.iter().map(|e| e.id.to_string()).collect::<HashSet<_>>());
    wait_until(Duration::from_secs(30), "drained", || async {
        queue.stats().await.is_ok_and(|s| s.ready == 0 && s.processing == 0)
    })
    .await;
    worker.kill().await.expect("worker stopped");
    drop(cluster);
}
