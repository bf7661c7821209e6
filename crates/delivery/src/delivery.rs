//! One delivery attempt: render the event for the endpoint's channel, send it, and classify the
//! answer into an [`Outcome`]. Retries and dead letters are decided by the worker.

use std::time::Instant;

use entraguard_core::endpoint::{Endpoint, Target};
use entraguard_core::job::DeliveryJob;
use entraguard_core::timestamp::Timestamp;

use crate::channel::{self, HttpStyle, Payload};
use crate::outcome::Outcome;
use crate::signature::{coderaft_signature, standard_signature};
use crate::transport::http::{HttpError, HttpTransport, headers};
use crate::transport::smtp::SmtpTransport;

/// Why a deliverer could not be built from the settings.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
}

/// Sends deliveries; shared by every task of a worker (and by Send test).
#[derive(Clone)]
pub struct Deliverer {
    http: HttpTransport,
    smtp: Option<SmtpTransport>,
    allow_http: bool,
}

impl Deliverer {
    pub fn new(http: HttpTransport, smtp: Option<SmtpTransport>, allow_http: bool) -> Self {
        Self { http, smtp, allow_http }
    }

    pub fn has_smtp(&self) -> bool {
        self.smtp.is_some()
    }

    /// Whether `endpoint`'s target is one delivery would refuse whatever it answers: an IP
    /// address the SSRF guard refuses (endpoint creation refuses it, naming the rule, instead of
    /// the first send).
    pub fn check_target(&self, endpoint: &Endpoint) -> Result<(), crate::transport::guard::Refused> {
        match &endpoint.target {
            Target::Url(url) => self.http.guard().check_url(url),
            _ => Ok(()),
        }
    }

    /// Makes one attempt of `job` to `endpoint`.
    pub async fn attempt(&self, job: &DeliveryJob, endpoint: &Endpoint) -> Attempted {
        self.attempt_traced(job, endpoint, None).await
    }

    /// [`Deliverer::attempt`], sending `traceparent` (W3C, the HTTP request's span) with an
    /// HTTP request when given, so a receiver that traces joins the trace. The signatures do not
    /// cover it (they cover the id, the timestamp and the body).
    pub async fn attempt_traced(
        &self,
        job: &DeliveryJob,
        endpoint: &Endpoint,
        traceparent: Option<&str>,
    ) -> Attempted {
        let at = Timestamp::now();
        let started = Instant::now();
        let mut request_headers = Vec::new();
        let mut response_body = None;
        let outcome = match (channel::render(&job.event, endpoint), &endpoint.target) {
            (Payload::Json { .. }, Target::Url(url)) if url.scheme() != "https" && !self.allow_http => {
                Outcome::permanent(
                    None,
                    "plain http targets are refused (set NOTIFY_ALLOW_HTTP=true for local tests)",
                )
            }
            (Payload::Json { body, style }, Target::Url(url)) => {
                request_headers = http_headers(job, endpoint, style, &body, at);
                if let Some(tp) = traceparent {
                    request_headers.push(("traceparent", tp.to_owned()));
                }
                match self.http.post(url, headers(&request_headers), body).await {
                    Ok(answer) => {
                        let outcome = style.classify(answer.status, &answer.body, answer.retry_after);
                        response_body = Some(answer.body);
                        outcome
                    }
                    Err(e @ HttpError::Refused(_)) | Err(e @ HttpError::Client(_)) => {
                        Outcome::permanent(None, e.to_string())
                    }
                    Err(e) => Outcome::retryable(None, e.to_string()),
                }
            }
            (Payload::Email(message), Target::Email(to)) => match &self.smtp {
                // Stable across retries, so a mailbox that saw an earlier attempt can drop the copy.
                Some(smtp) => {
                    smtp.send(to, &message, &format!("<{}@entraguard-notify>", job.delivery_id)).await
                }
                None => Outcome::permanent(
                    None,
                    "email delivery needs SMTP settings (SMTP_HOST, SMTP_FROM); none are configured",
                ),
            },
            _ => Outcome::permanent(
                None,
                format!("endpoint {} has a target that does not fit its channel", endpoint.id),
            ),
        };
        Attempted { outcome, at, elapsed: started.elapsed(), request_headers, response_body }
    }
}

/// One attempt, as made.
#[derive(Debug)]
pub struct Attempted {
    pub outcome: Outcome,
    /// When it started.
    pub at: Timestamp,
    pub elapsed: std::time::Duration,
    /// The request headers sent (HTTP channels; signature values are masked when recorded).
    pub request_headers: Vec<(&'static str, String)>,
    /// The start of the answer's body (HTTP channels).
    pub response_body: Option<String>,
}

/// The headers of an HTTP delivery. The delivery id stays the same across retries and replays
/// so receivers can drop duplicates; the signatures cover the exact body bytes. Public so the
/// benchmark's bare-client floor sends exactly what [`Deliverer::attempt`] sends.
pub fn http_headers(
    job: &DeliveryJob,
    endpoint: &Endpoint,
    style: HttpStyle,
    body: &[u8],
    at: Timestamp,
) -> Vec<(&'static str, String)> {
    let ts = at.unix_seconds();
    let mut pairs: Vec<(&'static str, String)> = vec![
        ("content-type", "application/json".to_owned()),
        ("x-coderaft-event", job.event.kind().to_string()),
        ("x-coderaft-delivery", job.delivery_id.to_string()),
        ("x-coderaft-timestamp", ts.to_string()),
        ("x-coderaft-attempt", job.next_attempt().to_string()),
    ];
    let secrets = endpoint.signing_secrets(at);
    let keys = endpoint.signing_keys(at);
    if style == HttpStyle::Webhook && !(secrets.is_empty() && keys.is_empty()) {
        let id = job.delivery_id.as_str();
        if let Some(current) = secrets.first() {
            pairs.push(("x-coderaft-signature", coderaft_signature(current.expose().as_bytes(), body)));
        }
        pairs.push(("webhook-id", id.to_owned()));
        pairs.push(("webhook-timestamp", ts.to_string()));
        pairs.push(("webhook-signature", standard_signature(&secrets, &keys, id, ts, body)));
    }
    pairs
}

/// The event Send test delivers: a `finding.new` every channel renders, plainly marked as a test.
pub fn test_event() -> entraguard_core::event::Event {
    let json = br#"{
        "event": "finding.new",
        "tenant_id": "00000000-0000-0000-0000-000000000000",
        "tenant_name": "EntraGuard test",
        "finding": {
            "id": "TEST-001",
            "title": "Test notification from EntraGuard: this endpoint works",
            "severity": "info",
            "category": "test",
            "affected": ["nothing: this is a test"],
            "remediation_url": "https://entraguard.example.com/settings/webhooks"
        }
    }"#;
    // A constant that the event tests parse; it cannot fail.
    entraguard_core::event::Event::from_json(json)
        .unwrap_or_else(|e| unreachable!("test event is valid: {e}"))
}

/// What Send test reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestReport {
    pub delivered: bool,
    /// HTTP status or SMTP reply code.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// The receiver's error text, for a failure.
    pub error: Option<String>,
    pub delivery_id: String,
}

impl Deliverer {
    /// Send test: one attempt of the test event to `endpoint`, through the production path
    /// (rendering, signing, SSRF and HTTPS rules, timeout), no retry.
    pub async fn send_test(&self, endpoint: &Endpoint) -> TestReport {
        let job = DeliveryJob::new(test_event(), endpoint.id.clone());
        let Attempted { outcome, elapsed, .. } = self.attempt(&job, endpoint).await;
        TestReport {
            delivered: matches!(outcome, Outcome::Delivered { .. }),
            status: outcome.status(),
            latency_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            error: outcome.error().map(str::to_owned),
            delivery_id: job.delivery_id.to_string(),
        }
    }

    /// The deliverer for these delivery settings: the worker's, and the admin server's for
    /// Send test, so both take the same path.
    pub fn from_settings(
        settings: &crate::settings::DeliverySettings,
        allow_http: bool,
    ) -> Result<Self, SetupError> {
        let http = HttpTransport::new(
            crate::transport::guard::TargetGuard::new(settings.allow_private_targets.clone()),
            settings.delivery_timeout,
        )?;
        let smtp =
            crate::transport::smtp::SmtpTransport::from_settings(&settings.smtp, settings.delivery_timeout)?;
        Ok(Self::new(http, smtp, allow_http))
    }
}
