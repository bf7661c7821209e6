//! The worker loop: connect (waiting for Redis as long as it takes), hold a lease, fetch jobs
//! while a concurrency permit is free, handle each in its own task, and on shutdown stop
//! fetching, let in-flight deliveries finish within the grace period, and hand back the rest.
//!
//! Beside the fetch loop run two small tasks: `maintenance` (renew the lease, reap dead
//! workers' jobs) and `promoter` (move due retries to ready, waking exactly when the next one is
//! due). A Redis error never ends the worker: every operation is retried with back-off.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use entraguard_core::job::{AttemptRecord, DeliveryJob, Job};
use entraguard_core::queue::{DeadLetterDraft, PROMOTE_CHUNK, Queue, WorkerId};
use entraguard_core::store::EndpointStore;
use futures_util::FutureExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, info_span, warn};

use crate::config::{ConfigError, WorkerConfig};
use crate::delivery::Deliverer;
use crate::fanout::fan_out;
use crate::retry::{Next, decide};
use crate::shutdown::Shutdown;
use crate::transport::http::HttpError;
use entraguard_core::endpoint::Channel;
use entraguard_core::ids::EndpointId;

/// Longest the promoter sleeps when no retry is due sooner.
const IDLE_PROMOTE: Duration = Duration::from_secs(15);

/// Most jobs one non-blocking fetch takes.
const MAX_FETCH_BATCH: usize = 128;

/// Why the worker could not run. Redis being unreachable is not one: the worker waits for it.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("cannot listen on NOTIFY_HEALTH_ADDR {addr}: {source}")]
    HealthAddr { addr: std::net::SocketAddr, source: std::io::Error },
}

/// What every task of one worker process shares.
struct Ctx {
    queue: Queue,
    store: EndpointStore,
    deliverer: Deliverer,
    worker: WorkerId,
    config: WorkerConfig,
    /// Wakes the promoter when this worker schedules a retry.
    promoter_wake: Notify,
    /// In-flight cap per endpoint.
    endpoint_slots: EndpointSlots,
}

/// Runs a worker until `shutdown` fires; returns once in-flight work is finished or handed back.
pub async fn run(config: WorkerConfig, mut shutdown: Shutdown) -> Result<(), RunError> {
    config.validate()?;
    let deliverer = Deliverer::from_config(&config)?;
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
    let Some(queue) =
        until_ok(&mut shutdown, "connect to redis", || Queue::connect(&redis, config.key_prefix.clone()))
            .await
    else {
        return Ok(());
    };
    check_redis_settings(&queue).await;
    let _ = queue_cell.set(queue.clone());
    let Some(mut fetcher) =
        until_ok(&mut shutdown, "open fetch connection", || queue.fetcher(&worker, config.fetch_block)).await
    else {
        return Ok(());
    };
    if until_ok(&mut shutdown, "register worker", || queue.heartbeat(&worker, config.lease)).await.is_none() {
        return Ok(());
    }

    let cipher = config.cipher()?;
    if cipher.is_none() {
        warn!(
            "NOTIFY_ENCRYPTION_KEY is not set: endpoint URLs and signing secrets are stored in clear in Redis"
        );
    }
    let store = EndpointStore::new(queue.connection(), config.key_prefix.clone()).with_cipher(cipher);
    let config_endpoint_cap = usize::try_from(config.endpoint_concurrency).unwrap_or(1);
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
    let ctx = Arc::new(Ctx {
        store,
        queue,
        deliverer,
        worker,
        config,
        promoter_wake: Notify::new(),
        endpoint_slots: EndpointSlots::new(config_endpoint_cap),
    });
    let maintenance = tokio::spawn(maintenance(ctx.clone(), shutdown.clone()));
    let promoter = tokio::spawn(promoter(ctx.clone(), shutdown.clone()));
    let concurrency = usize::try_from(ctx.config.concurrency).unwrap_or(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    info!(worker = %ctx.worker, concurrency, redis = %ctx.config.redis_url, "worker started");

    let mut backoff = Backoff::new();
    // How many jobs the next non-blocking fetch asks for: grows while batches come back full (a
    // deep queue: one round trip and one fsync for many jobs), shrinks to what came back
    // otherwise, and is 0 after an empty fetch, so an idle worker only blocks (one BLMOVE per
    // fetch block) instead of asking again and again.
    let mut batch = 0usize;
    loop {
        while tasks.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.wait() => break,
        };
        let mut held = vec![permit];
        while held.len() < batch.min(MAX_FETCH_BATCH) {
            match permits.clone().try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        let fetched: Result<Vec<Vec<u8>>, _> = if batch == 0 {
            tokio::select! {
                r = fetcher.fetch() => r.map(|j| j.into_iter().collect()),
                _ = shutdown.wait() => break,
            }
        } else {
            tokio::select! {
                r = fetcher.try_fetch_many(held.len()) => r,
                _ = shutdown.wait() => break,
            }
        };
        match fetched {
            Ok(jobs) => {
                backoff.reset();
                let asked = held.len();
                batch = match jobs.len() {
                    0 => 0,
                    n if n == asked => (asked * 2).min(MAX_FETCH_BATCH),
                    n => n,
                };
                for (raw, permit) in jobs.into_iter().zip(held.drain(..)) {
                    tasks.spawn(handle(ctx.clone(), raw, permit));
                }
            }
            Err(e) => {
                batch = 0;
                let delay = backoff.next();
                warn!(error = %e, retry_in = ?delay, "fetch failed; redis unreachable?");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait() => break,
                }
            }
        }
    }

    let in_flight = tasks.len();
    info!(in_flight, grace = ?ctx.config.shutdown_grace, "shutting down: no new jobs; finishing in-flight deliveries");
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
    if let Some(h) = health {
        h.abort();
    }
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
        Some(n) => info!(handed_back = n, "worker stopped"),
        None => {
            warn!("worker stopped without reaching redis; its jobs return to ready when its lease expires")
        }
    }
    Ok(())
}

/// Handles one fetched job; a panic is caught and dead-letters the job instead of leaving it
/// stuck on the processing list of a live worker.
async fn handle(ctx: Arc<Ctx>, raw: Vec<u8>, permit: OwnedSemaphorePermit) {
    ::metrics::gauge!(crate::metrics::IN_FLIGHT).increment(1.0);
    let result = AssertUnwindSafe(handle_job(&ctx, &raw)).catch_unwind().await;
    if result.is_err() {
        error!("job handler panicked; dead-lettering the job");
        let draft = DeadLetterDraft {
            id: poison_id(),
            reason: "the worker panicked while handling this job".into(),
            delivery: None,
        };
        persist("dead-letter", || ctx.queue.dead_letter(&ctx.worker, &raw, &draft)).await;
    }
    ::metrics::gauge!(crate::metrics::IN_FLIGHT).decrement(1.0);
    drop(permit);
}

async fn handle_job(ctx: &Ctx, raw: &[u8]) {
    match Job::decode(raw) {
        Err(e) => {
            crate::metrics::poison();
            let draft =
                DeadLetterDraft { id: poison_id(), reason: format!("undecodable job: {e}"), delivery: None };
            error!(dead_letter_id = %draft.id, reason = %draft.reason, "poison job dead-lettered");
            persist("dead-letter", || ctx.queue.dead_letter(&ctx.worker, raw, &draft)).await;
        }
        Ok(Job::Event(job)) => {
            let event = job.event;
            let span = info_span!("fanout", event_id = %event.id, event = %event.kind());
            async {
                if let Err(e) = event.validate() {
                    crate::metrics::poison();
                    let draft = DeadLetterDraft {
                        id: poison_id(),
                        reason: format!("invalid event {}: {e}", event.id),
                        delivery: None,
                    };
                    error!(reason = %draft.reason, "invalid event dead-lettered");
                    persist("dead-letter", || ctx.queue.dead_letter(&ctx.worker, raw, &draft)).await;
                    return;
                }
                let endpoints = persist("read endpoints", || ctx.store.list()).await;
                let deliveries: Vec<String> =
                    fan_out(&event, &endpoints).into_iter().map(|d| Job::Delivery(d).encode()).collect();
                if persist("ack", || ctx.queue.ack(&ctx.worker, raw, &deliveries)).await {
                    crate::metrics::fanned_out();
                    info!(deliveries = deliveries.len(), "event fanned out");
                } else {
                    warn!("lease lost before fan-out was recorded; another worker fans it out");
                }
            }
            .instrument(span)
            .await;
        }
        Ok(Job::Delivery(job)) => {
            let span = info_span!(
                "delivery",
                event_id = %job.event.id,
                delivery_id = %job.delivery_id,
                endpoint_id = %job.endpoint_id,
                attempt = job.next_attempt()
            );
            deliver(ctx, raw, job).instrument(span).await;
        }
    }
}

async fn deliver(ctx: &Ctx, raw: &[u8], mut job: DeliveryJob) {
    let Some(endpoint) = persist("read endpoint", || ctx.store.get(&job.endpoint_id)).await else {
        let draft = DeadLetterDraft {
            id: job.delivery_id.to_string(),
            reason: format!("endpoint {} was deleted", job.endpoint_id),
            delivery: Some(job),
        };
        warn!(reason = %draft.reason, "delivery dead-lettered");
        persist("dead-letter", || ctx.queue.dead_letter(&ctx.worker, raw, &draft)).await;
        return;
    };
    // A busy endpoint's delivery waits in Redis, not here: waiting would hold a concurrency
    // permit and let one hanging endpoint starve the rest.
    let Some(_slot) = ctx.endpoint_slots.try_acquire(&endpoint.id) else {
        // Short enough that a busy but fast endpoint loses little, long enough that a hanging one
        // does not spin its jobs through Redis.
        let defer =
            (ctx.config.delivery_timeout / 100).clamp(Duration::from_millis(10), Duration::from_millis(200));
        tracing::debug!(retry_in = ?defer, "endpoint at its in-flight cap; delivery deferred");
        persist("defer", || ctx.queue.retry_later(&ctx.worker, raw, raw, defer)).await;
        ctx.promoter_wake.notify_one();
        return;
    };
    if endpoint.channel == Channel::Slack && !ctx.config.slack_pace.is_zero() {
        let wait = persist("pace", || ctx.queue.pace(&endpoint.id, ctx.config.slack_pace)).await;
        if let Some(wait) = wait {
            tracing::debug!(retry_in = ?wait, "slack webhook paced; delivery deferred");
            persist("defer", || ctx.queue.retry_later(&ctx.worker, raw, raw, wait)).await;
            ctx.promoter_wake.notify_one();
            return;
        }
    }
    let attempt = job.next_attempt();
    let (outcome, at, elapsed) = ctx.deliverer.attempt(&job, &endpoint).await;
    job.attempts.push(AttemptRecord {
        attempt,
        at,
        duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        status: outcome.status(),
        error: outcome.error().map(str::to_owned),
    });
    let next = decide(&outcome, attempt, &ctx.config.retry_schedule, ctx.config.max_retry_after);
    let result = match next {
        Next::Done => "delivered",
        Next::RetryIn(_) => "retry",
        Next::Dead(_) => "dead",
    };
    crate::metrics::attempt(endpoint.channel.as_str(), result, elapsed);
    let kept = match next {
        Next::Done => {
            info!(status = ?outcome.status(), ms = elapsed.as_millis() as u64, channel = %endpoint.channel, "delivered");
            persist("ack", || ctx.queue.ack(&ctx.worker, raw, &[])).await
        }
        Next::RetryIn(delay) => {
            warn!(error = outcome.error().unwrap_or(""), retry_in = ?delay, "attempt failed; retry scheduled");
            let next = Job::Delivery(job).encode();
            let kept =
                persist("schedule retry", || ctx.queue.retry_later(&ctx.worker, raw, next.as_bytes(), delay))
                    .await;
            ctx.promoter_wake.notify_one();
            kept
        }
        Next::Dead(reason) => {
            error!(reason = %reason, "delivery dead-lettered");
            let draft = DeadLetterDraft { id: job.delivery_id.to_string(), reason, delivery: Some(job) };
            persist("dead-letter", || ctx.queue.dead_letter(&ctx.worker, raw, &draft)).await
        }
    };
    if !kept {
        warn!("lease lost during the attempt; the job was handed to another worker");
    }
}

/// Renews the lease and reaps dead workers' jobs, every third of the lease.
async fn maintenance(ctx: Arc<Ctx>, mut shutdown: Shutdown) {
    let every = ctx.config.heartbeat_interval();
    let mut beat: u64 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => return,
        }
        if let Err(e) = ctx.queue.heartbeat(&ctx.worker, ctx.config.lease).await {
            warn!(error = %e, "lease renewal failed");
            continue;
        }
        // Every other beat: a dead worker's jobs are back within about one lease.
        beat += 1;
        if beat.is_multiple_of(2)
            && let Err(e) = ctx.queue.reap_dead_workers(&ctx.worker).await
        {
            warn!(error = %e, "reaping dead workers failed");
        }
    }
}

/// Moves due retries to ready. Sleeps until the earliest scheduled job is due, or until this
/// worker schedules one; looks again at least every `IDLE_PROMOTE` for retries other processes
/// scheduled and could not promote themselves (they died).
async fn promoter(ctx: Arc<Ctx>, mut shutdown: Shutdown) {
    let idle = IDLE_PROMOTE;
    loop {
        let wait = match ctx.queue.promote_due().await {
            Ok(p) if p.moved >= PROMOTE_CHUNK => Duration::ZERO,
            Ok(p) => {
                if p.moved > 0 {
                    info!(moved = p.moved, "due retries moved to ready");
                }
                p.next_due_in.map_or(idle, |d| (d + Duration::from_millis(1)).min(idle))
            }
            Err(e) => {
                warn!(error = %e, "promoting due retries failed");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.promoter_wake.notified() => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// Warns about Redis settings the guarantees rely on (spec §5). Managed Redis services often
/// refuse CONFIG GET; then there is nothing to check.
async fn check_redis_settings(queue: &Queue) {
    let mut conn = queue.connection();
    let got: Result<Vec<String>, _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .arg("appendfsync")
        .arg("maxmemory-policy")
        .query_async(&mut conn)
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

fn poison_id() -> String {
    format!("job_{}", ulid::Ulid::new())
}

/// Retries a Redis operation with back-off until it succeeds. Jobs are only ever finished by a
/// completed Redis call, so waiting out a Redis restart loses nothing; at shutdown the grace
/// period bounds the wait.
async fn persist<T, E, F, Fut>(what: &str, op: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    match retry_redis(what, op, std::future::pending()).await {
        Some(v) => v,
        None => unreachable!("a pending future never stops the retries"),
    }
}

/// Retries until success, or returns `None` when shutdown comes first.
async fn until_ok<T, E, F, Fut>(shutdown: &mut Shutdown, what: &str, op: F) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_redis(what, op, shutdown.wait()).await
}

/// The one retry loop: exponential back-off, a warning per failure, `None` once `stop` resolves.
async fn retry_redis<T, E, F, Fut>(what: &str, mut op: F, stop: impl Future<Output = ()>) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        match op().await {
            Ok(v) => return Some(v),
            Err(e) => {
                let delay = backoff.next();
                warn!(error = %e, retry_in = ?delay, "redis: {what} failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = &mut stop => return None,
                }
            }
        }
    }
}

/// Per-endpoint in-flight slots, created on first use.
struct EndpointSlots {
    cap: usize,
    slots: std::sync::Mutex<std::collections::HashMap<EndpointId, Arc<Semaphore>>>,
}

impl EndpointSlots {
    fn new(cap: usize) -> Self {
        Self { cap, slots: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }

    fn try_acquire(&self, endpoint: &EndpointId) -> Option<OwnedSemaphorePermit> {
        let sem = {
            let mut map = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.entry(endpoint.clone()).or_insert_with(|| Arc::new(Semaphore::new(self.cap))).clone()
        };
        sem.try_acquire_owned().ok()
    }
}

/// Exponential back-off from 100 ms to 5 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(100))
    }

    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        d
    }

    fn reset(&mut self) {
        self.0 = Duration::from_millis(100);
    }
}
