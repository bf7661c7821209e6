//! Request bodies, read one way on every route: JSON into a type that refuses unknown fields,
//! an error naming the field by its path (`rules.digest.max_wait`, `rules.bogus_rule`) as
//! `422 {"error":"validation","field","reason"}`, and a body over the limit as
//! `413 {"error":"too_large","reason"}` (never axum's plain-text rejections).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// The largest request body read (axum's default limit): 2 MiB.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// A JSON request body of type `T` (which should `deny_unknown_fields`).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read(req, state).await?;
        parse(&bytes).map(JsonBody)
    }
}

/// The body's bytes, or the error every route gives for one it cannot read. A body whose
/// `Content-Length` is over the limit is refused before any of it is read, so a client that
/// waits for `100 Continue` (curl does, for large bodies) gets the `413` without sending it.
pub async fn read<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::TooLarge { limit: MAX_BODY_BYTES });
    }
    Bytes::from_request(req, state).await.map_err(rejected)
}

/// A request body's bytes, read as [`read`] does.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        read(req, state).await.map(RawBody)
    }
}

/// Turns axum's rejection of a body into our error shape.
pub fn rejected(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge { limit: MAX_BODY_BYTES }
    } else {
        ApiError::Validation { field: "body".into(), reason: e.body_text() }
    }
}

/// Reads `bytes` as a `T`; an error names the field by its path (`body` for the whole).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(path_error)?;
    de.end().map_err(|e| ApiError::Validation { field: "body".into(), reason: e.to_string() })?;
    Ok(value)
}

/// Reads a JSON value already parsed as a `T`, like [`parse`].
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(path_error)
}

fn path_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let reason = e.into_inner().to_string();
    ApiError::Validation { field: field_of(&path, &reason), reason }
}

/// The field an error is about: its path, with an unknown field's own name appended (serde
/// reports it at the object that holds it).
fn field_of(path: &str, reason: &str) -> String {
    // `.` is the whole body; `?` a place serde could not name (a syntax error).
    let path = if path == "." || path == "?" { "" } else { path };
    let unknown = reason
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
        .map(|(name, _)| name)
        .filter(|name| !path.ends_with(name));
    match (path.is_empty(), unknown) {
        (true, None) => "body".to_owned(),
        (true, Some(name)) => name.to_owned(),
        (false, Some(name)) => format!("{path}.{name}"),
        (false, None) => path.to_owned(),
    }
}

/// The body of a request that has nothing to say: nothing, or `{}`. Anything else is refused,
/// naming the field, so a misplaced option is never ignored without a word.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// [`Empty`] as a request body (an empty body reads as `{}`).
pub struct NoFields;

impl<S: Send + Sync> FromRequest<S> for NoFields {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read(req, state).await?;
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            parse::<Empty>(&bytes)?;
        }
        Ok(NoFields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        #[serde(default)]
        rules: Inner,
        #[serde(default)]
        n: u32,
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(default)]
        digest: Option<u32>,
    }

    fn field(json: &str) -> String {
        match parse::<Outer>(json.as_bytes()) {
            Err(ApiError::Validation { field, .. }) => field,
            other => panic!("{json}: {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field_by_its_path() {
        assert_eq!(field(r#"{"bogus": 1}"#), "bogus");
        assert_eq!(field(r#"{"rules": {"bogus_rule": true}}"#), "rules.bogus_rule");
        assert_eq!(field(r#"{"rules": {"digest": "x"}}"#), "rules.digest");
        assert_eq!(field(r#"{"n": -1}"#), "n");
        assert_eq!(field("{not json"), "body");
        assert_eq!(field(r#"{} trailing"#), "body");
        assert!(parse::<Empty>(b"{}").is_ok());
        assert!(
            matches!(parse::<Empty>(br#"{"force":true}"#), Err(ApiError::Validation { field, .. }) if field == "force")
        );
    }
}
