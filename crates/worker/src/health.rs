//! The worker's HTTP side: `/healthz` (the process serves), `/readyz` (Redis answers), and
//! Prometheus `/metrics`, on `NOTIFY_HEALTH_ADDR`. Like the worker loop, `serve` takes its
//! listener and shutdown as arguments, so tests bind port 0.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use entraguard_core::queue::Shards;

use crate::shutdown::Shutdown;

/// The queue, once the worker has connected (the server answers `/healthz` before that).
pub type QueueCell = Arc<OnceLock<Shards>>;

#[derive(Clone)]
struct AppState {
    queue: QueueCell,
}

/// The routes, apart from any socket.
pub fn app(queue: QueueCell) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AppState { queue })
}

/// Serves until shutdown.
pub async fn serve(
    listener: tokio::net::TcpListener,
    queue: QueueCell,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    axum::serve(listener, app(queue)).with_graceful_shutdown(async move { shutdown.wait().await }).await
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    let Some(shards) = state.queue.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "connecting to redis");
    };
    // Every shard's node answers (on a cluster, shards may live on different primaries).
    let mut full = None;
    for queue in shards.served() {
        let mut conn = queue.connection();
        let at = queue.keys().ready();
        let ping =
            tokio::time::timeout(Duration::from_secs(2), conn.query_at::<String>(&redis::cmd("PING"), &at))
                .await;
        if !matches!(ping, Ok(Ok(_))) {
            return (StatusCode::SERVICE_UNAVAILABLE, "redis unreachable");
        }
        if full.is_none() {
            full = full_reason(queue).await;
        }
    }
    match full {
        Some(reason) => {
            crate::metrics::redis_full(true);
            (StatusCode::SERVICE_UNAVAILABLE, reason)
        }
        None => (StatusCode::OK, "ready"),
    }
}

/// Why this queue shard's Redis counts as full: at its `maxmemory` now, or it refused a publish
/// for memory within the last minute (a refused batch's own size is freed with the refusal, so
/// used memory alone would say ready right after). `None`: not full, or not known in time.
async fn full_reason(queue: &entraguard_core::queue::Queue) -> Option<&'static str> {
    let two = Duration::from_secs(2);
    if matches!(tokio::time::timeout(two, queue.memory_full()).await, Ok(Ok(true))) {
        return Some(
            "redis is at its maxmemory: new publishes are refused; this worker keeps delivering queued jobs",
        );
    }
    if matches!(tokio::time::timeout(two, queue.publish_refused()).await, Ok(Ok(true))) {
        return Some(
            "redis refused a publish for memory (maxmemory) within the last minute; this worker keeps delivering queued jobs",
        );
    }
    None
}

async fn metrics(
    State(state): State<AppState>,
) -> (StatusCode, [(axum::http::HeaderName, &'static str); 1], String) {
    if let Some(shards) = state.queue.get()
        && let Ok(Ok(stats)) = tokio::time::timeout(Duration::from_secs(2), shards.shard_stats()).await
    {
        crate::metrics::queue(shards, &stats);
    }
    if let Some(shards) = state.queue.get() {
        for queue in shards.served() {
            if full_reason(queue).await.is_some() {
                crate::metrics::redis_full(true);
                break;
            }
        }
    }
    if let Some(shards) = state.queue.get()
        && let Ok(Ok(overview)) =
            tokio::time::timeout(Duration::from_secs(2), shards.breaker_overview()).await
    {
        crate::metrics::breakers(&overview);
    }
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
}
