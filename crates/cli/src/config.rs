//! The options every subcommand shares, from the shared settings layer (`entraguard_core::settings`):
//! where Redis is, the key prefix, the sealing key, the target policy; and `--json`.

use std::time::Duration;

use anyhow::Context;
use entraguard_core::endpoint::TargetPolicy;
use entraguard_core::queue::Queue;
use entraguard_core::redis_conn::RedisConfig;
use entraguard_core::settings::{RedisSettings, SealingSettings, TargetSettings};
use entraguard_core::store::EndpointStore;

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Machine-readable JSON output.
    #[arg(long, global = true, env = "NOTIFY_JSON")]
    pub json: bool,

    #[command(flatten)]
    pub redis: RedisSettings,

    #[command(flatten)]
    pub sealing: SealingSettings,

    #[command(flatten)]
    pub targets: TargetSettings,
}

impl Global {
    pub fn redis(&self) -> anyhow::Result<RedisConfig> {
        let mut c = self.redis.config()?;
        c.connect_timeout = Duration::from_secs(5);
        Ok(c)
    }

    pub async fn queue(&self) -> anyhow::Result<Queue> {
        Queue::connect(&self.redis()?, self.redis.key_prefix.clone())
            .await
            .with_context(|| format!("cannot reach Redis at {}", self.redis.redis_url))
    }

    pub async fn store(&self) -> anyhow::Result<(Queue, EndpointStore)> {
        let queue = self.queue().await?;
        let cipher = self.sealing.cipher()?;
        let store = EndpointStore::new(queue.connection(), self.redis.key_prefix.clone()).with_cipher(cipher);
        Ok((queue, store))
    }

    pub fn policy(&self) -> TargetPolicy {
        self.targets.policy()
    }
}
