//! The `otel` feature: a publish is a span of the caller's OpenTelemetry trace. The span
//! (`publish`, kind producer) is a child of the context the caller passed
//! ([`Producer::publish_traced`]) or else of the current OpenTelemetry context, made with the
//! tracer given to [`Producer::with_tracer`] or else the global one; its context is what the
//! event job carries, so the workers' fan-out is its child. With no tracer installed (the
//! global no-op) and no parent, nothing is stored.
//!
//! [`Producer::publish_traced`]: crate::Producer::publish_traced
//! [`Producer::with_tracer`]: crate::Producer::with_tracer

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _,
};
use opentelemetry::{Context, KeyValue};

use entraguard_core::trace::TraceParent;

/// The tracer the producer's spans are made with.
pub type Tracer = opentelemetry::global::BoxedTracer;

/// One publish's span, ended by [`PublishSpan::end`].
pub(crate) struct PublishSpan {
    span: opentelemetry::global::BoxedSpan,
}

/// Starts the publish span of `events` events: child of `parent` when given, else of the
/// current context.
pub(crate) fn start(tracer: Option<&Tracer>, parent: Option<TraceParent>, events: usize) -> PublishSpan {
    let cx = match parent {
        Some(tp) => Context::new().with_remote_span_context(span_context(tp, true)),
        None => Context::current(),
    };
    let attributes = vec![
        KeyValue::new("messaging.system", "entraguard"),
        KeyValue::new("messaging.operation.type", "send"),
        KeyValue::new("messaging.batch.message_count", i64::try_from(events).unwrap_or(i64::MAX)),
    ];
    let global;
    let tracer = match tracer {
        Some(t) => t,
        None => {
            global = opentelemetry::global::tracer("entraguard-producer");
            &global
        }
    };
    let span = tracer
        .span_builder("publish")
        .with_kind(SpanKind::Producer)
        .with_attributes(attributes)
        .start_with_context(tracer, &cx);
    PublishSpan { span }
}

impl PublishSpan {
    /// What the event jobs carry: this span's context, when it is a real one.
    pub(crate) fn traceparent(&self) -> Option<TraceParent> {
        let sc = self.span.span_context();
        if !sc.is_valid() {
            return None;
        }
        TraceParent::new(sc.trace_id().to_bytes(), sc.span_id().to_bytes(), sc.trace_flags().to_u8())
    }

    /// Ends the span, with the error when the publish failed.
    pub(crate) fn end(mut self, error: Option<&dyn std::fmt::Display>) {
        if let Some(e) = error {
            self.span.set_status(Status::error(e.to_string()));
        }
        self.span.end();
    }
}

/// `tp` as an OpenTelemetry span context.
pub fn span_context(tp: TraceParent, remote: bool) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(tp.trace_id()),
        SpanId::from_bytes(tp.span_id()),
        TraceFlags::new(tp.flags()),
        remote,
        TraceState::default(),
    )
}
