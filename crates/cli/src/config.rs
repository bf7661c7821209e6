//! The options every subcommand shares, from the shared settings layer (`entraguard_core::settings`):
//! where Redis is, the key prefix, the sealing key, the target policy; and `--json`.

use std::time::Duration;

use anyhow::Context;
use entraguard_core::endpoint::TargetPolicy;
use entraguard_core::queue::{QueueError, Shards};
use entraguard_core::redis_conn::RedisConfig;
use entraguard_core::settings::{RedisSettings, SealingSettings, TargetSettings};
use entraguard_core::shards::LayoutRole;
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

    /// The queue shards (`NOTIFY_QUEUE_SHARDS`, `NOTIFY_DRAIN_SHARDS`) on one connection: an
    /// endpoint's state is read and written in [`Shards::for_endpoint`], the endpoint store and
    /// sessions in [`Shards::home`], dead letters and stats across every served shard.
    /// Refused when the deployment records another shard count (the CLI would read and
    /// change the wrong shards' breakers, lanes and depths).
    pub async fn shards(&self) -> anyhow::Result<Shards> {
        let shards = Shards::connect(&self.redis()?, self.redis.layout())
            .await
            .with_context(|| format!("cannot reach Redis at {}", self.redis.redis_url))?;
        match shards.checked(LayoutRole::Reader).await {
            Ok((shards, _)) => Ok(shards),
            Err(QueueError::Layout(e)) => Err(e.into()),
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("cannot read the shard layout at {}", self.redis.redis_url))),
        }
    }

    /// The shards and the endpoint store (in shard 0, on the shards' connection).
    pub async fn store(&self) -> anyhow::Result<(Shards, EndpointStore)> {
        let shards = self.shards().await?;
        let cipher = self.sealing.cipher()?;
        let home = shards.home();
        let store = EndpointStore::new(home.connection(), home.keys().clone()).with_cipher(cipher);
        Ok((shards, store))
    }

    pub fn policy(&self) -> TargetPolicy {
        self.targets.policy()
    }
}
