//! The options every subcommand shares: where Redis is, the key prefix, the target policy.

use std::time::Duration;

use anyhow::Context;
use entraguard_core::crypto::Cipher;
use entraguard_core::endpoint::TargetPolicy;
use entraguard_core::keys::KeySpace;
use entraguard_core::queue::Queue;
use entraguard_core::redis_conn::{RedisConfig, RedisUrl};
use entraguard_core::secret::Secret;
use entraguard_core::store::EndpointStore;

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Redis: redis://[user:password@]host:port[/db], or rediss:// for TLS.
    #[arg(long, global = true, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379", value_parser = parse_redis_url, hide_env_values = true)]
    pub redis_url: RedisUrl,

    /// Prefix of every Redis key; must match the workers'.
    #[arg(long, global = true, env = "NOTIFY_KEY_PREFIX", default_value = KeySpace::DEFAULT_PREFIX, value_parser = parse_prefix)]
    pub key_prefix: KeySpace,

    /// Accept plain http:// endpoint URLs (local tests only).
    #[arg(long, global = true, env = "NOTIFY_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_http: bool,

    /// Key that seals endpoint URLs and signing secrets in Redis (32 bytes, base64); the
    /// workers must have the same.
    #[arg(long, global = true, env = "NOTIFY_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<Secret>,

    /// Earlier keys, comma-separated, accepted for reading during a key rotation.
    #[arg(
        long,
        global = true,
        env = "NOTIFY_ENCRYPTION_OLD_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub encryption_old_keys: Vec<Secret>,

    /// PEM file of the CA that signed the Redis server's certificate (rediss:// with a private CA).
    #[arg(long, global = true, env = "REDIS_CA_CERT")]
    pub redis_ca_cert: Option<std::path::PathBuf>,

    /// Machine-readable JSON output.
    #[arg(long, global = true, env = "NOTIFY_JSON")]
    pub json: bool,
}

impl Global {
    pub fn redis(&self) -> anyhow::Result<RedisConfig> {
        let mut c = RedisConfig::new(self.redis_url.clone())
            .with_ca_file(self.redis_ca_cert.as_deref())
            .context("cannot read REDIS_CA_CERT")?;
        c.connect_timeout = Duration::from_secs(5);
        Ok(c)
    }

    pub async fn queue(&self) -> anyhow::Result<Queue> {
        Queue::connect(&self.redis()?, self.key_prefix.clone())
            .await
            .with_context(|| format!("cannot reach Redis at {}", self.redis_url))
    }

    pub async fn store(&self) -> anyhow::Result<(Queue, EndpointStore)> {
        let queue = self.queue().await?;
        let cipher = match &self.encryption_key {
            Some(k) => Some(std::sync::Arc::new(Cipher::new(k, &self.encryption_old_keys)?)),
            None => None,
        };
        let store = EndpointStore::new(queue.connection(), self.key_prefix.clone()).with_cipher(cipher);
        Ok((queue, store))
    }

    pub fn policy(&self) -> TargetPolicy {
        TargetPolicy { allow_http: self.allow_http }
    }
}

fn parse_redis_url(s: &str) -> Result<RedisUrl, String> {
    RedisUrl::parse(s).map_err(|e| e.to_string())
}

fn parse_prefix(s: &str) -> Result<KeySpace, String> {
    KeySpace::new(s).map_err(|e| e.to_string())
}
