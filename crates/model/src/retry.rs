//! The retry schedule: the delays between a failed attempt and the next one. `10s,1m,5m` means
//! the first attempt plus three retries, 10 s, 1 min and 5 min after the failures.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Delays before each retry; its length is the number of retries after the first attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryScheduleError {
    #[error("invalid delay {value:?} in retry schedule: {reason} (expected e.g. 10s,1m,5m)")]
    Delay { value: String, reason: String },
    #[error("retry schedule has {0} delays; at most 20 are allowed")]
    TooLong(usize),
    #[error("retry delay {0:?} is longer than 7 days")]
    TooLate(String),
}

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Self {
        Self(delays)
    }

    /// No retries: the first failure is final.
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// The delay before retry number `retry` (1-based: the delay after the first failure is
    /// `delay_before_retry(1)`), or `None` when the schedule is exhausted.
    pub fn delay_before_retry(&self, retry: u32) -> Option<Duration> {
        let i = usize::try_from(retry).ok()?.checked_sub(1)?;
        self.0.get(i).copied()
    }

    /// Total attempts a delivery gets: the first plus one per delay.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.0.len()).unwrap_or(u32::MAX).saturating_add(1)
    }

    pub fn delays(&self) -> &[Duration] {
        &self.0
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self(vec![Duration::from_secs(10), Duration::from_secs(60), Duration::from_secs(300)])
    }
}

impl FromStr for RetrySchedule {
    type Err = RetryScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s == "none" {
            return Ok(Self::none());
        }
        let delays = s
            .split(',')
            .map(|part| {
                let part = part.trim();
                let d = humantime::parse_duration(part).map_err(|e| RetryScheduleError::Delay {
                    value: part.to_owned(),
                    reason: e.to_string(),
                })?;
                if d > Duration::from_secs(7 * 24 * 3600) {
                    return Err(RetryScheduleError::TooLate(part.to_owned()));
                }
                Ok(d)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if delays.len() > 20 {
            return Err(RetryScheduleError::TooLong(delays.len()));
        }
        Ok(Self(delays))
    }
}

impl fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self.0.iter().map(|d| humantime::format_duration(*d).to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_spec_schedule() {
        let s: RetrySchedule = "10s,1m,5m".parse().expect("parses");
        assert_eq!(s, RetrySchedule::default());
        assert_eq!(s.max_attempts(), 4);
        assert_eq!(s.delay_before_retry(1), Some(Duration::from_secs(10)));
        assert_eq!(s.delay_before_retry(3), Some(Duration::from_secs(300)));
        assert_eq!(s.delay_before_retry(4), None);
        assert_eq!(s.delay_before_retry(0), None);
    }

    #[test]
    fn milliseconds_for_tests_and_errors_name_the_value() {
        let s: RetrySchedule = "20ms, 40ms".parse().expect("parses");
        assert_eq!(s.delays(), &[Duration::from_millis(20), Duration::from_millis(40)]);
        let err = "10s,soon".parse::<RetrySchedule>().expect_err("refused").to_string();
        assert!(err.contains("soon"), "{err}");
    }
}
