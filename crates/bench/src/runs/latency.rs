//! Latency and idle figures: publish → arrival (`e2e`), retry lateness (`delay_late`), an idle
//! worker's commands (`idle`), a hanging endpoint's cost to the others (`hang`), a fresh alert
//! behind a retry backlog (`fresh_behind_backlog`).

use std::time::{Duration, Instant};

use entraguard_core::job::{DeliveryJob, Job};
use entraguard_producer::Event;

use crate::sink::{Mode, Sink, stamp};

use super::*;

/// Publish → arrival latency at a steady 1 000 events/s.
pub(super) async fn e2e(env: &Env, secs: u64) -> anyhow::Result<()> {
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
pub(super) async fn delay_late(env: &Env, n: usize) -> anyhow::Result<()> {
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
pub(super) async fn idle(env: &Env, secs: u64) -> anyhow::Result<()> {
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
pub(super) async fn hang(env: &Env, secs: u64, pending: usize) -> anyhow::Result<()> {
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
pub(super) async fn fresh_behind_backlog(env: &Env, backlog: usize) -> anyhow::Result<()> {
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
