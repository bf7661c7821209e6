//! The options every subcommand shares: where Redis is, the key prefix, the target policy.

use std::time::Duration;

use anyhow::Context;
use entraguard_core::endpoint::TargetPolicy;
use entraguard_core::keys::KeySpace;
use entraguard_core::queue::Queue;
use entraguard_core::redis_conn::{RedisConfig, RedisUrl};
use entraguard_core::store::EndpointStore;

#[derive(Debug, Clone, clap::Args)]
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

    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Global {
    pub fn redis(&self) -> RedisConfig {
        let mut c = RedisConfig::new(self.redis_url.clone());
        c.connect_timeout = Duration::from_secs(5);
        c
    }

    pub async fn queue(&self) -> anyhow::Result<Queue> {
        Queue::connect(&self.redis(), self.key_prefix.clone())
            .await
            .with_context(|| format!("cannot reach Redis at {}", self.redis_url))
    }

    pub async fn store(&self) -> anyhow::Result<(Queue, EndpointStore)> {
        let queue = self.queue().await?;
        let store = EndpointStore::new(queue.connection(), self.key_prefix.clone());
        Ok((queue, store))
    }

    pub fn policy(&self) -> TargetPolicy {
        TargetPolicy {
            allow_http: self.allow_http,
        }
    }
}

fn parse_redis_url(s: &str) -> Result<RedisUrl, String> {
    RedisUrl::parse(s).map_err(|e| e.to_string())
}

fn parse_prefix(s: &str) -> Result<KeySpace, String> {
    KeySpace::new(s).map_err(|e| e.to_string())
}
