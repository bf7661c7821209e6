//! The info line a successful delivery gets, so a person running `./dev up` sees deliveries
//! happen at the default log level, without flooding a production log at hundreds a second:
//! each delivery gets its own line while there are at most [`LINES_PER_WINDOW`] in a
//! [`WINDOW`]; past that, the rest of the window is counted and one summary line follows
//! ("N more deliveries succeeded"). A trial run or a quiet deployment logs every
//! delivery; a busy one logs at most about one line a second, whatever its rate (`/metrics`
//! has the exact counts).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::info;

/// How long one counting window lasts.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Per-delivery lines in one window before they are counted instead.
pub const LINES_PER_WINDOW: u32 = 10;

/// What to log for one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// This delivery's own line.
    Each,
    /// This delivery's own line, after a summary of the `n` counted in the window that ended.
    SummaryThenEach { n: u64, over: Duration },
    /// Counted, not logged (the window's lines are used up).
    Counted,
}

/// The window's state.
#[derive(Debug)]
pub struct Limiter {
    started: Instant,
    lines: u32,
    counted: u64,
}

impl Limiter {
    pub fn new(now: Instant) -> Self {
        Self { started: now, lines: 0, counted: 0 }
    }

    /// What to log for a delivery at `now`.
    pub fn on_delivery(&mut self, now: Instant) -> Line {
        let mut summary = None;
        if now.duration_since(self.started) >= WINDOW {
            if self.counted > 0 {
                summary = Some((self.counted, now.duration_since(self.started)));
            }
            *self = Self::new(now);
        }
        if self.lines < LINES_PER_WINDOW {
            self.lines += 1;
            return match summary {
                Some((n, over)) => Line::SummaryThenEach { n, over },
                None => Line::Each,
            };
        }
        self.counted += 1;
        Line::Counted
    }
}

static LIMITER: Mutex<Option<Limiter>> = Mutex::new(None);

/// Logs one successful delivery (or counts it; see the module docs). Names no URL: the
/// endpoint by id.
pub fn delivered(
    delivery: &str,
    endpoint: &str,
    channel: &str,
    event: &str,
    status: Option<u16>,
    ms: u64,
    attempt: u32,
) {
    let now = Instant::now();
    let line = match LIMITER.lock() {
        Ok(mut l) => l.get_or_insert_with(|| Limiter::new(now)).on_delivery(now),
        Err(_) => Line::Each,
    };
    if let Line::SummaryThenEach { n, over } = line {
        info!(deliveries = n, over = ?over, "{n} more deliveries succeeded (not logged one by one above {LINES_PER_WINDOW} per {WINDOW:?})");
    }
    if line != Line::Counted {
        info!(delivery, endpoint, channel, event, status, ms, attempt, "delivered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_delivery_is_logged_at_a_trial_rate_and_a_flood_is_summarised() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        // A trial: a few deliveries, each its own line.
        for i in 0..LINES_PER_WINDOW {
            assert_eq!(l.on_delivery(t0 + Duration::from_millis(u64::from(i))), Line::Each);
        }
        // A flood: 1 000 more in the same window are counted, not logged.
        for _ in 0..1000 {
            assert_eq!(l.on_delivery(t0 + Duration::from_secs(1)), Line::Counted);
        }
        // The next window opens with the summary, then lines again.
        let t1 = t0 + WINDOW + Duration::from_secs(1);
        assert_eq!(
            l.on_delivery(t1),
            Line::SummaryThenEach { n: 1000, over: WINDOW + Duration::from_secs(1) }
        );
        assert_eq!(l.on_delivery(t1), Line::Each);
        // A quiet window after it: no summary, just the line.
        assert_eq!(l.on_delivery(t1 + WINDOW * 3), Line::Each);
    }
}
