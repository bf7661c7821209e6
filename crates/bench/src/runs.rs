//! The benchmark runs, one function per figure group. Each starts what it needs (a sink, a
//! worker process), measures, prints, and cleans up its keys.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use entraguard_core::endpoint::{Endpoint, EndpointDraft, TargetPolicy};
use entraguard_core::job::{DeliveryJob, Job};
use entraguard_core::keys::KeySpace;
use entraguard_core::queue::Queue;
use entraguard_core::redis_conn::{RedisConfig, RedisUrl};
use entraguard_core::store::EndpointStore;
use entraguard_producer::{Event, Producer, ProducerConfig};
use entraguard_testkit::{RedisCluster, RedisServer, bin_path};
use tokio::process::{Child, Command};

use crate::Args;
use crate::sink::{Mode, Sink, stamp};

fn report(metric: &str, value: f64, unit: &str) {
    let value = (value * 100.0).round() / 100.0;
    println!(
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
    queue: Queue,
    store: EndpointStore,
    producer: Producer,
}

impl Env {
    async fn new(args: &Args) -> anyhow::Result<Env> {
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
        let queue = Queue::connect(&RedisConfig::new(RedisUrl::parse(&url)?), keys.clone()).await?;
        let store = EndpointStore::new(queue.connection(), keys.clone());
        let producer = Producer::connect(&ProducerConfig::from_url(&url)?.with_prefix(&prefix)?).await?;
        Ok(Env { _own: own, url, prefix, queue, store, producer })
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
        let mut conn = self.queue.connection();
        let pattern = format!("{{{}}}:*", self.prefix);
        // Every key of the prefix is in one slot: SCAN the node that holds it (on a cluster too).
        let at = self.queue.keys().ready();
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
        Ok(())
    }

    /// Lets the last acknowledgements land (nothing left on a processing list, or 10 s), so
    /// what is counted next covers the whole run.
    async fn settle(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.queue.stats().await?.processing > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Redis's own CPU time so far (`INFO cpu`: used_cpu_user + used_cpu_sys).
    async fn redis_cpu(&self) -> anyhow::Result<Duration> {
        let mut conn = self.queue.connection();
        let info: String = conn.query_at(redis::cmd("INFO").arg("cpu"), &self.queue.keys().ready()).await?;
        let secs: f64 = info
            .lines()
            .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
            .sum();
        Ok(Duration::from_secs_f64(secs))
    }

    async fn command_count(&self) -> anyhow::Result<u64> {
        let mut conn = self.queue.connection();
        let info: String =
            conn.query_at(redis::cmd("INFO").arg("commandstats"), &self.queue.keys().ready()).await?;
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
        let ep = EndpointDraft {
            name: "bench sink".into(),
            channel: "webhook".into(),
            target: url.into(),
            events: vec![event.into()],
            enabled: true,
            secret: Some(entraguard_core::secret::Secret::new("bench-signing-secret-0123456789")),
            teams_format: None,
            rules,
        }
        .validate(TargetPolicy { allow_http: true })?;
        self.store.put(&ep).await?;
        Ok(ep)
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
            .args(extra)
            .env_remove("REDIS_URL")
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
            if self.queue.stats().await?.workers > 0 {
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
    let want = |m: &str| args.only.is_empty() || args.only.iter().any(|o| m.starts_with(o.as_str()));
    let env = Env::new(args).await?;
    let n = if args.smoke { 2_000 } else { 100_000 };
    let result = async {
        if want("enqueue") {
            enqueue(&env, n).await?;
        }
        for c in [1usize, 10, 50] {
            if want(&format!("drain_c{c}"))
                || (c == 50 && (want("redis_cmds_per_job") || want("worker_rss_mb")))
            {
                drain(&env, if args.smoke { n / 4 } else { n }, c).await?;
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

/// `n` queued deliveries drained by one worker process at concurrency `c`.
async fn drain(env: &Env, n: usize, c: usize) -> anyhow::Result<()> {
    let sink = Sink::start(Mode::Accept).await?;
    let ep = env.endpoint(&sink.url).await?;
    let template = event("drain");
    let jobs: Vec<String> = (0..n)
        .map(|_| {
            let mut e = template.clone();
            e.id = entraguard_core::ids::EventId::generate();
            Job::Delivery(DeliveryJob::new(e, ep.id.clone())).encode()
        })
        .collect();
    for chunk in jobs.chunks(1_000) {
        env.queue.push(chunk).await?;
    }
    let before = env.command_count().await?;
    let redis_before = env.redis_cpu().await?;
    let me = std::process::id();
    let sink_before = cpu_time(me).unwrap_or_default();
    let worker = env.worker(c, &[])?;
    let pid = worker.id();
    sink.wait_for(n, Duration::from_secs(600)).await?;
    let span = sink.span_secs();
    env.settle().await?;
    let after = env.command_count().await?;
    // CPU time is far steadier than throughput on a shared machine. The worker's includes its
    // start-up (a few ms); the sink's is this whole process (the sink, and the polling above).
    let worker_cpu = pid.and_then(cpu_time).unwrap_or_default();
    let redis_cpu = env.redis_cpu().await?.saturating_sub(redis_before);
    let sink_cpu = cpu_time(me).unwrap_or_default().saturating_sub(sink_before);
    report(&format!("drain_c{c}"), n as f64 / span, "jobs/s");
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    report(&format!("worker_cpu_us_per_delivery_c{c}"), per(worker_cpu), "us");
    if c == 50 {
        // The issue's headline figures are at concurrency 50.
        report("worker_cpu_us_per_delivery", per(worker_cpu), "us");
        report("redis_cpu_us_per_job", per(redis_cpu), "us");
    }
    report(&format!("redis_cpu_us_per_job_c{c}"), per(redis_cpu), "us");
    let total = (worker_cpu + redis_cpu + sink_cpu).as_secs_f64();
    if total > 0.0 {
        report(&format!("sink_cpu_share_c{c}"), sink_cpu.as_secs_f64() / total, "share");
    }
    if c == 50 {
        // Minus the two INFO calls and the stats reads of this function.
        report("redis_cmds_per_job", after.saturating_sub(before) as f64 / n as f64, "cmds");
        if let Some(rss) = pid.and_then(peak_rss_mb) {
            report("worker_rss_mb", rss, "MiB");
        }
    }
    stop(worker).await?;
    env.cleanup().await
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
    // One of the counted commands is our own second INFO.
    report("idle_cmds_per_s", after.saturating_sub(before + 1) as f64 / secs as f64, "cmds/s");
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
                env.queue.push(chunk).await?;
            }
        }
        let worker = env.worker(50, &["--endpoint-concurrency", "16", "--delivery-timeout", "10s"])?;
        env.wait_worker_ready().await?;
        if with_hanging {
            // Steady state: the endpoint's slots taken, the rest of its backlog in its lane.
            hanging.wait_for(16, Duration::from_secs(30)).await?;
            let deadline = Instant::now() + Duration::from_secs(120);
            while env.queue.stats().await?.parked < (pending - 16) as u64 {
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
    let delayed = env.queue.keys().delayed();
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
    let breaker_key = env.queue.keys().breaker(ep.id.as_str());
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
    let lane = env.queue.keys().lane(ep.id.as_str());
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
    while env.queue.stats().await?.parked > 0 {
        anyhow::ensure!(Instant::now() < deadline, "the lane never drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    report("breaker_drain_s", recovered.elapsed().as_secs_f64(), "s");
    report("breaker_drained", waiting as f64, "deliveries");
    report("breaker_drain_duplicates", sink.duplicates() as f64, "deliveries");
    stop(worker).await?;
    env.cleanup().await
}

/// `n` events through fan-out to one endpoint, one worker at concurrency 50, without rules,
/// then with each rule alone, then with all of them: what each rule costs. The rules are the
/// README's managed-provider endpoint (tenant A only, `medium,low,info` digested per scan with a
/// 2 h longest wait) with a 24 h dedupe window, a `medium` floor and two quiet hours a day. The
/// events are the same in every run (tenant A's `high` findings of one scan, distinct ids), and
/// every one passes every rule, so every run delivers the same `n` messages; the quiet window
/// is placed away from the run's hour (it is a rule to check, not one that holds them). Reports
/// `fanout_c50` (no rules), `fanout_rules_<rule>_c50` (one rule) and `fanout_rules_c50` (all),
/// in events delivered/s, and each run's Redis commands, worker CPU and Redis CPU per event
/// (`…_cmds_per_event`, `…_worker_cpu_us_per_event`, `…_redis_cpu_us_per_event`).
async fn fanout(env: &Env, n: usize, want: &dyn Fn(&str) -> bool) -> anyhow::Result<()> {
    use entraguard_core::rules::{QuietHoursDraft, RulesDraft};
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
        digest: vec!["medium".into(), "low".into(), "info".into()],
        digest_max_wait: Some("2h".into()),
        ..Default::default()
    };
    let quiet_hours = RulesDraft { quiet_hours: Some(quiet.clone()), ..Default::default() };
    let all = RulesDraft {
        tenants: vec![tenant.into()],
        min_severity: Some("medium".into()),
        dedupe_window: Some("24h".into()),
        digest: vec!["medium".into(), "low".into(), "info".into()],
        digest_max_wait: Some("2h".into()),
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
