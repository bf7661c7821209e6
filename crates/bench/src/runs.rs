//! The benchmark runs, one function per figure group. Each starts what it needs (a sink, a
//! worker process), measures, prints, and cleans up its keys.

use std::time::Instant;

use entraguard_producer::Event;

use crate::Args;

mod breaker;
mod drain;
mod env;
mod fanout;
mod floor;
mod latency;
mod monitor;
mod silences;

use breaker::breaker;
use drain::{compare, drain};
use env::{Env, cpu_time, peak_rss_mb, stop, thread_cpu_time};
use fanout::fanout;
use floor::floor;
use latency::{
    delay_late, e2e, fresh_behind_backlog, fresh_other_tenant_behind_flood, hang, idle, park_cost,
    urgent_other_tenant_behind_urgent_flood,
};
use silences::fanout_silences;

pub(super) fn report(metric: &str, value: f64, unit: &str) {
    let value = (value * 100.0).round() / 100.0;
    entraguard_core::outln!(
        "{}",
        serde_json::json!({ "peer": "entraguard", "metric": metric, "value": value, "unit": unit })
    );
}

pub(super) fn event(scan_id: &str) -> Event {
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

pub(super) fn percentile(sorted: &[u64], p: f64) -> f64 {
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
        let drained = if args.smoke { n / 4 } else { n };
        for c in [1usize, 10, 50] {
            let ratio = want(&format!("worker_cpu_over_floor_c{c}"));
            // The floor just before its drain, so both meet the machine equally busy.
            let work = want(&format!("floor_work_cpu_us_per_post_c{c}"));
            let floor_us = if want(&format!("floor_cpu_us_per_post_c{c}")) || ratio || work {
                let us = floor(drained, c, false).await?;
                report(&format!("floor_cpu_us_per_post_c{c}"), us, "us");
                Some(us)
            } else {
                None
            };
            if let (true, Some(bare)) = (work, floor_us) {
                let us = floor(drained, c, true).await?;
                report(&format!("floor_work_cpu_us_per_post_c{c}"), us, "us");
                if bare > 0.0 {
                    report(&format!("floor_work_over_floor_c{c}"), us / bare, "ratio");
                }
            }
            if want(&format!("drain_c{c}"))
                || ratio
                || (c == 50 && (want("redis_cmds_per_job") || want("worker_rss_mb")))
            {
                drain(&env, drained, c).await?.report(c, floor_us);
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
        if want("park_extra_cmds_per_delivery") {
            park_cost(&env, if args.smoke { 300 } else { 3_000 }).await?;
        }
        if want("breaker") {
            breaker(&env, if args.smoke { 6 } else { 60 }, if args.smoke { 500 } else { 5_000 }).await?;
        }
        if want("fresh_behind_backlog") {
            fresh_behind_backlog(&env, if args.smoke { 5_000 } else { 200_000 }).await?;
        }
        if want("fresh_other_tenant_behind_flood") {
            fresh_other_tenant_behind_flood(&env, if args.smoke { 5_000 } else { 50_000 }).await?;
        }
        if want("urgent_other_tenant_behind_urgent_flood") {
            urgent_other_tenant_behind_urgent_flood(&env, if args.smoke { 2_000 } else { 20_000 }).await?;
        }
        if want("fanout") || args.only.iter().any(|o| o.starts_with("fanout")) {
            fanout(&env, if args.smoke { 1_000 } else { 50_000 }, &want).await?;
        }
        if want("fanout_silences") {
            fanout_silences(&env, if args.smoke { 1_000 } else { 20_000 }, if args.smoke { 1 } else { 3 })
                .await?;
        }
        anyhow::Ok(())
    }
    .await;
    if let Some(otlp) = &env.otlp {
        let (requests, bytes) = otlp.received();
        eprintln!("traces: the workers sent {requests} OTLP exports ({bytes} bytes)");
    }
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
