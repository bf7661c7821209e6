//! Fan-out: one event becomes one delivery job per enabled endpoint subscribed to its kind, so
//! endpoints fail, retry and dead-letter independently. Routing reads only the endpoint's
//! subscription, never its sealed URL or secret: an endpoint this worker cannot open still gets
//! its delivery, which then fails with the reason instead of being skipped.

use entraguard_core::event::Event;
use entraguard_core::job::{DeliveryJob, Job};
use entraguard_core::queue::DeadLetterDraft;
use entraguard_core::store::Route;
use tracing::error;

use crate::context::Ctx;
use crate::persist::{persist, record};

/// The deliveries `event` needs, given every stored endpoint's route. An
/// `endpoint.health_changed` event never goes to the endpoint it is about (a broken endpoint
/// would only park news of its own breakage).
pub fn fan_out(event: &Event, routes: &[Route]) -> Vec<DeliveryJob> {
    let about = event.about_endpoint();
    routes
        .iter()
        .filter(|r| r.wants(event.kind()) && about != Some(r.id().as_str()))
        .map(|r| DeliveryJob::new(event.clone(), r.id().clone()))
        .collect()
}

/// The fan-out step: an event job is replaced by its deliveries, in one step (an invalid event
/// goes to the dead-letter queue with the reason). Urgent events' deliveries go to the front.
pub(crate) async fn fan_out_job(ctx: &Ctx, raw: &[u8], event: Event) {
    if let Err(e) = event.validate() {
        crate::metrics::poison();
        let draft = DeadLetterDraft {
            id: crate::runner::poison_id(),
            reason: format!("invalid event {}: {e}", event.id),
            delivery: None,
        };
        error!(reason = %draft.reason, "invalid event dead-lettered");
        record(ctx, "dead-letter", || ctx.queue.dead_letter(&ctx.worker, raw, &draft)).await;
        return;
    }
    let routes = persist("read endpoints", || ctx.endpoints.routes(&ctx.store)).await;
    let deliveries: Vec<String> =
        fan_out(&event, &routes).into_iter().map(|d| Job::Delivery(d).encode()).collect();
    let urgent = if event.is_urgent() { deliveries.len() } else { 0 };
    if record(ctx, "fan-out", || ctx.queue.ack(&ctx.worker, raw, urgent, &deliveries)).await {
        crate::metrics::fanned_out();
        tracing::debug!(deliveries = deliveries.len(), "event fanned out");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use entraguard_core::event::EventKind;
    use entraguard_core::ids::EndpointId;

    fn route(events: &[EventKind], enabled: bool) -> Route {
        Route::Known { id: EndpointId::generate(), enabled, events: events.iter().copied().collect() }
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
}
