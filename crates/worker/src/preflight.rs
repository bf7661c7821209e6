//! Start-up checks of the Redis the worker was given.

use entraguard_core::queue::{Queue, Shards};
use tracing::{error, info, warn};

/// [`check_redis_settings`] once per Redis node holding a served shard (on a cluster, shards
/// live on different primaries; on one server, one check).
pub(crate) async fn check_shards(shards: &Shards) {
    let mut seen = std::collections::HashSet::new();
    for queue in shards.served() {
        let mut conn = queue.connection();
        let at = queue.keys().ready();
        let node =
            conn.query_at::<String>(redis::cmd("INFO").arg("server"), &at).await.ok().and_then(|info| {
                info.lines().find_map(|l| l.strip_prefix("run_id:")).map(|id| id.trim().to_owned())
            });
        // A node that does not answer INFO is checked (and reported) shard by shard.
        if node.is_none_or(|id| seen.insert(id)) {
            check_redis_settings(queue).await;
        }
    }
}

/// Warns about Redis settings the guarantees rely on (spec §5). Managed Redis services often
/// refuse CONFIG GET; then there is nothing to check.
pub(crate) async fn check_redis_settings(queue: &Queue) {
    let mut conn = queue.connection();
    // On a Redis Cluster, the node that holds the queue's keys is the one whose settings matter.
    let at = queue.keys().ready();
    // The queue's scripts declare flags (`#!lua flags=allow-oom`), which Redis reads from 7.0 on.
    if let Ok(info) = conn.query_at::<String>(redis::cmd("INFO").arg("server"), &at).await
        && let Some(version) = info.lines().find_map(|l| l.strip_prefix("redis_version:"))
        && version.trim().split('.').next().and_then(|m| m.parse::<u32>().ok()).is_some_and(|m| m < 7)
    {
        error!(
            version = version.trim(),
            "redis is older than 7.0: the queue's scripts need 7.0 or later and will be refused"
        );
    }
    let got: Result<Vec<String>, _> = conn
        .query_at(
            redis::cmd("CONFIG").arg("GET").arg("appendonly").arg("appendfsync").arg("maxmemory-policy"),
            &at,
        )
        .await;
    let Ok(pairs) = got else {
        info!("CONFIG GET refused; cannot check appendonly and maxmemory-policy");
        return;
    };
    let get = |k: &str| pairs.chunks(2).find(|c| c[0] == k).and_then(|c| c.get(1)).map(String::as_str);
    if get("appendonly") != Some("yes") {
        warn!(
            "redis runs without appendonly: a Redis restart loses queued jobs and scheduled retries (set appendonly yes)"
        );
    } else if get("appendfsync") == Some("everysec") {
        info!(
            "redis appendfsync everysec: a crash of the Redis host can lose up to ~1 s of acknowledged jobs"
        );
    }
    if let Some(policy) = get("maxmemory-policy")
        && policy != "noeviction"
    {
        warn!(
            policy,
            "redis maxmemory-policy evicts keys: queued jobs can be silently dropped (set noeviction)"
        );
    }
}
