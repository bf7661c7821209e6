//! `fanout_silences_*`: what a list of 100 silences costs fan-out (the issue asks ≤ 10 % over
//! none).

use entraguard_core::rules::RulesDraft;
use entraguard_core::silences::{SilenceDraft, SilenceStore, rfc3339_ms};

use super::fanout::{Measured, measure};
use super::*;

/// The bench's tenant (see `event`).
const TENANT: &str = "8d6310d1-5e4b-4e1c-9d7a-3f0f7a4f2b11";

/// `n` events through fan-out to one endpoint without rules, with no silence and then with 100
/// stored, alternated `rounds` times (the same machine load for both), every event delivered in
/// every run: 90 silences on other tenants, 5 on this tenant's low findings (they match no
/// event, after a look at the finding), and 5 on this tenant's `finding.new` starting tomorrow
/// (they match every event but for their time, so each event's plan asks Redis's clock, as its
/// estimate). Reports each run's figures (`fanout_silences_none_c50`, `fanout_silences_100_c50`,
/// as `fanout_c50`'s) and the ratios over the rounds: `fanout_silences_100_over_none_cpu` (worker
/// and Redis CPU per event, with over without; 1.10 is 10 % more) and
/// `fanout_silences_100_over_none_rate` (events/s, without over with).
pub(super) async fn fanout_silences(env: &Env, n: usize, rounds: usize) -> anyhow::Result<()> {
    let cpu = |m: &Measured| m.worker_cpu_us + m.redis_cpu_us;
    let (mut none_cpu, mut with_cpu, mut none_rate, mut with_rate) = (0.0, 0.0, 0.0, 0.0);
    for _ in 0..rounds {
        let none = measure(env, n, RulesDraft::default(), || async { Ok(()) }).await?;
        none.report("fanout_silences_none_c50");
        let with = measure(env, n, RulesDraft::default(), || store_silences(env)).await?;
        with.report("fanout_silences_100_c50");
        none_cpu += cpu(&none);
        with_cpu += cpu(&with);
        none_rate += none.rate;
        with_rate += with.rate;
    }
    report("fanout_silences_100_over_none_cpu", with_cpu / none_cpu, "ratio");
    report("fanout_silences_100_over_none_rate", none_rate / with_rate, "ratio");
    Ok(())
}

/// The 100 silences (see [`fanout_silences`]), through the store the CLI and API use.
async fn store_silences(env: &Env) -> anyhow::Result<()> {
    let store = SilenceStore::new(&env.shards);
    let now = store.now_ms().await?;
    let draft = |matchers: Vec<String>| SilenceDraft {
        matchers,
        duration: Some("48h".into()),
        author: "bench".into(),
        comment: "benchmark".into(),
        ..SilenceDraft::default()
    };
    for i in 0..90 {
        store.create(&draft(vec![format!("tenant=other-tenant-{i}"), "severity<=medium".into()])).await?;
    }
    for i in 0..5 {
        store
            .create(&draft(vec![
                format!("tenant={TENANT}"),
                "severity<=low".into(),
                format!("finding=F-{i}"),
            ]))
            .await?;
    }
    for _ in 0..5 {
        let mut later = draft(vec![format!("tenant={TENANT}"), "kind=finding.new".into()]);
        later.duration = None;
        later.starts_at = Some(rfc3339_ms(now + 86_400_000));
        later.ends_at = Some(rfc3339_ms(now + 2 * 86_400_000));
        store.create(&later).await?;
    }
    Ok(())
}
