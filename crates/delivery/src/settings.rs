//! How a delivery is made, as settings: the attempt's time limit, the private networks targets
//! may resolve to, the SMTP relay. The worker and the admin server (Send test) flatten the same
//! groups into their command lines, so both deliver the same way.

use std::time::Duration;

use entraguard_core::settings::parse_duration;
use ipnet::IpNet;

/// How a delivery is made: its time limit, the private networks targets may resolve to, the
/// SMTP relay. The worker and the admin server (Send test) take the same.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Delivery")]
pub struct DeliverySettings {
    /// Time limit of one delivery attempt (connect, send, read the answer).
    #[arg(long, env = "NOTIFY_DELIVERY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub delivery_timeout: Duration,

    /// Private, loopback or link-local networks that targets may resolve to, as CIDRs
    /// (e.g. 127.0.0.1/32,10.20.0.0/16). Cloud metadata addresses stay refused.
    #[arg(long, env = "NOTIFY_ALLOW_PRIVATE_TARGETS", value_delimiter = ',', value_parser = parse_cidr)]
    pub allow_private_targets: Vec<IpNet>,

    #[command(flatten)]
    pub smtp: SmtpSettings,
}

impl DeliverySettings {
    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.delivery_timeout < Duration::from_millis(100)
            || self.delivery_timeout > Duration::from_secs(600)
        {
            return Err(SettingsError::DeliveryTimeout(self.delivery_timeout));
        }
        self.smtp.validate()
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required); port 587 by default.
    Starttls,
    /// TLS from the first byte (SMTPS); port 465 by default.
    Tls,
    /// No TLS: only for a local mail catcher. Port 25 by default.
    None,
}

/// SMTP relay settings for the email channel (Brevo, SendGrid, SES, any RFC 5321 relay).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Email (SMTP)")]
pub struct SmtpSettings {
    /// SMTP relay host; email endpoints need it.
    #[arg(long = "smtp-host", env = "SMTP_HOST")]
    pub host: Option<String>,

    /// SMTP port [default: 587 for starttls, 465 for tls, 25 for none].
    #[arg(long = "smtp-port", env = "SMTP_PORT")]
    pub port: Option<u16>,

    /// SMTP user name (AUTH PLAIN/LOGIN).
    #[arg(long = "smtp-user", env = "SMTP_USER")]
    pub user: Option<String>,

    /// SMTP password.
    #[arg(long = "smtp-password", env = "SMTP_PASSWORD", hide_env_values = true)]
    pub password: Option<entraguard_core::secret::Secret>,

    /// Sender address, e.g. "EntraGuard <alerts@contoso.com>".
    #[arg(long = "smtp-from", env = "SMTP_FROM")]
    pub from: Option<String>,

    /// starttls, tls or none.
    #[arg(long = "smtp-tls", env = "SMTP_TLS", value_enum, default_value_t = SmtpTls::Starttls)]
    pub tls: SmtpTls,

    /// PEM file of a CA to trust for the relay's certificate (a private relay), on top of the
    /// public roots.
    #[arg(long = "smtp-ca-cert", env = "SMTP_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
}

impl SmtpSettings {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        })
    }

    /// Checks the SMTP settings against each other.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.host.is_some() {
            if self.from.is_none() {
                return Err(SettingsError::SmtpIncomplete("SMTP_FROM"));
            }
            match (&self.user, &self.password) {
                (Some(_), None) => return Err(SettingsError::SmtpCredentials("SMTP_PASSWORD")),
                (None, Some(_)) => return Err(SettingsError::SmtpCredentials("SMTP_USER")),
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether the email channel is configured at all.
    pub fn is_configured(&self) -> bool {
        self.host.is_some()
    }
}

/// A delivery setting that is valid alone but not with the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("NOTIFY_DELIVERY_TIMEOUT ({0:?}) must be between 100ms and 10m")]
    DeliveryTimeout(Duration),
    #[error("SMTP_HOST is set but {0} is missing")]
    SmtpIncomplete(&'static str),
    #[error("SMTP_USER and SMTP_PASSWORD go together: {0} is missing")]
    SmtpCredentials(&'static str),
    #[error("{setting}: {reason}")]
    Smtp { setting: &'static str, reason: String },
}

pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR (expected e.g. 127.0.0.1/32 or 10.0.0.0/8)"))
}
