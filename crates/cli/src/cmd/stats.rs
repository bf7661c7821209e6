//! `stats`: queue depths. With one queue shard, one row of totals; with several (counting those
//! still drained, `NOTIFY_DRAIN_SHARDS`), the totals with `forwarding` and then one row per shard.

use entraguard_core::queue::StatsReport;

use crate::config::Global;
use crate::{Failure, output};

const TOTALS: [&str; 12] = [
    "ready",
    "flows",
    "retrying",
    "parked",
    "processing",
    "scheduled",
    "dead",
    "lane_full",
    "workers",
    "endpoints",
    "digests",
    "event_bodies",
];

const SHARD_COLUMNS: [&str; 8] =
    ["shard", "ready", "retrying", "parked", "processing", "scheduled", "dead", "forwarding"];

pub async fn run(global: &Global) -> Result<(), Failure> {
    let shards = global.shards().await?;
    let report = shards.report().await?;
    if global.json {
        output::json(&report);
        return Ok(());
    }
    let StatsReport { total, shards: rows } = report;
    let mut header = TOTALS.to_vec();
    let mut cells = vec![
        total.ready.to_string(),
        total.flows.to_string(),
        total.retrying.to_string(),
        total.parked.to_string(),
        total.processing.to_string(),
        total.scheduled.to_string(),
        total.dead.to_string(),
        total.lane_full.to_string(),
        total.workers.to_string(),
        total.endpoints.to_string(),
        total.digests.to_string(),
        total.event_bodies.to_string(),
    ];
    if rows.is_empty() {
        // One shard: the table as it always was (nothing is ever forwarding).
        output::table(&header, &[cells]);
        return Ok(());
    }
    header.push("forwarding");
    cells.push(total.forwarding.to_string());
    output::table(&header, &[cells]);
    entraguard_core::outln!();
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
