//! One delivery job, from reading its endpoint to its recorded outcome: admission through the
//! endpoint's [`Gate`] (or a park in its lane), one attempt through the [`Deliverer`], the
//! breaker told how it ended, and the outcome recorded (acknowledged, re-scheduled, parked or
//! dead-lettered).
//!
//! [`Deliverer`]: crate::delivery::Deliverer

use std::sync::Arc;
use std::time::Duration;

use entraguard_core::breaker::{Answer, BreakerState, Report};
use entraguard_core::endpoint::Endpoint;
use entraguard_core::history::{AttemptResult, encode_attempt};
use entraguard_core::job::{AttemptRecord, DeliveryJob, Job};
use entraguard_core::queue::{Acked, Claim, Claimed, DeadLetterDraft, Fetched, Park, Parked, QueueError};
use entraguard_core::store::StoreError;
use tracing::{error, info, warn};

use crate::acker::AckAnswer;
use crate::batch::Slot;
use crate::batch::Taken;
use crate::context::Ctx;
use crate::delivery::Attempted;
use crate::gate::{Admission, DISABLED_LOOK, Gate, LANE_SAFETY_LOOK};
use crate::outcome::Outcome;
use crate::persist::{persist, record};
use crate::retry::{Next, decide};
use crate::trace::AttemptOutcome;

/// Runs one delivery to its end; the next job, when its acknowledgement took one for the slot
/// this delivery frees (see [`crate::acker`]). With traces on, within its attempt's span.
pub(crate) async fn deliver(ctx: &Ctx, claimed: Claimed, job: DeliveryJob, slot: Slot) -> Option<Taken> {
    match crate::trace::attempt_span(&job) {
        None => deliver_untraced(ctx, claimed, job, slot).await,
        Some(span) => tracing::Instrument::instrument(deliver_untraced(ctx, claimed, job, slot), span).await,
    }
}

async fn deliver_untraced(ctx: &Ctx, claimed: Claimed, job: DeliveryJob, mut slot: Slot) -> Option<Taken> {
    let endpoint = match read_endpoint(ctx, &job).await {
        EndpointRead::Found(endpoint) => endpoint,
        EndpointRead::Deleted => {
            let draft = DeadLetterDraft {
                id: job.delivery_id.to_string(),
                reason: format!("endpoint {} was deleted", job.endpoint_id),
                delivery: Some(job),
            };
            warn!(reason = %draft.reason, "delivery dead-lettered");
            crate::trace::outcome(AttemptOutcome::DeadLettered, None);
            record(ctx, "dead-letter", || ctx.queue.dead_letter(&claimed, &draft)).await;
            claimed.finish();
            return None;
        }
        EndpointRead::Unreadable(reason) => {
            // Like any failed attempt: retried on the schedule (someone may fix the record or
            // give this worker the key), then dead-lettered with the reason. No slot is held.
            let attempted = Attempted {
                outcome: Outcome::retryable(None, reason),
                at: entraguard_core::timestamp::Timestamp::now(),
                elapsed: Duration::ZERO,
                request_headers: Vec::new(),
                response_body: None,
            };
            return conclude(ctx, claimed, job, &attempted, "unreadable", 1).await.taken;
        }
    };
    // An endpoint that cannot take it now (at its cap, paced, or its breaker open): the
    // delivery waits in the endpoint's lane in Redis, not here (waiting here would hold a
    // concurrency permit, and one hanging endpoint would starve the rest), and not in a loop
    // through the delayed set.
    let probe_deadline = Gate::probe_deadline(ctx.config.delivery_timeout);
    let held = job.slot;
    let mut ticket = match persist("admit", || ctx.gate.admit(&ctx.queue, &endpoint, probe_deadline, held))
        .await
    {
        Admission::Go(ticket) => ticket,
        Admission::Park(wake_in) => {
            tracing::debug!(wake_in = ?wake_in, "endpoint busy, rate-limited or broken; delivery parked in its lane");
            crate::trace::outcome(AttemptOutcome::Parked, None);
            let park = Park { wake_in, lane_max: ctx.config.lane_max, ..Park::default() };
            let taken = park_or_dead_letter(ctx, claimed, job, &endpoint, park).await;
            ctx.promoter_wake.notify_one();
            return taken;
        }
    };
    let probe = ticket.is_probe();
    if !ticket.send_after().is_zero() {
        // The send slot taken under the endpoint's rate limit opens this soon (PACE_AHEAD at
        // most): waiting here keeps the slots evenly spaced.
        tokio::time::sleep(ticket.send_after()).await;
    }
    crate::trace::channel(&endpoint);
    let attempted = match crate::trace::http_span(&endpoint) {
        None => ctx.deliverer.attempt(&job, &endpoint).await,
        Some((span, traceparent)) => {
            let send = ctx.deliverer.attempt_traced(&job, &endpoint, Some(&traceparent));
            let attempted = tracing::Instrument::instrument(send, span.clone()).await;
            crate::trace::http_done(&span, &attempted);
            attempted
        }
    };
    let elapsed = attempted.elapsed;
    let channel = endpoint.channel.as_str();
    let settings = *ctx.gate.breaker_settings();
    let mut lane_waiting = false;
    let mut released_by_close = false;
    let mut own_parked = false;
    let taken;
    match &attempted.outcome {
        // The breaker is off: nothing counted, nothing parked.
        Outcome::Retryable { .. } if settings.is_off() => {
            taken = conclude(ctx, claimed, job, &attempted, channel, 1).await.taken;
        }
        // Every retryable failure is reported to the breaker (it counts them).
        Outcome::Retryable { error, .. } => {
            // The attempt is spent whatever the breaker says: if it was the delivery's last, the
            // delivery is dead-lettered (below), else it parks while the breaker is open.
            let last = matches!(
                decide(
                    &attempted.outcome,
                    job.next_attempt(),
                    &ctx.config.retry_schedule,
                    ctx.config.max_retry_after
                ),
                Next::Dead(_)
            );
            let report = Report::Failure { error, probe };
            let answer = persist("report to breaker", || {
                ctx.queue.breaker_report_attempt(
                    &endpoint.id,
                    Some(&endpoint.name),
                    report,
                    &settings,
                    ticket.facts(!last),
                )
            })
            .await;
            ctx.gate.learn(&endpoint.id, &answer);
            announced(&endpoint, &answer, error);
            if answer.changed && answer.state == BreakerState::Disabled && !ctx.queue.is_home() {
                disable_record(ctx, &endpoint.id).await;
            }
            if answer.state != BreakerState::Closed && !last {
                // The endpoint is broken: this delivery waits in its lane with this attempt
                // recorded (a failed probe at the front: it stays the oldest), not on the
                // retry schedule.
                warn!(error = %error, state = %answer.state, probe, "attempt failed; endpoint's breaker is open: delivery parked");
                crate::metrics::attempt(channel, "parked", elapsed);
                crate::trace::outcome(AttemptOutcome::Parked, Some(&attempted));
                let wake =
                    if answer.state == BreakerState::Disabled { DISABLED_LOOK } else { answer.probe_in };
                let wake = wake.max(Duration::from_millis(1));
                let mut job = job;
                let attempt = attempt_record(&job, &attempted);
                job.attempts.push(attempt.clone());
                // The failed attempt joins the endpoint's history in the parking step itself.
                let entry = history_entry(&claimed, &job, &attempt, AttemptResult::Parked, &attempted);
                let park = Park {
                    wake_in: wake,
                    front: probe,
                    history: Some(&entry),
                    lane_max: ctx.config.lane_max,
                };
                let taken = park_or_dead_letter(ctx, claimed, job, &endpoint, park).await;
                ctx.promoter_wake.notify_one();
                let _ = ticket.finish();
                return taken;
            }
            taken = conclude(ctx, claimed, job, &attempted, channel, 1).await.taken;
        }
        Outcome::Delivered { .. } => {
            // The acknowledgement clears a closed breaker's failure count in the same step; an
            // explicit report (it closes the breaker, drains the lane and announces it) only
            // for the probe: a success that began before the breaker opened says nothing of
            // now, and a healthy endpoint's successful delivery costs no extra command. With the
            // breaker off, a breaker left open from before is closed by hand.
            // The receiver has answered: unless this is the probe (its slot is freed before the
            // closing below), the endpoint's slot is given back and the worker's slot may start
            // its next job while the acknowledgement is under way (crate::slot).
            if !probe {
                own_parked = ticket.free_now();
                slot.free();
            }
            let answer = conclude(ctx, claimed, job, &attempted, channel, slot.want()).await;
            let acked = answer.acked;
            taken = answer.taken;
            lane_waiting = acked == Some(Acked::LaneWaiting);
            let breaker_open = acked == Some(Acked::BreakerOpen);
            let report = match (probe, breaker_open && settings.is_off()) {
                (true, _) => Some(Report::Success { probe: true }),
                (false, true) => Some(Report::Reset),
                (false, false) => None,
            };
            if let Some(report) = report {
                // The slot is free before the closing releases the lane into it.
                let facts = ticket.facts(false);
                own_parked |= ticket.free_now();
                let answer = persist("report to breaker", || {
                    ctx.queue.breaker_report_attempt(
                        &endpoint.id,
                        Some(&endpoint.name),
                        report,
                        &settings,
                        facts,
                    )
                })
                .await;
                ctx.gate.learn(&endpoint.id, &answer);
                if answer.changed {
                    // The closing released a cap's worth of the lane already.
                    released_by_close = answer.state == BreakerState::Closed;
                    info!(
                        released = answer.parked,
                        announced = answer.announced,
                        "endpoint recovered: breaker closed, parked deliveries released"
                    );
                }
            }
        }
        // A permanent failure says nothing about the endpoint's health (a trial's slot is
        // given back).
        Outcome::Permanent { .. } => {
            taken = conclude(ctx, claimed, job, &attempted, channel, 1).await.taken;
            if ticket.facts(false).trial {
                persist("report to breaker", || {
                    ctx.queue.breaker_report_attempt(
                        &endpoint.id,
                        None,
                        Report::Release,
                        &settings,
                        ticket.facts(false),
                    )
                })
                .await;
            }
        }
    }
    // The slot this delivery held goes to the oldest that wait in the endpoint's lane: those
    // this process parked (one per finish), or, when the acknowledgement found the lane holding
    // work whoever parked it, as many as this process has free slots for the endpoint.
    // A rate-limited endpoint's lane is released by its schedule (its next look in the lanes
    // set, when the next send slot comes near), never by a finishing delivery.
    let own = ticket.finish() || own_parked;
    let paced = ctx.gate.send_interval(&endpoint).is_some();
    if (own || lane_waiting) && !released_by_close && !paced {
        let n = if lane_waiting { ctx.gate.free_slots(&endpoint.id) } else { 1 };
        let most = ctx.gate.free_slots(&endpoint.id);
        persist("release lane", || ctx.queue.release_lane(endpoint.id.as_str(), n, LANE_SAFETY_LOOK, most))
            .await;
    }
    taken
}

/// Parks a delivery in its endpoint's lane (`job`, with the failed attempt that parked it
/// recorded if one did, in place of the claimed job; its event kept once in `{p}:bodies`), or, when the
/// lane already holds `NOTIFY_LANE_MAX`,
/// dead-letters it as "endpoint lane full" (replayable; counted in `{p}:lane_full`, `stats` and
/// `/metrics`), so one dead endpoint cannot fill Redis.
async fn park_or_dead_letter(
    ctx: &Ctx,
    claimed: Claimed,
    job: DeliveryJob,
    endpoint: &Endpoint,
    park: Park<'_>,
) -> Option<Taken> {
    // The slot this delivery frees takes the next job in the same step, as an acknowledgement
    // does (one round trip for a parked delivery too).
    let taken = std::sync::Mutex::new(None);
    let parked = persist("park", || async {
        let take = if ctx.running.is_open() { 1 } else { 0 };
        let _taking = ctx.running.taking().await;
        match ctx.queue.park_job(&claimed, &job, park, take).await {
            Ok((parked, fetched)) => {
                let got = crate::batch::distribute(fetched, [1], &ctx.running).pop();
                *taken.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = got;
                Ok(parked)
            }
            Err(e) => {
                ctx.running.note_taken(take > 0);
                Err(e)
            }
        }
    })
    .await;
    let taken = taken.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    match parked {
        Parked::Parked => {}
        Parked::LeaseLost => {
            warn!(worker = %ctx.worker, "park: the lease ran out during the job; another worker runs it again");
        }
        Parked::LaneFull => {
            crate::metrics::lane_full(endpoint.id.as_str());
            let draft = DeadLetterDraft {
                id: job.delivery_id.to_string(),
                reason: LANE_FULL_REASON.to_owned(),
                delivery: Some(job),
            };
            warn!(
                endpoint = %endpoint.id,
                lane_max = ctx.config.lane_max,
                "delivery dead-lettered: endpoint lane full (NOTIFY_LANE_MAX); replay it once the endpoint is back"
            );
            crate::trace::outcome(AttemptOutcome::DeadLettered, None);
            record(ctx, "dead-letter", || ctx.queue.dead_letter(&claimed, &draft)).await;
        }
    }
    claimed.finish();
    taken
}

/// The dead-letter reason of a delivery its endpoint's full lane would not take.
pub const LANE_FULL_REASON: &str = "endpoint lane full";

/// Logs what a failure report changed: the change, whether it was announced, and a summary of
/// the changes left unannounced (damped) before it.
fn announced(endpoint: &Endpoint, answer: &Answer, error: &str) {
    if answer.changed || answer.announced {
        warn!(
            endpoint = %endpoint.id,
            state = %answer.state,
            // For an opening, `parked` is in the announcement (the answer carries the probe time).
            parked = ?(answer.state != BreakerState::Open).then_some(answer.parked),
            announced = answer.announced,
            error = %error,
            "endpoint health changed"
        );
    }
    if answer.announced && answer.quiet > 0 {
        warn!(
            endpoint = %endpoint.id,
            unannounced = answer.quiet,
            "endpoint flapping: {} breaker changes since the previous announcement were not announced (at most one opening per probe interval is)",
            answer.quiet
        );
    }
}

/// What reading a delivery's endpoint found.
enum EndpointRead {
    Found(Arc<Endpoint>),
    Deleted,
    /// The record is there but cannot be used: corrupt, or sealed with a key this process
    /// lacks. The reason says which.
    Unreadable(String),
}

/// Reads the delivery's endpoint, retrying only while Redis itself fails.
async fn read_endpoint(ctx: &Ctx, job: &DeliveryJob) -> EndpointRead {
    let read = persist("read endpoint", || async {
        match ctx.endpoints.get(&ctx.store, &job.endpoint_id).await {
            Err(StoreError::Redis(e)) => Err(e),
            other => Ok(other),
        }
    })
    .await;
    match read {
        Ok(Some(endpoint)) => EndpointRead::Found(endpoint),
        Ok(None) => EndpointRead::Deleted,
        Err(e) => EndpointRead::Unreadable(e.to_string()),
    }
}

/// The record of `attempted` as the job's next attempt.
fn attempt_record(job: &DeliveryJob, attempted: &Attempted) -> AttemptRecord {
    AttemptRecord {
        attempt: job.next_attempt(),
        at: attempted.at,
        duration_ms: u64::try_from(attempted.elapsed.as_millis()).unwrap_or(u64::MAX),
        status: attempted.outcome.status(),
        error: attempted.outcome.error().map(str::to_owned),
    }
}

/// The endpoint's Recent Deliveries entry for one attempt.
fn history_entry(
    claimed: &Claim,
    job: &DeliveryJob,
    attempt: &AttemptRecord,
    result: AttemptResult,
    attempted: &Attempted,
) -> String {
    encode_attempt(
        claimed.bytes(),
        job,
        attempt,
        result,
        &attempted.request_headers,
        attempted.response_body.as_deref(),
    )
}

/// Records an attempt's outcome: acknowledged, re-scheduled, or dead-lettered. For a delivered
/// job, what its acknowledgement found (the breaker open: the caller reports the success to close
/// it; the lane holding work: the caller releases it); `None` otherwise.
/// What finishing a delivery said: its acknowledgement (delivered only; `None` when it was not
/// recorded) and what the finishing step took for the slot it frees (acknowledgement or retry).
#[derive(Debug, Default)]
pub(crate) struct Concluded {
    pub(crate) acked: Option<Acked>,
    pub(crate) taken: Option<Taken>,
}

pub(crate) async fn conclude(
    ctx: &Ctx,
    claimed: Claimed,
    mut job: DeliveryJob,
    attempted: &Attempted,
    channel: &'static str,
    want: usize,
) -> Concluded {
    let outcome = &attempted.outcome;
    let elapsed = attempted.elapsed;
    let record_now = attempt_record(&job, attempted);
    let attempt = record_now.attempt;
    job.attempts.push(record_now);
    let next = decide(outcome, attempt, &ctx.config.retry_schedule, ctx.config.max_retry_after);
    let recorded = job.attempts.last().cloned().unwrap_or_else(|| attempt_record(&job, attempted));
    let result = match next {
        Next::Done => "delivered",
        Next::RetryIn(_) => "retry",
        Next::Dead(_) => "dead",
    };
    crate::metrics::attempt(channel, result, elapsed);
    let traced = match next {
        Next::Done => AttemptOutcome::Delivered,
        Next::RetryIn(_) => AttemptOutcome::RetryScheduled,
        Next::Dead(_) => AttemptOutcome::DeadLettered,
    };
    crate::trace::outcome(traced, Some(attempted));
    match next {
        Next::Done => {
            crate::delivered::delivered(
                job.delivery_id.as_str(),
                job.endpoint_id.as_str(),
                channel,
                job.event.kind().as_str(),
                outcome.status(),
                elapsed.as_millis() as u64,
                attempt,
            );
            let entry = history_entry(&claimed, &job, &recorded, AttemptResult::Delivered, attempted);
            let answer = std::sync::Mutex::new(None);
            let tries = std::sync::atomic::AtomicU32::new(0);
            record(ctx, "ack", || async {
                // A try after one that failed may follow one that ran (its answer lost): it
                // records the entry only if the job is still on the list.
                let got = if tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
                    ctx.acker.ack(&claimed, &job.endpoint_id, &entry, want).await?
                } else {
                    let acked =
                        ctx.queue.ack_delivered_retried(&claimed.claim(), &job.endpoint_id, &entry).await?;
                    AckAnswer { acked, taken: Taken::default() }
                };
                let recorded = got.acked != Acked::LeaseLost;
                *answer.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(got);
                Ok(recorded)
            })
            .await;
            claimed.finish();
            let answer: Option<AckAnswer> =
                answer.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
            match answer {
                Some(a) => Concluded { acked: Some(a.acked), taken: Some(a.taken) },
                None => Concluded::default(),
            }
        }
        Next::RetryIn(delay) => {
            warn!(error = outcome.error().unwrap_or(""), retry_in = ?delay, "attempt failed; retry scheduled");
            let entry = history_entry(&claimed, &job, &recorded, AttemptResult::Retry, attempted);
            let endpoint = job.endpoint_id.clone();
            let next = Job::Delivery(job).encode();
            // The slot this delivery frees takes the next job in the same step, as an
            // acknowledgement does (one round trip for a failed attempt too).
            let taken = recorded_taking(ctx, "schedule retry", |take| {
                ctx.queue.retry_later_recorded(
                    &claimed,
                    next.as_bytes(),
                    delay,
                    Some((&endpoint, &entry)),
                    take,
                )
            })
            .await;
            ctx.promoter_wake.notify_one();
            claimed.finish();
            Concluded { acked: None, taken }
        }
        Next::Dead(reason) => {
            error!(reason = %reason, "delivery dead-lettered");
            let entry = history_entry(&claimed, &job, &recorded, AttemptResult::Dead, attempted);
            let endpoint = job.endpoint_id.clone();
            let draft = DeadLetterDraft { id: job.delivery_id.to_string(), reason, delivery: Some(job) };
            // The last attempt joins the endpoint's history in the dead-letter step itself, and
            // the slot this delivery frees takes the next job in the same step.
            let taken = recorded_taking(ctx, "dead-letter", |take| {
                ctx.queue.dead_letter_taking(&claimed, &draft, Some((&endpoint, &entry)), take)
            })
            .await;
            claimed.finish();
            Concluded { acked: None, taken }
        }
    }
}

/// Records a finishing `step` that also takes the next job for the slot the delivery frees
/// (`step(1)`, or `step(0)` once the worker is shutting down), retried while Redis fails like
/// any record. The jobs it took are started in [`crate::running::Running`] before anyone sees
/// them; a failed step may have taken some whose answer is lost, which the reconciler is told.
async fn recorded_taking<F, Fut>(ctx: &Ctx, what: &str, step: F) -> Option<Taken>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(bool, Fetched), QueueError>>,
{
    let taken = std::sync::Mutex::new(None);
    record(ctx, what, || async {
        let take = if ctx.running.is_open() { 1 } else { 0 };
        let _taking = ctx.running.taking().await;
        let (done, fetched) = match step(take).await {
            Ok(v) => v,
            Err(e) => {
                ctx.running.note_taken(take > 0);
                return Err(e);
            }
        };
        let got = crate::batch::distribute(fetched, [1], &ctx.running).pop();
        *taken.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = got;
        Ok(done)
    })
    .await;
    taken.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Queue shards: a breaker that disabled its endpoint in a shard other than 0 could not write
/// the endpoint's record (it lives in shard 0) in the same step; it is written right after. The
/// breaker's `disabled` state already holds every delivery back; this makes the record, the page
/// and the CLI say so too.
async fn disable_record(ctx: &Ctx, id: &entraguard_core::ids::EndpointId) {
    for _ in 0..5 {
        match ctx.store.set_enabled(id, false).await {
            Ok(_) => return,
            Err(e) => {
                warn!(error = %e, "marking the disabled endpoint's record failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
