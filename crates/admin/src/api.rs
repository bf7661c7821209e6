//! The JSON API under `/api`, described by the OpenAPI document at `/api/openapi.json` (behind
//! the token like the rest). State changes take `Content-Type: application/json` (see `guard`).
//!
//! The document is generated from the handlers' `#[utoipa::path]` attributes and the types they
//! take and return ([`ApiDoc`]); the router is built from one table ([`ROUTES`]), and a test holds
//! the two to each other: every route is documented, every documented operation is routed.

use axum::extract::{Path, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use entraguard_core::breaker::BreakerStatus;
use entraguard_core::endpoint::{EndpointDraft, EndpointView};
use entraguard_core::history::{AttemptResult, DeliveryRecord, HISTORY_MAX_ENTRIES, HistoryHealth};
use entraguard_core::ids::{DeliveryId, EndpointId};
use entraguard_core::job::{AttemptRecord, DeliveryJob};
use entraguard_core::queue::{
    DeadLetter, DeadLetterSummary, Redelivery, ReplayFilter, ReplayOutcome, ReplaySummary, StatsReport,
};
use entraguard_core::timestamp::Timestamp;
use entraguard_delivery::delivery::TestReport;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::body::{self, JsonBody, NoFields};
use crate::error::ErrorBody;
use crate::routes::{Route, router};
use crate::{ApiError, AppState, auth};

/// The axum method router for a method name.
macro_rules! method_fn {
    (GET) => {
        get
    };
    (POST) => {
        post
    };
    (PUT) => {
        put
    };
    (DELETE) => {
        delete
    };
}

/// Every API route. The router is built from this table alone.
pub fn routes_table() -> Vec<Route> {
    macro_rules! r {
        ($method:ident, $path:literal, $handler:ident) => {
            Route {
                method: Method::$method,
                path: $path,
                handler: || method_fn!($method)($handler),
                documented: true,
            }
        };
    }
    vec![
        r!(GET, "/api/endpoints", list_endpoints),
        r!(POST, "/api/endpoints", create_endpoint),
        r!(GET, "/api/endpoints/{id}", get_endpoint),
        r!(PUT, "/api/endpoints/{id}", update_endpoint),
        r!(DELETE, "/api/endpoints/{id}", delete_endpoint),
        r!(POST, "/api/endpoints/{id}/enable", enable),
        r!(POST, "/api/endpoints/{id}/disable", disable),
        r!(POST, "/api/endpoints/{id}/test", send_test),
        r!(GET, "/api/endpoints/{id}/deliveries", list_deliveries),
        r!(POST, "/api/endpoints/{id}/deliveries/{delivery_id}/redeliver", redeliver),
        r!(GET, "/api/endpoints/{id}/health", endpoint_health),
        r!(GET, "/api/dlq", list_dead),
        r!(DELETE, "/api/dlq", purge_all),
        r!(POST, "/api/dlq/replay", replay_many),
        r!(GET, "/api/dlq/{id}", get_dead),
        r!(DELETE, "/api/dlq/{id}", purge_one),
        r!(POST, "/api/dlq/{id}/replay", replay_one),
        r!(GET, "/api/stats", stats),
        r!(GET, "/api/openapi.json", openapi),
    ]
    .into_iter()
    .chain(crate::silences::routes_table())
    .collect()
}

pub fn routes(state: AppState) -> Router<AppState> {
    router(routes_table()).layer(middleware::from_fn_with_state(state, require_auth))
}

/// The OpenAPI document, from the handlers below and the types they use.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "EntraGuard Notify admin API",
        description = "Endpoints, Send test, Recent Deliveries and Redeliver, endpoint health, silences, the dead-letter queue and queue stats. Every call needs `Authorization: Bearer <NOTIFY_ADMIN_TOKEN>` (this document too) or the page's session. Every POST, PUT and DELETE takes `Content-Type: application/json`, with `{}` when there is nothing to say (415 otherwise); a request whose `Origin` is not this server's is 403; 5 wrong bearer tokens a minute from one address (an IPv6 /64) make that address's further bearer-token checks 429 with `Retry-After` (failed sign-ins at /login count apart, and no other address's failures ever limit yours). Targets are masked (scheme, host, port and a plain-word first path segment stay; other path segments and query values are `****`), signature header values are `****`, and secrets are never returned."
    ),
    paths(
        list_endpoints, create_endpoint, get_endpoint, update_endpoint, delete_endpoint, enable, disable,
        send_test, list_deliveries, redeliver, endpoint_health, list_dead, purge_all, replay_many, get_dead,
        purge_one, replay_one, stats, openapi, crate::page::healthz, crate::page::login, crate::page::logout,
        crate::silences::list_silences, crate::silences::create_silence, crate::silences::get_silence,
        crate::silences::expire_silence, crate::silences::silence_audit
    ),
    components(schemas(ErrorBody, AttemptResult, AttemptRecord)),
    modifiers(&Bearer),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        doc.components.get_or_insert_with(Default::default).add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// A bearer token or a live session; wrong bearer tokens are rate limited per address like the
/// sign-in form, in their own count (failed sign-ins never limit the bearer-token API).
async fn require_auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let bearer = state.token.is_some() && req.headers().contains_key(axum::http::header::AUTHORIZATION);
    let (ip, now) = (auth::client_ip(req.extensions()), std::time::Instant::now());
    if bearer && let Err(e) = auth::rate_limited(&state, auth::Door::Bearer, ip, now) {
        return e.into_response();
    }
    match auth::authorized(&state, req.headers()).await {
        Ok(true) => next.run(req).await,
        Ok(false) => {
            if bearer {
                state.login_limiter.failed(auth::Door::Bearer, ip, now);
            }
            ApiError::Unauthorized.into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn parse_id(id: &str) -> Result<EndpointId, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound(format!("endpoint {id}")))
}

fn invalid(field: &str, reason: impl std::fmt::Display) -> ApiError {
    ApiError::Validation { field: field.into(), reason: reason.to_string() }
}

/// The endpoints, targets masked.
#[utoipa::path(get, path = "/api/endpoints", tag = "endpoints",
    responses((status = 200, body = Vec<EndpointView>), (status = 401, body = ErrorBody)))]
async fn list_endpoints(State(s): State<AppState>) -> Result<Json<Vec<EndpointView>>, ApiError> {
    Ok(Json(s.store.list().await?.iter().map(|e| e.view()).collect()))
}

/// Fields of an endpoint as `GET` shows it that a `POST` or `PUT` may carry back: accepted and
/// ignored (a `PUT`'s `id` must name the endpoint it replaces), so a fetched endpoint can be
/// sent back as it is. Any other unknown field is refused, naming it.
const SHOWN_ONLY: [&str; 12] = [
    "id",
    "has_secret",
    "previous_secret_until",
    "public_key",
    "previous_public_key",
    "previous_public_key_until",
    "created_at",
    "updated_at",
    "warnings",
    "breaker",
    "suppressed",
    "waiting",
];

/// An endpoint draft from a request body (the shape `GET` shows), and the `id` it carried.
fn draft_of(mut value: serde_json::Value) -> Result<(EndpointDraft, Option<serde_json::Value>), ApiError> {
    let id = value.as_object_mut().and_then(|map| {
        let id = map.remove("id");
        for field in SHOWN_ONLY {
            map.remove(field);
        }
        id
    });
    Ok((body::from_value(value)?, id))
}

/// A target as `GET` shows it (`****` for its tokens) is not a URL to deliver to.
fn refuse_masked(draft: &EndpointDraft) -> Result<(), ApiError> {
    if draft.target.contains("****") {
        return Err(invalid(
            "target",
            "is masked (****), as the API shows it: send the real URL, or the endpoint's own masked target unchanged with PUT to keep it",
        ));
    }
    Ok(())
}

/// Creates an endpoint. `events` takes event kinds or `["all"]`, like the CLI's `--events`.
/// Unknown fields are refused (422, naming the field); the read-only fields of a fetched
/// endpoint (`id`, `has_secret`, `created_at`, …) are ignored.
#[utoipa::path(post, path = "/api/endpoints", tag = "endpoints", request_body = EndpointDraft,
    responses((status = 201, body = EndpointView), (status = 422, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 409, description = "endpoints are sealed with another key", body = ErrorBody)))]
async fn create_endpoint(
    State(s): State<AppState>,
    JsonBody(value): JsonBody<serde_json::Value>,
) -> Result<(StatusCode, Json<EndpointView>), ApiError> {
    let (draft, _) = draft_of(value)?;
    refuse_masked(&draft)?;
    let ep = draft.validate(s.policy)?;
    s.deliverer.check_target(&ep).map_err(|r| invalid("target", r))?;
    s.store.put(&ep).await?;
    Ok((StatusCode::CREATED, Json(ep.view())))
}

/// One endpoint with its circuit breaker.
#[derive(Debug, Serialize, ToSchema)]
struct EndpointDetail {
    #[serde(flatten)]
    endpoint: EndpointView,
    /// State, consecutive failures, last error, parked deliveries.
    breaker: BreakerStatus,
    /// Finding events this endpoint's dedupe window kept from it.
    suppressed: u64,
    /// Deliveries waiting in its lane: for their turn under its rate limit, for a slot under the
    /// in-flight cap, or behind an open breaker (the breaker's `parked`).
    waiting: u64,
}

/// One endpoint, with its circuit breaker (`breaker`: state, consecutive failures, last error,
/// parked deliveries) and `suppressed` (finding events its dedupe window kept from it).
#[utoipa::path(get, path = "/api/endpoints/{id}", tag = "endpoints", params(("id" = String, Path)),
    responses((status = 200, body = EndpointDetail), (status = 404, body = ErrorBody)))]
async fn get_endpoint(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<EndpointDetail>, ApiError> {
    let id = parse_id(&id)?;
    let ep = s.store.get(&id).await?.ok_or_else(|| ApiError::NotFound(format!("endpoint {id}")))?;
    let queue = s.queue_of(&id);
    let breaker = queue.breaker_status(&id).await?;
    let suppressed = queue.suppressed_count(&id).await?;
    Ok(Json(EndpointDetail { endpoint: ep.view(), waiting: breaker.parked, breaker, suppressed }))
}

/// Replaces an endpoint. A body without `secret` keeps the current one (the page never sees
/// it); `"secret": ""` removes it. The endpoint as `GET` shows it is accepted as it is: its
/// masked `target`, unchanged, keeps the current URL; its read-only fields are ignored (an `id`
/// must be this endpoint's). Unknown fields are refused (422, naming the field).
#[utoipa::path(put, path = "/api/endpoints/{id}", tag = "endpoints", params(("id" = String, Path)),
    request_body = EndpointDraft,
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 413, body = ErrorBody)))]
async fn update_endpoint(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(value): JsonBody<serde_json::Value>,
) -> Result<Json<EndpointView>, ApiError> {
    let id = parse_id(&id)?;
    let (mut draft, sent_id) = draft_of(value)?;
    if let Some(sent) = sent_id
        && sent.as_str() != Some(id.as_str())
    {
        return Err(invalid("id", format!("is {sent}, not the endpoint {id} this PUT replaces")));
    }
    let current = s.store.get(&id).await?.ok_or_else(|| ApiError::NotFound(format!("endpoint {id}")))?;
    if draft.secret.is_none() {
        draft.secret = current.secret.clone();
    }
    if draft.target.trim() == current.target.masked() {
        draft.target = match &current.target {
            entraguard_core::endpoint::Target::Url(u) => u.to_string(),
            entraguard_core::endpoint::Target::Email(e) => e.clone(),
        };
    }
    refuse_masked(&draft)?;
    let mut ep = draft.validate_as(current.id.clone(), current.created_at, s.policy)?;
    s.deliverer.check_target(&ep).map_err(|r| invalid("target", r))?;
    ep.keep_from(&current, &draft);
    s.store.put(&ep).await?;
    if ep.target != current.target {
        // A new URL: the breaker's verdict was about the old one. Closed, its waiting work goes
        // to the new URL at once.
        entraguard_core::operator::reset_now(&s.store, s.queue_of(&id), &ep).await?;
    }
    Ok(Json(ep.view()))
}

/// Deletes an endpoint; its pending deliveries go to the dead-letter queue when they run.
#[utoipa::path(delete, path = "/api/endpoints/{id}", tag = "endpoints", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_endpoint(
    State(s): State<AppState>,
    Path(id): Path<String>,
    _: NoFields,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if s.store.delete(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("endpoint {id}")))
    }
}

/// Enables an endpoint; its circuit breaker is reset and its parked deliveries resume.
#[utoipa::path(post, path = "/api/endpoints/{id}/enable", tag = "endpoints", params(("id" = String, Path)),
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody)))]
async fn enable(
    State(s): State<AppState>,
    Path(id): Path<String>,
    _: NoFields,
) -> Result<Json<EndpointView>, ApiError> {
    let id = parse_id(&id)?;
    let (ep, _) = entraguard_core::operator::enable_endpoint(&s.store, s.queue_of(&id), &id).await?;
    Ok(Json(ep.view()))
}

/// Disables an endpoint: no new fan-out to it.
#[utoipa::path(post, path = "/api/endpoints/{id}/disable", tag = "endpoints", params(("id" = String, Path)),
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody)))]
async fn disable(
    State(s): State<AppState>,
    Path(id): Path<String>,
    _: NoFields,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(s.store.set_enabled(&parse_id(&id)?, false).await?.view()))
}

/// Send test: one attempt of a test event through the production path, no retry. Recorded in
/// the endpoint's Recent Deliveries as a `test`.
///
/// Sent here, synchronously, not through the queue; only the record goes to Redis, in the
/// endpoint's queue shard (where its Recent Deliveries are).
#[utoipa::path(post, path = "/api/endpoints/{id}/test", tag = "endpoints", params(("id" = String, Path)),
    responses((status = 200, body = TestReport), (status = 404, body = ErrorBody)))]
async fn send_test(
    State(s): State<AppState>,
    Path(id): Path<String>,
    _: NoFields,
) -> Result<Json<TestReport>, ApiError> {
    let id = parse_id(&id)?;
    let ep = s.store.get(&id).await?.ok_or_else(|| ApiError::NotFound(format!("endpoint {id}")))?;
    let at = Timestamp::now();
    let report = s.deliverer.send_test(&ep).await;
    tracing::info!(endpoint_id = %id, delivered = report.delivered, status = ?report.status, "send test");
    let mut job = DeliveryJob::new(entraguard_delivery::delivery::test_event(), id.clone());
    if let Ok(d) = report.delivery_id.parse::<DeliveryId>() {
        job.delivery_id = d;
    }
    let attempt = AttemptRecord {
        attempt: 1,
        at,
        duration_ms: report.latency_ms,
        status: report.status,
        error: report.error.clone(),
    };
    let record = DeliveryRecord::new(&job, &attempt, AttemptResult::Test, [], None);
    if let Err(e) = s.queue_of(&id).record_history(&id, &[record]).await {
        tracing::warn!(endpoint_id = %id, error = %e, "send test not recorded in recent deliveries");
    }
    Ok(Json(report))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// How many of the newest attempts (default 50, at most 200).
    limit: Option<usize>,
}

/// Recent Deliveries: the endpoint's attempts, newest first (the last 200 within 7 days).
#[utoipa::path(get, path = "/api/endpoints/{id}/deliveries", tag = "deliveries",
    params(("id" = String, Path), HistoryQuery),
    responses((status = 200, body = Vec<DeliveryRecord>), (status = 404, body = ErrorBody)))]
async fn list_deliveries(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Vec<DeliveryRecord>>, ApiError> {
    let id = parse_id(&id)?;
    s.store.get(&id).await?.ok_or_else(|| ApiError::NotFound(format!("endpoint {id}")))?;
    let limit = q.limit.unwrap_or(50).min(HISTORY_MAX_ENTRIES);
    Ok(Json(s.queue_of(&id).recent_deliveries(&id, limit).await?))
}

/// What Redeliver did.
#[derive(Debug, Serialize, ToSchema)]
struct Redelivered {
    /// The delivery id, the same as the recorded one (receivers drop duplicates by it).
    delivery_id: String,
    /// Always true: the delivery was enqueued (it runs like a replay, behind fresh alerts).
    enqueued: bool,
}

/// Redeliver: enqueues the recorded delivery again with the same delivery id and a fresh
/// attempt count, like a dead-letter replay; the worker sends it with the endpoint's current URL
/// and secret.
#[utoipa::path(post, path = "/api/endpoints/{id}/deliveries/{delivery_id}/redeliver", tag = "deliveries",
    params(("id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 202, body = Redelivered), (status = 404, body = ErrorBody),
              (status = 422, description = "the event was too large to keep (over 16 KiB), or it was a Send test", body = ErrorBody)))]
async fn redeliver(
    State(s): State<AppState>,
    Path((id, delivery)): Path<(String, String)>,
    _: NoFields,
) -> Result<(StatusCode, Json<Redelivered>), ApiError> {
    let id = parse_id(&id)?;
    s.store.get(&id).await?.ok_or_else(|| ApiError::NotFound(format!("endpoint {id}")))?;
    let not_found = || ApiError::NotFound(format!("delivery {delivery} of endpoint {id}"));
    let delivery_id: DeliveryId = delivery.parse().map_err(|_| not_found())?;
    match s.queue_of(&id).redeliver_recorded(&id, &delivery_id).await? {
        Redelivery::Enqueued => {}
        Redelivery::NotFound => return Err(not_found()),
        Redelivery::NotRedeliverable => {
            return Err(invalid(
                "delivery_id",
                "this delivery cannot be redelivered: it was a Send test, or its event was larger than 16 KiB and not kept",
            ));
        }
    }
    tracing::info!(endpoint_id = %id, delivery_id = %delivery_id, "redeliver");
    Ok((StatusCode::ACCEPTED, Json(Redelivered { delivery_id: delivery_id.to_string(), enqueued: true })))
}

/// An endpoint's health, as the page shows it.
#[derive(Debug, Serialize, ToSchema)]
struct EndpointHealthView {
    /// Success rate, attempts and last error over the recorded history (Send tests not counted).
    #[serde(flatten)]
    history: HistoryHealth,
    /// Deliveries to it that workers are running now.
    in_flight: u64,
    /// Deliveries waiting in its lane (for their turn under its rate limit, its in-flight cap
    /// reached, or its breaker open).
    waiting: u64,
    breaker: BreakerStatus,
}

/// Endpoint health: success rate over 24 h (from Recent Deliveries), last error, in-flight and
/// waiting counts, the circuit breaker's state and parked count.
#[utoipa::path(get, path = "/api/endpoints/{id}/health", tag = "deliveries", params(("id" = String, Path)),
    responses((status = 200, body = EndpointHealthView), (status = 404, body = ErrorBody)))]
async fn endpoint_health(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<EndpointHealthView>, ApiError> {
    let id = parse_id(&id)?;
    s.store.get(&id).await?.ok_or_else(|| ApiError::NotFound(format!("endpoint {id}")))?;
    let queue = s.queue_of(&id);
    let records = queue.recent_deliveries(&id, HISTORY_MAX_ENTRIES).await?;
    let breaker = queue.breaker_status(&id).await?;
    let mut history = HistoryHealth::from_records(&records, Timestamp::now());
    if history.last_error.is_none() {
        history.last_error = breaker.last_error.clone();
    }
    Ok(Json(EndpointHealthView {
        history,
        in_flight: queue.in_flight(&id).await?,
        waiting: breaker.parked,
        breaker,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeadQuery {
    /// How many of the newest to skip.
    #[serde(default)]
    offset: usize,
    /// How many to return (default 50, at most 1000).
    limit: Option<usize>,
    /// Only this endpoint's (`ep_…`).
    endpoint_id: Option<String>,
    /// Only those that failed at or after this time (RFC 3339).
    since: Option<String>,
}

/// The shared reading of `endpoint_id` and `since` (list and bulk replay).
fn filter(endpoint_id: Option<String>, since: Option<String>) -> Result<ReplayFilter, ApiError> {
    Ok(ReplayFilter {
        endpoint_id: endpoint_id
            .map(|e| e.parse::<EndpointId>())
            .transpose()
            .map_err(|e| invalid("endpoint_id", e))?,
        since: since.map(|t| t.parse::<Timestamp>()).transpose().map_err(|e| invalid("since", e))?,
    })
}

/// Dead letters, newest first, as summaries without the job; `endpoint_id` and `since` narrow
/// the list like `dlq list --endpoint --since`.
#[utoipa::path(get, path = "/api/dlq", tag = "dead letters", params(DeadQuery),
    responses((status = 200, body = Vec<DeadLetterSummary>), (status = 422, body = ErrorBody)))]
async fn list_dead(
    State(s): State<AppState>,
    Query(q): Query<DeadQuery>,
) -> Result<Json<Vec<DeadLetterSummary>>, ApiError> {
    let f = filter(q.endpoint_id, q.since)?;
    let limit = q.limit.unwrap_or(50).min(1000);
    Ok(Json(s.shards.dead_letter_summaries_matching(&f, q.offset, limit).await?))
}

/// One dead letter in full: every attempt, the reason, the job (its first 64 KiB).
#[utoipa::path(get, path = "/api/dlq/{id}", tag = "dead letters", params(("id" = String, Path)),
    responses((status = 200, body = DeadLetter), (status = 404, body = ErrorBody)))]
async fn get_dead(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<DeadLetter>, ApiError> {
    s.shards
        .dead_letter_by_id(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("dead letter {id}")))
}

/// What replaying one did.
#[derive(Debug, Serialize, ToSchema)]
struct Replayed {
    replayed: usize,
}

/// Replays one dead letter: the same delivery id, a fresh attempt count.
#[utoipa::path(post, path = "/api/dlq/{id}/replay", tag = "dead letters", params(("id" = String, Path)),
    responses((status = 200, body = Replayed), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn replay_one(
    State(s): State<AppState>,
    Path(id): Path<String>,
    _: NoFields,
) -> Result<Json<Replayed>, ApiError> {
    match s.shards.replay(&id).await? {
        ReplayOutcome::Replayed => Ok(Json(Replayed { replayed: 1 })),
        ReplayOutcome::NotFound => Err(ApiError::NotFound(format!("dead letter {id}"))),
        ReplayOutcome::NotReplayable => Err(invalid(
            "id",
            "this dead letter holds a job that could not be decoded; it cannot be replayed",
        )),
    }
}

/// The body of `POST /api/dlq/replay`: every dead letter, or those of one endpoint, or those that
/// failed since a time.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    endpoint_id: Option<String>,
    since: Option<String>,
}

/// Replays every dead letter, or those `endpoint_id` and `since` pick, each once per call.
#[utoipa::path(post, path = "/api/dlq/replay", tag = "dead letters", request_body = ReplayBody,
    responses((status = 200, body = ReplaySummary), (status = 422, body = ErrorBody)))]
async fn replay_many(State(s): State<AppState>, req: Request) -> Result<Json<ReplaySummary>, ApiError> {
    let bytes = body::read(req, &()).await?;
    let body: ReplayBody =
        if bytes.iter().all(u8::is_ascii_whitespace) { ReplayBody::default() } else { body::parse(&bytes)? };
    Ok(Json(s.shards.replay_matching(&filter(body.endpoint_id, body.since)?).await?))
}

/// Deletes one dead letter.
#[utoipa::path(delete, path = "/api/dlq/{id}", tag = "dead letters", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn purge_one(
    State(s): State<AppState>,
    Path(id): Path<String>,
    _: NoFields,
) -> Result<StatusCode, ApiError> {
    if s.shards.purge(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("dead letter {id}")))
    }
}

/// What purging all did.
#[derive(Debug, Serialize, ToSchema)]
struct Purged {
    purged: usize,
}

/// Deletes every dead letter.
#[utoipa::path(delete, path = "/api/dlq", tag = "dead letters", responses((status = 200, body = Purged)))]
async fn purge_all(State(s): State<AppState>, _: NoFields) -> Result<Json<Purged>, ApiError> {
    Ok(Json(Purged { purged: s.shards.purge_all().await? }))
}

/// Queue depths, named as in `entraguard-notify stats` (table and JSON): every served queue
/// shard's summed, and with more than one shard each shard's (`shards`).
#[utoipa::path(get, path = "/api/stats", tag = "stats", responses((status = 200, body = StatsReport)))]
async fn stats(State(s): State<AppState>) -> Result<Json<StatsReport>, ApiError> {
    Ok(Json(s.shards.report().await?))
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "stats",
    responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi() -> Response {
    match ApiDoc::openapi().to_pretty_json() {
        Ok(doc) => ([(axum::http::header::CONTENT_TYPE, "application/json")], doc).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every routed (method, path) is documented, and every documented operation is routed.
    #[test]
    fn every_route_is_in_the_openapi_document_and_back() {
        let all: Vec<Route> = routes_table().into_iter().chain(crate::page::routes_table()).collect();
        let key = |r: &Route| (r.method.as_str().to_lowercase(), r.path.to_owned());
        let routed: BTreeSet<(String, String)> = all.iter().filter(|r| r.documented).map(key).collect();
        // The only routes left out: the page and its scripts, which are not API.
        let pages: BTreeSet<(String, String)> = all.iter().filter(|r| !r.documented).map(key).collect();
        let expected_pages: BTreeSet<(String, String)> = [
            "/",
            "/login",
            "/login.js",
            "/settings/webhooks",
            "/settings/webhooks.js",
            "/settings/silences.js",
        ]
        .iter()
        .map(|p| ("get".to_owned(), (*p).to_owned()))
        .collect();
        assert_eq!(pages, expected_pages, "only the page and its scripts go undocumented");
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("document serializes");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    documented.insert((method.clone(), path.clone()));
                }
            }
        }
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(undocumented.is_empty(), "routes missing from the OpenAPI document: {undocumented:?}");
        assert!(unrouted.is_empty(), "documented operations with no route: {unrouted:?}");
        assert_eq!(routed.len() + pages.len(), all.len(), "a route is registered twice");
    }

    #[test]
    fn the_document_names_its_schemas_and_security() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("document serializes");
        assert_eq!(doc["openapi"], "3.1.0");
        for schema in
            ["EndpointView", "EndpointDraft", "DeliveryRecord", "DeadLetter", "QueueStats", "ErrorBody"]
        {
            assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema} missing");
        }
        assert!(doc["components"]["schemas"]["QueueStats"]["properties"]["scheduled"].is_object());
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    }

    /// The alert-fatigue rules are documented where the API takes and returns them: `rules` on
    /// the endpoint (view and draft), `suppressed` on one endpoint, `digests` in the stats, and
    /// `finding.digest` among the event kinds.
    #[test]
    fn the_document_describes_rules_suppressed_and_digests() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("document serializes");
        let schemas = &doc["components"]["schemas"];
        for schema in ["Rules", "RulesDraft", "QuietHoursDraft", "QuietHours", "DigestRule", "Severity"] {
            assert!(schemas[schema].is_object(), "schema {schema} missing");
        }
        let props = |schema: &str| schemas[schema]["properties"].clone();
        assert!(props("EndpointView")["rules"].is_object(), "{}", schemas["EndpointView"]);
        assert!(props("EndpointDraft")["rules"].is_object(), "{}", schemas["EndpointDraft"]);
        assert!(props("QueueStats")["digests"].is_object(), "{}", schemas["QueueStats"]);
        for field in ["tenants", "min_severity", "dedupe_window", "digest", "quiet_hours"] {
            assert!(props("Rules")[field].is_object(), "Rules.{field}: {}", schemas["Rules"]);
            assert!(props("RulesDraft")[field].is_object(), "RulesDraft.{field}: {}", schemas["RulesDraft"]);
        }
        // Issue 23: one digest shape both ways, `{"severities","max_wait"}`.
        for schema in ["DigestRule", "DigestDraft"] {
            for field in ["severities", "max_wait"] {
                assert!(props(schema)[field].is_object(), "{schema}.{field}: {}", schemas[schema]);
            }
        }
        assert!(props("RulesDraft")["digest_max_wait"].is_null(), "{}", schemas["RulesDraft"]);
        assert!(schemas["RulesDraft"].to_string().contains("#/components/schemas/DigestDraft"));
        let detail = schemas["EndpointDetail"].to_string();
        assert!(detail.contains("\"suppressed\"") && detail.contains("\"breaker\""), "{detail}");
        assert!(schemas["EventKind"].to_string().contains("finding.digest"), "{}", schemas["EventKind"]);
    }

    /// `GET /api/stats` is documented with the totals (`QueueStats`, `forwarding` among them) and
    /// the per-shard rows.
    #[test]
    fn the_document_describes_stats_per_queue_shard() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("document serializes");
        let schemas = &doc["components"]["schemas"];
        assert!(schemas["QueueStats"]["properties"]["forwarding"].is_object(), "{}", schemas["QueueStats"]);
        for field in [
            "shard",
            "draining",
            "ready",
            "retrying",
            "parked",
            "processing",
            "scheduled",
            "dead",
            "forwarding",
        ] {
            assert!(
                schemas["ShardStats"]["properties"][field].is_object(),
                "ShardStats.{field}: {}",
                schemas["ShardStats"]
            );
        }
        let view = schemas["StatsReport"].to_string();
        assert!(view.contains("#/components/schemas/QueueStats") && view.contains("\"shards\""), "{view}");
        let ok = &doc["paths"]["/api/stats"]["get"]["responses"]["200"];
        assert!(ok.to_string().contains("#/components/schemas/StatsReport"), "{ok}");
    }
}
