//! Connecting to Redis: `redis://` or `rediss://` (TLS via rustls), with timeouts that suit a
//! queue (the redis crate's 500 ms default response timeout fails healthy commands under load)
//! and reconnection with back-off that never gives up.

use std::sync::Once;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: RedisUrl,
    pub connect_timeout: Duration,
    /// `None` waits for ever.
    pub response_timeout: Option<Duration>,
    /// PEM of the CA that signed the server's certificate, for `rediss://` to a Redis whose
    /// certificate the system roots do not cover (a private CA, a test). `None`: system roots.
    pub ca_cert: Option<Vec<u8>>,
}

impl RedisConfig {
    pub fn new(url: RedisUrl) -> Self {
        Self {
            url,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Some(Duration::from_secs(10)),
            ca_cert: None,
        }
    }

    /// Trusts the CA in this PEM file (`REDIS_CA_CERT`).
    pub fn with_ca_file(mut self, path: Option<&std::path::Path>) -> std::io::Result<Self> {
        if let Some(p) = path {
            self.ca_cert = Some(std::fs::read(p)?);
        }
        Ok(self)
    }
}

/// A Redis URL whose password is never printed.
#[derive(Clone)]
pub struct RedisUrl(String);

#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid Redis URL {masked}: {reason}")]
pub struct RedisUrlError {
    masked: String,
    reason: String,
}

impl RedisUrl {
    pub fn parse(raw: &str) -> Result<Self, RedisUrlError> {
        let raw = raw.trim();
        let masked = crate::secret::mask_url(raw);
        let url = url::Url::parse(raw)
            .map_err(|e| RedisUrlError { masked: masked.clone(), reason: e.to_string() })?;
        match url.scheme() {
            "redis" | "rediss" | "unix" | "redis+unix" => Ok(Self(raw.to_owned())),
            other => Err(RedisUrlError {
                masked,
                reason: format!("scheme {other:?}; expected redis:// or rediss://"),
            }),
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keep scheme, host and port; hide credentials.
        match url::Url::parse(&self.0) {
            Ok(u) => write!(
                f,
                "{}://{}{}{}",
                u.scheme(),
                if u.password().is_some() || !u.username().is_empty() { "****@" } else { "" },
                u.host_str().unwrap_or(""),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            ),
            Err(_) => f.write_str("****"),
        }
    }
}

/// Installs rustls' ring crypto provider once per process (rustls 0.23 panics at the first TLS
/// handshake without one).
pub fn ensure_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Opens a self-reconnecting multiplexed connection. The first connection must succeed within
/// the connect timeout; afterwards it reconnects on its own, with exponential back-off.
pub async fn connect(
    config: &RedisConfig,
    response_timeout: Option<Duration>,
) -> Result<ConnectionManager, redis::RedisError> {
    ensure_crypto_provider();
    let client = match &config.ca_cert {
        Some(pem) => redis::Client::build_with_tls(
            config.url.expose(),
            redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) },
        )?,
        None => redis::Client::open(config.url.expose())?,
    };
    let mgr_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(response_timeout)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(2))
        .set_number_of_retries(3);
    ConnectionManager::new_with_config(client, mgr_config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_never_displayed() {
        let u = RedisUrl::parse("rediss://default:s3cret@cache.example.net:6380/0").expect("valid");
        assert_eq!(u.to_string(), "rediss://****@cache.example.net:6380");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert!(RedisUrl::parse("http://x").is_err());
    }
}
