//! Fan-out: one event becomes one delivery job per enabled endpoint subscribed to its kind, so
//! endpoints fail, retry and dead-letter independently.

use entraguard_core::endpoint::Endpoint;
use entraguard_core::event::Event;
use entraguard_core::job::DeliveryJob;

/// The deliveries `event` needs, given every configured endpoint.
pub fn fan_out(event: &Event, endpoints: &[Endpoint]) -> Vec<DeliveryJob> {
    endpoints
        .iter()
        .filter(|ep| ep.subscribes_to(event.kind()))
        .map(|ep| DeliveryJob::new(event.clone(), ep.id.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use entraguard_core::endpoint::{EndpointDraft, TargetPolicy};

    fn endpoint(events: &[&str], enabled: bool) -> Endpoint {
        EndpointDraft {
            name: "x".into(),
            channel: "webhook".into(),
            target: "https://soar.example.com/hook".into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            enabled,
            ..Default::default()
        }
        .validate(TargetPolicy::default())
        .expect("valid endpoint")
    }

    #[test]
    fn only_enabled_subscribed_endpoints_get_a_delivery_each() {
        let event = Event::from_json(
            br#"{"event":"scan.failed","tenant_id":"t","scan":{"run_id":"r","kind":"full","environment":"prod","error":{"kind":"network","message":"boom"}}}"#,
        )
        .expect("valid event");
        let eps = vec![
            endpoint(&["scan.failed"], true),
            endpoint(&["scan.failed"], false),
            endpoint(&["finding.new"], true),
            endpoint(&["scan.failed", "finding.new"], true),
        ];
        let jobs = fan_out(&event, &eps);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].endpoint_id, eps[0].id);
        assert_eq!(jobs[1].endpoint_id, eps[3].id);
        assert_ne!(jobs[0].delivery_id, jobs[1].delivery_id);
        assert!(jobs.iter().all(|j| j.attempts.is_empty() && j.event.id == event.id));
    }
}
