//! `stats`: queue depths.

use crate::config::Global;
use crate::{Failure, output};

pub async fn run(global: &Global) -> Result<(), Failure> {
    let stats = global.queue().await?.stats().await?;
    if global.json {
        output::json(&stats);
    } else {
        output::table(
            &[
                "ready",
                "retrying",
                "parked",
                "processing",
                "scheduled",
                "dead",
                "workers",
                "endpoints",
                "digests",
            ],
            &[vec![
                stats.ready.to_string(),
                stats.retrying.to_string(),
                stats.parked.to_string(),
                stats.processing.to_string(),
                stats.scheduled.to_string(),
                stats.dead.to_string(),
                stats.workers.to_string(),
                stats.endpoints.to_string(),
                stats.digests.to_string(),
            ]],
        );
    }
    Ok(())
}
