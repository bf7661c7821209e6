//! `drain_c{1,10,50}`: queued deliveries drained by one worker process, and `--compare-shards`.

use std::time::{Duration, Instant};

use entraguard_core::job::{DeliveryJob, Job};

use crate::Args;
use crate::sink::{Mode, Sink};

use super::*;

/// What one `drain` run measured.
pub(super) struct Drained {
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
    pub(super) fn per_shard_cmds(&self) -> Vec<(String, f64)> {
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
    pub(super) fn note_shared_nodes(&self) {
        for (held, _) in self.cmds_per_node.iter().filter(|(held, _)| held.len() > 1) {
            let list: Vec<String> = held.iter().map(usize::to_string).collect();
            eprintln!(
                "note: queue shards {} share one Redis node: their commands are counted together, \
                 per job of those shards (on one server that is redis_cmds_per_job)",
                list.join(",")
            );
        }
    }

    /// Prints the run's figures under today's names (`drain_c{c}`, …), and the worker's CPU per
    /// delivery over `floor_us` (the bare client's CPU per post at `c`) when the floor ran.
    pub(super) fn report(&self, c: usize, floor_us: Option<f64>) {
        report(&format!("drain_c{c}"), self.jobs_per_s, "jobs/s");
        report(&format!("worker_cpu_us_per_delivery_c{c}"), self.worker_cpu_us, "us");
        if let Some(floor_us) = floor_us.filter(|f| *f > 0.0) {
            report(&format!("worker_cpu_over_floor_c{c}"), self.worker_cpu_us / floor_us, "ratio");
        }
        if c == 50 {
            // The headline figures are at concurrency 50.
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
pub(super) async fn drain(env: &Env, n: usize, c: usize) -> anyhow::Result<Drained> {
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
pub(super) async fn compare(args: &Args, counts: &[u16]) -> anyhow::Result<()> {
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
