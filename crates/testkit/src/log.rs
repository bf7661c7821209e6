//! How much the processes a test starts log: `ENTRAGUARD_TEST_LOG` (a `RUST_LOG` filter such as
//! `info` or `entraguard_worker=debug`), `warn` when unset. A worker at `info` logs every event it
//! fans out, which is megabytes over a test run; at `warn` it says only what went wrong, and its
//! stderr (inherited by the test) still shows on the terminal when a test fails.

/// The environment variable a test run sets to see more (or less) of its processes' logs:
/// `ENTRAGUARD_TEST_LOG=info ./dev test`.
pub const TEST_LOG_VAR: &str = "ENTRAGUARD_TEST_LOG";

/// What a test passes as `RUST_LOG` to the binaries it spawns: `ENTRAGUARD_TEST_LOG`, or `warn`.
pub fn test_log_filter() -> String {
    std::env::var(TEST_LOG_VAR)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "warn".to_owned())
}
