//! The HTTP transport: one reqwest client per worker (keep-alive across deliveries), rustls,
//! redirects never followed, every connection going through the SSRF guard's resolver, and
//! response bodies read only up to a cap.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::guard::{Refused, TargetGuard};

/// Most response-body bytes read (receivers' error texts are short; a receiver streaming
/// gigabytes must not exhaust the worker).
pub const MAX_RESPONSE_BODY: usize = 16 * 1024;

/// What the receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    /// The start of the body, lossily decoded.
    pub body: String,
    pub retry_after: Option<Duration>,
    pub elapsed: Duration,
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The target resolves only to addresses the guard refuses. No retry can fix this.
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

impl HttpError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, HttpError::Refused(_) | HttpError::Client(_))
    }
}

/// Resolves host names and keeps only the addresses the guard allows.
struct GuardedResolver {
    guard: TargetGuard,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = guard.filter(addrs)?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Sends JSON payloads.
#[derive(Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    guard: TargetGuard,
    timeout: Duration,
}

impl HttpTransport {
    /// The address policy deliveries are held to.
    pub fn guard(&self) -> &TargetGuard {
        &self.guard
    }

    pub fn new(guard: TargetGuard, timeout: Duration) -> Result<Self, HttpError> {
        entraguard_core::redis_conn::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(entraguard_core::USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .no_proxy()
            .dns_resolver(std::sync::Arc::new(GuardedResolver { guard: guard.clone() }))
            .build()
            .map_err(|e| HttpError::Client(error_chain(&e)))?;
        Ok(Self { client, guard, timeout })
    }

    /// POSTs `body` with `headers` and reads the answer.
    pub async fn post(
        &self,
        url: &url::Url,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<HttpAnswer, HttpError> {
        // Literal IP hosts never reach the resolver: check them here.
        if let Some(host) = url.host() {
            let literal: Option<IpAddr> = match host {
                url::Host::Ipv4(a) => Some(IpAddr::V4(a)),
                url::Host::Ipv6(a) => Some(IpAddr::V6(a)),
                url::Host::Domain(_) => None,
            };
            if let Some(ip) = literal {
                self.guard.check(ip)?;
            }
        }
        let started = Instant::now();
        let send = async {
            let mut resp = self.client.post(url.clone()).headers(headers).body(body).send().await?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| parse_retry_after(v, resp.headers().get(reqwest::header::DATE)));
            let mut buf = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                let room = MAX_RESPONSE_BODY.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if buf.len() >= MAX_RESPONSE_BODY {
                    break;
                }
            }
            Ok::<_, reqwest::Error>((status, buf, retry_after))
        };
        // reqwest's own timeout covers the request; this one also bounds reading the body.
        match tokio::time::timeout(self.timeout, send).await {
            Err(_) => Err(HttpError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(classify_error(&e, self.timeout)),
            Ok(Ok((status, buf, retry_after))) => Ok(HttpAnswer {
                status,
                body: String::from_utf8_lossy(&buf).into_owned(),
                retry_after,
                elapsed: started.elapsed(),
            }),
        }
    }
}

fn classify_error(e: &reqwest::Error, timeout: Duration) -> HttpError {
    if e.is_timeout() {
        return HttpError::Timeout(timeout);
    }
    // A refusal by the guard surfaces as a connect error whose source chain holds `Refused`.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refused>() {
            return HttpError::Refused(r.clone());
        }
        source = s.source();
    }
    if e.is_connect() { HttpError::Connect(error_chain(e)) } else { HttpError::Request(error_chain(e)) }
}

/// `error: cause: cause`, the way people read errors, without the URL (it can carry tokens).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        let text = match s.downcast_ref::<reqwest::Error>() {
            Some(re) => {
                let without_url = re.without_url_ref();
                without_url.to_string()
            }
            None => s.to_string(),
        };
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

trait WithoutUrlRef {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrlRef for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let text = self.to_string();
        match self.url() {
            Some(u) => text.replace(&format!(" ({u})"), "").replace(u.as_str(), "<url>"),
            None => text,
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(v: &HeaderValue, date: Option<&HeaderValue>) -> Option<Duration> {
    let s = v.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let http_date =
        |v: &str| time::OffsetDateTime::parse(v.trim(), &time::format_description::well_known::Rfc2822).ok();
    let when = http_date(s)?;
    // An HTTP date is the receiver's clock: read it against the same answer's `Date` header, so
    // neither this worker's clock nor Redis's is involved. Only without `Date` is it read
    // against this worker's clock.
    let now =
        date.and_then(|d| d.to_str().ok()).and_then(http_date).unwrap_or_else(time::OffsetDateTime::now_utc);
    Some(Duration::try_from(when - now).unwrap_or(Duration::ZERO))
}

/// Builds a header map from trusted (name, value) pairs; values that are not valid header
/// text are dropped.
pub fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_str(value) {
            map.insert(HeaderName::from_static(name), v);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let h = HeaderValue::from_static;
        assert_eq!(parse_retry_after(&h("30"), None), Some(Duration::from_secs(30)));
        // Without a Date header: this worker's clock (2015 is long past).
        assert_eq!(parse_retry_after(&h("Wed, 21 Oct 2015 07:28:00 GMT"), None), Some(Duration::ZERO));
        // With one: the receiver's own clock, whatever ours says (a receiver whose clock is
        // eleven years behind still means "in 90 seconds").
        assert_eq!(
            parse_retry_after(&h("Wed, 21 Oct 2015 07:28:00 GMT"), Some(&h("Wed, 21 Oct 2015 07:26:30 GMT"))),
            Some(Duration::from_secs(90))
        );
        assert_eq!(parse_retry_after(&h("soon"), None), None);
    }
}
