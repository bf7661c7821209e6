//! The worker loop: connect (waiting for Redis as long as it takes), hold a lease, fetch jobs
//! while a concurrency permit is free, dispatch each to its step in its own task, and on
//! shutdown stop fetching, let in-flight deliveries finish within the grace period, and hand
//! back the rest.
//!
//! The steps live beside it: [`crate::fanout`] (an event becomes deliveries),
//! [`crate::attempt`] (one delivery: admission through [`crate::gate`], the attempt, its
//! outcome). Beside the fetch loop run two small tasks: [`crate::lease`] (renew the lease, reap
//! dead workers' jobs) and [`crate::promoter`] (move due retries to ready, waking exactly when
//! the next one is due). A Redis error never ends the worker: every operation is retried with
//! back-off ([`crate::persist`]).

use std::sync::Arc;
use std::time::Duration;

use entraguard_core::endpoint::Channel;
use entraguard_core::layout_version::{LAYOUT_VERSION, VersionDecision};
use entraguard_core::queue::{FanoutParking, Fetched, QueueError, Shards, WorkerId};
use entraguard_core::shards::{FORWARD_REPLICA_WAIT, LayoutDecision, LayoutRole};
use entraguard_core::store::EndpointStore;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::{ConfigError, WorkerConfig};
use crate::context::Ctx;
use crate::delivery::Deliverer;
use crate::endpoints::EndpointCache;
use crate::gate::Gate;
use crate::persist::{Backoff, until_ok};
use crate::reconcile::Reconciler;
use crate::running::Running;
use crate::shutdown::Shutdown;
use crate::transport::http::HttpError;

/// Most jobs one non-blocking fetch takes.
const MAX_FETCH_BATCH: usize = 128;

/// Why the worker could not run. Redis being unreachable is not one: the worker waits for it.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Setup(#[from] crate::delivery::SetupError),
    #[error("cannot listen on NOTIFY_HEALTH_ADDR {addr}: {source}")]
    HealthAddr { addr: std::net::SocketAddr, source: std::io::Error },
    /// `NOTIFY_QUEUE_SHARDS` is not the count the deployment records in Redis.
    #[error(transparent)]
    ShardLayout(#[from] entraguard_core::shards::LayoutMismatch),
    /// Redis records a queue layout version this release cannot read.
    #[error(transparent)]
    LayoutVersion(#[from] entraguard_core::layout_version::LayoutVersionError),
}

/// Runs a worker until `shutdown` fires; returns once in-flight work is finished or handed back.
pub async fn run(config: WorkerConfig, mut shutdown: Shutdown) -> Result<(), RunError> {
    config.validate()?;
    let deliverer = Deliverer::from_settings(&config.delivery_settings(), config.targets.allow_http)?;
    let worker = WorkerId::generate();
    let queue_cell = crate::health::QueueCell::default();
    let health = match config.health_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::HealthAddr { addr, source })?;
            info!(addr = %listener.local_addr().unwrap_or(addr), "health and metrics server listening");
            crate::metrics::handle();
            Some(tokio::spawn(crate::health::serve(listener, queue_cell.clone(), shutdown.clone())))
        }
        None => None,
    };
    let redis = config.redis()?;
    let layout = config.redis_settings().layout();
    let Some(shards) = until_ok(&mut shutdown, "connect to redis", || async {
        Ok::<_, QueueError>(
            Shards::connect(&redis, layout.clone())
                .await?
                .with_forward_replicas(config.publish_replicas, FORWARD_REPLICA_WAIT),
        )
    })
    .await
    else {
        return Ok(());
    };
    // The deployment's recorded shard count: this worker records its own on a first start, or
    // on purpose with NOTIFY_DRAIN_SHARDS = the recorded count; another count is refused (work
    // would wait in shards nobody serves). Redis errors are retried like the connect.
    let role = LayoutRole::Worker { drain: config.drain_shards };
    let Some(checked) = until_ok(&mut shutdown, "read the queue shard layout", || async {
        match shards.checked(role).await {
            Ok(v) => Ok(Ok(v)),
            Err(QueueError::Layout(e)) => Ok(Err(e)),
            Err(e) => Err(e),
        }
    })
    .await
    else {
        return Ok(());
    };
    let (shards, decision) = checked?;
    match decision {
        LayoutDecision::Record => info!(shards = shards.count(), "recorded the queue shard count in redis"),
        LayoutDecision::Change { from, .. } => warn!(
            from,
            to = shards.count(),
            "changed the deployment's queue shard count; the old shards are drained by workers with NOTIFY_DRAIN_SHARDS={from}: set NOTIFY_QUEUE_SHARDS={} for every producer, worker, CLI and admin server",
            shards.count()
        ),
        LayoutDecision::Agree | LayoutDecision::Unrecorded => {}
    }
    // The layout's version: a layout this release cannot read stops it here, before it takes a
    // job it would misread (crates/core/src/layout_version.rs).
    let Some(version) =
        until_ok(&mut shutdown, "read the queue layout version", || shards.checked_version()).await
    else {
        return Ok(());
    };
    match version? {
        VersionDecision::Record => {
            info!(version = LAYOUT_VERSION, "recorded the queue layout version in redis")
        }
        VersionDecision::Unrecorded => warn!(
            version = LAYOUT_VERSION,
            "redis is at its maxmemory: the queue layout version is recorded at a later start"
        ),
        VersionDecision::Agree => {}
    }
    if shards.counted().len() > shards.served().len() {
        let unserved: Vec<&str> =
            shards.counted()[shards.served().len()..].iter().map(|q| q.keys().tag()).collect();
        info!(
            shards = ?unserved,
            "shards of an earlier queue shard count are counted in stats and /metrics but not served (NOTIFY_DRAIN_SHARDS serves them)"
        );
    }
    crate::preflight::check_shards(&shards).await;
    let _ = queue_cell.set(shards.clone());

    let cipher = config.cipher()?;
    if cipher.is_none() {
        warn!(
            "NOTIFY_ENCRYPTION_KEY is not set: endpoint URLs and signing secrets are stored in clear in Redis"
        );
    }
    let store = EndpointStore::new(shards.connection(), shards.home().keys().clone()).with_cipher(cipher);
    let config_endpoint_cap = usize::try_from(config.endpoint_concurrency).unwrap_or(1);
    let gate = Gate::new(config_endpoint_cap, config.slack_pace, config.breaker());
    if !deliverer.has_smtp() {
        let Some(endpoints) = until_ok(&mut shutdown, "read endpoints", || store.list()).await else {
            return Ok(());
        };
        let email: Vec<String> = endpoints
            .iter()
            .filter(|e| e.enabled && e.channel == Channel::Email)
            .map(|e| e.id.to_string())
            .collect();
        if !email.is_empty() {
            return Err(ConfigError::SmtpMissing(email.join(", ")).into());
        }
    }
    let endpoints = Arc::new(EndpointCache::default());
    let concurrency = usize::try_from(config.concurrency).unwrap_or(1);
    // One pool of permits for every shard: a shard with a backlog takes what the others leave.
    let permits = Arc::new(Semaphore::new(concurrency));
    info!(
        worker = %worker,
        concurrency,
        shards = shards.served().len(),
        redis = %config.redis_url,
        "worker started"
    );
    let mut served = JoinSet::new();
    for (index, queue) in shards.served().iter().enumerate() {
        let running = Arc::new(Running::default());
        let ctx = Arc::new(Ctx {
            acker: crate::acker::Acker::spawn(queue.clone(), running.clone()),
            router: crate::router::Router::spawn(
                queue.clone(),
                running.clone(),
                (!gate.breaker_settings().is_off()).then_some(FanoutParking { lane_max: config.lane_max }),
            ),
            clock: crate::clock::RedisClock::default(),
            store: store.clone(),
            queue: queue.clone(),
            shards: shards.clone(),
            shard: index,
            deliverer: deliverer.clone(),
            worker: worker.clone(),
            config: config.clone(),
            promoter_wake: Notify::new(),
            gate: gate.clone(),
            endpoints: endpoints.clone(),
            running,
        });
        served.spawn(serve(ctx, permits.clone(), shutdown.clone()));
    }
    while served.join_next().await.is_some() {}
    if let Some(h) = health {
        h.abort();
    }
    Ok(())
}

/// Serves one queue shard until shutdown: hold a lease in it, fetch its jobs while a permit is
/// free, run them, and on shutdown let in-flight ones finish within the grace period and hand
/// back the rest.
async fn serve(ctx: Arc<Ctx>, permits: Arc<Semaphore>, mut shutdown: Shutdown) {
    let queue = &ctx.queue;
    let shard = queue.keys().tag().to_owned();
    let Some(mut fetcher) = until_ok(&mut shutdown, "open fetch connection", || {
        queue.fetcher(&ctx.worker, ctx.config.fetch_block)
    })
    .await
    else {
        return;
    };
    if until_ok(&mut shutdown, "register worker", || queue.heartbeat(&ctx.worker, ctx.config.lease))
        .await
        .is_none()
    {
        return;
    }
    let maintenance = tokio::spawn(crate::lease::maintenance(ctx.clone(), shutdown.clone()));
    let promoter = tokio::spawn(crate::promoter::promoter(ctx.clone(), shutdown.clone()));
    let mut tasks = JoinSet::new();
    let mut backoff = Backoff::new();
    let mut reconciler = Reconciler::new(&ctx.config);
    // How many jobs the next non-blocking fetch asks for: grows while batches come back full (a
    // deep queue: one round trip and one fsync for many jobs), shrinks to what came back
    // otherwise, and is 0 after an empty fetch, so an idle worker only blocks (one BLMOVE per
    // fetch block) instead of asking again and again.
    let mut batch = 0usize;
    // Redis is at its maxmemory: the blocking fetch is refused, the fetch script is not.
    let mut redis_full = false;
    'fetching: loop {
        while tasks.try_join_next().is_some() {}
        // Between fetches, never during one: a job on the processing list that is not running
        // is then certainly stranded (its fetch answer was lost), not about to arrive.
        let permit = loop {
            if reconciler.due() {
                reconciler.run(&ctx).await;
            }
            tokio::select! {
                p = permits.clone().acquire_owned() => match p { Ok(p) => break p, Err(_) => break 'fetching },
                _ = tokio::time::sleep_until(reconciler.next_at) => {}
                _ = shutdown.wait() => break 'fetching,
            }
        };
        let mut held = vec![permit];
        while held.len() < batch.min(MAX_FETCH_BATCH) {
            match permits.clone().try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        let fetched: Result<Fetched, QueueError> = if batch == 0 && !redis_full {
            tokio::select! {
                r = fetcher.fetch() => r,
                _ = shutdown.wait() => break,
            }
        } else {
            tokio::select! {
                r = fetcher.try_fetch_many(held.len()) => r,
                _ = shutdown.wait() => break,
            }
        };
        match fetched {
            Ok(Fetched { jobs, oversized, endpoints_rev }) => {
                backoff.reset();
                crate::slot::observe_endpoints(&ctx, endpoints_rev, !jobs.is_empty()).await;
                crate::metrics::redis_full(false);
                for _ in 0..oversized {
                    crate::poison::oversized(&ctx).await;
                }
                let asked = held.len();
                let got = jobs.len() + oversized;
                batch = match got {
                    0 => 0,
                    n if n == asked => (asked * 2).min(MAX_FETCH_BATCH),
                    n => n,
                };
                if got > 0 {
                    reconciler.busy = true;
                } else if redis_full {
                    // Nothing to take, and the blocking fetch is refused: look again soon,
                    // then try blocking again (Redis may have room by then).
                    redis_full = false;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next()) => {}
                        _ = shutdown.wait() => break,
                    }
                }
                for (claimed, permit) in jobs.into_iter().zip(held.drain(..)) {
                    ctx.running.start(&claimed.shared_bytes());
                    tasks.spawn(crate::slot::run(ctx.clone(), claimed, permit));
                }
            }
            Err(e) if e.is_out_of_memory() => {
                // Keep delivering: delivering is what frees memory. Publishes stay refused.
                if !redis_full {
                    warn!(
                        "redis is at its maxmemory: publishes are refused; taking jobs with the fetch script meanwhile"
                    );
                }
                crate::metrics::redis_full(true);
                redis_full = true;
                batch = batch.max(1);
            }
            Err(e) => {
                batch = 0;
                reconciler.fetch_failed();
                let delay = backoff.next();
                warn!(error = %e, retry_in = ?delay, "fetch failed; redis unreachable?");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait() => break,
                }
            }
        }
    }

    // Acknowledgements take no next jobs from here on.
    ctx.running.close();
    let in_flight = tasks.len();
    info!(shard, in_flight, grace = ?ctx.config.shutdown_grace, "shutting down: no new jobs; finishing in-flight deliveries");
    let drained =
        tokio::time::timeout(ctx.config.shutdown_grace, async { while tasks.join_next().await.is_some() {} })
            .await;
    if drained.is_err() {
        warn!(unfinished = tasks.len(), "grace period over; handing unfinished jobs back");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    maintenance.abort();
    promoter.abort();
    // Anything still on our processing list (a job fetched just as shutdown came, or one whose
    // delivery was cut off) goes back to the front of the ready list.
    let mut released = None;
    for _ in 0..5 {
        match ctx.queue.release(&ctx.worker).await {
            Ok(n) => {
                released = Some(n);
                break;
            }
            Err(e) => {
                warn!(error = %e, "could not hand jobs back yet; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    match released {
        Some(n) => info!(shard, handed_back = n, "worker stopped"),
        None => {
            warn!("worker stopped without reaching redis; its jobs return to ready when its lease expires")
        }
    }
}
