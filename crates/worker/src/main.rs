//! `entraguard-worker`: runs one worker process until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use entraguard_worker::config::WorkerConfig;
use entraguard_worker::{Shutdown, run, shutdown};

/// A delivery allocates a few dozen small blocks; mimalloc serves them from per-thread free
/// lists (glibc's malloc was 15 % of the worker's CPU per delivery, issue 13).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    without_huge_pages();
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

/// Turns transparent huge pages off for this process, unless `MIMALLOC_ALLOW_THP` says what to
/// do (mimalloc reads it itself; `1` keeps them). mimalloc asks the kernel for huge pages for
/// its arenas, so each 2 MiB region it touches becomes resident whole: an idle worker held
/// 10 MiB of them for about 1 MiB of heap, and the benchmark's drain peaked at 31.6 MiB
/// instead of 18.5 MiB. Huge pages save TLB misses: at concurrency 50 about 10 % of the
/// worker's CPU per delivery, the price of the memory (docs/performance.md). The kernel checks
/// the flag at every fault, so the arena mimalloc set up before `main` is covered too.
fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none()
        && let Err(e) = rustix::thread::disable_transparent_huge_pages(true)
    {
        // Not fatal: a kernel without the prctl runs the worker with more memory, as before.
        eprintln!("warning: cannot turn transparent huge pages off: {e}");
    }
}
