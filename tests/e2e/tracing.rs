//! Traces end to end: one published event is one OpenTelemetry trace, publish → fan-out →
//! attempt → HTTP request, across a retry taken by another worker process, exported over
//! OTLP/HTTP to a local receiver and read back with the OpenTelemetry project's own protobuf
//! types (`opentelemetry-proto`) and `prost`: a decoder nobody here wrote.

use std::collections::HashMap;
use std::time::Duration;

use entraguard_producer::TraceParent;
use entraguard_testkit::{HttpReceiver, Reply, bin_path, wait_until};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tokio::process::Child;

use crate::harness::{Stack, finding_event, worker_command_at};

const SECRET: &str = "whsec_test_0123456789abcdef";

/// One exported span and the service that exported it.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    span: Span,
}

impl Exported {
    fn attr(&self, key: &str) -> Option<Value> {
        self.span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.clone()?.value)
    }

    fn text(&self, key: &str) -> Option<String> {
        match self.attr(key)? {
            Value::StringValue(s) => Some(s),
            _ => None,
        }
    }

    fn int(&self, key: &str) -> Option<i64> {
        match self.attr(key)? {
            Value::IntValue(i) => Some(i),
            _ => None,
        }
    }
}

/// Every span the collector received, decoded from its OTLP/HTTP protobuf requests.
fn exported(collector: &HttpReceiver) -> Vec<Exported> {
    let mut out = Vec::new();
    for request in collector.requests() {
        assert_eq!(request.path, "/v1/traces", "OTLP/HTTP posts traces to /v1/traces");
        let batch = ExportTraceServiceRequest::decode(request.body.as_slice()).expect("an OTLP trace export");
        for rs in batch.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.clone()?.value? {
                    Value::StringValue(s) => Some(s),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                out.extend(ss.spans.into_iter().map(|span| Exported { service: service.clone(), span }));
            }
        }
    }
    out
}

/// The spans of trace `trace_id`.
fn of_trace(collector: &HttpReceiver, trace_id: &[u8]) -> Vec<Exported> {
    exported(collector).into_iter().filter(|s| s.span.trace_id == trace_id).collect()
}

/// The worker binary, exporting traces to `collector` (batches every 50 ms).
fn traced_worker(redis_url: &str, collector: &HttpReceiver, overrides: &[&str]) -> Child {
    worker_command_at(&bin_path("entraguard-worker"), redis_url, overrides)
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_TRACES_SAMPLER")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url())
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .spawn()
        .expect("worker binary starts")
}

/// The scanner's side: its own tracer provider exporting to `collector`.
fn scanner_provider(collector: &HttpReceiver) -> opentelemetry_sdk::trace::SdkTracerProvider {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(collector.url_for("/v1/traces"))
        .build()
        .expect("an OTLP/HTTP exporter");
    opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(opentelemetry_sdk::Resource::builder_empty().with_service_name("scanner").build())
        .build()
}

async fn terminate(mut worker: Child) {
    let pid = worker.id().expect("running").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), worker.wait())
        .await
        .expect("worker exits within 30 s of SIGTERM")
        .expect("exit status");
    assert!(exit.success(), "worker exit: {exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_is_one_trace_from_publish_to_the_receiver_across_a_retry_and_a_restart() {
    let stack = Stack::start().await;
    let collector = HttpReceiver::with_default(Reply::status(200));
    let hook = HttpReceiver::start();
    hook.push_replies([Reply::status(500).body("try again")]);
    let ep = stack.add_endpoint("webhook", &hook.url_for("/hook"), &["finding.new"], Some(SECRET)).await;

    // The scanner publishes within its own trace.
    let provider = scanner_provider(&collector);
    let producer = stack
        .producer
        .clone()
        .with_tracer(opentelemetry::global::BoxedTracer::new(Box::new(provider.tracer("scanner"))));
    producer.publish(&finding_event("t-traced")).await.expect("published");
    let flushed = provider.clone();
    tokio::task::spawn_blocking(move || flushed.force_flush()).await.expect("flush ran").expect("flushed");
    let publish = exported(&collector)
        .into_iter()
        .find(|s| s.span.name == "publish")
        .expect("the publish span is exported");
    assert_eq!(publish.service, "scanner");
    let trace_id = publish.span.trace_id.clone();

    // The first worker makes attempt 1 (500: retry in 8 s, long enough for a busy machine to
    // stop it first), then is stopped.
    let first = traced_worker(&stack.redis.url(), &collector, &["--retry-schedule", "8s"]);
    wait_until(Duration::from_secs(60), "attempt 1's span, retry scheduled", || async {
        of_trace(&collector, &trace_id)
            .iter()
            .any(|s| s.span.name == "delivery attempt" && s.int("attempt") == Some(1))
    })
    .await;
    terminate(first).await;
    assert_eq!(hook.requests().len(), 1, "the first worker made one attempt only");

    // A second worker takes the retry when it is due.
    let second = traced_worker(&stack.redis.url(), &collector, &[]);
    hook.wait_for_requests(2, Duration::from_secs(60)).await;
    wait_until(Duration::from_secs(60), "attempt 2's span and its request's", || async {
        let spans = of_trace(&collector, &trace_id);
        spans.iter().any(|s| s.span.name == "delivery attempt" && s.int("attempt") == Some(2))
            && spans.iter().filter(|s| s.span.name == "POST").count() == 2
    })
    .await;
    stack.wait_drained(Duration::from_secs(30)).await;
    terminate(second).await;

    // One trace: publish → fan-out → attempt 1 → POST, and → attempt 2 → POST.
    let spans = of_trace(&collector, &trace_id);
    let names: Vec<&str> = spans.iter().map(|s| s.span.name.as_str()).collect();
    let by_id: HashMap<Vec<u8>, &Exported> = spans.iter().map(|s| (s.span.span_id.clone(), s)).collect();
    assert_eq!(spans.len(), 6, "publish, fan-out, 2 attempts, 2 requests: {names:?}");
    let one = |name: &str| -> Vec<&Exported> { spans.iter().filter(|s| s.span.name == name).collect() };
    let fan_out = one("fan-out");
    assert_eq!(fan_out.len(), 1, "{names:?}");
    let fan_out = fan_out[0];
    assert_eq!(fan_out.span.parent_span_id, publish.span.span_id, "fan-out is the publish's child");
    assert_eq!(fan_out.service, "entraguard-worker");
    assert_eq!(fan_out.int("deliveries"), Some(1));
    let mut attempts = one("delivery attempt");
    attempts.sort_by_key(|s| s.int("attempt"));
    assert_eq!(attempts.len(), 2, "{names:?}");
    for (i, (attempt, (status, outcome))) in
        attempts.iter().zip([(500, "retry scheduled"), (200, "delivered")]).enumerate()
    {
        assert_eq!(
            attempt.span.parent_span_id,
            fan_out.span.span_id,
            "attempt {} is the fan-out's child",
            i + 1
        );
        assert_eq!(attempt.int("attempt"), Some(i as i64 + 1));
        assert_eq!(attempt.text("endpoint.id").as_deref(), Some(ep.id.as_str()));
        assert_eq!(attempt.text("channel").as_deref(), Some("webhook"));
        assert_eq!(attempt.int("http.response.status_code"), Some(status));
        assert_eq!(attempt.text("outcome").as_deref(), Some(outcome));
    }
    // Each request is its attempt's child, and the receiver was told its span.
    let requests = hook.requests();
    for (attempt, request) in attempts.iter().zip(&requests) {
        let post: Vec<&Exported> =
            one("POST").into_iter().filter(|s| s.span.parent_span_id == attempt.span.span_id).collect();
        assert_eq!(post.len(), 1, "one request span under each attempt");
        let post = post[0];
        assert_eq!(post.text("server.address").as_deref(), Some("127.0.0.1"));
        let header: TraceParent = request
            .header("traceparent")
            .expect("the webhook request carries traceparent")
            .parse()
            .expect("a valid traceparent");
        assert_eq!(header.trace_id().as_slice(), trace_id.as_slice(), "the receiver joins the trace");
        assert_eq!(
            header.span_id().as_slice(),
            post.span.span_id.as_slice(),
            "its parent is the request span"
        );
        assert!(by_id.contains_key(&post.span.parent_span_id));
    }
    assert_eq!(attempts[0].int("http.response.status_code"), Some(500));
    let _ = provider.shutdown();
}

/// A worker without an OTLP endpoint exports nothing and sends no `traceparent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_traces_off_a_delivery_sends_no_traceparent() {
    let stack = Stack::start().await;
    let hook = HttpReceiver::start();
    stack.add_endpoint("webhook", &hook.url_for("/hook"), &["finding.new"], Some(SECRET)).await;
    let worker = stack.spawn_worker_process(&[]);
    let parent: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().expect("tp");
    stack.producer.publish_traced(&finding_event("t-off"), parent).await.expect("published");
    let got = hook.wait_for_requests(1, Duration::from_secs(30)).await;
    assert_eq!(got[0].header("traceparent"), None, "no header with traces off");
    stack.wait_drained(Duration::from_secs(30)).await;
    drop(worker);
}
