//! The benchmark runs, one function per figure group. Each starts what it needs (a sink, a
//! worker process), measures, prints, and cleans up its keys.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use entraguard_core::endpoint::{Endpoint, EndpointDraft, TargetPolicy};
use entraguard_core::job::{DeliveryJob, Job};
use entraguard_core::keys::KeySpace;
use entraguard_core::queue::Queue;
use entraguard_core::queue::Shards;
use entraguard_core::redis_conn::{RedisConfig, RedisUrl};
use entraguard_core::shards::ShardLayout;
use entraguard_core::store::EndpointStore;
use entraguard_producer::{Event, Producer, ProducerConfig};
use entraguard_testkit::{RedisCluster, RedisServer, bin_path};
use tokio::process::{Child, Command};

use crate::Args;
use crate::sink::{Mode, Sink, stamp};

fn report(metric: &str, value: f64, unit: &str) {
    let value = (value * 100.0).round() / 100.0;
    entraguard_core::outln!(
        "{}",
        serde_json::json!({ "peer": "entraguard", "metric": metric, "value": value, "unit": unit })
    );
}

/// The Redis the benchmark started, kept alive for the run.
enum OwnRedis {
    Server { _server: RedisServer },
    Cluster { _cluster: RedisCluster },
}

struct Env {
    _own: Option<OwnRedis>,
    url: String,
    prefix: String,
    /// Shard 0 (the only one without `--shards`): the endpoint store's.
    queue: Queue,
    /// Every queue shard (`--shards`), shard 0 first.
    shards: Shards,
    /// The Redis nodes holding the shards (see [`Env::find_nodes`]).
    nodes: Vec<(String, Vec<usize>)>,
    store: EndpointStore,
    producer: Producer,
}

impl Env {
    async fn new(args: &Args, count: u16) -> anyhow::Result<Env> {
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
        Ok(Env { _own: own, url, prefix, queue, shards, nodes, store, producer })
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
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
    async fn settle(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.shards.stats().await?.processing > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Which Redis node holds each served shard: one entry per node (its `run_id`), with the
    /// shards it holds. One server: one node holding every shard; a cluster with as many
    /// shards as primaries: one shard per node.
    async fn find_nodes(shards: &Shards) -> anyhow::Result<Vec<(String, Vec<usize>)>> {
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
    fn node_key(&self, node: &(String, Vec<usize>)) -> String {
        self.shards.served()[node.1[0]].keys().ready()
    }

    /// Redis's own CPU time so far (`INFO cpu`: used_cpu_user + used_cpu_sys), summed over the
    /// nodes holding the queue's shards.
    async fn redis_cpu(&self) -> anyhow::Result<Duration> {
        let mut total = Duration::ZERO;
        for node in &self.nodes {
            total += self.redis_cpu_at(&self.node_key(node)).await?;
        }
        Ok(total)
    }

    async fn redis_cpu_at(&self, key: &str) -> anyhow::Result<Duration> {
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
    async fn command_count(&self) -> anyhow::Result<u64> {
        Ok(self.command_counts().await?.iter().sum())
    }

    /// Commands run so far on each node of [`Env::nodes`] (`INFO commandstats`), in that order.
    async fn command_counts(&self) -> anyhow::Result<Vec<u64>> {
        let mut out = Vec::new();
        for node in &self.nodes {
            out.push(self.command_count_at(&self.node_key(node)).await?);
        }
        Ok(out)
    }

    async fn command_count_at(&self, key: &str) -> anyhow::Result<u64> {
        let mut conn = self.queue.connection();
        let info: String = conn.query_at(redis::cmd("INFO").arg("commandstats"), key).await?;
        Ok(info
            .lines()
            .filter_map(|l| l.split("calls=").nth(1))
            .filter_map(|r| r.split(',').next())
            .filter_map(|n| n.parse::<u64>().ok())
            .sum())
    }

    async fn endpoint(&self, url: &str) -> anyhow::Result<Endpoint> {
        self.endpoint_for(url, "finding.new").await
    }

    async fn endpoint_for(&self, url: &str, event: &str) -> anyhow::Result<Endpoint> {
        self.endpoint_with(url, event, Default::default()).await
    }

    async fn endpoint_with(
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
    async fn endpoint_in_shard(&self, url: &str, shard: usize) -> anyhow::Result<Endpoint> {
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
    fn draft(url: &str, event: &str, rules: entraguard_core::rules::RulesDraft) -> anyhow::Result<Endpoint> {
        Ok(EndpointDraft {
            name: "bench sink".into(),
            channel: "webhook".into(),
            target: url.into(),
            events: vec![event.into()],
            enabled: true,
            secret: Some(entraguard_core::secret::Secret::new("bench-signing-secret-0123456789")),
            teams_format: None,
            rules,
        }
        .validate(TargetPolicy { allow_http: true })?)
    }

    fn worker(&self, concurrency: usize, extra: &[&str]) -> anyhow::Result<Child> {
        let c = concurrency.to_string();
        Command::new(bin_path("entraguard-worker"))
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
    async fn wait_worker_ready(&self) -> anyhow::Result<()> {
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

async fn stop(mut worker: Child) -> anyhow::Result<()> {
    if let Some(pid) = worker.id() {
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), worker.wait()).await;
    let _ = worker.kill().await;
    Ok(())
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields are counted after its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_micros(ticks * 1_000_000 / clock_ticks_per_sec()))
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux we run on; asked of `getconf` to be sure.
fn clock_ticks_per_sec() -> u64 {
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
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.split_whitespace().next()?.parse().ok()?;
    Some(kb / 1024.0)
}

fn event(scan_id: &str) -> Event {
    Event::from_json(
        format!(
            r#"{{"event":"finding.new","tenant_id":"8d6310d1-5e4b-4e1c-9d7a-3f0f7a4f2b11","tenant_name":"contoso.onmicrosoft.com","scan_id":"{scan_id}",
            "finding":{{"id":"PIM-002","title":"Excessive permanent privileged roles","severity":"high","category":"privileged-access",
            "affected":["admin@contoso.com","ops@contoso.com"],"remediation_url":"https://entraguard.example.com/api/entraguard/findings/PIM-002"}}}}"#
        )
        .as_bytes(),
    )
    .expect("benchmark event is valid")
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64
}

pub async fn all(args: &Args) -> anyhow::Result<()> {
    if !args.compare_shards.is_empty() {
        return compare(args, &args.compare_shards).await;
    }
    let want = |m: &str| args.only.is_empty() || args.only.iter().any(|o| m.starts_with(o.as_str()));
    let env = Env::new(args, args.shards).await?;
    let n = if args.smoke { 2_000 } else { 100_000 };
    let result = async {
        if want("enqueue") {
            enqueue(&env, n).await?;
        }
        for c in [1usize, 10, 50] {
            if want(&format!("drain_c{c}"))
                || (c == 50 && (want("redis_cmds_per_job") || want("worker_rss_mb")))
            {
                drain(&env, if args.smoke { n / 4 } else { n }, c).await?.report(c);
            }
        }
        if want("e2e") {
            e2e(&env, if args.smoke { 2 } else { 15 }).await?;
        }
        if want("delay_late") {
            delay_late(&env, if args.smoke { 100 } else { 1_000 }).await?;
        }
        if want("idle") {
            idle(&env, if args.smoke { 2 } else { 10 }).await?;
        }
        if want("hang") {
            hang(&env, if args.smoke { 2 } else { 10 }, if args.smoke { 300 } else { 3_000 }).await?;
        }
        if want("breaker") {
            breaker(&env, if args.smoke { 6 } else { 60 }, if args.smoke { 500 } else { 5_000 }).await?;
        }
        if want("fresh_behind_backlog") {
            fresh_behind_backlog(&env, if args.smoke { 5_000 } else { 200_000 }).await?;
        }
        if want("fanout") || args.only.iter().any(|o| o.starts_with("fanout")) {
            fanout(&env, if args.smoke { 1_000 } else { 50_000 }, &want).await?;
        }
        anyhow::Ok(())
    }
    .await;
    env.cleanup().await?;
    result
}

async fn enqueue(env: &Env, n: usize) -> anyhow::Result<()> {
    let events: Vec<Event> = (0..n).map(|i| event(&format!("scan-{i}"))).collect();
    let started = Instant::now();
    for e in &events {
        env.producer.publish(e).await?;
    }
    report("enqueue_single", n as f64 / started.elapsed().as_secs_f64(), "jobs/s");
    env.cleanup().await?;

    let started = Instant::now();
    for chunk in events.chunks(1_000) {
        env.producer.publish_batch(chunk).await?;
    }
    report("enqueue_bulk", n as f64 / started.elapsed().as_secs_f64(), "jobs/s");
    env.cleanup().await
}

/// What one `drain` run measured.
struct Drained {
    /// Queue shards of the run.
    shards: usize,
    jobs_per_s: f64,
    worker_cpu_us: f64,
    redis_cpu_us: f64,
    sink_cpu_share: Option<f64>,
    /// Commands over every node holding a shard, per job.
    cmds_per_job: f64,
    /// Per node holding shards: the shards it holds and its commands per job of those shards.
    cmds_per_node: Vec<(Vec<usize>, f64)>,
    worker_rss_mb: Option<f64>,
}

impl Drained {
    /// `(name, value)` of the per-shard command counts: `shard{i}` for a shard alone on its
    /// node, `shards{i}+{j}…` for shards sharing one (their commands over all their jobs).
    fn per_shard_cmds(&self) -> Vec<(String, f64)> {
        if self.shards < 2 {
            return Vec::new();
        }
        self.cmds_per_node
            .iter()
            .map(|(held, v)| {
                let name = if held.len() == 1 {
                    format!("shard{}", held[0])
                } else {
                    let list: Vec<String> = held.iter().map(usize::to_string).collect();
                    format!("shards{}", list.join("+"))
                };
                (name, *v)
            })
            .collect()
    }

    /// Says on stderr when shards share a node (their commands cannot be told apart).
    fn note_shared_nodes(&self) {
        for (held, _) in self.cmds_per_node.iter().filter(|(held, _)| held.len() > 1) {
            let list: Vec<String> = held.iter().map(usize::to_string).collect();
            eprintln!(
                "note: queue shards {} share one Redis node: their commands are counted together, \
                 per job of those shards (on one server that is redis_cmds_per_job)",
                list.join(",")
            );
        }
    }

    /// Prints the run's figures under today's names (`drain_c{c}`, …).
    fn report(&self, c: usize) {
        report(&format!("drain_c{c}"), self.jobs_per_s, "jobs/s");
        report(&format!("worker_cpu_us_per_delivery_c{c}"), self.worker_cpu_us, "us");
        if c == 50 {
            // The issue's headline figures are at concurrency 50.
            report("worker_cpu_us_per_delivery", self.worker_cpu_us, "us");
            report("redis_cpu_us_per_job", self.redis_cpu_us, "us");
        }
        report(&format!("redis_cpu_us_per_job_c{c}"), self.redis_cpu_us, "us");
        if let Some(share) = self.sink_cpu_share {
            report(&format!("sink_cpu_share_c{c}"), share, "share");
        }
        if c == 50 {
            report("redis_cmds_per_job", self.cmds_per_job, "cmds");
            for (name, v) in self.per_shard_cmds() {
                report(&format!("redis_cmds_per_job_{name}"), v, "cmds");
            }
            self.note_shared_nodes();
            if let Some(rss) = self.worker_rss_mb {
                report("worker_rss_mb", rss, "MiB");
            }
        }
    }
}

/// `n` queued deliveries drained by one worker process at concurrency `c`. With several queue
/// shards, one endpoint per shard takes the jobs round-robin, each pushed into its endpoint's
/// shard, and commands are counted on each shard's node.
async fn drain(env: &Env, n: usize, c: usize) -> anyhow::Result<Drained> {
    let sink = Sink::start(Mode::Accept).await?;
    let count = env.shards.count();
    let mut endpoints = Vec::with_capacity(count);
    for k in 0..count {
        endpoints.push(if count == 1 {
            env.endpoint(&sink.url).await?
        } else {
            env.endpoint_in_shard(&sink.url, k).await?
        });
    }
    let template = event("drain");
    // Per shard: its jobs (endpoint k is homed in shard k).
    let mut jobs: Vec<Vec<String>> = vec![Vec::with_capacity(n / count + 1); count];
    for j in 0..n {
        let k = j % count;
        let mut e = template.clone();
        e.id = entraguard_core::ids::EventId::generate();
        jobs[k].push(Job::Delivery(DeliveryJob::new(e, endpoints[k].id.clone())).encode());
    }
    for (k, shard_jobs) in jobs.iter().enumerate() {
        for chunk in shard_jobs.chunks(1_000) {
            env.shards.for_endpoint(&endpoints[k].id).push(chunk).await?;
        }
    }
    let jobs_of: Vec<usize> = jobs.iter().map(Vec::len).collect();
    drop(jobs);
    let nodes = &env.nodes;
    let before = env.command_counts().await?;
    let redis_before = env.redis_cpu().await?;
    let me = std::process::id();
    let sink_before = cpu_time(me).unwrap_or_default();
    let worker = env.worker(c, &[])?;
    let pid = worker.id();
    sink.wait_for(n, Duration::from_secs(600)).await?;
    let span = sink.span_secs();
    env.settle().await?;
    let after = env.command_counts().await?;
    // CPU time is far steadier than throughput on a shared machine. The worker's includes its
    // start-up (a few ms); the sink's is this whole process (the sink, and the polling above).
    let worker_cpu = pid.and_then(cpu_time).unwrap_or_default();
    let redis_cpu = env.redis_cpu().await?.saturating_sub(redis_before);
    let sink_cpu = cpu_time(me).unwrap_or_default().saturating_sub(sink_before);
    let worker_rss_mb = pid.and_then(peak_rss_mb);
    // Drained: nothing ready, being processed or waiting for a retry, in any shard.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = env.shards.stats().await?;
        if s.ready + s.processing + s.retrying == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not drained: {} ready, {} processing, {} retrying",
            s.ready,
            s.processing,
            s.retrying
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(worker).await?;
    env.cleanup().await?;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    let total = (worker_cpu + redis_cpu + sink_cpu).as_secs_f64();
    // The counts include the INFO calls and the stats reads of this function (a few dozen).
    let cmds: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a.saturating_sub(*b)).collect();
    let cmds_per_node = nodes
        .iter()
        .zip(&cmds)
        .map(|((_, held), c)| {
            let carried: usize = held.iter().map(|i| jobs_of.get(*i).copied().unwrap_or(0)).sum();
            (held.clone(), *c as f64 / carried.max(1) as f64)
        })
        .collect();
    Ok(Drained {
        shards: count,
        jobs_per_s: n as f64 / span,
        worker_cpu_us: per(worker_cpu),
        redis_cpu_us: per(redis_cpu),
        sink_cpu_share: (total > 0.0).then(|| sink_cpu.as_secs_f64() / total),
        cmds_per_job: cmds.iter().sum::<u64>() as f64 / n as f64,
        cmds_per_node,
        worker_rss_mb,
    })
}

/// `drain_c50` once per count of `counts`, in that order, each on a fresh Redis of its own
/// (unless `--redis-url`): each run's figures (`…_shards{N}_run{k}`), each count's means
/// (`drain_c50_shards{N}`, `worker_cpu_us_per_delivery_shards{N}`, `redis_cmds_per_job_shards{N}`
/// and `…_shards{N}_shard{i}`), and every other count's mean throughput over the first's
/// (`ratio_{N}_over_{first}`), with the ratio of each alternation (`…_round{k}`) when a count
/// comes back.
///
/// Redis CPU and commands are those of the nodes holding a shard: with one shard on a cluster,
/// one primary's; with three, three primaries' (the other nodes' cluster bus and replication are
/// not counted in either). On a machine where the cluster's six nodes, the worker and the sink
/// share a few cores, the ratio shows what spreading over several primaries costs (more
/// processes awake, three shards polled), not the speed-up separate machines would give.
async fn compare(args: &Args, counts: &[u16]) -> anyhow::Result<()> {
    let n = if args.smoke { 500 } else { 100_000 };
    let mut runs: Vec<(u16, Drained)> = Vec::new();
    for (k, &count) in counts.iter().enumerate() {
        let env = Env::new(args, count).await?;
        let result = drain(&env, n, 50).await;
        let cleaned = env.cleanup().await;
        drop(env);
        let d = result?;
        cleaned?;
        let tag = format!("shards{count}_run{}", k + 1);
        report(&format!("drain_c50_{tag}"), d.jobs_per_s, "jobs/s");
        report(&format!("worker_cpu_us_per_delivery_{tag}"), d.worker_cpu_us, "us");
        report(&format!("redis_cpu_us_per_job_{tag}"), d.redis_cpu_us, "us");
        report(&format!("redis_cmds_per_job_{tag}"), d.cmds_per_job, "cmds");
        for (name, v) in d.per_shard_cmds() {
            report(&format!("redis_cmds_per_job_{tag}_{name}"), v, "cmds");
        }
        d.note_shared_nodes();
        runs.push((count, d));
    }
    let mut distinct: Vec<u16> = Vec::new();
    for c in counts {
        if !distinct.contains(c) {
            distinct.push(*c);
        }
    }
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let mut throughput = Vec::new();
    for &count in &distinct {
        let mine: Vec<&Drained> = runs.iter().filter(|(c, _)| *c == count).map(|(_, d)| d).collect();
        let of = |f: &dyn Fn(&Drained) -> f64| mean(&mine.iter().map(|d| f(d)).collect::<Vec<_>>());
        let jobs_per_s = of(&|d| d.jobs_per_s);
        throughput.push(jobs_per_s);
        report(&format!("drain_c50_shards{count}"), jobs_per_s, "jobs/s");
        report(&format!("worker_cpu_us_per_delivery_shards{count}"), of(&|d| d.worker_cpu_us), "us");
        report(&format!("redis_cpu_us_per_job_shards{count}"), of(&|d| d.redis_cpu_us), "us");
        report(&format!("redis_cmds_per_job_shards{count}"), of(&|d| d.cmds_per_job), "cmds");
        let names: Vec<String> = mine
            .first()
            .map(|d| d.per_shard_cmds())
            .unwrap_or_default()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for name in names {
            let vals: Vec<f64> = mine
                .iter()
                .filter_map(|d| d.per_shard_cmds().into_iter().find(|(n, _)| *n == name).map(|(_, v)| v))
                .collect();
            report(&format!("redis_cmds_per_job_shards{count}_{name}"), mean(&vals), "cmds");
        }
    }
    let Some(&first) = distinct.first() else { return Ok(()) };
    for (i, &count) in distinct.iter().enumerate().skip(1) {
        report(&format!("ratio_{count}_over_{first}"), throughput[i] / throughput[0], "ratio");
        // Each round: the k-th run of `count` over the k-th run of `first`.
        let a: Vec<f64> = runs.iter().filter(|(c, _)| *c == first).map(|(_, d)| d.jobs_per_s).collect();
        let b: Vec<f64> = runs.iter().filter(|(c, _)| *c == count).map(|(_, d)| d.jobs_per_s).collect();
        if a.len() > 1 || b.len() > 1 {
            for (k, (x, y)) in a.iter().zip(&b).enumerate() {
                report(&format!("ratio_{count}_over_{first}_round{}", k + 1), y / x, "ratio");
            }
        }
    }
    Ok(())
}

/// Publish → arrival latency at a steady 1 000 events/s.
async fn e2e(env: &Env, secs: u64) -> anyhow::Result<()> {
    let sink = Sink::start(Mode::Accept).await?;
    env.endpoint(&sink.url).await?;
    let worker = env.worker(50, &[])?;
    env.wait_worker_ready().await?;
    let total = usize::try_from(secs * 1_000).unwrap_or(usize::MAX);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0;
    while sent < total {
        tick.tick().await;
        for _ in 0..10 {
            env.producer.publish(&event(&stamp(sink.started))).await?;
            sent += 1;
        }
    }
    sink.wait_for(total, Duration::from_secs(120)).await?;
    let mut lat = sink.latencies_us().await;
    lat.sort_unstable();
    report("e2e_p50", percentile(&lat, 0.50) / 1000.0, "ms");
    report("e2e_p99", percentile(&lat, 0.99) / 1000.0, "ms");
    stop(worker).await?;
    env.cleanup().await
}

/// `n` deliveries fail once and are retried 1 s later: how late does the retry arrive?
async fn delay_late(env: &Env, n: usize) -> anyhow::Result<()> {
    let sink = Sink::start(Mode::FailFirst).await?;
    env.endpoint(&sink.url).await?;
    // Every first attempt fails here on purpose: keep the circuit breaker out of this run (it
    // would rightly open and park the deliveries), which measures retry precision only.
    let worker = env.worker(50, &["--retry-schedule", "1s", "--breaker-failures", "10000"])?;
    env.wait_worker_ready().await?;
    let events: Vec<Event> = (0..n).map(|i| event(&format!("late-{i}"))).collect();
    env.producer.publish_batch(&events).await?;
    sink.wait_for(n, Duration::from_secs(60)).await?;
    let mut late: Vec<u64> =
        sink.retry_gaps_us().await.into_iter().map(|g| g.saturating_sub(1_000_000)).collect();
    late.sort_unstable();
    report("delay_late_p50", percentile(&late, 0.50) / 1000.0, "ms");
    report("delay_late_p99", percentile(&late, 0.99) / 1000.0, "ms");
    stop(worker).await?;
    env.cleanup().await
}

/// Commands per second from one idle worker.
async fn idle(env: &Env, secs: u64) -> anyhow::Result<()> {
    let worker = env.worker(50, &[])?;
    env.wait_worker_ready().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = env.command_count().await?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let after = env.command_count().await?;
    // One of the counted commands on each node is our own second INFO.
    let ours = env.nodes.len() as u64;
    report("idle_cmds_per_s", after.saturating_sub(before + ours) as f64 / secs as f64, "cmds/s");
    stop(worker).await?;
    env.cleanup().await
}

/// One endpoint hangs with `pending` deliveries waiting for it while another takes events at
/// 500/s for `secs`: Redis commands/s above the same run without the hanging endpoint, and the
/// other endpoint's end-to-end p99 in that run.
async fn hang(env: &Env, secs: u64, pending: usize) -> anyhow::Result<()> {
    let mut rates = Vec::new();
    for with_hanging in [false, true] {
        let sink = Sink::start(Mode::Accept).await?;
        env.endpoint(&sink.url).await?;
        let hanging = Sink::start(Mode::Hang).await?;
        if with_hanging {
            let ep = env.endpoint_for(&hanging.url, "scan.completed").await?;
            let jobs: Vec<String> = (0..pending)
                .map(|i| Job::Delivery(DeliveryJob::new(event(&format!("hang-{i}")), ep.id.clone())).encode())
                .collect();
            for chunk in jobs.chunks(1_000) {
                env.shards.for_endpoint(&ep.id).push(chunk).await?;
            }
        }
        let worker = env.worker(50, &["--endpoint-concurrency", "16", "--delivery-timeout", "10s"])?;
        env.wait_worker_ready().await?;
        if with_hanging {
            // Steady state: the endpoint's slots taken, the rest of its backlog in its lane.
            hanging.wait_for(16, Duration::from_secs(30)).await?;
            let deadline = Instant::now() + Duration::from_secs(120);
            while env.shards.stats().await?.parked < (pending - 16) as u64 {
                anyhow::ensure!(Instant::now() < deadline, "the hanging endpoint's backlog never parked");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let before = env.command_count().await?;
        let started = Instant::now();
        let total = usize::try_from(secs * 500).unwrap_or(usize::MAX);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut sent = 0;
        while sent < total {
            tick.tick().await;
            for _ in 0..10 {
                env.producer.publish(&event(&stamp(sink.started))).await?;
                sent += 1;
            }
        }
        sink.wait_for(total, Duration::from_secs(120)).await?;
        let rate = env.command_count().await?.saturating_sub(before) as f64 / started.elapsed().as_secs_f64();
        rates.push(rate);
        if with_hanging {
            let mut lat = sink.latencies_us().await;
            lat.sort_unstable();
            report("hang_others_e2e_p99", percentile(&lat, 0.99) / 1000.0, "ms");
        }
        stop(worker).await?;
        env.cleanup().await?;
    }
    report("hang_extra_cmds_per_s", (rates[1] - rates[0]).max(0.0), "cmds/s");
    Ok(())
}

/// `backlog` retries fall due at once (a receiver back from an outage); one fresh event is
/// published once they drain: publish → first attempt, in ms.
async fn fresh_behind_backlog(env: &Env, backlog: usize) -> anyhow::Result<()> {
    let recovered = Sink::start(Mode::Accept).await?;
    let ep = env.endpoint_for(&recovered.url, "scan.completed").await?;
    let fresh = Sink::start(Mode::Accept).await?;
    env.endpoint(&fresh.url).await?;
    let mut conn = env.queue.connection();
    let delayed = env.shards.for_endpoint(&ep.id).keys().delayed();
    let jobs: Vec<String> = (0..backlog)
        .map(|i| Job::Delivery(DeliveryJob::new(event(&format!("retry-{i}")), ep.id.clone())).encode())
        .collect();
    for chunk in jobs.chunks(1_000) {
        let mut pipe = redis::pipe();
        for j in chunk {
            pipe.zadd(&delayed, j, 0).ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
    }
    drop(jobs);
    let worker = env.worker(50, &[])?;
    recovered.wait_for(backlog.min(1_000), Duration::from_secs(120)).await?;
    let published = Instant::now();
    env.producer.publish(&event("fresh")).await?;
    fresh.wait_for(1, Duration::from_secs(600)).await?;
    report("fresh_behind_backlog_ms", published.elapsed().as_secs_f64() * 1000.0, "ms");
    stop(worker).await?;
    env.cleanup().await
}

/// An endpoint down for `down_secs` with events arriving at 10/s: the attempts that reach it
/// once its breaker is open (only the probes should). Then `parked` deliveries wait in its lane
/// and it recovers: seconds until all are delivered, and how many came twice.
async fn breaker(env: &Env, down_secs: u64, parked: usize) -> anyhow::Result<()> {
    let sink = Sink::start(Mode::Down).await?;
    let ep = env.endpoint(&sink.url).await?;
    let worker = env.worker(
        50,
        &["--endpoint-concurrency", "16", "--breaker-probe", "2s", "--retry-schedule", "10s,1m,5m"],
    )?;
    env.wait_worker_ready().await?;
    let home = env.shards.for_endpoint(&ep.id).keys();
    let breaker_key = home.breaker(ep.id.as_str());
    let mut conn = env.queue.connection();
    let is_open =
        |state: Option<String>| state.as_deref() == Some("open") || state.as_deref() == Some("half_open");
    // Trip it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        env.producer.publish(&event("trip")).await?;
        let state: Option<String> = redis::AsyncCommands::hget(&mut conn, &breaker_key, "state").await?;
        if is_open(state) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the breaker never opened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused_at_open = sink.refused();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for _ in 0..(down_secs * 10) {
        tick.tick().await;
        env.producer.publish(&event("while-open")).await?;
    }
    report("breaker_attempts_while_open", (sink.refused() - refused_at_open) as f64, "attempts");
    report("breaker_open_secs", down_secs as f64, "s");
    // Fill the lane to `parked`, then recover.
    let lane = home.lane(ep.id.as_str());
    let have: usize = redis::AsyncCommands::llen(&mut conn, &lane).await?;
    let more: Vec<String> = (have..parked)
        .map(|i| Job::Delivery(DeliveryJob::new(event(&format!("parked-{i}")), ep.id.clone())).encode())
        .collect();
    for chunk in more.chunks(1_000) {
        let _: () = redis::AsyncCommands::rpush(&mut conn, &lane, chunk).await?;
    }
    let waiting: usize = redis::AsyncCommands::llen(&mut conn, &lane).await?;
    let recovered = Instant::now();
    sink.recover();
    sink.wait_for(waiting, Duration::from_secs(600)).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while env.shards.stats().await?.parked > 0 {
        anyhow::ensure!(Instant::now() < deadline, "the lane never drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    report("breaker_drain_s", recovered.elapsed().as_secs_f64(), "s");
    report("breaker_drained", waiting as f64, "deliveries");
    report("breaker_drain_duplicates", sink.duplicates() as f64, "deliveries");
    stop(worker).await?;
    env.cleanup().await
}

/// `n` events through fan-out to one endpoint, one worker at concurrency 50, without rules, then
/// with each rule alone, then with all of them: what each rule costs. The rules are the
/// managed-provider endpoint of docs/alert-rules.md (tenant A only, `medium,low,info` digested per
/// scan with a 2 h longest wait) with a 24 h dedupe window, a `medium` floor and two quiet hours a
/// day. The events are the same in every run (tenant A's `high` findings of one scan, distinct
/// ids), and every one passes every rule, so every run delivers the same `n` messages; the quiet
/// window is placed away from the run's hour (it is a rule to check, not one that holds them).
/// Reports `fanout_c50` (no rules), `fanout_rules_<rule>_c50` (one rule) and `fanout_rules_c50`
/// (all), in events delivered/s, and each run's Redis commands, worker CPU and Redis CPU per event
/// (`…_cmds_per_event`, `…_worker_cpu_us_per_event`, `…_redis_cpu_us_per_event`).
async fn fanout(env: &Env, n: usize, want: &dyn Fn(&str) -> bool) -> anyhow::Result<()> {
    use entraguard_core::rules::{DigestDraft, QuietHoursDraft, RulesDraft};
    let tenant = "8d6310d1-5e4b-4e1c-9d7a-3f0f7a4f2b11";
    // Two hours that start four hours from now (UTC): never the run's hour.
    let hour = (hour_utc() + 4) % 24;
    let quiet = QuietHoursDraft {
        time_zone: "UTC".into(),
        from: format!("{hour:02}:00"),
        to: format!("{:02}:00", (hour + 2) % 24),
        ..Default::default()
    };
    let tenants = RulesDraft { tenants: vec![tenant.into(), "another-tenant".into()], ..Default::default() };
    let floor = RulesDraft { min_severity: Some("medium".into()), ..Default::default() };
    let dedupe = RulesDraft { dedupe_window: Some("24h".into()), ..Default::default() };
    let digest = RulesDraft {
        digest: Some(DigestDraft {
            severities: vec!["medium".into(), "low".into(), "info".into()],
            max_wait: Some("2h".into()),
        }),
        ..Default::default()
    };
    let quiet_hours = RulesDraft { quiet_hours: Some(quiet.clone()), ..Default::default() };
    let all = RulesDraft {
        tenants: vec![tenant.into()],
        min_severity: Some("medium".into()),
        dedupe_window: Some("24h".into()),
        digest: Some(DigestDraft {
            severities: vec!["medium".into(), "low".into(), "info".into()],
            max_wait: Some("2h".into()),
        }),
        quiet_hours: Some(quiet),
    };
    let runs = [
        ("fanout_c50", RulesDraft::default()),
        ("fanout_rules_c50", all),
        ("fanout_rules_tenants_c50", tenants),
        ("fanout_rules_floor_c50", floor),
        ("fanout_rules_dedupe_c50", dedupe),
        ("fanout_rules_digest_c50", digest),
        ("fanout_rules_quiet_hours_c50", quiet_hours),
    ];
    for (name, rules) in runs {
        // `--only fanout_c50,fanout_rules_c50`: the two headline runs alone, e.g. alternated.
        if !want(name) {
            continue;
        }
        let sink = Sink::start(Mode::Accept).await?;
        env.endpoint_with(&sink.url, "finding.new", rules).await?;
        // Distinct finding ids, so the dedupe window lets every event through.
        let events: Vec<Event> = (0..n)
            .map(|i| {
                let mut e = event("fanout-scan");
                if let entraguard_core::event::EventBody::FindingNew { finding } = &mut e.body {
                    finding.id = format!("F-{i}");
                }
                e
            })
            .collect();
        for chunk in events.chunks(1_000) {
            env.producer.publish_batch(chunk).await?;
        }
        let before = env.command_count().await?;
        let redis_before = env.redis_cpu().await?;
        let worker = env.worker(50, &[])?;
        let pid = worker.id();
        sink.wait_for(n, Duration::from_secs(600)).await?;
        let span = sink.span_secs();
        env.settle().await?;
        let after = env.command_count().await?;
        // CPU per event is far steadier than throughput on a shared machine.
        let worker_cpu = pid.and_then(cpu_time).unwrap_or_default();
        let redis_cpu = env.redis_cpu().await?.saturating_sub(redis_before);
        let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
        report(name, n as f64 / span, "events/s");
        report(&format!("{name}_cmds_per_event"), after.saturating_sub(before) as f64 / n as f64, "cmds");
        report(&format!("{name}_worker_cpu_us_per_event"), per(worker_cpu), "us");
        report(&format!("{name}_redis_cpu_us_per_event"), per(redis_cpu), "us");
        stop(worker).await?;
        env.cleanup().await?;
    }
    Ok(())
}

/// The hour of the day now, UTC.
fn hour_utc() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    (secs / 3600) % 24
}
