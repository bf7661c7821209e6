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

/// Masks a URL for display: the one rule the CLI, the admin API and the page share (through
/// `Target::masked`). Scheme, host and port stay; the first path segment stays only when it is a
/// plain word (ASCII letters only, at most 16, like `services` or `hook`); every other path
/// segment and every query value becomes `****`; userinfo and fragment go. Tokens live in paths
/// (Slack, Teams, SOAR webhooks) and in query strings (`?sig=`, `?token=`), so nothing else is
/// shown.
pub fn mask_url(raw: &str) -> String {
    let Ok(url) = url::Url::parse(raw) else {
        return "****".to_owned();
    };
    let host = url.host_str().unwrap_or("");
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let mut out = format!("{}://{host}{port}", url.scheme());
    if let Some(segments) = url.path_segments() {
        for (i, seg) in segments.enumerate() {
            out.push('/');
            if seg.is_empty() {
                continue;
            }
            if i == 0 && seg.len() <= 16 && seg.bytes().all(|b| b.is_ascii_alphabetic()) {
                out.push_str(seg);
            } else {
                out.push_str("****");
            }
        }
    }
    if let Some(query) = url.query() {
        let pairs: Vec<String> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, _)) => format!("{k}=****"),
                None => "****".to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
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
        assert_eq!(m, "https://hooks.slack.com/services/****/****/****");
    }

    #[test]
    fn path_tokens_and_query_values_are_masked_host_and_port_kept() {
        assert_eq!(mask_url("https://soar.example.com/SOARPATHTOKEN1"), "https://soar.example.com/****");
        assert_eq!(
            mask_url("https://soar.example.com:8443/hook?token=abc&x=1#frag"),
            "https://soar.example.com:8443/hook?token=****&x=****"
        );
        assert_eq!(mask_url("https://u:pw@x.example/averyveryverylongword/x"), "https://x.example/****/****");
        assert_eq!(mask_url("https://x.example/"), "https://x.example/");
        assert_eq!(mask_url("not a url"), "****");
    }

    #[test]
    fn query_tokens_are_masked() {
        let m =
            mask_url("https://prod.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=SECRET");
        assert!(!m.contains("SECRET"), "{m}");
    }
}
