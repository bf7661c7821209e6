//! Prometheus metrics: their names in one place, and the recorder. Counters and histograms are
//! recorded as deliveries happen; queue depths are read from Redis when `/metrics` is scraped,
//! so an idle worker sends Redis nothing for them.

use std::sync::OnceLock;
use std::time::Duration;

use entraguard_core::queue::{QueueStats, Shards};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const DELIVERIES: &str = "entraguard_deliveries_total";
pub const ATTEMPTS: &str = "entraguard_delivery_attempts_total";
pub const DELIVERY_SECONDS: &str = "entraguard_delivery_duration_seconds";
pub const EVENTS_FANNED_OUT: &str = "entraguard_events_fanned_out_total";
pub const POISON_JOBS: &str = "entraguard_poison_jobs_total";
pub const IN_FLIGHT: &str = "entraguard_in_flight";
pub const QUEUE_READY: &str = "entraguard_queue_ready";
pub const QUEUE_FLOWS: &str = "entraguard_queue_flows";
pub const QUEUE_RETRYING: &str = "entraguard_queue_retrying";
pub const QUEUE_PARKED: &str = "entraguard_queue_parked";
pub const QUEUE_PROCESSING: &str = "entraguard_queue_processing";
pub const QUEUE_SCHEDULED: &str = "entraguard_queue_scheduled_retries";
pub const QUEUE_DEAD: &str = "entraguard_queue_dead_letters";
pub const QUEUE_LANE_FULL: &str = "entraguard_queue_lane_full_dead_letters";
pub const QUEUE_EVENT_BODIES: &str = "entraguard_queue_event_bodies";
pub const LANE_FULL: &str = "entraguard_deliveries_lane_full_total";
pub const RATE_LIMITED: &str = "entraguard_deliveries_rate_limited_total";
pub const WORKERS: &str = "entraguard_workers";
pub const QUEUE_DIGESTS: &str = "entraguard_queue_digests";
pub const QUEUE_FORWARDING: &str = "entraguard_queue_forwarding";
pub const SHARD_READY: &str = "entraguard_shard_ready";
pub const SHARD_RETRYING: &str = "entraguard_shard_retrying";
pub const SHARD_PROCESSING: &str = "entraguard_shard_processing";
pub const SHARD_FORWARDING: &str = "entraguard_shard_forwarding";
pub const SHARD_DEAD: &str = "entraguard_shard_dead_letters";
pub const FORWARDED: &str = "entraguard_events_forwarded_total";
pub const REDIS_FULL: &str = "entraguard_redis_full";
pub const BREAKER_OPEN: &str = "entraguard_endpoint_breaker_open";
pub const ENDPOINT_PARKED: &str = "entraguard_endpoint_parked";
pub const HANDED_BACK: &str = "entraguard_stranded_jobs_handed_back_total";
pub const SUPPRESSED: &str = "entraguard_deliveries_suppressed_total";
pub const HELD: &str = "entraguard_deliveries_held_total";
pub const PARKED_AT_FANOUT: &str = "entraguard_deliveries_parked_at_fanout_total";
pub const DIGESTED: &str = "entraguard_findings_digested_total";
pub const DIGESTS_SENT: &str = "entraguard_digests_total";

/// The process-wide recorder, installed on first use (tests run several workers in one process).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(DELIVERY_SECONDS.to_owned()),
                &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            )
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed; then our handle renders nothing new.
        if metrics::set_global_recorder(recorder).is_ok() {
            zero_counters();
        }
        handle
    })
}

/// The counters without labels, at 0 from the start: a counter that first appears at 1 has no
/// earlier sample, so Prometheus' `increase()` misses that first increment (and the alert on
/// poison jobs in deploy/monitoring/alerts.yaml would miss a process's first one).
fn zero_counters() {
    for name in [EVENTS_FANNED_OUT, POISON_JOBS, HANDED_BACK, FORWARDED, DIGESTED, PARKED_AT_FANOUT] {
        counter!(name).increment(0);
    }
}

/// One finished attempt: `result` is `delivered`, `retry` or `dead`.
pub fn attempt(channel: &'static str, result: &'static str, elapsed: Duration) {
    counter!(ATTEMPTS, "channel" => channel).increment(1);
    if result != "retry" {
        counter!(DELIVERIES, "channel" => channel, "outcome" => result).increment(1);
    } else {
        counter!(DELIVERIES, "channel" => channel, "outcome" => "retry_scheduled").increment(1);
    }
    histogram!(DELIVERY_SECONDS, "channel" => channel).record(elapsed.as_secs_f64());
}

pub fn fanned_out() {
    counter!(EVENTS_FANNED_OUT).increment(1);
}

pub fn poison() {
    counter!(POISON_JOBS).increment(1);
}

/// 1 while Redis refuses writes at its `maxmemory` (publishes are refused; workers deliver on).
pub fn redis_full(full: bool) {
    gauge!(REDIS_FULL).set(if full { 1.0 } else { 0.0 });
}

/// Jobs found on this worker's processing list that it was not running, handed back.
pub fn handed_back(n: usize) {
    counter!(HANDED_BACK).increment(n as u64);
}

/// A delivery dead-lettered as "endpoint lane full" by this process.
pub fn lane_full(endpoint: &str) {
    counter!(LANE_FULL, "endpoint" => endpoint.to_owned()).increment(1);
}

/// A delivery that found no send slot of its endpoint's rate limit (or Slack pace) within
/// `PACE_AHEAD`: parked in the lane to wait for its turn (no attempt spent).
pub fn waited_turn(endpoint: &str) {
    counter!(RATE_LIMITED, "endpoint" => endpoint.to_owned()).increment(1);
}

pub fn in_flight(n: usize) {
    gauge!(IN_FLIGHT).set(n as f64);
}

/// Queue depths as read at scrape time: the deployment's totals, and with several queue shards
/// each shard's (labelled by its hash tag).
pub fn queue(shards: &Shards, per_shard: &[QueueStats]) {
    let total = Shards::total(per_shard);
    totals(&total);
    if per_shard.len() > 1 {
        for (queue, s) in shards.counted().iter().zip(per_shard) {
            let tag = queue.keys().tag().to_owned();
            gauge!(SHARD_READY, "shard" => tag.clone()).set(s.ready as f64);
            gauge!(SHARD_RETRYING, "shard" => tag.clone()).set(s.retrying as f64);
            gauge!(SHARD_PROCESSING, "shard" => tag.clone()).set(s.processing as f64);
            gauge!(SHARD_FORWARDING, "shard" => tag.clone()).set(s.forwarding as f64);
            gauge!(SHARD_DEAD, "shard" => tag).set(s.dead as f64);
        }
    }
}

/// Events handed to other queue shards' endpoints (moved from an outbox into their shard).
pub fn forwarded(n: usize) {
    counter!(FORWARDED).increment(n as u64);
}

fn totals(stats: &QueueStats) {
    gauge!(QUEUE_FORWARDING).set(stats.forwarding as f64);
    gauge!(QUEUE_READY).set(stats.ready as f64);
    gauge!(QUEUE_FLOWS).set(stats.flows as f64);
    gauge!(QUEUE_RETRYING).set(stats.retrying as f64);
    gauge!(QUEUE_PARKED).set(stats.parked as f64);
    gauge!(QUEUE_PROCESSING).set(stats.processing as f64);
    gauge!(QUEUE_SCHEDULED).set(stats.scheduled as f64);
    gauge!(QUEUE_DEAD).set(stats.dead as f64);
    gauge!(QUEUE_LANE_FULL).set(stats.lane_full as f64);
    gauge!(QUEUE_EVENT_BODIES).set(stats.event_bodies as f64);
    gauge!(WORKERS).set(stats.workers as f64);
    gauge!(QUEUE_DIGESTS).set(stats.digests as f64);
}

/// Per endpoint, read at scrape time: 1 while its breaker is not closed (open, half-open or
/// disabled), and the deliveries waiting in its lane.
pub fn breakers(overview: &[(String, entraguard_core::breaker::BreakerState, u64)]) {
    for (id, state, parked) in overview {
        let open = *state != entraguard_core::breaker::BreakerState::Closed;
        gauge!(BREAKER_OPEN, "endpoint" => id.clone()).set(if open { 1.0 } else { 0.0 });
        gauge!(ENDPOINT_PARKED, "endpoint" => id.clone()).set(*parked as f64);
    }
}

/// What fan-out with rules did: sends kept back by a dedupe window or muted by a silence, held
/// through quiet hours, findings collected into digests; deliveries put straight into the lane of
/// an endpoint whose breaker is open.
pub fn routed(r: &entraguard_core::queue::Routed) {
    counter!(SUPPRESSED, "reason" => "dedupe").increment(r.suppressed);
    counter!(SUPPRESSED, "reason" => "silence").increment(r.silenced);
    counter!(HELD, "reason" => "quiet_hours").increment(r.held);
    counter!(DIGESTED).increment(r.collected);
    counter!(PARKED_AT_FANOUT).increment(r.parked);
}

/// A digest became its delivery (`reason`: `scan.completed`, `scan.failed`, `max_wait`); `held`
/// when quiet hours hold it.
pub fn digest_sent(reason: &'static str, held: bool) {
    counter!(DIGESTS_SENT, "reason" => reason).increment(1);
    if held {
        counter!(HELD, "reason" => "quiet_hours").increment(1);
    }
}
