//! The silences' part of the API: create, list, show (with what each silenced), expire early, and
//! the audit list. The same store and validation as the CLI (`entraguard_core::silences`); the
//! page's Silences section calls these.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use entraguard_core::silences::{AuditEntry, SilenceDraft, SilenceStore, SilenceStoreError, SilenceView};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::body::JsonBody;
use crate::error::ErrorBody;
use crate::routes::Route;
use crate::{ApiError, AppState};

/// The silences' routes (part of the API's table, documented like the rest).
pub fn routes_table() -> Vec<Route> {
    vec![
        Route {
            method: Method::GET,
            path: "/api/silences",
            handler: || get(list_silences),
            documented: true,
        },
        Route {
            method: Method::POST,
            path: "/api/silences",
            handler: || post(create_silence),
            documented: true,
        },
        Route {
            method: Method::GET,
            path: "/api/silences/audit",
            handler: || get(silence_audit),
            documented: true,
        },
        Route {
            method: Method::GET,
            path: "/api/silences/{id}",
            handler: || get(get_silence),
            documented: true,
        },
        Route {
            method: Method::POST,
            path: "/api/silences/{id}/expire",
            handler: || post(expire_silence),
            documented: true,
        },
    ]
}

impl From<SilenceStoreError> for ApiError {
    fn from(e: SilenceStoreError) -> Self {
        match e {
            SilenceStoreError::Invalid(entraguard_core::silences::SilenceError::Field { field, reason }) => {
                ApiError::Validation { field: field.to_owned(), reason }
            }
            SilenceStoreError::NotFound(id) => ApiError::NotFound(format!("silence {id}")),
            e @ SilenceStoreError::AlreadyOver { .. } => {
                ApiError::Conflict { code: "already_over", reason: e.to_string() }
            }
            other => ApiError::internal(other),
        }
    }
}

fn store(s: &AppState) -> SilenceStore {
    SilenceStore::new(&s.shards)
}

/// Every silence (active, pending, and expired ones for 7 days after their end), newest first,
/// each with what it silenced: `silenced` (deliveries not made) and `recent_events`.
#[utoipa::path(get, path = "/api/silences", tag = "silences",
    responses((status = 200, body = Vec<SilenceView>), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_silences(State(s): State<AppState>) -> Result<Json<Vec<SilenceView>>, ApiError> {
    Ok(Json(store(&s).views().await?))
}

/// Creates a silence. `matchers` are expressions (`tenant=B`, `severity<=medium`, …; every one
/// must match); none at all is refused unless `match_all` is true. Give `ends_at` or
/// `duration`; `starts_at` defaults to now (Redis's clock). `author` and `comment` are required
/// and kept in the audit list. Unknown fields are refused (422, naming the field).
#[utoipa::path(post, path = "/api/silences", tag = "silences", request_body = SilenceDraft,
    responses((status = 201, body = SilenceView), (status = 422, body = ErrorBody)))]
pub(crate) async fn create_silence(
    State(s): State<AppState>,
    JsonBody(draft): JsonBody<SilenceDraft>,
) -> Result<(StatusCode, Json<SilenceView>), ApiError> {
    let store = store(&s);
    let silence = store.create(&draft).await?;
    tracing::info!(silence_id = %silence.id, author = %silence.created_by, "silence created");
    Ok((StatusCode::CREATED, Json(store.shown(&silence).await?)))
}

/// One silence, with what it silenced.
#[utoipa::path(get, path = "/api/silences/{id}", tag = "silences", params(("id" = String, Path)),
    responses((status = 200, body = SilenceView), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_silence(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SilenceView>, ApiError> {
    store(&s).view(&id).await?.map(Json).ok_or_else(|| ApiError::NotFound(format!("silence {id}")))
}

/// The body of an expiry: who ends the silence (kept in the audit list).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpireBody {
    by: String,
}

/// Ends a silence now (Redis's clock). 409 when it is already over.
#[utoipa::path(post, path = "/api/silences/{id}/expire", tag = "silences", params(("id" = String, Path)),
    request_body = ExpireBody,
    responses((status = 200, body = SilenceView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub(crate) async fn expire_silence(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ExpireBody>,
) -> Result<Json<SilenceView>, ApiError> {
    let store = store(&s);
    let silence = store.expire(&id, &body.by).await?;
    tracing::info!(silence_id = %silence.id, by = %body.by, "silence expired");
    Ok(Json(store.shown(&silence).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// How many entries, newest first (default 50, at most 1000).
    limit: Option<usize>,
}

/// The audit list: every create and expiry of a silence (who, when, what), newest first.
#[utoipa::path(get, path = "/api/silences/audit", tag = "silences", params(AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>)))]
pub(crate) async fn silence_audit(
    State(s): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    Ok(Json(store(&s).audit(q.limit.unwrap_or(50)).await?))
}
