//! The settings every binary shares, as clap argument groups each binary flattens as it needs
//! (so its `--help` lists exactly what it reads): where Redis is, the key that seals endpoints,
//! the HTTPS rule for targets, the log format. Each setting is a flag and an environment
//! variable; [`parse`] names both when a value is refused.
//!
//! Booleans read `1/0/true/false/yes/no/on/off` in any case ([`parse_bool`]).

use std::ffi::OsString;
use std::time::Duration;

use crate::crypto::Cipher;
use crate::endpoint::TargetPolicy;
use crate::keys::KeySpace;
use crate::redis_conn::{RedisConfig, RedisUrl};
use crate::secret::Secret;

/// Where Redis is and how long a command may take.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Redis")]
pub struct RedisSettings {
    /// Redis: redis://[user:password@]host:port[/db], or rediss:// for TLS.
    #[arg(long, global = true, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379", value_parser = parse_redis_url, hide_env_values = true)]
    pub redis_url: RedisUrl,

    /// PEM file of the CA that signed the Redis server's certificate (rediss:// with a private
    /// CA). Managed services (Azure Cache, ElastiCache, Upstash) need none: system roots apply.
    #[arg(long, global = true, env = "REDIS_CA_CERT")]
    pub redis_ca_cert: Option<std::path::PathBuf>,

    /// Prefix of every Redis key (the hash tag `{prefix}`); one prefix per deployment, the same
    /// for workers, admin and CLI.
    #[arg(long, global = true, env = "NOTIFY_KEY_PREFIX", default_value = KeySpace::DEFAULT_PREFIX, value_parser = parse_prefix)]
    pub key_prefix: KeySpace,

    /// Queue shards: the queue's keys split over this many hash tags, so a Redis Cluster spreads
    /// them over its primaries (events placed by event id, deliveries by endpoint). The same for
    /// producers, workers, admin and CLI; see docs/deploy-and-scaling.md.
    #[arg(long, global = true, env = "NOTIFY_QUEUE_SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=i64::from(crate::shards::MAX_SHARDS)))]
    pub queue_shards: u16,

    /// After changing NOTIFY_QUEUE_SHARDS: the earlier count, whose shards are still served
    /// (and counted by `stats`) until their work is done; nothing new goes into them.
    #[arg(long, global = true, env = "NOTIFY_DRAIN_SHARDS", value_parser = clap::value_parser!(u16).range(1..=i64::from(crate::shards::MAX_SHARDS)))]
    pub drain_shards: Option<u16>,

    /// Redis command timeout (a worker's blocked fetch gets its block time on top).
    #[arg(long, global = true, env = "NOTIFY_REDIS_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub redis_timeout: Duration,
}

impl RedisSettings {
    /// The queue shards (`NOTIFY_QUEUE_SHARDS`, `NOTIFY_DRAIN_SHARDS`) of `NOTIFY_KEY_PREFIX`.
    pub fn layout(&self) -> crate::shards::ShardLayout {
        // Both counts were range-checked when parsed.
        crate::shards::ShardLayout::new(&self.key_prefix, self.queue_shards, self.drain_shards)
            .unwrap_or_else(|_| crate::shards::ShardLayout::single(self.key_prefix.clone()))
    }

    /// The connection settings; fails when `REDIS_CA_CERT` cannot be read.
    pub fn config(&self) -> Result<RedisConfig, SettingError> {
        let mut c = RedisConfig::new(self.redis_url.clone())
            .with_ca_file(self.redis_ca_cert.as_deref())
            .map_err(|e| SettingError { setting: "REDIS_CA_CERT", reason: e.to_string() })?;
        c.response_timeout = Some(self.redis_timeout);
        Ok(c)
    }
}

/// The key that seals endpoint URLs and signing secrets in Redis.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Sealing")]
pub struct SealingSettings {
    /// Key that seals endpoint URLs and signing secrets in Redis: 32 bytes, base64
    /// (`openssl rand -base64 32`); workers, admin and CLI need the same. Without it they are
    /// stored in clear (a warning at start-up).
    #[arg(long, global = true, env = "NOTIFY_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<Secret>,

    /// Earlier keys, comma-separated, still accepted for reading during a key rotation.
    #[arg(
        long,
        global = true,
        env = "NOTIFY_ENCRYPTION_OLD_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub encryption_old_keys: Vec<Secret>,
}

impl SealingSettings {
    /// The cipher for stored secrets, when a key is set.
    pub fn cipher(&self) -> Result<Option<std::sync::Arc<Cipher>>, crate::crypto::CryptoError> {
        self.encryption_key
            .as_ref()
            .map(|k| Cipher::new(k, &self.encryption_old_keys).map(std::sync::Arc::new))
            .transpose()
    }
}

/// What endpoint targets may be.
#[derive(Debug, Clone, Copy, clap::Args)]
#[command(next_help_heading = "Targets")]
pub struct TargetSettings {
    /// Allow plain http:// targets (local tests only): 1/0, true/false, yes/no.
    #[arg(long, global = true, env = "NOTIFY_ALLOW_HTTP", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_http: bool,
}

impl TargetSettings {
    pub fn policy(&self) -> TargetPolicy {
        TargetPolicy { allow_http: self.allow_http }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people: coloured only on a terminal, and never with `NO_COLOR` set.
    Text,
    /// One JSON object a line, for log pipelines.
    Json,
}

/// How a long-running process logs.
#[derive(Debug, Clone, Copy, clap::Args)]
#[command(next_help_heading = "Logs")]
pub struct LogSettings {
    /// Log format: text for people, json for log pipelines.
    #[arg(long, env = "NOTIFY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Whether text logs get ANSI colours: only when they go to a terminal, and not when
/// `NO_COLOR` is set to anything but the empty string (<https://no-color.org>).
pub fn log_colours(to_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    to_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// A setting that cannot be used, named by its environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct SettingError {
    pub setting: &'static str,
    pub reason: String,
}

/// `1/0/true/false/yes/no/on/off`, any case.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (use 1/0, true/false or yes/no)")),
    }
}

/// Durations like `10s`, `1m`, `250ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e} (expected e.g. 10s, 1m, 250ms)"))
}

pub fn parse_redis_url(s: &str) -> Result<RedisUrl, String> {
    RedisUrl::parse(s).map_err(|e| e.to_string())
}

pub fn parse_prefix(s: &str) -> Result<KeySpace, String> {
    KeySpace::new(s).map_err(|e| e.to_string())
}

/// Parses the process's arguments and environment into `T`, like `T::parse()`, except that a
/// refused value's error names the environment variable as well as the flag (a bad
/// `NOTIFY_ALLOW_HTTP=maybe` in a deployment's environment is otherwise reported as a flag
/// nobody passed). Exits on `--help`, `--version` and errors, as clap does.
pub fn parse<T: clap::Parser>() -> T {
    try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// [`parse`] from given arguments (the first is the program name), without exiting.
pub fn try_parse_from<T, I, A>(args: I) -> Result<T, clap::Error>
where
    T: clap::Parser,
    I: IntoIterator<Item = A>,
    A: Into<OsString> + Clone,
{
    T::try_parse_from(args).map_err(|e| name_the_variable(e, &T::command()))
}

/// Adds "(flag --x, environment variable Y)" to an invalid-value error.
fn name_the_variable(e: clap::Error, cmd: &clap::Command) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::InvalidValue && e.kind() != ErrorKind::ValueValidation {
        return e;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else { return e };
    let long: String =
        arg.trim_start_matches('-').chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    let Some(env) = find_env(cmd, &long) else { return e };
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default().trim_start_matches("error: ");
    clap::Error::raw(e.kind(), format!("{first} (the setting --{long}, environment variable {env})\n"))
        .with_cmd(cmd)
}

fn find_env(cmd: &clap::Command, long: &str) -> Option<String> {
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .or_else(|| cmd.get_subcommands().find_map(|s| find_env(s, long)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Probe {
        #[command(flatten)]
        target: TargetSettings,
        #[command(flatten)]
        redis: RedisSettings,
    }

    #[test]
    fn booleans_read_the_usual_spellings() {
        for (s, b) in
            [("1", true), ("0", false), ("TRUE", true), ("False", false), ("yes", true), ("No", false)]
        {
            assert_eq!(parse_bool(s), Ok(b), "{s}");
        }
        assert!(parse_bool("maybe").is_err());
        let p: Probe = try_parse_from(["probe", "--allow-http=1"]).expect("1 parses");
        assert!(p.target.allow_http);
        let p: Probe = try_parse_from(["probe", "--allow-http"]).expect("bare flag");
        assert!(p.target.allow_http);
    }

    #[test]
    fn a_refused_value_names_the_flag_and_the_environment_variable() {
        let e = try_parse_from::<Probe, _, _>(["probe", "--allow-http=maybe"]).expect_err("refused");
        let text = e.to_string();
        assert!(text.contains("--allow-http") && text.contains("NOTIFY_ALLOW_HTTP"), "{text}");
        let e = try_parse_from::<Probe, _, _>(["probe", "--redis-timeout", "soon"]).expect_err("refused");
        assert!(e.to_string().contains("NOTIFY_REDIS_TIMEOUT"), "{e}");
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(log_colours(true, None));
        assert!(log_colours(true, Some(OsStr::new(""))));
        assert!(!log_colours(true, Some(OsStr::new("1"))));
        assert!(!log_colours(false, None));
    }
}
