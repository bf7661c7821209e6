//! `shards`: the queue shards' hash tags, Redis Cluster slots and the keys to watch, worked out
//! from `NOTIFY_KEY_PREFIX` and `NOTIFY_QUEUE_SHARDS` without reaching Redis: what KEDA triggers,
//! `redis-cli` recipes and slot moves need.

use entraguard_core::shards::slot;

use crate::Failure;
use crate::config::Global;
use crate::output;

#[derive(serde::Serialize)]
struct ShardRow {
    index: usize,
    tag: String,
    slot: u16,
    ready: String,
    retry: String,
    dlq: String,
    /// Served until empty (NOTIFY_DRAIN_SHARDS), nothing new placed in it.
    draining: bool,
}

pub fn run(global: &Global) -> Result<(), Failure> {
    let layout = global.redis.layout();
    let rows: Vec<ShardRow> = layout
        .served()
        .enumerate()
        .map(|(index, k)| ShardRow {
            index,
            tag: k.tag().to_owned(),
            slot: slot(k.tag().trim_start_matches('{').trim_end_matches('}')),
            ready: k.ready(),
            retry: k.retry(),
            dlq: k.dlq(),
            draining: index >= layout.count(),
        })
        .collect();
    output::rows(global.json, &rows, &["shard", "tag", "slot", "ready list", "retry list"], |r| {
        vec![
            if r.draining { format!("{} (draining)", r.index) } else { r.index.to_string() },
            r.tag.clone(),
            r.slot.to_string(),
            r.ready.clone(),
            r.retry.clone(),
        ]
    });
    Ok(())
}
