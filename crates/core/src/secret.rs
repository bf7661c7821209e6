//! A value that must never reach a log line or an API response unmasked.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret string (an HMAC key, a password). `Debug` and `Display` print `****`; the value is
/// only reachable through [`Secret::expose`], so every use of it is greppable.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Masks a URL for display: scheme, host and the first characters of each path segment stay,
/// the rest (where Slack and Teams keep their tokens) becomes `****`; query and userinfo go.
pub fn mask_url(raw: &str) -> String {
    let Ok(url) = url::Url::parse(raw) else {
        return "****".to_owned();
    };
    let host = url.host_str().unwrap_or("");
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let segments: Vec<&str> = url.path_segments().map(|s| s.collect()).unwrap_or_default();
    let mut out = format!("{}://{host}{port}", url.scheme());
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        out.push('/');
        if seg.is_empty() {
            continue;
        }
        if i == last && segments.len() > 1 || seg.len() > 24 {
            out.push_str("****");
        } else if seg.len() > 3 && i > 0 {
            out.push_str(&seg[..seg.char_indices().nth(2).map_or(seg.len(), |(j, _)| j)]);
            out.push('…');
        } else {
            out.push_str(seg);
        }
    }
    if url.query().is_some() {
        out.push_str("?****");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(****) ****");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn slack_url_is_masked_like_the_spec_shows() {
        let m = mask_url("https://hooks.slack.com/services/T0ABCDEF/B0GHIJKL/abcdefSECRETtoken");
        assert_eq!(m, "https://hooks.slack.com/services/T0…/B0…/****");
        assert!(!m.contains("SECRET"));
    }

    #[test]
    fn query_tokens_are_masked() {
        let m =
            mask_url("https://prod.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=SECRET");
        assert!(!m.contains("SECRET"), "{m}");
    }
}
