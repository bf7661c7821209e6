//! Waiting for a condition with a deadline: the one polling helper, for state (Redis keys,
//! process status) that sends no notification.

use std::future::Future;
use std::time::{Duration, Instant};

/// Re-checks `cond` every 10 ms until it holds; panics naming `what` after `deadline`.
pub async fn wait_until<F, Fut>(deadline: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if cond().await {
            return;
        }
        if started.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
