//! What one delivery attempt came to, as the retry logic reads it. Each channel classifies its
//! receiver's answers into this; the retry decision never re-parses status codes.

use std::time::Duration;

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver took it.
    Delivered {
        /// HTTP status or SMTP reply code.
        status: Option<u16>,
    },
    /// Failed; a later attempt may succeed (5xx, 429, timeout, connection error, SMTP 4xx).
    Retryable {
        status: Option<u16>,
        error: String,
        /// The receiver asked for this wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Failed in a way no retry can fix (a revoked Slack URL, SMTP 5xx, a deleted endpoint).
    Permanent { status: Option<u16>, error: String },
}

impl Outcome {
    pub fn retryable(status: Option<u16>, error: impl Into<String>) -> Self {
        Outcome::Retryable { status, error: error.into(), retry_after: None }
    }

    pub fn permanent(status: Option<u16>, error: impl Into<String>) -> Self {
        Outcome::Permanent { status, error: error.into() }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Delivered { status }
            | Outcome::Retryable { status, .. }
            | Outcome::Permanent { status, .. } => *status,
        }
    }

    /// The error text, for a failed attempt.
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Delivered { .. } => None,
            Outcome::Retryable { error, .. } | Outcome::Permanent { error, .. } => Some(error),
        }
    }
}
