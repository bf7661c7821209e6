//! Shared set-up: a real Redis, an admin server on 127.0.0.1:0 in this process.

use entraguard_admin::AppState;
use entraguard_core::keys::KeySpace;
use entraguard_core::queue::{Queue, Shards};
use entraguard_core::secret::Secret;
use entraguard_core::store::EndpointStore;
use entraguard_testkit::RedisServer;
use entraguard_worker::WorkerConfig;
use entraguard_worker::delivery::Deliverer;

pub const TOKEN: &str = "test-admin-token-0123456789";

pub struct Admin {
    pub base: String,
    // Each test file compiles this module on its own; the page test does not use the queue.
    #[allow(dead_code)]
    pub queue: Queue,
    /// The server's queue shards (`queue` is shard 0).
    #[allow(dead_code)]
    pub shards: Shards,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub async fn start(redis: &RedisServer) -> Admin {
    start_with(redis, Some(TOKEN)).await
}

/// An admin server with `token`, or none (as `--insecure-local-only` runs it).
pub async fn start_with(redis: &RedisServer, token: Option<&str>) -> Admin {
    start_config(redis, token, 1).await
}

/// An admin server whose queue has `shards` shards (`NOTIFY_QUEUE_SHARDS`), on one redis-server:
/// shards are key tags, which one server holds as well as a cluster.
#[allow(dead_code)]
pub async fn start_sharded(redis: &RedisServer, shards: u16) -> Admin {
    start_config(redis, Some(TOKEN), shards).await
}

async fn start_config(redis: &RedisServer, token: Option<&str>, shards: u16) -> Admin {
    let count = shards.to_string();
    let w = WorkerConfig::from_args([
        "entraguard-worker",
        "--redis-url",
        &redis.url(),
        "--allow-http=true",
        "--allow-private-targets",
        "127.0.0.1/32",
        "--delivery-timeout",
        "2s",
        "--queue-shards",
        &count,
    ])
    .expect("config");
    let layout = w.redis_settings().layout();
    assert_eq!(layout.home(), &KeySpace::default(), "shard 0 keeps the one-server keys");
    let shards = Shards::connect(&w.redis().expect("redis config"), layout).await.expect("redis");
    let queue = shards.home().clone();
    let state = AppState::new(
        shards.clone(),
        EndpointStore::new(queue.connection(), KeySpace::default()),
        Deliverer::from_settings(&w.delivery_settings(), w.targets.allow_http).expect("deliverer"),
        w.target_policy(),
        token.map(|t| std::sync::Arc::new(Secret::new(t))),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(entraguard_admin::serve(listener, state, async move {
        let _ = rx.await;
    }));
    Admin { base, queue, shards, _stop: tx }
}
