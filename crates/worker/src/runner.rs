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

use entraguard_core::breaker::{Answer, BreakerState, Report};
use entraguard_core::endpoint::Endpoint;
use entraguard_core::event::{EndpointHealth, Event};
use entraguard_core::job::{AttemptRecord, DeliveryJob, EventJob, Job};
use entraguard_core::queue::{DeadLetterDraft, Fetched, PROMOTE_CHUNK, Queue, QueueError, WorkerId};
use entraguard_core::store::{EndpointStore, StoreError};
use futures_util::FutureExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, info_span, warn};

use crate::config::{ConfigError, WorkerConfig};
use crate::delivery::Deliverer;
use crate::fanout::fan_out;
use crate::gate::{Admission, DISABLED_LOOK, Gate, LANE_SAFETY_LOOK};
use crate::outcome::Outcome;
use crate::retry::{Next, decide};
use crate::running::Running;
use crate::shutdown::Shutdown;
use crate::transport::http::HttpError;
use entraguard_core::endpoint::Channel;

/// Longest the promoter sleeps when no retry is due sooner. Retries scheduled by another
/// worker are that worker's to promote; if it dies, the reap that hands its jobs back wakes
/// this promoter too, so this is only a safety net.
const IDLE_PROMOTE: Duration = Duration::from_secs(60);

/// How often the promoter reports what it moved, at most (it may move jobs thousands of times
/// a minute while a backlog drains).
const PROMOTE_REPORT_EVERY: Duration = Duration::from_secs(60);

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
    /// Admission per endpoint: in-flight cap and Slack pacing; what cannot run waits in lanes.
    gate: Gate,
    /// The jobs this process runs: what its processing list should hold.
    running: Running,
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
    let slack_pace = config.slack_pace;
    let breaker = config.breaker();
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
        gate: Gate::new(config_endpoint_cap, slack_pace, breaker),
        running: Running::default(),
    });
    let maintenance = tokio::spawn(maintenance(ctx.clone(), shutdown.clone()));
    let promoter = tokio::spawn(promoter(ctx.clone(), shutdown.clone()));
    let concurrency = usize::try_from(ctx.config.concurrency).unwrap_or(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    info!(worker = %ctx.worker, concurrency, redis = %ctx.config.redis_url, "worker started");

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
            Ok(Fetched { jobs, oversized }) => {
                backoff.reset();
                crate::metrics::redis_full(false);
                for _ in 0..oversized {
                    dead_letter_oversized(&ctx).await;
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
                for (raw, permit) in jobs.into_iter().zip(held.drain(..)) {
                    let raw: Arc<[u8]> = raw.into();
                    ctx.running.start(&raw);
                    tasks.spawn(handle(ctx.clone(), raw, permit));
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
async fn handle(ctx: Arc<Ctx>, raw: Arc<[u8]>, permit: OwnedSemaphorePermit) {
    ::metrics::gauge!(crate::metrics::IN_FLIGHT).increment(1.0);
    let result = AssertUnwindSafe(handle_job(&ctx, &raw)).catch_unwind().await;
    if result.is_err() {
        error!("job handler panicked; dead-lettering the job");
        let draft = DeadLetterDraft {
            id: poison_id(),
            reason: "the worker panicked while handling this job".into(),
            delivery: None,
        };
        record(&ctx, "dead-letter", || ctx.queue.dead_letter(&ctx.worker, &raw, &draft)).await;
    }
    ctx.running.finish(&raw);
    ::metrics::gauge!(crate::metrics::IN_FLIGHT).decrement(1.0);
    drop(permit);
}

/// Dead-letters a job too long to read, straight from the processing list.
async fn dead_letter_oversized(ctx: &Ctx) {
    crate::metrics::poison();
    let id = poison_id();
    let len =
        persist("dead-letter oversized job", || ctx.queue.dead_letter_oversized(&ctx.worker, &id)).await;
    error!(dead_letter_id = %id, bytes = len, "oversized job dead-lettered unread");
}

async fn handle_job(ctx: &Ctx, raw: &[u8]) {
    match Job::decode(raw) {
        Err(e) => {
            crate::metrics::poison();
            let draft =
                DeadLetterDraft { id: poison_id(), reason: format!("undecodable job: {e}"), delivery: None };
            error!(dead_letter_id = %draft.id, reason = %draft.reason, "poison job dead-lettered");
            record(ctx, "dead-letter", || ctx.queue.dead_letter(&ctx.worker, raw, &draft)).await;
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
                    record(ctx, "dead-letter", || ctx.queue.dead_letter(&ctx.worker, raw, &draft)).await;
                    return;
                }
                let routes = persist("read endpoints", || ctx.store.routes()).await;
                let deliveries: Vec<String> =
                    fan_out(&event, &routes).into_iter().map(|d| Job::Delivery(d).encode()).collect();
                // An urgent event's deliveries go to the front of the ready list.
                let urgent = if event.is_urgent() { deliveries.len() } else { 0 };
                if record(ctx, "fan-out", || ctx.queue.ack(&ctx.worker, raw, urgent, &deliveries)).await {
                    crate::metrics::fanned_out();
                    tracing::debug!(deliveries = deliveries.len(), "event fanned out");
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

async fn deliver(ctx: &Ctx, raw: &[u8], job: DeliveryJob) {
    let endpoint = match read_endpoint(ctx, &job).await {
        EndpointRead::Found(endpoint) => endpoint,
        EndpointRead::Deleted => {
            let draft = DeadLetterDraft {
                id: job.delivery_id.to_string(),
                reason: format!("endpoint {} was deleted", job.endpoint_id),
                delivery: Some(job),
            };
            warn!(reason = %draft.reason, "delivery dead-lettered");
            record(ctx, "dead-letter", || ctx.queue.dead_letter(&ctx.worker, raw, &draft)).await;
            return;
        }
        EndpointRead::Unreadable(reason) => {
            // Like any failed attempt: retried on the schedule (someone may fix the record or
            // give this worker the key), then dead-lettered with the reason. No slot is held.
            let at = entraguard_core::timestamp::Timestamp::now();
            conclude(ctx, raw, job, Outcome::retryable(None, reason), at, Duration::ZERO, "unreadable").await;
            return;
        }
    };
    // An endpoint that cannot take it now (at its cap, paced, or its breaker open): the
    // delivery waits in the endpoint's lane in Redis, not here (waiting here would hold a
    // concurrency permit, and one hanging endpoint would starve the rest), and not in a loop
    // through the delayed set.
    let probe_deadline = Gate::probe_deadline(ctx.config.delivery_timeout);
    let ticket = match persist("admit", || ctx.gate.admit(&ctx.queue, &endpoint, probe_deadline)).await {
        Admission::Go(ticket) => ticket,
        Admission::Park(wake_in) => {
            tracing::debug!(wake_in = ?wake_in, "endpoint busy, paced or broken; delivery parked in its lane");
            record(ctx, "park", || ctx.queue.park(&ctx.worker, raw, &endpoint.id, wake_in)).await;
            ctx.promoter_wake.notify_one();
            return;
        }
    };
    let probe = ticket.is_probe();
    let (outcome, at, elapsed) = ctx.deliverer.attempt(&job, &endpoint).await;
    let channel = endpoint.channel.as_str();
    match &outcome {
        // Every retryable failure is reported to the breaker (it counts them).
        Outcome::Retryable { error, .. } => {
            let settings = *ctx.gate.breaker_settings();
            let report = Report::Failure { error, probe };
            let answer =
                persist("report to breaker", || ctx.queue.breaker_report(&endpoint.id, report, &settings))
                    .await;
            ctx.gate.learn(&endpoint.id, &answer);
            if answer.changed {
                emit_health(ctx, &endpoint, &answer, Some(error)).await;
            }
            if answer.state != BreakerState::Closed {
                // The endpoint is broken: this delivery waits in its lane with no attempt spent
                // (a failed probe at the front: it stays the oldest), not toward a dead letter.
                warn!(error = %error, state = %answer.state, probe, "attempt failed; endpoint's breaker is open: delivery parked");
                crate::metrics::attempt(channel, "parked", elapsed);
                let wake =
                    if answer.state == BreakerState::Disabled { DISABLED_LOOK } else { answer.probe_in };
                let wake = wake.max(Duration::from_millis(1));
                record(ctx, "park", || ctx.queue.park_at(&ctx.worker, raw, &endpoint.id, wake, probe)).await;
                ctx.promoter_wake.notify_one();
                let _ = ticket.finish();
                return;
            }
            conclude(ctx, raw, job, outcome.clone(), at, elapsed, channel).await;
        }
        Outcome::Delivered { .. } => {
            conclude(ctx, raw, job, outcome.clone(), at, elapsed, channel).await;
            // A success costs the breaker a command only when this process's cache says the
            // failure count may be non-zero, or it was the probe: a healthy endpoint's
            // successful delivery costs no extra command.
            if probe || ctx.gate.success_matters(&endpoint.id) {
                let settings = *ctx.gate.breaker_settings();
                let answer = persist("report to breaker", || {
                    ctx.queue.breaker_report(&endpoint.id, Report::Success, &settings)
                })
                .await;
                ctx.gate.learn(&endpoint.id, &answer);
                if answer.changed {
                    info!(
                        released = answer.parked,
                        "endpoint recovered: breaker closed, parked deliveries released"
                    );
                    emit_health(ctx, &endpoint, &answer, None).await;
                }
            }
        }
        // A permanent failure says nothing about the endpoint's health.
        Outcome::Permanent { .. } => conclude(ctx, raw, job, outcome.clone(), at, elapsed, channel).await,
    }
    if ticket.finish() {
        // The slot this delivery held goes to one that waits in the endpoint's lane.
        persist("release lane", || ctx.queue.release_lane(endpoint.id.as_str(), 1, LANE_SAFETY_LOOK)).await;
    }
}

/// Publishes `endpoint.health_changed` for a breaker state change, as a normal event job (fanned
/// out to the endpoints subscribed to it, never to the one it is about). A few tries: Redis at
/// its maxmemory refuses it, and delivering must go on.
async fn emit_health(ctx: &Ctx, endpoint: &Endpoint, answer: &Answer, error: Option<&str>) {
    let event = Event::endpoint_health(EndpointHealth {
        id: endpoint.id.to_string(),
        name: endpoint.name.clone(),
        state: answer.state,
        last_error: error.map(entraguard_core::breaker::cut_error),
        parked: answer.parked,
        since: entraguard_core::timestamp::Timestamp::now(),
    });
    warn!(endpoint_id = %endpoint.id, state = %answer.state, parked = answer.parked, "endpoint health changed");
    let job = Job::Event(EventJob { event }).encode();
    for _ in 0..5 {
        match ctx.queue.push(std::slice::from_ref(&job)).await {
            Ok(()) => return,
            Err(e) => {
                warn!(error = %e, "publishing endpoint.health_changed failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    error!(endpoint_id = %endpoint.id, "endpoint.health_changed could not be published");
}

/// What reading a delivery's endpoint found.
enum EndpointRead {
    Found(Box<Endpoint>),
    Deleted,
    /// The record is there but cannot be used: corrupt, or sealed with a key this process
    /// lacks. The reason says which.
    Unreadable(String),
}

/// Reads the delivery's endpoint, retrying only while Redis itself fails.
async fn read_endpoint(ctx: &Ctx, job: &DeliveryJob) -> EndpointRead {
    let read = persist("read endpoint", || async {
        match ctx.store.get(&job.endpoint_id).await {
            Err(StoreError::Redis(e)) => Err(e),
            other => Ok(other),
        }
    })
    .await;
    match read {
        Ok(Some(endpoint)) => EndpointRead::Found(Box::new(endpoint)),
        Ok(None) => EndpointRead::Deleted,
        Err(e) => EndpointRead::Unreadable(e.to_string()),
    }
}

/// Records an attempt's outcome: acknowledged, re-scheduled, or dead-lettered.
async fn conclude(
    ctx: &Ctx,
    raw: &[u8],
    mut job: DeliveryJob,
    outcome: Outcome,
    at: entraguard_core::timestamp::Timestamp,
    elapsed: Duration,
    channel: &'static str,
) {
    let attempt = job.next_attempt();
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
    crate::metrics::attempt(channel, result, elapsed);
    match next {
        Next::Done => {
            tracing::debug!(status = ?outcome.status(), ms = elapsed.as_millis() as u64, channel, "delivered");
            record(ctx, "ack", || ctx.queue.ack(&ctx.worker, raw, 0, &[])).await;
        }
        Next::RetryIn(delay) => {
            warn!(error = outcome.error().unwrap_or(""), retry_in = ?delay, "attempt failed; retry scheduled");
            let next = Job::Delivery(job).encode();
            record(ctx, "schedule retry", || ctx.queue.retry_later(&ctx.worker, raw, next.as_bytes(), delay))
                .await;
            ctx.promoter_wake.notify_one();
        }
        Next::Dead(reason) => {
            error!(reason = %reason, "delivery dead-lettered");
            let draft = DeadLetterDraft { id: job.delivery_id.to_string(), reason, delivery: Some(job) };
            record(ctx, "dead-letter", || ctx.queue.dead_letter(&ctx.worker, raw, &draft)).await;
        }
    }
}

/// Renews the lease every third of it, and hands back the jobs of workers whose lease ran out:
/// each renewal says when the next other worker's lease runs out, and this task wakes right
/// then, so a dead worker's jobs are back within about `NOTIFY_LEASE` of its last renewal.
async fn maintenance(ctx: Arc<Ctx>, mut shutdown: Shutdown) {
    use tokio::time::Instant;
    let every = ctx.config.heartbeat_interval();
    // Dead workers stay listed this long, so a fetch Redis serves after one died is found.
    let forget_after = ctx.config.lease * 10;
    let mut next_beat = Instant::now() + every;
    let mut next_expiry: Option<Instant> = None;
    // Look once at start-up: workers may have died while none was running.
    let mut reap = true;
    loop {
        if reap {
            match ctx.queue.reap_dead_workers(&ctx.worker, forget_after).await {
                Ok((moved, still_listed)) => {
                    if moved > 0 {
                        // Its scheduled retries are now ours to promote.
                        ctx.promoter_wake.notify_one();
                    }
                    reap = still_listed;
                }
                Err(e) => warn!(error = %e, "handing back dead workers' jobs failed"),
            }
        }
        let wake = next_expiry.map_or(next_beat, |e| e.min(next_beat));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = shutdown.wait() => return,
        }
        match ctx.queue.heartbeat(&ctx.worker, ctx.config.lease).await {
            Ok(hb) => {
                let now = Instant::now();
                next_beat = now + every;
                // A few ms after the other lease runs out, so Redis's clock has passed it too.
                next_expiry = hb.next_expiry_in.map(|d| now + d + Duration::from_millis(5));
                reap |= hb.expired_others;
            }
            Err(e) => {
                warn!(error = %e, "lease renewal failed");
                next_beat = Instant::now() + every.min(Duration::from_secs(1));
                next_expiry = None;
            }
        }
    }
}

/// Moves due retries to ready. Sleeps until the earliest scheduled job is due, or until this
/// worker schedules one or hands back a dead worker's jobs; looks again at least every
/// `IDLE_PROMOTE`.
async fn promoter(ctx: Arc<Ctx>, mut shutdown: Shutdown) {
    let idle = IDLE_PROMOTE;
    let mut moved_since_report = 0usize;
    let mut last_report = tokio::time::Instant::now();
    loop {
        let wait = match ctx.queue.promote_due().await {
            Ok(p) => {
                moved_since_report += p.moved;
                for endpoint in &p.due_lanes {
                    // One at a time: a paced endpoint takes one per send slot, and a lane
                    // waiting for the in-flight cap is normally released by finishing
                    // deliveries; this look is the safety net.
                    if let Err(e) = ctx.queue.release_lane(endpoint, 1, LANE_SAFETY_LOOK).await {
                        warn!(error = %e, endpoint, "releasing a lane failed");
                    }
                }
                if p.moved >= PROMOTE_CHUNK || !p.due_lanes.is_empty() {
                    // More due, or lanes whose next look was just set: look again at once.
                    Duration::ZERO
                } else {
                    let next = match (p.next_due_in, p.next_lane_in) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    next.map_or(idle, |d| (d + Duration::from_millis(1)).min(idle))
                }
            }
            Err(e) => {
                warn!(error = %e, "promoting due retries failed");
                Duration::from_secs(1)
            }
        };
        if moved_since_report > 0 && last_report.elapsed() >= PROMOTE_REPORT_EVERY {
            info!(moved = moved_since_report, over = ?last_report.elapsed(), "due retries moved to ready");
            moved_since_report = 0;
            last_report = tokio::time::Instant::now();
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.promoter_wake.notified() => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// Reconciles the worker's processing list against what it runs, so a job whose fetch answer
/// was lost (Redis killed mid-reply, a reply that timed out, a pipeline cut short) is handed
/// back instead of sitting on a live worker's list, where no reaper looks.
struct Reconciler {
    every: Duration,
    next_at: tokio::time::Instant,
    /// After a failed fetch, answers may still land late (a paused Redis runs the command when
    /// it resumes): for this long, the whole list is compared at every pass.
    suspect_for: Duration,
    last_failure: Option<tokio::time::Instant>,
    /// Jobs were fetched since the last pass: compare the list's length at least.
    busy: bool,
    /// Even an idle worker compares the list's length once per lease: a stranded job from a
    /// cause nobody foresaw is still handed back.
    idle_every: Duration,
    last_check: tokio::time::Instant,
}

impl Reconciler {
    fn new(config: &WorkerConfig) -> Self {
        let every = config.heartbeat_interval();
        Self {
            every,
            next_at: tokio::time::Instant::now() + every,
            suspect_for: config.lease + 2 * (config.fetch_block + config.redis_timeout),
            last_failure: None,
            busy: false,
            idle_every: config.lease,
            last_check: tokio::time::Instant::now(),
        }
    }

    fn due(&self) -> bool {
        tokio::time::Instant::now() >= self.next_at
    }

    fn fetch_failed(&mut self) {
        self.last_failure = Some(tokio::time::Instant::now());
    }

    async fn run(&mut self, ctx: &Ctx) {
        self.next_at = tokio::time::Instant::now() + self.every;
        let suspect = self.last_failure.is_some_and(|t| t.elapsed() < self.suspect_for);
        let busy = std::mem::take(&mut self.busy);
        if !suspect && !busy && self.last_check.elapsed() < self.idle_every {
            return;
        }
        self.last_check = tokio::time::Instant::now();
        let mut running = ctx.running.snapshot();
        if !suspect {
            let expected: usize = running.values().sum();
            match ctx.queue.processing_len(&ctx.worker).await {
                Ok(n) if n <= expected => return,
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "reading the processing list failed");
                    return;
                }
            }
        }
        let listed = match ctx.queue.processing_jobs(&ctx.worker).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "reading the processing list failed");
                return;
            }
        };
        let mut stranded = Vec::new();
        for job in listed {
            match running.get_mut(job.as_slice()) {
                Some(n) if *n > 0 => *n -= 1,
                _ => stranded.push(job),
            }
        }
        if stranded.is_empty() {
            return;
        }
        match ctx.queue.hand_back(&ctx.worker, &stranded).await {
            Ok(n) => {
                crate::metrics::handed_back(n);
                warn!(jobs = n, "handed back jobs whose fetch answer never arrived");
            }
            Err(e) => warn!(error = %e, "handing back stranded jobs failed; next pass retries"),
        }
    }
}

/// Warns about Redis settings the guarantees rely on (spec §5). Managed Redis services often
/// refuse CONFIG GET; then there is nothing to check.
async fn check_redis_settings(queue: &Queue) {
    let mut conn = queue.connection();
    // The queue's scripts declare flags (`#!lua flags=allow-oom`), which Redis reads from 7.0 on.
    if let Ok(info) = redis::cmd("INFO").arg("server").query_async::<String>(&mut conn).await
        && let Some(version) = info.lines().find_map(|l| l.strip_prefix("redis_version:"))
        && version.trim().split('.').next().and_then(|m| m.parse::<u32>().ok()).is_some_and(|m| m < 7)
    {
        error!(
            version = version.trim(),
            "redis is older than 7.0: the queue's scripts need 7.0 or later and will be refused"
        );
    }
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

/// Records a job's outcome (acknowledge, re-schedule, dead-letter), retrying while Redis fails.
/// Returns whether this call recorded it. A `false` answer after a try whose answer was lost
/// is ambiguous (that try may have recorded it), and is logged as such, not as a lost lease.
async fn record<F, Fut>(ctx: &Ctx, what: &str, mut op: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, QueueError>>,
{
    let ambiguous = std::sync::atomic::AtomicBool::new(false);
    let recorded = persist(what, || {
        let fut = op();
        let ambiguous = &ambiguous;
        async move {
            let r = fut.await;
            if let Err(e) = &r
                && e.is_ambiguous()
            {
                ambiguous.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            r
        }
    })
    .await;
    if !recorded {
        if ambiguous.load(std::sync::atomic::Ordering::Relaxed) {
            info!(
                worker = %ctx.worker,
                "{what}: an earlier try whose answer was lost recorded it, or the lease ran out meanwhile (then another worker runs the job again)"
            );
        } else {
            warn!(worker = %ctx.worker, "{what}: the lease ran out during the job; another worker runs it again");
        }
    }
    recorded
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
