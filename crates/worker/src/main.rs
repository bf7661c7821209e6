//! `entraguard-worker`: runs one worker process until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use entraguard_worker::config::WorkerConfig;
use entraguard_worker::{Shutdown, run, shutdown};

/// A delivery allocates a few dozen small blocks; mimalloc serves them from per-thread free
/// lists (glibc's malloc was 15 % of the worker's CPU per delivery, issue 13).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Settings come from flags, the environment, and a `.env` file (the environment wins).
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("error: cannot read .env: {e}");
        return ExitCode::from(2);
    }
    let config: WorkerConfig = entraguard_core::settings::parse();
    // One thread by default: half the CPU per delivery of a work-stealing runtime (measured in
    // the benchmark); replicas scale out.
    let mut builder = if config.worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(usize::from(config.worker_threads));
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Logging, and traces when OTEL_EXPORTER_OTLP_ENDPOINT asks for them, set up within the
    // runtime (a gRPC exporter's channel lives there).
    let traced = {
        let _in_runtime = runtime.enter();
        entraguard_worker::logging::init_traced(config.log.log_format, "entraguard-worker")
    };
    match traced {
        Ok(true) => tracing::info!("traces on: spans exported over OTLP (OTEL_EXPORTER_OTLP_*)"),
        Ok(false) => {}
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    let result = runtime.block_on(async {
        let (trigger, listener) = Shutdown::new();
        tokio::spawn(async move {
            shutdown::signal().await;
            tracing::info!("shutdown requested");
            trigger.trigger();
        });
        let result = run(config, listener).await;
        // The last spans are exported before the runtime stops, from a blocking thread (a gRPC
        // export needs this runtime running meanwhile).
        let _ = tokio::task::spawn_blocking(entraguard_worker::telemetry::shutdown).await;
        result
    });
    entraguard_worker::logging::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}
