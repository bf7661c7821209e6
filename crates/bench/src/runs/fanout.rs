//! `fanout_*`: fan-out to one endpoint without rules, with each rule alone, and with all.

use std::time::Duration;

use entraguard_producer::Event;

use crate::sink::{Mode, Sink};

use super::*;

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
pub(super) async fn fanout(env: &Env, n: usize, want: &dyn Fn(&str) -> bool) -> anyhow::Result<()> {
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
        measure(env, n, rules, || async { Ok(()) }).await?.report(name);
    }
    Ok(())
}

/// What one fan-out run measured.
pub(super) struct Measured {
    /// Events delivered per second.
    pub(super) rate: f64,
    pub(super) cmds_per_event: f64,
    pub(super) worker_cpu_us: f64,
    pub(super) redis_cpu_us: f64,
}

impl Measured {
    pub(super) fn report(&self, name: &str) {
        report(name, self.rate, "events/s");
        report(&format!("{name}_cmds_per_event"), self.cmds_per_event, "cmds");
        report(&format!("{name}_worker_cpu_us_per_event"), self.worker_cpu_us, "us");
        report(&format!("{name}_redis_cpu_us_per_event"), self.redis_cpu_us, "us");
    }
}

/// One run: an endpoint with `rules`, whatever `prepare` stores beside it, `n` of tenant A's
/// `high` findings (distinct ids) published, then one worker at concurrency 50 until the sink
/// has them all; the keys are cleaned up after.
pub(super) async fn measure<F, Fut>(
    env: &Env,
    n: usize,
    rules: entraguard_core::rules::RulesDraft,
    prepare: F,
) -> anyhow::Result<Measured>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let sink = Sink::start(Mode::Accept).await?;
    env.endpoint_with(&sink.url, "finding.new", rules).await?;
    prepare().await?;
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
    let measured = Measured {
        rate: n as f64 / span,
        cmds_per_event: after.saturating_sub(before) as f64 / n as f64,
        worker_cpu_us: per(worker_cpu),
        redis_cpu_us: per(redis_cpu),
    };
    stop(worker).await?;
    env.cleanup().await?;
    Ok(measured)
}

/// The hour of the day now, UTC.
fn hour_utc() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    (secs / 3600) % 24
}
