//! Redis calls that must not give up: a job is only ever finished by a completed Redis call, so
//! the worker waits out a Redis restart (with back-off) instead of dropping what it holds.

use std::future::Future;
use std::time::Duration;

use entraguard_core::queue::QueueError;
use tracing::{info, warn};

use crate::context::Ctx;
use crate::shutdown::Shutdown;

/// Retries a Redis operation with back-off until it succeeds. Jobs are only ever finished by a
/// completed Redis call, so waiting out a Redis restart loses nothing; at shutdown the grace
/// period bounds the wait.
pub(crate) async fn persist<T, E, F, Fut>(what: &str, op: F) -> T
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
pub(crate) async fn record<F, Fut>(ctx: &Ctx, what: &str, mut op: F) -> bool
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
pub(crate) async fn until_ok<T, E, F, Fut>(shutdown: &mut Shutdown, what: &str, op: F) -> Option<T>
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
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Self {
        Self(Duration::from_millis(100))
    }

    pub(crate) fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        d
    }

    pub(crate) fn reset(&mut self) {
        self.0 = Duration::from_millis(100);
    }
}
