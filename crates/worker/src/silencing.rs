//! Silences at fan-out: a send or a digest collection that an active silence mutes becomes a
//! `silence` step, which makes no delivery and counts the event for each silence muting it, in
//! the same Redis step as the event's acknowledgement (`route.lua`). Pure; the silences come
//! from the endpoint cache ([`crate::endpoints`]), the time from Redis's clock
//! ([`crate::clock`]).

use entraguard_core::event::Event;
use entraguard_core::queue::RouteStep;
use entraguard_core::silences::{Candidates, SilenceId};

/// `steps` with every send and collection that a silence active at `now_ms` mutes replaced by a
/// `silence` step (`candidates`: the silences matching `event`, see
/// [`entraguard_core::silences::SilenceSet::candidates`]).
/// Digest flushes and forwards to other shards are left alone (a forwarded event is judged by
/// the shard that plans it).
pub fn apply(
    steps: Vec<RouteStep>,
    event: &Event,
    candidates: &Candidates<'_>,
    now_ms: i64,
) -> Vec<RouteStep> {
    steps
        .into_iter()
        .map(|step| {
            let muting: Vec<SilenceId> = match &step {
                RouteStep::Send { endpoint, .. } => candidates.silencing(endpoint, now_ms).cloned().collect(),
                RouteStep::Collect { digest, .. } => {
                    candidates.silencing(digest.endpoint_id.as_str(), now_ms).cloned().collect()
                }
                _ => return step,
            };
            if muting.is_empty() {
                return step;
            }
            let endpoint = match step {
                RouteStep::Send { endpoint, .. } => endpoint,
                RouteStep::Collect { digest, .. } => digest.endpoint_id.to_string(),
                other => return other,
            };
            RouteStep::Silence { endpoint, event_id: event.id.to_string(), silences: muting }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use entraguard_core::ids::EndpointId;
    use entraguard_core::job::{DeliveryJob, Job};
    use entraguard_core::silences::{SilenceDraft, SilenceSet};

    const NOW: i64 = 1_780_000_000_000;

    fn finding(tenant: &str, severity: &str) -> Event {
        Event::from_json(
            format!(
                r#"{{"event":"finding.new","tenant_id":"{tenant}","finding":{{"id":"F","title":"t",
                "severity":"{severity}","category":"c","remediation_url":"https://x.example/f"}}}}"#
            )
            .as_bytes(),
        )
        .expect("valid event")
    }

    fn send(event: &Event, endpoint: &EndpointId) -> RouteStep {
        RouteStep::Send {
            endpoint: endpoint.to_string(),
            job: Job::Delivery(DeliveryJob::new(event.clone(), endpoint.clone())).encode(),
            urgent: false,
            hold_until: None,
            dedupe: None,
            park_as: None,
        }
    }

    #[test]
    fn muted_sends_become_silence_steps_naming_every_silence_and_the_rest_go() {
        let draft = |m: &[&str], endpoint: Option<&EndpointId>| SilenceDraft {
            matchers: m.iter().map(|s| (*s).to_owned()).collect(),
            endpoint_id: endpoint.map(ToString::to_string),
            duration: Some("3s".into()),
            author: "alice".into(),
            comment: "migration".into(),
            ..SilenceDraft::default()
        };
        let (a, b) = (EndpointId::generate(), EndpointId::generate());
        let wide = draft(&["tenant=B", "severity<=medium"], None).validate(NOW).expect("valid");
        let only_a = draft(&["tenant=B"], Some(&a)).validate(NOW).expect("valid");
        let set = SilenceSet::new(vec![wide.clone(), only_a.clone()]);
        let low = finding("B", "low");
        let steps = apply(vec![send(&low, &a), send(&low, &b)], &low, &set.candidates(&low), NOW + 1);
        let RouteStep::Silence { endpoint, silences, event_id } = &steps[0] else { panic!("{steps:?}") };
        assert_eq!((endpoint, event_id), (&a.to_string(), &low.id.to_string()));
        assert_eq!(silences.len(), 2);
        assert!(
            matches!(&steps[1], RouteStep::Silence { silences, .. } if silences == std::slice::from_ref(&wide.id))
        );
        let high = finding("B", "high");
        let steps = apply(vec![send(&high, &a), send(&high, &b)], &high, &set.candidates(&high), NOW + 1);
        assert!(
            matches!(&steps[0], RouteStep::Silence { silences, .. } if silences == std::slice::from_ref(&only_a.id))
        );
        assert!(matches!(&steps[1], RouteStep::Send { .. }), "B's high to another endpoint goes");
        let other = finding("A", "low");
        assert!(matches!(
            apply(vec![send(&other, &b)], &other, &set.candidates(&other), NOW + 1)[0],
            RouteStep::Send { .. }
        ));
        let after = apply(vec![send(&low, &b)], &low, &set.candidates(&low), NOW + 3_000);
        assert!(matches!(after[0], RouteStep::Send { .. }), "over by Redis's clock");
    }
}
