//! Redis's clock as this worker knows it: read with `TIME` now and then and carried forward on
//! the worker's monotonic clock (never its wall clock), so fan-out can tell whether quiet hours
//! hold a delivery without a round trip per event. A decision that the estimate's error could
//! change (the event is near a quiet window's start or end) is taken on a fresh reading.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How far the estimate may be trusted to be off, at most. Decisions that would differ within
/// this much either side of the estimate are taken on a fresh reading.
pub(crate) const MARGIN: Duration = Duration::from_secs(5);
/// How long a reading is carried forward before it is read again.
const REFRESH: Duration = Duration::from_secs(30);

/// The last reading of Redis's clock: Redis's Unix ms and the monotonic instant it was taken.
#[derive(Debug, Default)]
pub(crate) struct RedisClock {
    last: Mutex<Option<(Instant, i64)>>,
}

impl RedisClock {
    /// Redis's clock now (Unix ms), estimated from a reading at most `REFRESH` old; `None`
    /// when there is none.
    pub(crate) fn estimate(&self) -> Option<i64> {
        let (at, ms) = (*self.last.lock().ok()?)?;
        let since = at.elapsed();
        (since < REFRESH).then(|| ms + i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    /// Keeps a reading taken between `sent` and `answered` (its instant: halfway, off by at
    /// most half the round trip). A reading whose round trip took more than the margin is not
    /// kept: it could not be trusted to the margin.
    pub(crate) fn observe(&self, sent: Instant, answered: Instant, redis_ms: i64) {
        let rtt = answered.saturating_duration_since(sent);
        if rtt > MARGIN {
            return;
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some((sent + rtt / 2, redis_ms));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn carried_forward_on_the_monotonic_clock_until_stale() {
        let clock = RedisClock::default();
        assert_eq!(clock.estimate(), None);
        let sent = Instant::now();
        tokio::time::advance(Duration::from_millis(10)).await;
        clock.observe(sent, Instant::now(), 1_000_000);
        assert_eq!(clock.estimate(), Some(1_000_005));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(clock.estimate(), Some(1_010_005));
        tokio::time::advance(REFRESH).await;
        assert_eq!(clock.estimate(), None, "a stale reading is read again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reading_is_not_kept() {
        let clock = RedisClock::default();
        let sent = Instant::now();
        tokio::time::advance(MARGIN * 2).await;
        clock.observe(sent, Instant::now(), 1_000_000);
        assert_eq!(clock.estimate(), None);
    }
}
