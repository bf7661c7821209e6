//! The SMTP transport (lettre, tokio, rustls): one pooled connection set per worker, built and
//! checked at start-up so a wrong setting stops the worker with a clear message instead of
//! failing at send time. Replies are classified with lettre's own `is_transient` /
//! `is_permanent`: 4xx and connection errors retry, 5xx (535 bad credentials among them, so an
//! account is never locked by a retry loop) and TLS mismatches go to the dead-letter queue.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, header};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncTransport, Message, Tokio1Executor};

use crate::channel::email::EmailMessage;
use crate::outcome::Outcome;
use crate::settings::{SettingsError, SmtpSettings, SmtpTls};

/// Sends email through the configured relay.
#[derive(Clone)]
pub struct SmtpTransport {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpTransport {
    /// Builds the transport from the settings; `None` when no relay is configured.
    pub fn from_settings(s: &SmtpSettings, timeout: Duration) -> Result<Option<Self>, SettingsError> {
        let Some(host) = &s.host else {
            return Ok(None);
        };
        entraguard_core::redis_conn::ensure_crypto_provider();
        let from_raw = s.from.as_deref().ok_or(SettingsError::SmtpIncomplete("SMTP_FROM"))?;
        let from: Mailbox = from_raw.parse().map_err(|e| SettingsError::Smtp {
            setting: "SMTP_FROM",
            reason: format!("{from_raw:?} is not an address: {e}"),
        })?;
        let tls_params = || -> Result<TlsParameters, SettingsError> {
            let mut b = TlsParameters::builder(host.clone());
            if let Some(path) = &s.ca_cert {
                let pem = std::fs::read(path).map_err(|e| SettingsError::Smtp {
                    setting: "SMTP_CA_CERT",
                    reason: format!("cannot read {}: {e}", path.display()),
                })?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| SettingsError::Smtp { setting: "SMTP_CA_CERT", reason: e.to_string() })?;
                b = b.add_root_certificate(cert);
            }
            b.build_rustls().map_err(|e| SettingsError::Smtp { setting: "SMTP_TLS", reason: e.to_string() })
        };
        let tls = match s.tls {
            SmtpTls::Starttls => Tls::Required(tls_params()?),
            SmtpTls::Tls => Tls::Wrapper(tls_params()?),
            SmtpTls::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
            .port(s.port())
            .tls(tls)
            .timeout(Some(timeout));
        if let (Some(user), Some(password)) = (&s.user, &s.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(Some(Self { transport: builder.build(), from }))
    }

    /// Sends one message to `to`; classifies the relay's answer.
    pub async fn send(&self, to: &str, message: &EmailMessage, message_id: &str) -> Outcome {
        let to: Mailbox = match to.parse() {
            Ok(m) => m,
            Err(e) => return Outcome::permanent(None, format!("invalid recipient address: {e}")),
        };
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject.clone())
            .message_id(Some(message_id.to_owned()))
            .date_now()
            .header(header::UserAgent::from(entraguard_core::USER_AGENT.to_owned()))
            .multipart(MultiPart::alternative_plain_html(message.text.clone(), message.html.clone()));
        let email = match email {
            Ok(m) => m,
            Err(e) => return Outcome::permanent(None, format!("cannot build the message: {e}")),
        };
        match self.transport.send(email).await {
            Ok(resp) => Outcome::Delivered { status: code_of(&resp.code().to_string()) },
            Err(e) => classify(&e),
        }
    }
}

fn code_of(code: &str) -> Option<u16> {
    code.parse().ok()
}

/// Reads a lettre error: the reply text is in its source chain.
fn classify(e: &lettre::transport::smtp::Error) -> Outcome {
    let status = e.status().and_then(|c| code_of(&c.to_string()));
    let text = error_chain(e);
    if e.is_permanent() {
        Outcome::permanent(status, format!("smtp: {text}"))
    } else if e.is_transient() || e.is_timeout() {
        Outcome::retryable(status, format!("smtp: {text}"))
    } else if e.is_tls() {
        Outcome::permanent(
            None,
            format!("smtp TLS failed (check SMTP_TLS, SMTP_PORT and SMTP_CA_CERT): {text}"),
        )
    } else if e.is_client() {
        Outcome::permanent(None, format!("smtp client error (check the SMTP settings): {text}"))
    } else {
        // Connection refused, reset, DNS: the relay may come back.
        Outcome::retryable(None, format!("smtp: {text}"))
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let t = err.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = err.source();
    }
    parts.join(": ")
}
