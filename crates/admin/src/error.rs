//! One error type for the API, turned into a response in one place: `422` with the field and the
//! reason for bad input, `404` for unknown ids, `401` without a valid token, `403` for a
//! cross-site request, `415` for a state change without a JSON body, `413` for a body over 2 MiB,
//! `429` after too many failed
//! sign-ins (with `Retry-After`), `409` when the
//! deployment's state forbids the change (endpoints sealed with another key), `500` otherwise
//! (logged; the response never carries a secret).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The body of every error answer.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// `validation`, `not_found`, `unauthorized`, `forbidden`, `unsupported_media_type`,
    /// `too_large`, `too_many_requests`, `sealing_key_mismatch`, `internal`.
    pub error: String,
    /// The input field at fault (`validation` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid {field}: {reason}")]
    Validation { field: String, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("missing or invalid token")]
    Unauthorized,
    /// A wrong token at sign-in.
    #[error("wrong token")]
    WrongToken,
    /// A cross-site request, or one that could be (see `guard`).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A state change without a JSON body.
    #[error("state changes take Content-Type: application/json")]
    NotJson,
    /// A request body over the limit (bytes).
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// Too many failed sign-ins; try again after this many seconds.
    #[error("too many failed sign-ins")]
    TooManySignIns { retry_after_secs: u64 },
    /// The request conflicts with the deployment's state (`code` names which), e.g. the
    /// endpoints are sealed with another key than this server's.
    #[error("{reason}")]
    Conflict { code: &'static str, reason: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<entraguard_core::endpoint::EndpointError> for ApiError {
    fn from(e: entraguard_core::endpoint::EndpointError) -> Self {
        let entraguard_core::endpoint::EndpointError::Field { field, reason } = e;
        ApiError::Validation { field: field.to_owned(), reason }
    }
}

impl From<entraguard_core::store::StoreError> for ApiError {
    fn from(e: entraguard_core::store::StoreError) -> Self {
        match e {
            entraguard_core::store::StoreError::NotFound(id) => ApiError::NotFound(format!("endpoint {id}")),
            e @ entraguard_core::store::StoreError::SealingKeyMismatch { .. } => {
                ApiError::Conflict { code: "sealing_key_mismatch", reason: e.to_string() }
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<entraguard_core::queue::QueueError> for ApiError {
    fn from(e: entraguard_core::queue::QueueError) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::Validation { field, reason } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "error": "validation", "field": field, "reason": reason }),
            ),
            ApiError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                json!({ "error": "not_found", "reason": format!("{what} not found") }),
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                json!({ "error": "unauthorized", "reason": "missing or invalid token" }),
            ),
            ApiError::WrongToken => (
                StatusCode::UNAUTHORIZED,
                json!({ "error": "unauthorized", "reason": "That token is not right." }),
            ),
            ApiError::Forbidden(reason) => {
                (StatusCode::FORBIDDEN, json!({ "error": "forbidden", "reason": reason }))
            }
            ApiError::NotJson => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({ "error": "unsupported_media_type",
                        "reason": "state changes take a JSON body: send Content-Type: application/json (and {} when there is nothing to say)" }),
            ),
            ApiError::TooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "error": "too_large",
                        "reason": format!("the request body is larger than {} MiB", limit / (1024 * 1024)) }),
            ),
            ApiError::TooManySignIns { retry_after_secs } => {
                let body = json!({ "error": "too_many_requests",
                    "reason": format!("too many failed sign-ins; try again in {retry_after_secs} s") });
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(axum::http::header::RETRY_AFTER, retry_after_secs.to_string())],
                    Json(body),
                )
                    .into_response();
            }
            ApiError::Conflict { code, reason } => {
                tracing::error!(error = %reason, "admin request refused");
                (StatusCode::CONFLICT, json!({ "error": code, "reason": reason }))
            }
            ApiError::Internal(msg) => {
                tracing::error!(error = %msg, "admin request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": "internal", "reason": msg }))
            }
        };
        (status, Json(body)).into_response()
    }
}

impl From<entraguard_core::operator::BreakerError> for ApiError {
    fn from(e: entraguard_core::operator::BreakerError) -> Self {
        match e {
            entraguard_core::operator::BreakerError::Store(e) => e.into(),
            entraguard_core::operator::BreakerError::Queue(e) => e.into(),
        }
    }
}
