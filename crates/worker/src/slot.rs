//! One concurrency slot: the jobs it runs one after another, from the one the fetch loop gave
//! it to the last its finishing steps took for it, and the overlap that makes a delivery cost
//! one round trip of wall time rather than two.
//!
//! A delivered job's acknowledgement (with its history record, and the next jobs taken in the
//! same script call: [`crate::acker`]) is bookkeeping: the receiver has answered. The slot
//! therefore starts its next job as soon as a delivery says its receiver part is over
//! ([`Slot::free`], after the answer, its endpoint slot given back) when a next job is at hand,
//! and lets that acknowledgement finish beside it. At most one job of a slot is in bookkeeping
//! while the next one runs, so a worker sends to receivers at most `NOTIFY_CONCURRENCY`
//! requests at once, as before.
//!
//! A next job is at hand because an acknowledgement of a slot that has none ahead and none
//! coming takes two: the one to run next, and one to run beside the next acknowledgement.
//! From then on each acknowledgement takes one. A worker so holds at most twice its
//! concurrency in claimed jobs; they are on its processing list like any other (a killed
//! worker's go back through its lease; a stopping one hands them back).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use entraguard_core::job::{DELIVERY_REF_START, Job};
use entraguard_core::queue::Claimed;
use futures_util::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tracing::{Instrument, error, info_span};

use crate::batch::{Slot, Taken};
use crate::context::Ctx;

type Finishing<'a> = Pin<Box<dyn Future<Output = Option<Taken>> + Send + 'a>>;

/// Runs `claimed`, then each job that finishing steps take for the slot, holding `permit`
/// until none is left.
pub(crate) async fn run(ctx: Arc<Ctx>, claimed: Claimed, permit: OwnedSemaphorePermit) {
    let ctx = &*ctx;
    let mut ahead = VecDeque::from([claimed]);
    // The previous job, recording its outcome beside the current one.
    let mut finishing: Option<Finishing<'_>> = None;
    loop {
        let Some(claimed) = ahead.pop_front() else {
            match finishing.take() {
                Some(previous) => {
                    let taken = previous.await;
                    admit(ctx, taken, &mut ahead).await;
                    continue;
                }
                None => break,
            }
        };
        let want = if ahead.is_empty() && finishing.is_none() { 2 } else { 1 };
        let (freed, mut freed_rx) = oneshot::channel();
        let mut current: Finishing<'_> = Box::pin(one(ctx, claimed, Slot::new(freed, want)));
        let mut told = false;
        let mut free = false;
        loop {
            if free && finishing.is_none() && !ahead.is_empty() {
                // Its receiver part is over and a next job is at hand: it records its outcome
                // beside the next one. First a turn for the other tasks: the HTTP client hands
                // the answered request's connection back to its pool in a task of its own, and
                // a next request sent before that opens a connection more (measured at c50:
                // 75 sockets against 66 with the turn, and about 11 % less throughput).
                finishing = Some(current);
                tokio::task::yield_now().await;
                break;
            }
            tokio::select! {
                taken = &mut current => {
                    admit(ctx, taken, &mut ahead).await;
                    break;
                }
                said = &mut freed_rx, if !told => {
                    told = true;
                    free = said.is_ok();
                }
                taken = async {
                    match finishing.as_mut() {
                        Some(previous) => previous.await,
                        None => std::future::pending().await,
                    }
                }, if finishing.is_some() => {
                    finishing = None;
                    admit(ctx, taken, &mut ahead).await;
                }
            }
        }
    }
    drop(permit);
}

/// Runs one job to its end: the gauge, a panic caught (it dead-letters the job instead of
/// leaving it stuck on the processing list of a live worker, or handed back to run, and panic,
/// again), and what its finishing step took for the slot.
async fn one(ctx: &Ctx, claimed: Claimed, slot: Slot) -> Option<Taken> {
    ::metrics::gauge!(crate::metrics::IN_FLIGHT).increment(1.0);
    let claim = claimed.claim();
    let taken = match AssertUnwindSafe(handle_job(ctx, claimed, slot)).catch_unwind().await {
        Ok(taken) => taken,
        Err(_) => {
            error!("job handler panicked; dead-lettering the job");
            let reason = "the worker panicked while handling this job".to_owned();
            crate::poison::dead_letter(ctx, claim.clone().reclaim(), reason).await;
            None
        }
    };
    ctx.running.finish(&claim.shared_bytes());
    ::metrics::gauge!(crate::metrics::IN_FLIGHT).decrement(1.0);
    taken
}

/// Queues what a finishing step took for the slot, once its jobs may see every endpoint change
/// written before they were taken.
async fn admit(ctx: &Ctx, taken: Option<Taken>, ahead: &mut VecDeque<Claimed>) {
    let Some(taken) = taken else { return };
    observe_endpoints(ctx, taken.endpoints_rev, !taken.jobs.is_empty()).await;
    for _ in 0..taken.oversized {
        crate::poison::oversized(ctx).await;
    }
    ahead.extend(taken.jobs);
}

/// Before jobs taken with the endpoints' revision `rev` run: they see every endpoint change
/// written before they were taken (`rev` is `None` from the blocking fetch, and on a shard other
/// than the endpoints', where it is read now).
pub(crate) async fn observe_endpoints(ctx: &Ctx, rev: Option<u64>, any_jobs: bool) {
    let moved = match rev {
        Some(rev) => ctx.endpoints.observe(rev),
        None if !any_jobs => false,
        // Another shard than the endpoints': their revision, read after the fetch.
        None if !ctx.queue.is_home() => match ctx.store.revision().await {
            Ok(rev) => ctx.endpoints.observe(rev),
            Err(_) => {
                ctx.endpoints.forget();
                false
            }
        },
        None => {
            ctx.endpoints.forget();
            false
        }
    };
    if moved {
        // An endpoint enabled, edited or reset: what this process cached of the breakers goes
        // too, so an operator's action acts at this fetch.
        ctx.gate.forget_breakers();
    }
}

/// Dispatches one fetched job to its step: a poison job to the dead-letter queue, an event to
/// fan-out, a delivery to its attempt (told its `slot`). The next jobs, when the step's
/// acknowledgement took some.
async fn handle_job(ctx: &Ctx, claimed: Claimed, slot: Slot) -> Option<crate::batch::Taken> {
    match claimed.decode() {
        Err(_) if claimed.bytes().starts_with(DELIVERY_REF_START.as_bytes()) => {
            let reason = "a stored delivery whose event body is gone from the bodies hash (deleted by hand?): nothing to deliver";
            crate::poison::dead_letter(ctx, claimed, reason.to_owned()).await;
            None
        }
        Err(e) => {
            crate::poison::dead_letter(ctx, claimed, format!("undecodable job: {e}")).await;
            None
        }
        Ok(Job::Event(job)) => {
            let span = info_span!("fanout", event_id = %job.event.id, event = %job.event.kind());
            crate::fanout::fan_out_job(ctx, claimed, job).instrument(span).await
        }
        Ok(Job::Delivery(job)) => {
            let span = info_span!(
                "delivery",
                event_id = %job.event.id,
                delivery_id = %job.delivery_id,
                endpoint_id = %job.endpoint_id,
                attempt = job.next_attempt()
            );
            crate::attempt::deliver(ctx, claimed, job, slot).instrument(span).await
        }
        Ok(Job::DigestDue(job)) => {
            let span = info_span!("digest_due", endpoint_id = %job.digest.endpoint_id, scan_id = %job.digest.scan_id);
            crate::digest::due(ctx, claimed, job).instrument(span).await;
            None
        }
        Ok(Job::Digest(job)) => {
            let span =
                info_span!("digest", endpoint_id = %job.digest.endpoint_id, scan_id = %job.digest.scan_id);
            crate::digest::send(ctx, claimed, job).instrument(span).await;
            None
        }
    }
}
