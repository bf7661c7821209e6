//! `entraguard-bench`: drives the real producer and real `entraguard-worker` processes against
//! Redis (its own, or `--redis-url` with a private key prefix it cleans up) and a local HTTP
//! sink, and prints one JSON line per figure:
//!
//! `{"peer":"entraguard","metric":"drain_c50","value":15234.1,"unit":"jobs/s"}`
//!
//! `--smoke` runs every figure with small counts (CI keeps it from rotting; no speed asserted).
//!
//! `--shards N` runs with `N` queue shards (`NOTIFY_QUEUE_SHARDS`); `--compare-shards 1,3`
//! runs `drain_c50` once per listed count, each on a fresh Redis (cluster), and prints the
//! ratio of the counts' throughputs (`--compare-shards 1,3,1,3` alternates them).
//!
//! `--traces` runs the workers with traces on, exported to a local OTLP receiver that discards
//! them (see docs/deploy-and-scaling.md, "Traces").

mod otlp_sink;
mod runs;
mod sink;

use std::process::ExitCode;

use clap::Parser;

/// Benchmark EntraGuard Notify on this machine.
#[derive(Debug, Parser)]
#[command(name = "entraguard-bench", version, about)]
pub struct Args {
    /// Redis to measure against; by default a redis-server of our own on a free port.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Small counts and short runs, to check the benchmark works.
    #[arg(long)]
    pub smoke: bool,
    /// `appendfsync` of the benchmark's own Redis (`everysec` or `always`); ignored with
    /// `--redis-url`. Figures vary with the disk's fsync speed far more under `always`.
    #[arg(long, default_value = "everysec", value_parser = ["everysec", "always", "no"])]
    pub appendfsync: String,
    /// Run against a Redis Cluster of our own (3 primaries + 3 replicas on this machine)
    /// instead of one redis-server; the queue's keys share one slot, so one primary serves them.
    #[arg(long)]
    pub cluster: bool,
    /// Only these metrics (comma-separated names); all by default.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Queue shards (`NOTIFY_QUEUE_SHARDS`): the workers get `--queue-shards N`, and `drain`
    /// spreads its jobs round-robin over one endpoint per shard.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=i64::from(entraguard_core::shards::MAX_SHARDS)))]
    pub shards: u16,
    /// Run `drain_c50` once per listed shard count (e.g. `1,3`, or `1,3,1,3` to alternate), each
    /// on a fresh Redis (a fresh cluster with `--cluster`), and print each count's figures and
    /// the ratio of the last count's throughput over the first's. Ignores `--shards` and `--only`.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..=i64::from(entraguard_core::shards::MAX_SHARDS)))]
    pub compare_shards: Vec<u16>,
    /// Workers export traces (`OTEL_EXPORTER_OTLP_ENDPOINT`) to an OTLP receiver of the
    /// benchmark's that discards them: the cost of traces on. Without it the workers run with
    /// traces off whatever the environment says.
    #[arg(long)]
    pub traces: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(runs::all(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
