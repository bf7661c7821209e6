//! The admin server: a JSON API for endpoints (list, create, read, update, delete, enable,
//! disable, Send test), silences (create, list, show, expire, audit), the dead-letter queue (list, show, replay, purge) and queue stats, behind
//! a bearer token; and the Settings → Webhooks page on top of it, behind a login.
//!
//! Validation, masking, sealing and delivery are the same code the CLI and the worker use
//! (`EndpointDraft::validate`, `Endpoint::view`, `EndpointStore`, `Deliverer::send_test`).

mod api;
mod auth;
mod body;
mod error;
mod guard;
mod page;
mod routes;
mod silences;

use std::sync::Arc;

use axum::Router;
use entraguard_core::endpoint::TargetPolicy;
use entraguard_core::ids::EndpointId;
use entraguard_core::queue::{Queue, Shards};
use entraguard_core::secret::Secret;
use entraguard_core::store::EndpointStore;
use entraguard_delivery::delivery::Deliverer;

pub use auth::{LoginLimiter, TokenError, check_token};
pub use error::ApiError;

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The queue shards (`NOTIFY_QUEUE_SHARDS`) on one connection: the endpoint store and the
    /// sessions are in shard 0 ([`AppState::home`]), each endpoint's breaker, lane, history and
    /// dedupe counters in its own shard ([`AppState::queue_of`]).
    pub shards: Shards,
    pub store: EndpointStore,
    pub deliverer: Deliverer,
    pub policy: TargetPolicy,
    /// `None` only when started with `--insecure-local-only`.
    pub token: Option<Arc<Secret>>,
    /// Mark the session cookie `Secure` even when the request does not say it came over HTTPS
    /// (`X-Forwarded-Proto: https` always does): `NOTIFY_ADMIN_SECURE_COOKIE=true`.
    pub secure_cookie: bool,
    /// Failed sign-ins, to rate-limit guessing.
    pub login_limiter: Arc<LoginLimiter>,
}

impl AppState {
    /// `store` must be on `shards.home()`'s keys (where the workers read endpoints).
    pub fn new(
        shards: Shards,
        store: EndpointStore,
        deliverer: Deliverer,
        policy: TargetPolicy,
        token: Option<Arc<Secret>>,
    ) -> Self {
        Self {
            shards,
            store,
            deliverer,
            policy,
            token,
            secure_cookie: false,
            login_limiter: Arc::new(LoginLimiter::default()),
        }
    }

    /// Shard 0: the endpoint store's and the sessions' shard.
    pub fn home(&self) -> &Queue {
        self.shards.home()
    }

    /// The shard of `endpoint`'s deliveries, breaker, lane, history and dedupe counters.
    pub fn queue_of(&self, endpoint: &EndpointId) -> &Queue {
        self.shards.for_endpoint(endpoint)
    }
}

/// The routes, apart from any socket. Every request passes the cross-site guard and every answer
/// carries the security headers (see `guard`).
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(api::routes(state.clone()))
        .merge(page::routes(state.clone()))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::guard))
        .layer(axum::middleware::from_fn(guard::headers))
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The client's address rate-limits failed sign-ins.
    axum::serve(listener, app(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}
