//! `entraguard-notify`: publish events, manage endpoints, inspect and replay the dead-letter
//! queue. This file owns argument parsing and error printing; each subcommand is a module.

mod cmd;
mod config;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Global;

/// EntraGuard Notify command line.
///
/// Settings come from flags, the environment, or a `.env` file in the working directory.
#[derive(Debug, Parser)]
#[command(name = "entraguard-notify", version, about, long_about = None, args_override_self = true)]
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
    /// Queue depths: ready, in flight, scheduled retries, dead letters, workers, endpoints.
    Stats,
}

/// A failure and the exit code it means: 1 for runtime failures, 2 for bad input.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            code: 1,
            error: e.into(),
        }
    }
}

/// Bad input: exit code 2.
pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        error: error.into(),
    }
}

fn main() -> ExitCode {
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("error: cannot read .env: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
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
            Command::Stats => cmd::stats::run(&cli.global).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}
