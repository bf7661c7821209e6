//! The worker's spans, when traces are on ([`entraguard_process::telemetry`]): one `fan-out`
//! per event job (child of the publish's `traceparent`, or a new trace), one `delivery attempt`
//! per attempt (child of the fan-out, whose context the delivery job carries through retries,
//! lanes and dead letters) and one `POST` per HTTP request (child of the attempt; its context
//! goes to the receiver as the `traceparent` header). Every function here asks
//! [`telemetry::enabled`] first: with traces off no span is made, nothing is recorded, and the
//! delivery path is the same as without this module.

use entraguard_core::endpoint::{Endpoint, Target};
use entraguard_core::job::{DeliveryJob, EventJob, Job};
use entraguard_core::queue::RouteStep;
use entraguard_core::trace::TraceParent;
use entraguard_process::telemetry::{self, TARGET};
use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::delivery::Attempted;

/// What an attempt's span records as its `outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    RetryScheduled,
    DeadLettered,
    /// Waits in its endpoint's lane (busy, rate-limited, or its breaker open).
    Parked,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::RetryScheduled => "retry scheduled",
            AttemptOutcome::DeadLettered => "dead-lettered",
            AttemptOutcome::Parked => "parked",
        }
    }
}

/// The fan-out span of `job`: child of its `traceparent`, else the first span of a new trace.
pub(crate) fn fan_out_span(job: &EventJob) -> Option<Span> {
    if !telemetry::enabled() {
        return None;
    }
    let span = tracing::info_span!(
        target: TARGET,
        parent: None,
        "fan-out",
        otel.kind = "consumer",
        event.id = %job.event.id,
        event.kind = job.event.kind().as_str(),
        deliveries = Empty,
    );
    set_parent(&span, job.traceparent);
    Some(span)
}

/// Gives every delivery `steps` sends the fan-out span's context (only with traces on: the
/// jobs are decoded and written again).
pub(crate) fn stamp_deliveries(span: &Span, steps: &mut [RouteStep]) {
    let Some(tp) = traceparent_of(span) else { return };
    let mut n = 0i64;
    for step in steps.iter_mut() {
        if let RouteStep::Send { job, .. } = step
            && let Ok(Job::Delivery(mut d)) = Job::decode(job.as_bytes())
        {
            d.traceparent = Some(tp);
            *job = Job::Delivery(d).encode();
            n += 1;
        }
    }
    span.record("deliveries", n);
}

/// The span of one attempt of `job`: child of the fan-out that made it, else a new trace.
pub(crate) fn attempt_span(job: &DeliveryJob) -> Option<Span> {
    if !telemetry::enabled() {
        return None;
    }
    let span = tracing::info_span!(
        target: TARGET,
        parent: None,
        "delivery attempt",
        delivery.id = %job.delivery_id,
        endpoint.id = %job.endpoint_id,
        event.id = %job.event.id,
        // Integers as i64: what OTLP's int attribute holds (tracing-opentelemetry writes
        // unsigned ones as text).
        attempt = i64::from(job.next_attempt()),
        channel = Empty,
        http.response.status_code = Empty,
        outcome = Empty,
        otel.status_code = Empty,
        otel.status_message = Empty,
    );
    set_parent(&span, job.traceparent);
    Some(span)
}

/// Records the endpoint's channel on the current attempt span.
pub(crate) fn channel(endpoint: &Endpoint) {
    if telemetry::enabled() {
        Span::current().record("channel", endpoint.channel.as_str());
    }
}

/// Records how the current attempt ended: its outcome, and the answer when one came.
pub(crate) fn outcome(outcome: AttemptOutcome, attempted: Option<&Attempted>) {
    if !telemetry::enabled() {
        return;
    }
    let span = Span::current();
    span.record("outcome", outcome.as_str());
    if let Some(a) = attempted {
        if let Some(status) = a.outcome.status() {
            span.record("http.response.status_code", i64::from(status));
        }
        if let Some(error) = a.outcome.error() {
            span.record("otel.status_code", "error");
            span.record("otel.status_message", error);
        }
    }
}

/// The span of an attempt's HTTP request (child of the current attempt span) and the
/// `traceparent` header that names it; `None` with traces off or for a channel that is not HTTP.
pub(crate) fn http_span(endpoint: &Endpoint) -> Option<(Span, String)> {
    if !telemetry::enabled() {
        return None;
    }
    let Target::Url(url) = &endpoint.target else { return None };
    // The host only: a URL's path and query can hold tokens (Slack's and Teams' do).
    let span = tracing::info_span!(
        target: TARGET,
        parent: &Span::current(),
        "POST",
        otel.kind = "client",
        http.request.method = "POST",
        server.address = url.host_str().unwrap_or(""),
        server.port = i64::from(url.port_or_known_default().unwrap_or(0)),
        http.response.status_code = Empty,
        otel.status_code = Empty,
    );
    let header = traceparent_of(&span)?.to_string();
    Some((span, header))
}

/// Records the HTTP answer on its span.
pub(crate) fn http_done(span: &Span, attempted: &Attempted) {
    match attempted.outcome.status() {
        Some(status) => {
            span.record("http.response.status_code", i64::from(status));
            if status >= 400 {
                span.record("otel.status_code", "error");
            }
        }
        None => {
            span.record("otel.status_code", "error");
        }
    }
}

/// `span`'s place in its trace, as W3C `traceparent`.
pub(crate) fn traceparent_of(span: &Span) -> Option<TraceParent> {
    let cx = span.context();
    let otel_span = cx.span();
    let sc = otel_span.span_context();
    if !sc.is_valid() {
        return None;
    }
    TraceParent::new(sc.trace_id().to_bytes(), sc.span_id().to_bytes(), sc.trace_flags().to_u8())
}

/// Makes `parent` (a span of another process) the parent of `span`; without one, `span` starts
/// a trace (never a child of whatever this thread's OpenTelemetry context holds).
fn set_parent(span: &Span, parent: Option<TraceParent>) {
    let cx = match parent {
        Some(tp) => Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_bytes(tp.trace_id()),
            SpanId::from_bytes(tp.span_id()),
            TraceFlags::new(tp.flags()),
            true,
            TraceState::default(),
        )),
        None => Context::new(),
    };
    // Fails only for a span no layer records (a filter hid it): nothing to parent then.
    let _ = span.set_parent(cx);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_traces_off_nothing_is_made() {
        let event = crate::delivery::test_event();
        let job = DeliveryJob::new(event.clone(), "ep_01JTEST".parse().expect("id"));
        assert!(attempt_span(&job).is_none());
        assert!(fan_out_span(&EventJob::new(event)).is_none());
        // No subscriber records these spans: no context, no header.
        assert_eq!(traceparent_of(&Span::none()), None);
        assert_eq!(AttemptOutcome::RetryScheduled.as_str(), "retry scheduled");
    }
}
