//! Every worker setting in one place: its flag, its environment variable, its default and its
//! validation. `entraguard-worker --help` is the configuration reference. A bad value stops
//! start-up with a message naming the setting.

use std::time::Duration;

use clap::Parser;
use entraguard_core::endpoint::TargetPolicy;
use entraguard_core::keys::KeySpace;
use entraguard_core::redis_conn::{RedisConfig, RedisUrl};
use entraguard_core::retry::RetrySchedule;
pub use entraguard_core::settings::{
    LogFormat, LogSettings, SealingSettings, TargetSettings, parse_duration,
};
use entraguard_core::settings::{RedisSettings, parse_prefix, parse_redis_url};
use ipnet::IpNet;

pub use entraguard_delivery::settings::{DeliverySettings, SettingsError, SmtpSettings, SmtpTls, parse_cidr};

/// EntraGuard Notify worker: delivers events to Slack, Teams, email and webhooks.
///
/// Every option can also be set by its environment variable, or in a `.env` file in the
/// working directory.
///
/// The shared groups (sealing, targets, logs, SMTP) are flattened from the settings layer
/// (`entraguard_core::settings`, [`DeliverySettings`]). The Redis settings, the delivery timeout
/// and the private-target allow-list are still fields of their own here, because the run loop
/// reads them by name; a test holds them to the shared groups' definitions (same flag, variable,
/// default).
#[derive(Debug, Clone, Parser)]
#[command(name = "entraguard-worker", version, about, long_about = None, args_override_self = true)]
pub struct WorkerConfig {
    /// Redis to take jobs from: redis://[user:password@]host:port[/db], or rediss:// for TLS.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379", value_parser = parse_redis_url, hide_env_values = true)]
    pub redis_url: RedisUrl,

    /// PEM file of the CA that signed the Redis server's certificate (rediss:// with a private
    /// CA). Managed services (Azure Cache, ElastiCache, Upstash) need none: system roots apply.
    #[arg(long, env = "REDIS_CA_CERT")]
    pub redis_ca_cert: Option<std::path::PathBuf>,

    /// Prefix of every Redis key (the hash tag `{prefix}`); one prefix per deployment.
    #[arg(long, env = "NOTIFY_KEY_PREFIX", default_value = KeySpace::DEFAULT_PREFIX, value_parser = parse_prefix)]
    pub key_prefix: KeySpace,

    /// Queue shards: the queue's keys split over this many hash tags, so a Redis Cluster spreads
    /// them over its primaries. Every worker serves every shard; the same count for producers,
    /// admin and CLI (see the README's "Scaling past one Redis").
    #[arg(long, env = "NOTIFY_QUEUE_SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=i64::from(entraguard_core::shards::MAX_SHARDS)))]
    pub queue_shards: u16,

    /// After changing NOTIFY_QUEUE_SHARDS: the earlier count, whose shards are still served
    /// until their work is done; nothing new goes into them.
    #[arg(long, env = "NOTIFY_DRAIN_SHARDS", value_parser = clap::value_parser!(u16).range(1..=i64::from(entraguard_core::shards::MAX_SHARDS)))]
    pub drain_shards: Option<u16>,

    /// Replicas of a queue shard that must hold an event moved into it from another shard's
    /// outbox before the outbox lets it go (`WAIT`, up to 2 s; unconfirmed: moved again later).
    /// Set it to the producers' value, so a failover of a shard's primary cannot lose an event
    /// a replica confirmed at publish. 0 (the default): no wait.
    #[arg(long, env = "NOTIFY_PUBLISH_REPLICAS", default_value_t = 0)]
    pub publish_replicas: u32,

    /// Deliveries this process runs at once.
    #[arg(long, env = "NOTIFY_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,

    /// Threads of this process's async runtime. 1 (the default) runs everything on one thread:
    /// no work stealing, no cross-thread wake-ups, about half the CPU per delivery of a
    /// multi-threaded runtime (see the README's performance section). Scale out with more
    /// worker processes (replicas), or raise this to use more cores from one process.
    #[arg(long, env = "NOTIFY_WORKER_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: u16,

    /// Deliveries to one endpoint this process runs at once. A slow or hanging endpoint holds at
    /// most this many slots; its other deliveries wait in Redis, so the others are not starved.
    #[arg(long, env = "NOTIFY_ENDPOINT_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub endpoint_concurrency: u32,

    /// Most deliveries that may wait in one endpoint's lane (its breaker open, or at its cap);
    /// past it new deliveries to the endpoint are dead-lettered as "endpoint lane full"
    /// (replayable), so one dead receiver cannot fill Redis. About 650 B each: the default
    /// holds 32 MB per broken endpoint (docs/guarantees.md sizes it against maxmemory).
    #[arg(long, env = "NOTIFY_LANE_MAX", default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub lane_max: u64,

    /// Least time between two messages to one Slack webhook, across all workers (Slack accepts
    /// about one a second and answers bursts with 429). 0 turns pacing off.
    #[arg(long, env = "NOTIFY_SLACK_PACE", default_value = "1s", value_parser = parse_duration)]
    pub slack_pace: Duration,

    /// Retryable failures in a row (timeouts, 5xx, 429, connection errors) that open an
    /// endpoint's circuit breaker: its deliveries then wait in its lane while one probe at a
    /// time tests it. 1 to 10000, or "off" (or 0): no breaker, every delivery retries on the
    /// schedule.
    #[arg(long, env = "NOTIFY_BREAKER_FAILURES", default_value = "5", value_parser = parse_breaker_failures)]
    pub breaker_failures: u32,

    /// Wait before the first probe of an open breaker; doubled after each failed probe, up to
    /// 10 minutes.
    #[arg(long, env = "NOTIFY_BREAKER_PROBE", default_value = "30s", value_parser = parse_duration)]
    pub breaker_probe: Duration,

    /// An endpoint whose breaker stays open this long is disabled; its parked deliveries are
    /// kept and drained when it is enabled again.
    #[arg(long, env = "NOTIFY_ENDPOINT_DISABLE_AFTER", default_value = "3days", value_parser = parse_duration)]
    pub endpoint_disable_after: Duration,

    /// Delays before each retry after a failed attempt; "none" for no retries.
    #[arg(long, env = "NOTIFY_RETRY_SCHEDULE", default_value = "10s,1m,5m")]
    pub retry_schedule: RetrySchedule,

    /// Time limit of one delivery attempt (connect, send, read the answer).
    #[arg(long, env = "NOTIFY_DELIVERY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub delivery_timeout: Duration,

    // Its `next_help_heading` ("Targets") would also head every option after it: those that
    // are not about targets name their heading ("Options").
    #[command(flatten)]
    pub targets: TargetSettings,

    /// Private, loopback or link-local networks that targets may resolve to, as CIDRs
    /// (e.g. 127.0.0.1/32,10.20.0.0/16). Cloud metadata addresses stay refused.
    #[arg(long, env = "NOTIFY_ALLOW_PRIVATE_TARGETS", value_delimiter = ',', value_parser = parse_cidr)]
    pub allow_private_targets: Vec<IpNet>,

    /// Longest wait a receiver's Retry-After can impose on one retry.
    #[arg(long, help_heading = "Options", env = "NOTIFY_MAX_RETRY_AFTER", default_value = "1h", value_parser = parse_duration)]
    pub max_retry_after: Duration,

    /// Lease of this process on its jobs: renewed every third of it; when a process dies, others
    /// take its jobs back this long after its last renewal.
    #[arg(long, help_heading = "Options", env = "NOTIFY_LEASE", default_value = "15s", value_parser = parse_duration)]
    pub lease: Duration,

    /// After SIGTERM, how long in-flight deliveries may run before they are handed back.
    #[arg(long, help_heading = "Options", env = "NOTIFY_SHUTDOWN_GRACE", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Longest a blocked fetch waits on Redis before it asks again (an idle worker sends one
    /// command per this interval).
    #[arg(long, help_heading = "Options", env = "NOTIFY_FETCH_BLOCK", default_value = "5s", value_parser = parse_duration)]
    pub fetch_block: Duration,

    /// Redis command timeout (a blocked fetch gets the block time on top).
    #[arg(long, help_heading = "Options", env = "NOTIFY_REDIS_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub redis_timeout: Duration,

    /// Address of the health and metrics server (/healthz, /readyz, /metrics), e.g. 0.0.0.0:9464.
    /// Unset: no server.
    #[arg(long, help_heading = "Options", env = "NOTIFY_HEALTH_ADDR")]
    pub health_addr: Option<std::net::SocketAddr>,

    #[command(flatten)]
    pub sealing: SealingSettings,

    #[command(flatten)]
    pub smtp: SmtpSettings,

    #[command(flatten)]
    pub log: LogSettings,
}

/// A setting that is valid alone but not with the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("NOTIFY_LEASE ({lease:?}) must be at least 300ms")]
    LeaseTooShort { lease: Duration },
    #[error("NOTIFY_FETCH_BLOCK ({block:?}) must be between 100ms and 60s")]
    FetchBlock { block: Duration },
    #[error(transparent)]
    Delivery(#[from] SettingsError),
    #[error("{setting}: {reason}")]
    Setting { setting: &'static str, reason: String },
    #[error(transparent)]
    Encryption(#[from] entraguard_core::crypto::CryptoError),
    #[error(
        "email endpoints exist ({0}) but SMTP_HOST is not set: set SMTP_HOST, SMTP_FROM (and SMTP_USER, SMTP_PASSWORD) or disable them"
    )]
    SmtpMissing(String),
}

impl WorkerConfig {
    /// Parses settings from arguments (the first is the program name) and the environment.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        entraguard_core::settings::try_parse_from(args)
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.lease < Duration::from_millis(300) {
            return Err(ConfigError::LeaseTooShort { lease: self.lease });
        }
        if self.fetch_block < Duration::from_millis(100) || self.fetch_block > Duration::from_secs(60) {
            return Err(ConfigError::FetchBlock { block: self.fetch_block });
        }
        if self.delivery_timeout < Duration::from_millis(100)
            || self.delivery_timeout > Duration::from_secs(600)
        {
            return Err(SettingsError::DeliveryTimeout(self.delivery_timeout).into());
        }
        Ok(self.smtp.validate()?)
    }

    pub fn redis(&self) -> Result<RedisConfig, ConfigError> {
        let mut c = RedisConfig::new(self.redis_url.clone())
            .with_ca_file(self.redis_ca_cert.as_deref())
            .map_err(|e| ConfigError::Setting { setting: "REDIS_CA_CERT", reason: e.to_string() })?;
        c.response_timeout = Some(self.redis_timeout);
        Ok(c)
    }

    /// The cipher for stored secrets, when a key is set.
    pub fn cipher(&self) -> Result<Option<std::sync::Arc<entraguard_core::crypto::Cipher>>, ConfigError> {
        Ok(self.sealing.cipher()?)
    }

    pub fn target_policy(&self) -> TargetPolicy {
        self.targets.policy()
    }

    /// The Redis settings as the shared group holds them (for code shared with the admin server).
    pub fn redis_settings(&self) -> RedisSettings {
        RedisSettings {
            redis_url: self.redis_url.clone(),
            redis_ca_cert: self.redis_ca_cert.clone(),
            key_prefix: self.key_prefix.clone(),
            queue_shards: self.queue_shards,
            drain_shards: self.drain_shards,
            redis_timeout: self.redis_timeout,
        }
    }

    /// The delivery settings as the shared group holds them (Send test uses the same).
    pub fn delivery_settings(&self) -> DeliverySettings {
        DeliverySettings {
            delivery_timeout: self.delivery_timeout,
            allow_private_targets: self.allow_private_targets.clone(),
            smtp: self.smtp.clone(),
        }
    }

    /// How often the lease is renewed and dead workers are looked for.
    /// The circuit breaker's settings.
    pub fn breaker(&self) -> entraguard_core::breaker::BreakerSettings {
        entraguard_core::breaker::BreakerSettings {
            failures: self.breaker_failures,
            probe: self.breaker_probe.max(Duration::from_millis(1)),
            max_probe: entraguard_core::breaker::MAX_PROBE_INTERVAL.max(self.breaker_probe),
            disable_after: self.endpoint_disable_after,
            release: usize::try_from(self.endpoint_concurrency).unwrap_or(1),
        }
    }

    pub fn heartbeat_interval(&self) -> Duration {
        self.lease / 3
    }
}

/// `NOTIFY_BREAKER_FAILURES`: 1 to 10000, or `off` (also `0`) for no breaker (0 internally).
pub fn parse_breaker_failures(s: &str) -> Result<u32, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(0);
    }
    match s.parse::<u32>() {
        Ok(n) if n <= 10_000 => Ok(n),
        _ => Err(format!("{s:?} is not a failure count: expected 1 to 10000, or \"off\" for no breaker")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<WorkerConfig, clap::Error> {
        WorkerConfig::try_parse_from(std::iter::once("entraguard-worker").chain(args.iter().copied()))
    }

    /// `--help`'s heading above `flag`.
    fn heading_of(help: &str, flag: &str) -> String {
        let mut heading = String::new();
        for line in help.lines() {
            if !line.starts_with(' ') && line.ends_with(':') {
                heading = line.trim_end_matches(':').to_owned();
            } else if line.trim_start().starts_with(&format!("{flag} "))
                || line.trim_start().starts_with(&format!("{flag}["))
            {
                return heading;
            }
        }
        panic!("{flag} not in --help:\n{help}")
    }

    #[test]
    fn help_headings_say_what_each_option_is_about() {
        use clap::CommandFactory;
        let help = WorkerConfig::command().render_help().to_string();
        for flag in [
            "--lease",
            "--shutdown-grace",
            "--fetch-block",
            "--redis-timeout",
            "--health-addr",
            "--max-retry-after",
            "--concurrency",
        ] {
            assert_eq!(heading_of(&help, flag), "Options", "{flag}");
        }
        for flag in ["--allow-http", "--allow-private-targets"] {
            assert_eq!(heading_of(&help, flag), "Targets", "{flag}");
        }
        assert_eq!(heading_of(&help, "--smtp-host"), "Email (SMTP)");
    }

    #[test]
    fn defaults_are_the_spec_values() {
        let c = parse(&[]).expect("defaults parse");
        assert_eq!(c.retry_schedule, RetrySchedule::default());
        assert_eq!(c.delivery_timeout, Duration::from_secs(10));
        assert!(!c.targets.allow_http);
        assert!(c.allow_private_targets.is_empty());
        assert!(c.lease > c.heartbeat_interval());
        c.validate().expect("defaults are consistent");
    }

    #[test]
    fn the_breaker_can_be_turned_off() {
        assert_eq!(parse(&[]).expect("defaults").breaker().failures, 5);
        for off in ["off", "OFF", "0"] {
            let c = parse(&["--breaker-failures", off]).expect("off parses");
            assert!(c.breaker().is_off(), "{off}");
        }
        assert_eq!(parse(&["--breaker-failures", "7"]).expect("7").breaker().failures, 7);
        let err = parse(&["--breaker-failures", "10001"]).expect_err("refused").to_string();
        assert!(err.contains("breaker-failures") && err.contains("off"), "{err}");
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = parse(&["--retry-schedule", "10s,soon"]).expect_err("refused").to_string();
        assert!(err.contains("retry-schedule") && err.contains("soon"), "{err}");
        let err = parse(&["--allow-private-targets", "10.0.0.0/33"]).expect_err("refused").to_string();
        assert!(err.contains("allow-private-targets"), "{err}");
        let err = parse(&["--redis-url", "http://x"]).expect_err("refused").to_string();
        assert!(err.contains("redis-url"), "{err}");
    }

    /// The worker's own Redis, delivery-timeout and allow-list flags are the shared groups' (same
    /// flag, variable and default), so the three binaries cannot drift apart.
    #[test]
    fn the_workers_own_fields_match_the_shared_groups() {
        #[derive(Debug, clap::Parser)]
        struct Shared {
            #[command(flatten)]
            redis: RedisSettings,
            #[command(flatten)]
            delivery: DeliverySettings,
        }
        let worker = <WorkerConfig as clap::CommandFactory>::command();
        let shared = <Shared as clap::CommandFactory>::command();
        let describe = |a: &clap::Arg| {
            (
                a.get_long().map(str::to_owned),
                a.get_env().map(|e| e.to_os_string()),
                a.get_default_values().to_vec(),
            )
        };
        for arg in shared.get_arguments() {
            let mine = worker
                .get_arguments()
                .find(|w| w.get_long() == arg.get_long())
                .unwrap_or_else(|| panic!("the worker lacks --{:?}", arg.get_long()));
            assert_eq!(describe(mine), describe(arg));
        }
    }

    #[test]
    fn cidrs_and_bare_addresses_parse() {
        let c = parse(&["--allow-private-targets", "127.0.0.1/32,10.0.0.1"]).expect("parses");
        assert_eq!(c.allow_private_targets.len(), 2);
    }
}
