//! Fan-out: one event becomes one delivery job per enabled endpoint subscribed to its kind, so
//! endpoints fail, retry and dead-letter independently. Routing reads only the endpoint's
//! subscription and rules, never its sealed URL or secret: an endpoint this worker cannot open
//! still gets its delivery, which then fails with the reason instead of being skipped.
//!
//! An endpoint's rules (`entraguard_core::rules`) make the plan: tenants and the severity floor
//! filter; a dedupe window, quiet hours and a scan digest turn a delivery into a checked send, a
//! held send or a collected finding, and a scan's end flushes its digests. The plan is carried
//! out with the event's acknowledgement in one Redis step ([`Queue::route_many`]), batched with
//! the other events this worker finished planning meanwhile ([`crate::router`]): a batch shares
//! one round trip, one read and one write of each dedupe window and one read of Redis's clock.
//! Quiet hours are decided by Redis's clock as this worker estimates it ([`crate::clock`]), read
//! afresh when the event is within the estimate's error of a window's start or end, and never
//! read for an event they cannot hold. Silences ([`crate::silencing`]) are decided the same way,
//! after the plan: a muted delivery is never made, only counted.
//!
//! [`Queue::route_many`]: entraguard_core::queue::Queue::route_many

use entraguard_core::digest::{DigestItem, DigestReason, DigestRef, SCAN_END_GRACE};
use entraguard_core::event::{Event, EventKind};
use std::sync::Arc;

use entraguard_core::job::{DeliveryJob, DigestDueJob, EventJob, Job};
use entraguard_core::queue::{Claimed, Dedupe, RouteStep};
use entraguard_core::rules::quiet_severity;
use entraguard_core::store::Route;
use tracing::warn;

use crate::batch::Taken;
use crate::context::Ctx;
use crate::persist::{persist, record};

/// The deliveries `event` needs, given every stored endpoint's route, without the rules that
/// need Redis (dedupe, quiet hours, digests: see [`plan`]). An `endpoint.health_changed` event
/// never goes to the endpoint it is about (a broken endpoint would only park news of its own
/// breakage).
pub fn fan_out(event: &Event, routes: &[Route]) -> Vec<DeliveryJob> {
    let about = event.about_endpoint();
    routes
        .iter()
        .filter(|r| r.wants(event.kind()) && about != Some(r.id().as_str()))
        .filter(|r| r.rules().is_none_or(|rules| rules.admits(event)))
        .map(|r| DeliveryJob::new(event.clone(), r.id().clone()))
        .collect()
}

/// Whether planning `event` needs Redis's clock: an endpoint it goes to keeps quiet hours that
/// could hold it (it is below their `at_once` severity).
pub fn needs_clock(event: &Event, routes: &[Route]) -> bool {
    let severity = quiet_severity(event);
    routes.iter().any(|r| {
        r.wants(event.kind())
            && r.rules().is_some_and(|rules| rules.quiet_hours.as_ref().is_some_and(|q| q.may_hold(severity)))
    })
}

/// Whether every quiet-hours decision for `event` is the same anywhere within `margin` of
/// `now_ms`: then an estimate of Redis's clock that close is as good as reading it.
pub fn settled(event: &Event, routes: &[Route], now_ms: i64, margin: std::time::Duration) -> bool {
    let m = i64::try_from(margin.as_millis()).unwrap_or(i64::MAX);
    routes.iter().filter(|r| r.wants(event.kind())).filter_map(|r| r.rules()).all(|rules| {
        let at = rules.hold_until(event, now_ms);
        at == rules.hold_until(event, now_ms.saturating_sub(m))
            && at == rules.hold_until(event, now_ms.saturating_add(m))
    })
}

/// What fan-out does for `event` at `now_ms` (Redis's clock; `None` when no endpoint keeps
/// quiet hours): per endpoint, a send (checked against its dedupe window, held through its
/// quiet hours), a finding collected into its scan's digest, or nothing (other tenant, below
/// the floor, not subscribed); and, for a scan's end, a flush of every digest of that scan.
pub fn plan(event: &Event, routes: &[Route], now_ms: Option<i64>) -> Vec<RouteStep> {
    let about = event.about_endpoint();
    let urgent = event.is_urgent();
    let scan_end = match event.kind() {
        EventKind::ScanCompleted => Some(DigestReason::ScanCompleted),
        EventKind::ScanFailed => Some(DigestReason::ScanFailed),
        _ => None,
    };
    let mut steps = Vec::new();
    for route in routes {
        let id = route.id();
        let Some(rules) = route.rules() else {
            if route.wants(event.kind()) {
                let job = Job::Delivery(DeliveryJob::new(event.clone(), id.clone())).encode();
                steps.push(RouteStep::Send {
                    endpoint: id.to_string(),
                    job,
                    urgent,
                    hold_until: None,
                    dedupe: None,
                    park_as: None,
                });
            }
            continue;
        };
        // The end of a scan flushes its digests, whether or not the endpoint hears of scans.
        if let (Some(reason), Some(scan), Some(_)) = (scan_end, &event.scan_id, &rules.digest)
            && rules.admits(event)
        {
            let digest = DigestRef::new(id.clone(), event, scan);
            let timer = Job::DigestDue(DigestDueJob { digest: digest.clone(), reason }).encode();
            steps.push(RouteStep::Flush { digest, timer, grace: SCAN_END_GRACE });
        }
        if !route.wants(event.kind()) || about == Some(id.as_str()) || !rules.admits(event) {
            continue;
        }
        let dedupe = rules.dedupe(event).map(|(member, window)| Dedupe { member, window });
        if rules.digests(event)
            && let (Some(rule), Some(scan), Some(item)) =
                (&rules.digest, &event.scan_id, DigestItem::of(event))
        {
            let digest = DigestRef::new(id.clone(), event, scan);
            let timer =
                Job::DigestDue(DigestDueJob { digest: digest.clone(), reason: DigestReason::MaxWait })
                    .encode();
            let item = serde_json::to_string(&item).unwrap_or_default();
            steps.push(RouteStep::Collect { digest, item, timer, max_wait: rule.max_wait, dedupe });
            continue;
        }
        let hold_until = now_ms.and_then(|now| rules.hold_until(event, now));
        let job = Job::Delivery(DeliveryJob::new(event.clone(), id.clone())).encode();
        steps.push(RouteStep::Send {
            endpoint: id.to_string(),
            job,
            urgent,
            hold_until,
            dedupe,
            park_as: None,
        });
    }
    steps
}

/// Which routes this shard plans for `job`, and the forward steps handing the event to the
/// other shards' endpoints (see `entraguard_core::shards`). With one shard: every route, no
/// forward. A copy forwarded here: the endpoints it names, no forward.
fn split(ctx: &Ctx, job: &EventJob, routes: &Arc<Vec<Route>>) -> (Arc<Vec<Route>>, Vec<RouteStep>) {
    if let Some(only) = &job.endpoints {
        let mine = routes.iter().filter(|r| only.contains(r.id())).cloned().collect();
        return (Arc::new(mine), Vec::new());
    }
    let count = ctx.shards.count();
    if count == 1 {
        return (routes.clone(), Vec::new());
    }
    let mut per_shard: Vec<Vec<&Route>> = vec![Vec::new(); count];
    for r in routes.iter() {
        per_shard[ctx.shards.index_of_endpoint(r.id())].push(r);
    }
    let mut mine = Vec::new();
    let mut forwards = Vec::new();
    for (shard, shard_routes) in per_shard.into_iter().enumerate() {
        if shard == ctx.shard {
            mine = shard_routes.into_iter().cloned().collect();
            continue;
        }
        // Only endpoints this event makes a step for (with no clock: holding is the target's
        // decision), so a shard without one gets nothing.
        let ids: Vec<_> = shard_routes
            .into_iter()
            .filter(|r| !plan(&job.event, std::slice::from_ref(*r), None).is_empty())
            .map(|r| r.id().clone())
            .collect();
        if !ids.is_empty() {
            let copy = EventJob {
                event: job.event.clone(),
                endpoints: Some(ids),
                origin: job.origin,
                traceparent: job.traceparent,
            };
            forwards.push(RouteStep::Forward { shard, job: Job::Event(copy).encode() });
        }
    }
    (Arc::new(mine), forwards)
}

/// The fan-out step: an event job is replaced by its deliveries, in one step (an invalid event
/// goes to the dead-letter queue with the reason). Urgent events' deliveries go to the front.
/// With queue shards, the deliveries of endpoints homed in other shards go through this shard's
/// outbox in the same step, and are moved right after.
/// The next job, when the fan-out's acknowledgement took one for the slot it frees.
pub(crate) async fn fan_out_job(ctx: &Ctx, claimed: Claimed, job: EventJob) -> Option<Taken> {
    let span = crate::trace::fan_out_span(&job);
    let event = &job.event;
    // A kind only the notifier makes, in a job it did not make (pushed by hand), is refused
    // here with the publishers' error.
    if let Err(e) = job.validate() {
        crate::poison::dead_letter(ctx, claimed, format!("invalid event {}: {e}", event.id)).await;
        return None;
    }
    let all = persist("read endpoints", || ctx.endpoints.routes(&ctx.store)).await;
    let (routes, forwards) = split(ctx, &job, &all);
    let silences = persist("read silences", || ctx.endpoints.silences(&ctx.shards)).await;
    let candidates = if routes.is_empty() { Default::default() } else { silences.candidates(event) };
    let now_ms = if !candidates.is_empty() || needs_clock(event, &routes) {
        Some(redis_now(ctx, event, &routes, &candidates).await)
    } else {
        None
    };
    let mut steps = plan(event, &routes, now_ms);
    if !candidates.is_empty()
        && let Some(now) = now_ms
    {
        steps = crate::silencing::apply(steps, event, &candidates, now);
    }
    if !ctx.gate.breaker_settings().is_off() {
        parkable(&mut steps, event, &ctx.gate);
    }
    steps.extend(forwards.iter().cloned());
    if let Some(span) = &span {
        crate::trace::stamp_deliveries(span, &mut steps);
    }
    // The notifier's own news that no endpoint hears of (the only subscriber may be the broken
    // endpoint itself) still reaches a person: the log.
    if let entraguard_core::event::EventBody::EndpointHealthChanged { endpoint } = &event.body
        && job.endpoints.is_none()
        && steps.is_empty()
    {
        warn!(endpoint = %endpoint.id, state = %endpoint.state, "endpoint health news no endpoint is subscribed to: {}", endpoint.text());
    }
    let routed = std::sync::Mutex::new(None);
    let next = std::sync::Mutex::new(None);
    let done = record(ctx, "fan-out", || async {
        let (r, taken) = ctx.router.route(&claimed, &steps).await?;
        if let Ok(mut slot) = routed.lock() {
            *slot = r;
        }
        if let Ok(mut slot) = next.lock() {
            *slot = Some(taken);
        }
        Ok(r.is_some())
    })
    .await;
    claimed.finish();
    if done {
        crate::metrics::fanned_out();
        if let Some(r) = routed.into_inner().ok().flatten() {
            crate::metrics::routed(&r);
            if r.held + r.collected + r.flushed > 0 || r.lane_look_moved {
                // New in the delayed set, or a lane's next look set or brought forward:
                // perhaps due before what the promoter waits for. Deliveries parked behind a
                // look already set (a breaker staying open) need no look sooner.
                ctx.promoter_wake.notify_one();
            }
            tracing::debug!(
                sent = r.sent,
                held = r.held,
                collected = r.collected,
                flushed = r.flushed,
                suppressed = r.suppressed,
                forwarded = r.forwarded,
                silenced = r.silenced,
                parked = r.parked,
                "event fanned out"
            );
        }
        move_forwards(ctx, forwards).await;
    }
    next.into_inner().ok().flatten()
}

/// Names the body id on every send `route.lua` may park at once (its endpoint's breaker open),
/// except those to endpoints this process knows healthy (a closed breaker it read within a probe
/// interval: their admission would not ask Redis either), so a healthy endpoint's fan-out
/// computes no body id. The body id is computed once per event.
fn parkable(steps: &mut [RouteStep], event: &Event, gate: &crate::gate::Gate) {
    let mut id: Option<String> = None;
    for step in steps {
        if let RouteStep::Send { endpoint, hold_until: None, park_as, .. } = step
            && !gate.known_closed(endpoint)
        {
            let id = id.get_or_insert_with(|| {
                let body = serde_json::to_string(event).unwrap_or_default();
                entraguard_core::job::body_id(event, &body)
            });
            *park_as = Some(id.clone());
        }
    }
}

/// Moves this event's outbox entries into their shards now. They are safe in the outbox
/// already: a failure here leaves them to the sweep ([`crate::lease`]).
async fn move_forwards(ctx: &Ctx, forwards: Vec<RouteStep>) {
    for step in forwards {
        let RouteStep::Forward { shard, job } = step else { continue };
        match ctx.shards.forward(ctx.shard, shard, std::slice::from_ref(&job)).await {
            Ok(f) => crate::metrics::forwarded(f.moved),
            Err(e) => {
                warn!(error = %e, shard, "moving a fanned-out event to its shard failed; the outbox sweep will")
            }
        }
    }
}

/// Redis's clock for planning `event`: the worker's estimate when no quiet-hours or silence
/// decision could change within its error, else a fresh reading (`TIME`).
async fn redis_now(
    ctx: &Ctx,
    event: &Event,
    routes: &[Route],
    silences: &entraguard_core::silences::Candidates<'_>,
) -> i64 {
    if let Some(now) = ctx.clock.estimate()
        && settled(event, routes, now, crate::clock::MARGIN)
        && silences.settled(now, crate::clock::MARGIN)
    {
        return now;
    }
    let (sent, now) = persist("read redis time", || async {
        let sent = tokio::time::Instant::now();
        ctx.queue.redis_time_ms().await.map(|now| (sent, now))
    })
    .await;
    ctx.clock.observe(sent, tokio::time::Instant::now(), now);
    now
}

#[cfg(test)]
mod tests {
    use super::*;
    use entraguard_core::event::EventKind;
    use entraguard_core::ids::EndpointId;

    fn route(events: &[EventKind], enabled: bool) -> Route {
        Route::Known {
            id: EndpointId::generate(),
            enabled,
            events: events.iter().copied().collect(),
            rules: Box::default(),
        }
    }

    #[test]
    fn only_enabled_subscribed_endpoints_get_a_delivery_each() {
        let event = Event::from_json(
            br#"{"event":"scan.failed","tenant_id":"t","scan":{"run_id":"r","kind":"full","environment":"prod","error":{"kind":"network","message":"boom"}}}"#,
        )
        .expect("valid event");
        let routes = vec![
            route(&[EventKind::ScanFailed], true),
            route(&[EventKind::ScanFailed], false),
            route(&[EventKind::FindingNew], true),
            route(&[EventKind::ScanFailed, EventKind::FindingNew], true),
            Route::Unreadable { id: EndpointId::generate(), reason: "corrupt".into() },
        ];
        let jobs = fan_out(&event, &routes);
        assert_eq!(jobs.len(), 3);
        assert_eq!(&jobs[0].endpoint_id, routes[0].id());
        assert_eq!(&jobs[1].endpoint_id, routes[3].id());
        assert_eq!(&jobs[2].endpoint_id, routes[4].id(), "an unreadable endpoint is not skipped");
        assert_ne!(jobs[0].delivery_id, jobs[1].delivery_id);
        assert!(jobs.iter().all(|j| j.attempts.is_empty() && j.event.id == event.id));
    }

    #[test]
    fn a_health_event_skips_the_endpoint_it_is_about() {
        let routes = vec![
            route(&[EventKind::EndpointHealthChanged], true),
            route(&[EventKind::EndpointHealthChanged], true),
        ];
        let event = Event::endpoint_health(entraguard_core::event::EndpointHealth {
            id: routes[0].id().to_string(),
            name: "broken".into(),
            state: entraguard_core::breaker::BreakerState::Open,
            last_error: None,
            parked: 0,
            since: entraguard_core::timestamp::Timestamp::now(),
        });
        let jobs = fan_out(&event, &routes);
        assert_eq!(jobs.len(), 1);
        assert_eq!(&jobs[0].endpoint_id, routes[1].id());
    }

    fn ruled(events: &[EventKind], rules: &str) -> Route {
        let rules = serde_json::from_str::<entraguard_core::rules::RulesDraft>(rules)
            .expect("draft")
            .validate()
            .expect("valid rules");
        Route::Known {
            id: EndpointId::generate(),
            enabled: true,
            events: events.iter().copied().collect(),
            rules: Box::new(rules),
        }
    }

    fn finding(severity: &str) -> Event {
        Event::from_json(
            format!(
                r#"{{"event":"finding.new","tenant_id":"t","scan_id":"s1","finding":{{"id":"F","title":"t",
                "severity":"{severity}","category":"c","remediation_url":"https://x.example/findings/F"}}}}"#
            )
            .as_bytes(),
        )
        .expect("valid event")
    }

    #[test]
    fn the_plan_collects_digested_findings_sends_the_rest_and_a_scan_end_flushes_unsubscribed_digests() {
        let digesting =
            ruled(&[EventKind::FindingNew], r#"{"digest":{"severities":["low"]},"dedupe_window":"1h"}"#);
        let other_tenant = ruled(
            &[EventKind::FindingNew, EventKind::ScanCompleted],
            r#"{"tenants":["u"],"digest":{"severities":["low"]}}"#,
        );
        let plain = route(&[EventKind::FindingNew], true);
        let routes = vec![digesting.clone(), other_tenant, plain];
        let steps = plan(&finding("low"), &routes, None);
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert!(
            matches!(&steps[0], RouteStep::Collect { dedupe: Some(_), digest, .. } if &digest.endpoint_id == digesting.id())
        );
        assert!(matches!(&steps[1], RouteStep::Send { dedupe: None, hold_until: None, .. }));
        let steps = plan(&finding("high"), &routes, None);
        assert!(matches!(&steps[0], RouteStep::Send { urgent: true, dedupe: Some(_), .. }), "{steps:?}");
        let end = Event::from_json(
            br#"{"event":"scan.completed","tenant_id":"t","scan_id":"s1","scan":{"run_id":"r","kind":"full","environment":"e","score":90,"grade":"A"}}"#,
        )
        .expect("valid");
        let steps = plan(&end, &routes, None);
        assert_eq!(steps.len(), 1, "only the digesting endpoint of this tenant flushes: {steps:?}");
        assert!(
            matches!(&steps[0], RouteStep::Flush { digest, grace, .. } if &digest.endpoint_id == digesting.id() && *grace == SCAN_END_GRACE)
        );
    }

    #[test]
    fn quiet_hours_hold_sends_by_redis_time() {
        let quiet = ruled(
            &[EventKind::FindingNew],
            r#"{"quiet_hours":{"time_zone":"UTC","from":"22:00","to":"06:00"}}"#,
        );
        assert!(needs_clock(&finding("low"), std::slice::from_ref(&quiet)));
        let at_23 = 1_768_604_400_000; // 2026-01-16T23:00:00Z
        let steps = plan(&finding("low"), std::slice::from_ref(&quiet), Some(at_23));
        assert!(
            matches!(&steps[0], RouteStep::Send { hold_until: Some(t), .. } if *t == at_23 + 7 * 3_600_000),
            "{steps:?}"
        );
        let steps = plan(&finding("critical"), std::slice::from_ref(&quiet), Some(at_23));
        assert!(matches!(&steps[0], RouteStep::Send { hold_until: None, .. }));
    }

    #[test]
    fn the_clock_is_read_only_for_events_quiet_hours_can_hold_and_afresh_near_a_window_edge() {
        let quiet = ruled(
            &[EventKind::FindingNew],
            r#"{"quiet_hours":{"time_zone":"UTC","from":"22:00","to":"06:00","at_once":"high"}}"#,
        );
        let routes = std::slice::from_ref(&quiet);
        assert!(needs_clock(&finding("medium"), routes));
        assert!(!needs_clock(&finding("high"), routes), "high goes at once: no clock needed");
        let margin = std::time::Duration::from_secs(5);
        let at_22 = 1_768_600_800_000; // 2026-01-16T22:00:00Z
        let low = finding("low");
        assert!(settled(&low, routes, at_22 + 60_000, margin), "a minute into the window");
        assert!(settled(&low, routes, at_22 - 60_000, margin), "a minute before it");
        assert!(!settled(&low, routes, at_22 - 2_000, margin), "2 s before it starts");
        assert!(!settled(&low, routes, at_22 + 2_000, margin), "2 s after it started");
        let at_06 = at_22 + 8 * 3_600_000;
        assert!(!settled(&low, routes, at_06 - 4_000, margin), "4 s before it ends");
        assert!(settled(&low, routes, at_06 + 6_000, margin), "6 s after it ended");
    }
}
