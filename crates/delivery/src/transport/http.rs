//! The HTTP transport: one pooled hyper client per worker (keep-alive across deliveries, HTTP/1.1
//! and HTTP/2 by ALPN), rustls with the platform's roots, redirects never followed (this client
//! does not follow any), every connection going through the SSRF guard's resolver, and response
//! bodies read only up to a cap.

use std::error::Error as StdError;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, DATE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};

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

type BoxError = Box<dyn StdError + Send + Sync>;

/// Resolves host names and keeps only the addresses the guard allows (the connector's resolver,
/// so the address checked is the address connected to).
#[derive(Clone)]
struct GuardedResolver {
    guard: TargetGuard,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let guard = self.guard.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            // The refusal itself is the error, so `classify_error` finds it in the chain.
            let allowed = guard.filter(addrs).map_err(|r| Box::new(r) as BoxError)?;
            Ok(allowed.into_iter())
        })
    }
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>;

/// Sends JSON payloads.
#[derive(Clone)]
pub struct HttpTransport {
    client: Client<Connector, Full<Bytes>>,
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
        use rustls_platform_verifier::BuilderVerifierExt;
        let tls = rustls::ClientConfig::builder()
            .with_platform_verifier()
            .map_err(|e| HttpError::Client(format!("TLS verifier: {e}")))?
            .with_no_client_auth();
        let mut tcp = HttpConnector::new_with_resolver(GuardedResolver { guard: guard.clone() });
        // https URLs go to the TLS layer above this one.
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(timeout.min(Duration::from_secs(5))));
        tcp.set_keepalive(Some(Duration::from_secs(15)));
        tcp.set_keepalive_interval(Some(Duration::from_secs(15)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Self { client, guard, timeout })
    }

    /// POSTs `body` with `headers` (plus `user-agent` and `accept`; `host` and
    /// `content-length` are the client's) and reads the answer.
    pub async fn post(
        &self,
        url: &url::Url,
        mut headers: HeaderMap,
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
        // A URL that passed endpoint validation is a valid URI; the error names no URL (it can
        // carry tokens).
        let uri: Uri = url
            .as_str()
            .parse()
            .map_err(|e| HttpError::Request(format!("the target URL is not a valid request URI: {e}")))?;
        headers.insert(USER_AGENT, HeaderValue::from_static(entraguard_core::USER_AGENT));
        headers.entry(ACCEPT).or_insert(HeaderValue::from_static("*/*"));
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let started = Instant::now();
        let send = async {
            let response = self.client.request(request).await.map_err(|e| classify_error(&e))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| parse_retry_after(v, response.headers().get(DATE)));
            let mut body = response.into_body();
            let mut buf = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| HttpError::Request(error_chain(&e)))?;
                let Ok(chunk) = frame.into_data() else { continue };
                let room = MAX_RESPONSE_BODY.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if buf.len() >= MAX_RESPONSE_BODY {
                    break;
                }
            }
            Ok::<_, HttpError>((status, buf, retry_after))
        };
        // One deadline over connecting, sending and reading the body.
        match tokio::time::timeout(self.timeout, send).await {
            Err(_) => Err(HttpError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(e),
            Ok(Ok((status, buf, retry_after))) => Ok(HttpAnswer {
                status,
                body: String::from_utf8_lossy(&buf).into_owned(),
                retry_after,
                elapsed: started.elapsed(),
            }),
        }
    }
}

fn classify_error(e: &hyper_util::client::legacy::Error) -> HttpError {
    // A refusal by the guard surfaces as a connect error whose source chain holds `Refused`.
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refused>() {
            return HttpError::Refused(r.clone());
        }
        source = s.source();
    }
    if e.is_connect() { HttpError::Connect(error_chain(e)) } else { HttpError::Request(error_chain(e)) }
}

/// `error: cause: cause`, the way people read errors. hyper's errors name no URL, so none of a
/// target's tokens can appear.
fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
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
