//! The JSON API under `/api`, described by the OpenAPI document at `/api/openapi.json` (behind
//! the token like the rest). State changes take `Content-Type: application/json` (see `guard`).

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use entraguard_core::endpoint::{EndpointDraft, EndpointView};
use entraguard_core::ids::EndpointId;
use entraguard_core::queue::{DeadLetter, DeadLetterSummary, ReplayFilter, ReplayOutcome, ReplaySummary};
use entraguard_core::timestamp::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, AppState, auth};

pub fn routes(state: AppState) -> Router<AppState> {
    let api = Router::new()
        .route("/api/endpoints", get(list_endpoints).post(create_endpoint))
        .route("/api/endpoints/{id}", get(get_endpoint).put(update_endpoint).delete(delete_endpoint))
        .route("/api/endpoints/{id}/enable", post(enable))
        .route("/api/endpoints/{id}/disable", post(disable))
        .route("/api/endpoints/{id}/test", post(send_test))
        .route("/api/dlq", get(list_dead).delete(purge_all))
        .route("/api/dlq/replay", post(replay_many))
        .route("/api/dlq/{id}", get(get_dead).delete(purge_one))
        .route("/api/dlq/{id}/replay", post(replay_one))
        .route("/api/stats", get(stats))
        .route("/api/openapi.json", get(openapi))
        .layer(middleware::from_fn_with_state(state, require_auth));
    Router::new().merge(api)
}

/// A bearer token or a live session; wrong bearer tokens count as failed sign-ins, so guessing
/// through the API is rate limited like the sign-in form.
async fn require_auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let bearer = state.token.is_some() && req.headers().contains_key(axum::http::header::AUTHORIZATION);
    let (ip, now) = (auth::client_ip(req.extensions()), std::time::Instant::now());
    if bearer && let Err(e) = auth::rate_limited(&state, ip, now) {
        return e.into_response();
    }
    match auth::authorized(&state, req.headers()).await {
        Ok(true) => next.run(req).await,
        Ok(false) => {
            if bearer {
                state.login_limiter.failed(ip, now);
            }
            ApiError::Unauthorized.into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn parse_id(id: &str) -> Result<EndpointId, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound(format!("endpoint {id}")))
}

async fn list_endpoints(State(s): State<AppState>) -> Result<Json<Vec<EndpointView>>, ApiError> {
    Ok(Json(s.store.list().await?.iter().map(|e| e.view()).collect()))
}

async fn create_endpoint(
    State(s): State<AppState>,
    body: Result<Json<EndpointDraft>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<EndpointView>), ApiError> {
    let Json(draft) =
        body.map_err(|e| ApiError::Validation { field: "body".into(), reason: e.body_text() })?;
    let ep = draft.validate(s.policy)?;
    s.store.put(&ep).await?;
    Ok((StatusCode::CREATED, Json(ep.view())))
}

/// One endpoint, with its circuit breaker (`breaker`: state, consecutive failures, last error,
/// parked deliveries) and `suppressed` (finding events its dedupe window kept from it).
async fn get_endpoint(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let ep = s.store.get(&id).await?.ok_or_else(|| ApiError::NotFound(format!("endpoint {id}")))?;
    let breaker = s.queue.breaker_status(&id).await?;
    let mut v = serde_json::to_value(ep.view()).map_err(ApiError::internal)?;
    v["breaker"] = serde_json::to_value(breaker).map_err(ApiError::internal)?;
    v["suppressed"] = s.queue.suppressed_count(&id).await?.into();
    Ok(Json(v))
}

/// Replaces an endpoint. A body without `secret` keeps the current one (the page never sees
/// it); `"secret": ""` removes it.
async fn update_endpoint(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<EndpointDraft>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<EndpointView>, ApiError> {
    let id = parse_id(&id)?;
    let Json(mut draft) =
        body.map_err(|e| ApiError::Validation { field: "body".into(), reason: e.body_text() })?;
    let current = s.store.get(&id).await?.ok_or_else(|| ApiError::NotFound(format!("endpoint {id}")))?;
    if draft.secret.is_none() {
        draft.secret = current.secret.clone();
    }
    let mut ep = draft.validate_as(current.id.clone(), current.created_at, s.policy)?;
    if ep.secret == current.secret {
        ep.previous_secret = current.previous_secret.clone();
        ep.previous_secret_until = current.previous_secret_until;
    }
    s.store.put(&ep).await?;
    Ok(Json(ep.view()))
}

async fn delete_endpoint(State(s): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if s.store.delete(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("endpoint {id}")))
    }
}

/// Enables an endpoint; its circuit breaker is reset and its parked deliveries released.
async fn enable(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<EndpointView>, ApiError> {
    let (ep, _) = entraguard_core::breaker::enable_endpoint(&s.store, &s.queue, &parse_id(&id)?).await?;
    Ok(Json(ep.view()))
}

async fn disable(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(s.store.set_enabled(&parse_id(&id)?, false).await?.view()))
}

async fn send_test(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let ep = s.store.get(&id).await?.ok_or_else(|| ApiError::NotFound(format!("endpoint {id}")))?;
    let report = s.deliverer.send_test(&ep).await;
    tracing::info!(endpoint_id = %id, delivered = report.delivered, status = ?report.status, "send test");
    Ok(Json(serde_json::to_value(report).map_err(ApiError::internal)?))
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    50
}

/// Summaries only: the job stays in Redis (`GET /api/dlq/{id}` shows its start).
async fn list_dead(
    State(s): State<AppState>,
    Query(p): Query<Page>,
) -> Result<Json<Vec<DeadLetterSummary>>, ApiError> {
    Ok(Json(s.queue.dead_letter_summaries(p.offset, p.limit.min(1000)).await?))
}

async fn get_dead(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<DeadLetter>, ApiError> {
    s.queue
        .dead_letter_by_id(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("dead letter {id}")))
}

async fn replay_one(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    match s.queue.replay(&id).await? {
        ReplayOutcome::Replayed => Ok(Json(json!({ "replayed": 1 }))),
        ReplayOutcome::NotFound => Err(ApiError::NotFound(format!("dead letter {id}"))),
        ReplayOutcome::NotReplayable => Err(ApiError::Validation {
            field: "id".into(),
            reason: "this dead letter holds a job that could not be decoded; it cannot be replayed".into(),
        }),
    }
}

/// The body of `POST /api/dlq/replay`: every dead letter, or those of one endpoint, or those that
/// failed since a time.
#[derive(Debug, Default, Deserialize)]
struct ReplayBody {
    endpoint_id: Option<String>,
    since: Option<String>,
}

async fn replay_many(State(s): State<AppState>, body: Bytes) -> Result<Json<ReplaySummary>, ApiError> {
    let body: ReplayBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Validation { field: "body".into(), reason: e.to_string() })?
    };
    let invalid = |field: &str, reason: String| ApiError::Validation { field: field.into(), reason };
    let filter = ReplayFilter {
        endpoint_id: body
            .endpoint_id
            .map(|e| e.parse::<EndpointId>())
            .transpose()
            .map_err(|e| invalid("endpoint_id", e.to_string()))?,
        since: body
            .since
            .map(|t| t.parse::<Timestamp>())
            .transpose()
            .map_err(|e| invalid("since", e.to_string()))?,
    };
    Ok(Json(s.queue.replay_matching(&filter).await?))
}

async fn purge_one(State(s): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if s.queue.purge(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("dead letter {id}")))
    }
}

async fn purge_all(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "purged": s.queue.purge_all().await? })))
}

async fn stats(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(serde_json::to_value(s.queue.stats().await?).map_err(ApiError::internal)?))
}

async fn openapi() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], include_str!("openapi.json"))
}
