//! The benchmark's environment: its Redis (its own, or `--redis-url`), the producer, the store,
//! worker processes, and the process measurements (CPU time, peak memory).

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use entraguard_core::endpoint::{Endpoint, EndpointDraft, TargetPolicy};
use entraguard_core::keys::KeySpace;
use entraguard_core::queue::Queue;
use entraguard_core::queue::Shards;
use entraguard_core::redis_conn::{RedisConfig, RedisUrl};
use entraguard_core::shards::ShardLayout;
use entraguard_core::store::EndpointStore;
use entraguard_producer::{Producer, ProducerConfig};
use entraguard_testkit::{RedisCluster, RedisServer, bin_path};
use tokio::process::{Child, Command};

use crate::Args;

/// The Redis the benchmark started, kept alive for the run.
pub(super) enum OwnRedis {
    Server { _server: RedisServer },
    Cluster { _cluster: RedisCluster },
}

pub(super) struct Env {
    pub(super) _own: Option<OwnRedis>,
    pub(super) url: String,
    pub(super) prefix: String,
    /// Shard 0 (the only one without `--shards`): the endpoint store's.
    pub(super) queue: Queue,
    /// Every queue shard (`--shards`), shard 0 first.
    pub(super) shards: Shards,
    /// The Redis nodes holding the shards (see [`Env::find_nodes`]).
    pub(super) nodes: Vec<(String, Vec<usize>)>,
    pub(super) store: EndpointStore,
    pub(super) producer: Producer,
    /// `--traces`: where the workers export their spans.
    pub(super) otlp: Option<crate::otlp_sink::OtlpSink>,
}

impl Env {
    pub(super) async fn new(args: &Args, count: u16) -> anyhow::Result<Env> {
        // The worker binary is built (if it must be) now, not while a run measures.
        bin_path("entraguard-worker");
        let (own, url) = match &args.redis_url {
            Some(u) => (None, u.clone()),
            None if args.cluster => {
                let c = RedisCluster::start_with(&args.appendfsync);
                let u = c.url();
                (Some(OwnRedis::Cluster { _cluster: c }), u)
            }
            None => {
                let r = RedisServer::builder().appendfsync(&args.appendfsync).start();
                let u = r.url();
                (Some(OwnRedis::Server { _server: r }), u)
            }
        };
        // A private prefix: on a shared Redis the benchmark touches only its own keys.
        let prefix = format!("bench-{}", std::process::id());
        let keys = KeySpace::new(&prefix)?;
        let config = RedisConfig::new(RedisUrl::parse(&url)?);
        let queue = Queue::connect(&config, keys.clone()).await?;
        let shards = Shards::on(&queue, ShardLayout::new(&keys, count, None)?);
        let store = EndpointStore::new(queue.connection(), keys.clone());
        let producer = Producer::connect(
            &ProducerConfig::from_url(&url)?.with_prefix(&prefix)?.with_queue_shards(count)?,
        )
        .await?;
        let nodes = Self::find_nodes(&shards).await?;
        let otlp = if args.traces { Some(crate::otlp_sink::OtlpSink::start()?) } else { None };
        Ok(Env { _own: own, url, prefix, queue, shards, nodes, store, producer, otlp })
    }

    pub(super) async fn cleanup(&self) -> anyhow::Result<()> {
        let mut conn = self.queue.connection();
        for shard in self.shards.served() {
            // Every key of a shard is in one slot: SCAN the node that holds it (on a cluster too).
            let pattern = format!("{}:*", shard.keys().tag());
            let at = shard.keys().ready();
            let mut keys = Vec::new();
            let mut cursor = 0u64;
            loop {
                let (next, batch): (u64, Vec<String>) = conn
                    .query_at(
                        redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000),
                        &at,
                    )
                    .await?;
                keys.extend(batch);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            for chunk in keys.chunks(500) {
                let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
            }
        }
        Ok(())
    }

    /// Lets the last acknowledgements land (nothing left on a processing list, or 10 s), so
    /// what is counted next covers the whole run.
    pub(super) async fn settle(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.shards.stats().await?.processing > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Which Redis node holds each served shard: one entry per node (its `run_id`), with the
    /// shards it holds. One server: one node holding every shard; a cluster with as many
    /// shards as primaries: one shard per node.
    pub(super) async fn find_nodes(shards: &Shards) -> anyhow::Result<Vec<(String, Vec<usize>)>> {
        let mut conn = shards.connection();
        let mut nodes: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, shard) in shards.served().iter().enumerate() {
            let info: String = conn.query_at(redis::cmd("INFO").arg("server"), &shard.keys().ready()).await?;
            let id = info
                .lines()
                .find_map(|l| l.strip_prefix("run_id:"))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default();
            match nodes.iter_mut().find(|(n, _)| *n == id) {
                Some((_, held)) => held.push(i),
                None => nodes.push((id, vec![i])),
            }
        }
        Ok(nodes)
    }

    /// The key that routes a command to the node holding each node's first shard.
    pub(super) fn node_key(&self, node: &(String, Vec<usize>)) -> String {
        self.shards.served()[node.1[0]].keys().ready()
    }

    /// Redis's own CPU time so far (`INFO cpu`: used_cpu_user + used_cpu_sys), summed over the
    /// nodes holding the queue's shards.
    pub(super) async fn redis_cpu(&self) -> anyhow::Result<Duration> {
        let mut total = Duration::ZERO;
        for node in &self.nodes {
            total += self.redis_cpu_at(&self.node_key(node)).await?;
        }
        Ok(total)
    }

    pub(super) async fn redis_cpu_at(&self, key: &str) -> anyhow::Result<Duration> {
        let mut conn = self.queue.connection();
        let info: String = conn.query_at(redis::cmd("INFO").arg("cpu"), key).await?;
        let secs: f64 = info
            .lines()
            .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
            .sum();
        Ok(Duration::from_secs_f64(secs))
    }

    /// Commands run so far, summed over the nodes holding the queue's shards.
    pub(super) async fn command_count(&self) -> anyhow::Result<u64> {
        Ok(self.command_counts().await?.iter().sum())
    }

    /// Commands run so far on each node of [`Env::nodes`] (`INFO commandstats`), in that order.
    pub(super) async fn command_counts(&self) -> anyhow::Result<Vec<u64>> {
        let mut out = Vec::new();
        for node in &self.nodes {
            out.push(self.command_count_at(&self.node_key(node)).await?);
        }
        Ok(out)
    }

    pub(super) async fn command_count_at(&self, key: &str) -> anyhow::Result<u64> {
        let mut conn = self.queue.connection();
        let info: String = conn.query_at(redis::cmd("INFO").arg("commandstats"), key).await?;
        Ok(info
            .lines()
            .filter_map(|l| l.split("calls=").nth(1))
            .filter_map(|r| r.split(',').next())
            .filter_map(|n| n.parse::<u64>().ok())
            .sum())
    }

    pub(super) async fn endpoint(&self, url: &str) -> anyhow::Result<Endpoint> {
        self.endpoint_for(url, "finding.new").await
    }

    pub(super) async fn endpoint_for(&self, url: &str, event: &str) -> anyhow::Result<Endpoint> {
        self.endpoint_with(url, event, Default::default()).await
    }

    pub(super) async fn endpoint_with(
        &self,
        url: &str,
        event: &str,
        rules: entraguard_core::rules::RulesDraft,
    ) -> anyhow::Result<Endpoint> {
        let ep = Self::draft(url, event, rules)?;
        self.store.put(&ep).await?;
        Ok(ep)
    }

    /// An endpoint homed in shard `shard` (ids are drawn until one lands there), stored.
    pub(super) async fn endpoint_in_shard(&self, url: &str, shard: usize) -> anyhow::Result<Endpoint> {
        for _ in 0..10_000 {
            let ep = Self::draft(url, "finding.new", Default::default())?;
            if self.shards.index_of_endpoint(&ep.id) == shard {
                self.store.put(&ep).await?;
                return Ok(ep);
            }
        }
        anyhow::bail!("no endpoint id placed in shard {shard} out of 10 000 drawn")
    }

    /// A validated endpoint with a fresh id, not stored.
    pub(super) fn draft(
        url: &str,
        event: &str,
        rules: entraguard_core::rules::RulesDraft,
    ) -> anyhow::Result<Endpoint> {
        Ok(EndpointDraft {
            name: "bench sink".into(),
            channel: "webhook".into(),
            target: url.into(),
            events: vec![event.into()],
            enabled: true,
            secret: Some(entraguard_core::secret::Secret::new("bench-signing-secret-0123456789")),
            ed25519: None,
            teams_format: None,
            rate_limit: None,
            rules,
        }
        .validate(TargetPolicy { allow_http: true })?)
    }

    pub(super) fn worker(&self, concurrency: usize, extra: &[&str]) -> anyhow::Result<Child> {
        let c = concurrency.to_string();
        let mut command = Command::new(bin_path("entraguard-worker"));
        // Traces on only with `--traces`, to the benchmark's own receiver.
        command.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT").env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        if let Some(otlp) = &self.otlp {
            command.env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.url);
        }
        command
            .args(["--redis-url", &self.url, "--key-prefix", &self.prefix, "--concurrency", &c])
            .args([
                "--allow-http=true",
                "--allow-private-targets",
                "127.0.0.1/32",
                "--endpoint-concurrency",
                &c,
            ])
            .args(["--queue-shards", &self.shards.count().to_string()])
            .args(extra)
            .env_remove("REDIS_URL")
            .env_remove("NOTIFY_QUEUE_SHARDS")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start entraguard-worker")
    }

    /// Waits until a worker has registered (it is connected and fetching).
    pub(super) async fn wait_worker_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.shards.stats().await?.workers > 0 {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "worker did not register within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub(super) async fn stop(mut worker: Child) -> anyhow::Result<()> {
    if let Some(pid) = worker.id() {
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), worker.wait()).await;
    let _ = worker.kill().await;
    Ok(())
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`.
pub(super) fn cpu_time(pid: u32) -> Option<Duration> {
    stat_cpu_time(&format!("/proc/{pid}/stat"))
}

/// CPU time (user + system) the calling thread has used so far, from `/proc/thread-self/stat`:
/// the same count as [`cpu_time`], for one thread of this process.
pub(super) fn thread_cpu_time() -> Option<Duration> {
    stat_cpu_time("/proc/thread-self/stat")
}

/// utime + stime of a `/proc/…/stat` file.
fn stat_cpu_time(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces and parentheses: fields are counted after its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_micros(ticks * 1_000_000 / clock_ticks_per_sec()))
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux we run on; asked of `getconf` to be sure.
pub(super) fn clock_ticks_per_sec() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// Peak resident set of a process, in MiB.
pub(super) fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.split_whitespace().next()?.parse().ok()?;
    Some(kb / 1024.0)
}
