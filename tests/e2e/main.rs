//! End-to-end tests: a real redis-server per test (started by the testkit on a free port), real
//! worker processes or in-process workers, real HTTP receivers on 127.0.0.1.

/// Shared set-up: Redis, producer, endpoint store, in-process and spawned workers.
mod harness;

/// The delivery spine: signed webhook delivery, retries, dead letters, replay, fan-out rules,
/// poison jobs, a worker killed mid-delivery.
mod spine;

/// Slack, Teams and email end to end, with the receivers' real answers.
mod channels;

/// The guarantees under faults: kills, Redis restarts and outages, hanging receivers, shutdown,
/// scale-out, hostile input, a long run.
mod guarantees;

/// Finish and fetch in one step: one round trip per delivery, with the guarantees of a fetch:
/// a lost answer, a worker killed before it read it.
mod finish_fetch;
/// The loss paths found under faults: lost fetch answers, late fetches after a stop, killed
/// workers, a full Redis, repeated and refused publishes, unreadable endpoints, huge jobs.
mod loss_paths;

/// Endpoint lanes and priority: a hanging endpoint's backlog waits without polling, fresh
/// alerts overtake retries, urgent events jump the queue.
mod lanes;

/// Fair share: every tenant's events and every endpoint's deliveries taken in turn, so one
/// tenant's flood never holds up another's alert; `layout raise` and `lower`.
mod fair_share;

/// Event bodies stored once for the deliveries that wait in lanes or lie in the dead-letter
/// queue: references, counts, show, replay, purge, a body gone.
mod bodies;

/// The circuit breaker per endpoint: opens after five retryable failures, parks while open,
/// probes, drains once on recovery; health events; killed workers; auto-disable and enable.
mod breaker;

/// SSRF, redirects, HTTPS-only, Standard Webhooks signatures with rotation, secrets at rest.
mod security;

/// The webhook transport over TLS: receivers' certificates verified against the platform's
/// roots, keep-alive over one connection, HTTP/2 when the receiver offers it.
mod transport;

/// Health, readiness and metrics of a worker process.
mod operations;

/// deploy/monitoring: promtool checks and unit-tests the alert rules; a real Prometheus scraping
/// a real worker answers every dashboard query and evaluates every alert.
mod monitoring;

/// Alert-fatigue rules per endpoint: tenants, severity floors, dedupe windows, scan digests
/// (flushed by the scan's end, by timeout, across a SIGKILL) and quiet hours.
mod routing;

/// Per-endpoint rate limits: send slots and turns through a real Redis, and a flood of 2 000
/// deliveries to an endpoint limited to 50/s that never goes over it and slows no one.
mod rate_limits;

/// Recent Deliveries in Redis: bounds, expiry, Redeliver, in-flight counts.
mod history;

/// Silences: matchers, a window by Redis's clock, expire early, counts, `/metrics`, the audit
/// list, the CLI and the API showing the same.
mod silences;

/// The queue on a real local Redis Cluster (3 + 3): every binary through any seed node, the
/// spine and the guarantees, and a primary killed while events flow (failover).
mod cluster;
mod shards;

/// Traces: one event's OpenTelemetry trace from publish to the receiver's request, across a
/// retry and a worker restart, decoded from OTLP; no `traceparent` with traces off.
mod tracing;

/// Upgrades that lose nothing: the layout version, the previous release's keys drained by
/// today's worker (fixtures), old and new workers side by side.
mod upgrade;
