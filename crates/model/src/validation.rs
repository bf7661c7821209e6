//! The error every check of an endpoint's input returns (its fields, its rules): which field, and
//! why, for API and CLI users.

/// Why an endpoint was refused; `field` names the input field for API and CLI users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("invalid endpoint: field `{field}` {reason}")]
    Field { field: &'static str, reason: String },
}

impl EndpointError {
    pub fn field(&self) -> &'static str {
        match self {
            EndpointError::Field { field, .. } => field,
        }
    }
}
