//! Latency and idle figures: publish → arrival (`e2e`), retry lateness (`delay_late`), an idle
//! worker's commands (`idle`), a hanging endpoint's cost to the others (`hang`), the commands a
//! delivery to an endpoint whose breaker is open costs (`park_extra_cmds_per_delivery`), a fresh
//! alert behind a retry backlog (`fresh_behind_backlog`) and another tenant's behind a flood of
//! findings for a slow endpoint (`fresh_other_tenant_behind_flood`).

use std::time::{Duration, Instant};

use entraguard_core::job::{DeliveryJob, Job};
use entraguard_producer::Event;

use crate::sink::{Mode, Sink, stamp};

use super::monitor::Monitor;
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
/// 500/s for `secs`: the hanging endpoint's own Redis commands/s (counted from `MONITOR`, see
/// [`Monitor`]), the commands/s above the same run without it (`hang_cmds_per_s_diff`, the
/// figure this replaced: the difference of two noisy runs), and the other endpoint's end-to-end
/// p99 in the run with it (with `MONITOR` on).
pub(super) async fn hang(env: &Env, secs: u64, pending: usize) -> anyhow::Result<()> {
    let mut rates = Vec::new();
    let mut own = None;
    for with_hanging in [false, true] {
        let sink = Sink::start(Mode::Accept).await?;
        env.endpoint(&sink.url).await?;
        let hanging = Sink::start(Mode::Hang).await?;
        let mut hanging_id = None;
        if with_hanging {
            let ep = env.endpoint_for(&hanging.url, "scan.completed").await?;
            hanging_id = Some(ep.id.to_string());
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
        let monitor = match &hanging_id {
            Some(id) => Some(Monitor::start(&env.url, id.clone()).await?),
            None => None,
        };
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
        if let Some(monitor) = monitor {
            own = Some(monitor.finish().await? as f64 / started.elapsed().as_secs_f64());
        }
        rates.push(rate);
        if with_hanging {
            let mut lat = sink.latencies_us().await;
            lat.sort_unstable();
            report("hang_others_e2e_p99", percentile(&lat, 0.99) / 1000.0, "ms");
        }
        stop(worker).await?;
        env.cleanup().await?;
    }
    report("hang_extra_cmds_per_s", own.unwrap_or(f64::NAN), "cmds/s");
    report("hang_cmds_per_s_diff", rates[1] - rates[0], "cmds/s");
    Ok(())
}

/// Redis commands per delivery to an endpoint whose breaker is open, above what the same events
/// cost without it: `n` events for a healthy endpoint alone, then `n` more with a second
/// endpoint subscribed whose breaker is open (a probe 10 minutes away), each count from
/// `INFO commandstats` (script commands included) once the run settled.
pub(super) async fn park_cost(env: &Env, n: usize) -> anyhow::Result<()> {
    let sink = Sink::start(Mode::Accept).await?;
    env.endpoint(&sink.url).await?;
    let worker =
        env.worker(50, &["--breaker-probe", "10m", "--retry-schedule", "50ms,50ms,50ms,50ms,50ms,50ms"])?;
    env.wait_worker_ready().await?;
    let run = async |tag: &str, expected: usize| -> anyhow::Result<u64> {
        env.settle().await?;
        let before = env.command_count().await?;
        let events: Vec<Event> = (0..n).map(|i| event(&format!("{tag}-{i}"))).collect();
        for chunk in events.chunks(100) {
            env.producer.publish_batch(chunk).await?;
        }
        sink.wait_for(expected, Duration::from_secs(300)).await?;
        env.settle().await?;
        Ok(env.command_count().await?.saturating_sub(before))
    };
    let alone = run("alone", n).await?;
    // The second endpoint, down, its breaker tripped by a few events.
    let down = Sink::start(Mode::Down).await?;
    let ep = env.endpoint(&down.url).await?;
    let breaker_key = env.shards.for_endpoint(&ep.id).keys().breaker(ep.id.as_str());
    let mut conn = env.queue.connection();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tripped = 0;
    loop {
        let state: Option<String> = redis::AsyncCommands::hget(&mut conn, &breaker_key, "state").await?;
        if state.as_deref() == Some("open") {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the breaker never opened");
        env.producer.publish(&event("trip")).await?;
        tripped += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sink.wait_for(n + tripped, Duration::from_secs(60)).await?;
    let parked_before = env.shards.stats().await?.parked;
    let with = run("with", 2 * n + tripped).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.shards.stats().await?.parked < parked_before + n as u64 {
        anyhow::ensure!(Instant::now() < deadline, "the open endpoint's deliveries never parked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    report("park_extra_cmds_per_delivery", (with as f64 - alone as f64) / n as f64, "cmds");
    stop(worker).await?;
    env.cleanup().await
}

/// `flood` low findings of tenant A for a slow endpoint A (2 ms a request), then one
/// `scan.completed` of tenant B for endpoint B: ms from B's publish to its arrival (issue 26).
pub(super) async fn fresh_other_tenant_behind_flood(env: &Env, flood: usize) -> anyhow::Result<()> {
    let slow = Sink::start(Mode::Slow).await?;
    env.endpoint_for(&slow.url, "finding.new").await?;
    let other = Sink::start(Mode::Accept).await?;
    env.endpoint_for(&other.url, "scan.completed").await?;
    let worker = env.worker(50, &[])?;
    env.wait_worker_ready().await?;
    let findings: Vec<Event> = (0..flood).map(|i| low_finding("tenant-a", i)).collect();
    for chunk in findings.chunks(1_000) {
        env.producer.publish_batch(chunk).await?;
    }
    drop(findings);
    let published = Instant::now();
    env.producer.publish(&scan_completed("tenant-b")).await?;
    other.wait_for(1, Duration::from_secs(600)).await?;
    report("fresh_other_tenant_behind_flood_ms", published.elapsed().as_secs_f64() * 1000.0, "ms");
    report("fresh_other_tenant_behind_flood_a_delivered", slow.count() as f64, "deliveries");
    stop(worker).await?;
    env.cleanup().await
}

/// `flood` critical findings of tenant A for a slow endpoint A (2 ms a request), with one failed
/// scan of tenant B for endpoint B published after the first half: ms from B's publish to its
/// arrival, and A's deliveries by then. Measured on layout version 3 (urgent share) and, for the
/// fault it fixes, on version 2 (`_v2`: urgent work at the front of the ready list, last in first
/// out, so B's alert waits behind A's later findings).
pub(super) async fn urgent_other_tenant_behind_urgent_flood(env: &Env, flood: usize) -> anyhow::Result<()> {
    for (version, suffix) in [(3, ""), (2, "_v2")] {
        let slow = Sink::start(Mode::Slow).await?;
        env.endpoint_for(&slow.url, "finding.new").await?;
        let other = Sink::start(Mode::Accept).await?;
        env.endpoint_for(&other.url, "scan.failed").await?;
        if version == 2 {
            let mut conn = env.queue.connection();
            for shard in env.shards.served() {
                let layout = shard.keys().layout();
                let () =
                    conn.query_at(redis::cmd("HSET").arg(&layout).arg("version").arg(2), &layout).await?;
            }
        }
        let worker = env.worker(50, &[])?;
        env.wait_worker_ready().await?;
        let findings: Vec<Event> = (0..flood).map(|i| finding("tenant-a", i, "critical")).collect();
        for chunk in findings[..flood / 2].chunks(1_000) {
            env.producer.publish_batch(chunk).await?;
        }
        let published = Instant::now();
        env.producer.publish(&scan_failed("tenant-b")).await?;
        for chunk in findings[flood / 2..].chunks(1_000) {
            env.producer.publish_batch(chunk).await?;
        }
        drop(findings);
        other.wait_for(1, Duration::from_secs(600)).await?;
        let ms = published.elapsed().as_secs_f64() * 1000.0;
        report(&format!("urgent_other_tenant_behind_urgent_flood_ms{suffix}"), ms, "ms");
        report(
            &format!("urgent_other_tenant_behind_urgent_flood_a_delivered{suffix}"),
            slow.count() as f64,
            "deliveries",
        );
        stop(worker).await?;
        env.cleanup().await?;
    }
    Ok(())
}

fn scan_failed(tenant: &str) -> Event {
    Event::from_json(
        format!(
            r#"{{"event":"scan.failed","tenant_id":"{tenant}","scan":{{"run_id":"r2","kind":"full",
            "environment":"B production","error":{{"kind":"network","message":"Graph unreachable"}}}}}}"#
        )
        .as_bytes(),
    )
    .expect("benchmark event is valid")
}

fn low_finding(tenant: &str, i: usize) -> Event {
    finding(tenant, i, "low")
}

fn finding(tenant: &str, i: usize, severity: &str) -> Event {
    Event::from_json(
        format!(
            r#"{{"event":"finding.new","tenant_id":"{tenant}","scan_id":"flood",
            "finding":{{"id":"F-{i}","title":"Stale guest account","severity":"{severity}","category":"identity",
            "remediation_url":"https://entraguard.example.com/api/entraguard/findings/F-{i}"}}}}"#
        )
        .as_bytes(),
    )
    .expect("benchmark event is valid")
}

fn scan_completed(tenant: &str) -> Event {
    Event::from_json(
        format!(
            r#"{{"event":"scan.completed","tenant_id":"{tenant}","scan_id":"scan-b","scan":{{"run_id":"r1",
            "kind":"full","environment":"B production","score":82,"grade":"B","new_findings":{{"high":1}}}}}}"#
        )
        .as_bytes(),
    )
    .expect("benchmark event is valid")
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
