//! `entraguard-notify`: publish events, manage endpoints, inspect and replay the dead-letter
//! queue. This file owns argument parsing and error printing; each subcommand is a module.

mod cmd;
mod config;
mod output;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Global;

/// EntraGuard Notify command line.
///
/// Settings come from flags, the environment, or a `.env` file in the working directory (or a
/// parent of it); a flag wins over the environment, the environment over `.env`.
#[derive(Debug, Parser)]
#[command(
    name = "entraguard-notify",
    version,
    about,
    long_about = LONG_ABOUT,
    after_long_help = QUICK_START,
    args_override_self = true
)]
struct Cli {
    #[command(flatten)]
    global: Global,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish events (JSON from a file or stdin); prints each event's id.
    #[command(long_about = cmd::publish::LONG_ABOUT)]
    Publish(cmd::publish::Args),
    /// Add, list, show, update, enable, disable and remove endpoints.
    #[command(subcommand)]
    Endpoint(cmd::endpoint::Command),
    /// List, show, replay and purge dead letters.
    #[command(subcommand)]
    Dlq(cmd::dlq::Command),
    /// Silences: mute matching deliveries for a time (create, list, show, expire, audit).
    #[command(subcommand)]
    Silence(cmd::silence::Command),
    /// Queue depths: ready, in flight, scheduled (retries, quiet-hours holds and digest timers
    /// waiting for their time), dead letters, workers, endpoints; with
    /// queue shards (NOTIFY_QUEUE_SHARDS), events forwarding between shards and each shard's depths.
    Stats,
    /// The queue layout version and fair share (tenants and endpoints taken in turn): show it,
    /// `raise` it once every worker runs this release, `lower` it before a rollback.
    #[command(long_about = cmd::layout::ABOUT)]
    Layout {
        #[command(subcommand)]
        command: Option<cmd::layout::Command>,
    },
    /// The queue shards (NOTIFY_QUEUE_SHARDS) without reaching Redis: each one's hash tag, its
    /// Redis Cluster slot and the lists a KEDA trigger watches.
    Shards,
}

const LONG_ABOUT: &str = "\
EntraGuard Notify command line: publish events, manage endpoints, inspect and replay the
dead-letter queue. It talks to the same Redis as the workers (REDIS_URL, NOTIFY_KEY_PREFIX).

Settings come from flags, the environment, or a `.env` file in the working directory (or a parent
of it); a flag wins over the environment, the environment over `.env`.

Exit codes: 0 done, 1 runtime failure (Redis unreachable, not found), 2 bad usage or input.";

const QUICK_START: &str = "\
Quick start:
  export REDIS_URL=redis://127.0.0.1:6379
  entraguard-notify endpoint add --name SOAR --channel webhook \\
      --target https://soar.contoso.com/hooks/entraguard --events all --secret-env SOAR_SECRET
  entraguard-notify publish event.json
  entraguard-notify stats
  entraguard-notify dlq list

`entraguard-notify <command> --help` shows each command's options and examples.";

/// A failure and the exit code it means: 1 for runtime failures, 2 for bad input.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure { code: 1, error: e.into() }
    }
}

/// Bad input: exit code 2.
pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure { code: 2, error: error.into() }
}

fn main() -> ExitCode {
    if let Err(e) = load_dotenv() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let cli: Cli = entraguard_core::settings::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Publish(args) => cmd::publish::run(&cli.global, args).await,
            Command::Endpoint(c) => cmd::endpoint::run(&cli.global, c).await,
            Command::Dlq(c) => cmd::dlq::run(&cli.global, c).await,
            Command::Silence(c) => cmd::silence::run(&cli.global, c).await,
            Command::Stats => cmd::stats::run(&cli.global).await,
            Command::Layout { command } => cmd::layout::run(&cli.global, command).await,
            Command::Shards => cmd::shards::run(&cli.global),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", chain(&f.error));
            ExitCode::from(f.code)
        }
    }
}

/// Loads the nearest `.env` (working directory, then its parents) into the environment, without
/// overriding variables already set. A missing file is fine; a malformed one is an error that
/// names the file and the variable but never echoes the value (it may be a password).
fn load_dotenv() -> Result<(), String> {
    let Some(path) = find_dotenv() else {
        return Ok(());
    };
    dotenvy::from_path(&path).map_err(|e| match e {
        dotenvy::Error::LineParse(line, index) => {
            // Name the variable only when the text before `=` looks like one: a line with no
            // `=` could be a bare password.
            let name = line.split_once('=').map_or("", |(n, _)| n.trim());
            let is_name =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            let which = if is_name { format!(" for {name}") } else { String::new() };
            format!(
                "cannot read {}: malformed line{which} (at character {index}); expected NAME=value",
                path.display()
            )
        }
        other => format!("cannot read {}: {other}", path.display()),
    })
}

fn find_dotenv() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors().map(|dir: &Path| dir.join(".env")).find(|p| p.is_file())
}

/// The error chain, like `{:#}`, minus links that only repeat the end of the one before (the
/// redis crate's errors print their source and then report it again as `source()`).
fn chain(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if parts.last().is_some_and(|prev| prev.ends_with(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}
