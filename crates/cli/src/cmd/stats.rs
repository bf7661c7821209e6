//! `stats`: queue depths. With one queue shard, one row of totals; with several (counting those
//! still drained, `NOTIFY_DRAIN_SHARDS`), the totals with `forwarding` and then one row per shard.

use entraguard_core::queue::{QueueStats, Shards};
use serde::Serialize;

use crate::config::Global;
use crate::{Failure, output};

/// One shard's depths, named as in the totals.
#[derive(Debug, Serialize)]
struct ShardRow {
    /// The shard's hash tag, e.g. `{entraguard:1}`.
    shard: String,
    /// Served until empty (`NOTIFY_DRAIN_SHARDS`), nothing new placed in it.
    draining: bool,
    ready: u64,
    retrying: u64,
    parked: u64,
    processing: u64,
    scheduled: u64,
    dead: u64,
    forwarding: u64,
}

/// What `stats --json` prints: the totals, and `shards` only when more than one is served.
#[derive(Debug, Serialize)]
struct StatsOut {
    #[serde(flatten)]
    total: QueueStats,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    shards: Vec<ShardRow>,
}

const TOTALS: [&str; 9] =
    ["ready", "retrying", "parked", "processing", "scheduled", "dead", "workers", "endpoints", "digests"];

const SHARD_COLUMNS: [&str; 8] =
    ["shard", "ready", "retrying", "parked", "processing", "scheduled", "dead", "forwarding"];

pub async fn run(global: &Global) -> Result<(), Failure> {
    let shards = global.shards().await?;
    let per_shard = shards.shard_stats().await?;
    let total = Shards::total(&per_shard);
    let rows: Vec<ShardRow> = if per_shard.len() > 1 {
        shards
            .served()
            .iter()
            .zip(&per_shard)
            .enumerate()
            .map(|(i, (q, s))| ShardRow {
                shard: q.keys().tag().to_owned(),
                draining: i >= shards.count(),
                ready: s.ready,
                retrying: s.retrying,
                parked: s.parked,
                processing: s.processing,
                scheduled: s.scheduled,
                dead: s.dead,
                forwarding: s.forwarding,
            })
            .collect()
    } else {
        Vec::new()
    };
    if global.json {
        output::json(&StatsOut { total, shards: rows });
        return Ok(());
    }
    let mut header = TOTALS.to_vec();
    let mut cells = vec![
        total.ready.to_string(),
        total.retrying.to_string(),
        total.parked.to_string(),
        total.processing.to_string(),
        total.scheduled.to_string(),
        total.dead.to_string(),
        total.workers.to_string(),
        total.endpoints.to_string(),
        total.digests.to_string(),
    ];
    if rows.is_empty() {
        // One shard: the table as it always was (nothing is ever forwarding).
        output::table(&header, &[cells]);
        return Ok(());
    }
    header.push("forwarding");
    cells.push(total.forwarding.to_string());
    output::table(&header, &[cells]);
    println!();
    let per: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let tag = if r.draining { format!("{} (draining)", r.shard) } else { r.shard.clone() };
            vec![
                tag,
                r.ready.to_string(),
                r.retrying.to_string(),
                r.parked.to_string(),
                r.processing.to_string(),
                r.scheduled.to_string(),
                r.dead.to_string(),
                r.forwarding.to_string(),
            ]
        })
        .collect();
    output::table(&SHARD_COLUMNS, &per);
    Ok(())
}
