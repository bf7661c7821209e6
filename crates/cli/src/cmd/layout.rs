//! `layout`: the queue layout version each shard records, and fair share (version 3: urgent and
//! other work in flows) on or off.
//! `layout` shows it; `layout raise` turns fair share on once every worker runs this release;
//! `layout lower` turns it off, moving the flows' jobs to the ready list, before a rollback to a
//! release without it (layout_version.rs in entraguard-core).

use entraguard_core::queue::{FairShare, Relayout};

use crate::config::Global;
use crate::{Failure, output};

pub const ABOUT: &str = "\
The queue layout version each shard records, and fair share (version 3): events of every tenant
and deliveries to every endpoint taken in turn, urgent ones (critical and high findings, failed
scans) first and in turn too, so one tenant's flood of findings, critical or not, never holds up
another tenant's alerts. A new deployment's first worker turns it on. A deployment that ran an
earlier release stays on its version (1, or 2: fair share for work that is not urgent) until
`layout raise`.

  entraguard-notify layout          each shard's version, flows and the jobs waiting in them
  entraguard-notify layout raise    version 3 on every shard: run it once every worker runs
                                    this release (an earlier release's worker never reads the
                                    urgent flows)
  entraguard-notify layout lower    version 1 on every shard, the urgent flows' jobs moved to the
                                    front of the ready list, the other flows' to its back: run it
                                    before rolling back to an earlier release, then deploy that
                                    release's workers";

#[derive(Debug, Clone, Copy, clap::Subcommand)]
pub enum Command {
    /// Fair share on (layout version 3) on every shard.
    Raise,
    /// Fair share off (layout version 1) on every shard: the flows' jobs go to the ready list
    /// (urgent ones to its front).
    Lower,
}

pub async fn run(global: &Global, command: Option<Command>) -> Result<(), Failure> {
    let shards = global.shards().await?;
    let to = match command {
        None => {
            let rows = shards.fair_shares().await?;
            output::rows(
                global.json,
                &rows,
                &["shard", "version", "fair_share", "flows", "waiting_in_flows"],
                |r| {
                    vec![
                        r.shard.clone(),
                        r.version.clone().unwrap_or_else(|| "-".into()),
                        if r.fair_share { "on" } else { "off" }.into(),
                        r.flows.to_string(),
                        r.waiting_in_flows.to_string(),
                    ]
                },
            );
            return Ok(());
        }
        Some(Command::Raise) => FairShare::On,
        Some(Command::Lower) => FairShare::Off,
    };
    let done = shards.relayout(to).await?;
    output::rows(global.json, &done, &["shard", "was", "now", "moved_to_ready"], row);
    if let Some(newer) = done.iter().find(|d| !d.set) {
        return Err(anyhow::anyhow!(
            "shard {} records layout version {:?}, which this release does not change (a later release's, or no version number): left alone; a later release's `entraguard-notify layout` changes its own, and a field edited by hand is set back with HSET <shard>:layout version 1",
            newer.shard,
            newer.was.as_deref().unwrap_or("-")
        )
        .into());
    }
    Ok(())
}

fn row(d: &Relayout) -> Vec<String> {
    vec![
        d.shard.clone(),
        d.was.clone().unwrap_or_else(|| "-".into()),
        if d.set { "set" } else { "left alone" }.into(),
        d.moved.to_string(),
    ]
}
