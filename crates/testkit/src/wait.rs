//! Waiting for a condition with a deadline: the one polling helper, for state (Redis keys,
//! process status) that sends no notification. Receivers have their own notified waits.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often `wait_until` re-checks: short enough not to slow tests down, long enough not to
/// flood Redis with queries.
const RECHECK: Duration = Duration::from_millis(10);

/// Re-checks `cond` every 10 ms until it holds; panics with
/// `timed out after <deadline> waiting for: <what>` once `deadline` has passed.
///
/// ```no_run
/// # async fn demo(redis: &entraguard_testkit::RedisServer) {
/// use std::time::Duration;
/// entraguard_testkit::wait_until(Duration::from_secs(5), "the queue to drain", || async {
///     let mut conn = redis.connection().await;
///     redis::cmd("LLEN").arg("q").query_async::<u64>(&mut conn).await.ok() == Some(0)
/// })
/// .await;
/// # }
/// ```
pub async fn wait_until<F, Fut>(deadline: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let give_up = Instant::now() + deadline;
    loop {
        if cond().await {
            return;
        }
        if Instant::now() >= give_up {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(RECHECK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_once_the_condition_holds() {
        let calls = AtomicU32::new(0);
        wait_until(Duration::from_secs(2), "the third check", || async {
            calls.fetch_add(1, Ordering::SeqCst) >= 2
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 50ms waiting for: never")]
    async fn panics_naming_what_it_waited_for() {
        wait_until(Duration::from_millis(50), "never", || async { false }).await;
    }
}
