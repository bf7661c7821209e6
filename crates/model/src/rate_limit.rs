//! An endpoint's rate limit (`10/s`, `600/min`): how many deliveries may start in a second or a
//! minute. Sends are spaced evenly, one every [`RateLimit::interval`], so no window of the
//! period ever holds more than the count, whatever limiter the receiver runs (fixed window,
//! sliding window, token bucket).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The period a [`RateLimit`] counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RatePeriod {
    Second,
    Minute,
}

impl RatePeriod {
    pub fn as_duration(self) -> Duration {
        match self {
            RatePeriod::Second => Duration::from_secs(1),
            RatePeriod::Minute => Duration::from_secs(60),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RatePeriod::Second => "s",
            RatePeriod::Minute => "min",
        }
    }

    /// Most sends a limit may allow per period: one per millisecond.
    pub fn max_count(self) -> u32 {
        match self {
            RatePeriod::Second => 1_000,
            RatePeriod::Minute => 60_000,
        }
    }
}

/// At most `count` deliveries per `per`, evenly spaced. Written and read as `10/s` or `600/min`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    count: u32,
    per: RatePeriod,
}

/// Why a rate limit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    #[error("rate limit {0:?}: expected <count>/s or <count>/min, e.g. 10/s or 600/min")]
    Shape(String),
    #[error("rate limit {value:?}: the count must be a whole number from 1 to {max} per {per}")]
    Count { value: String, max: u32, per: &'static str },
    #[error("rate limit {0:?}: the period must be s (per second) or min (per minute)")]
    Period(String),
}

impl RateLimit {
    /// `count` per `per`; the count must be 1 to [`RatePeriod::max_count`].
    pub fn new(count: u32, per: RatePeriod) -> Result<Self, RateLimitError> {
        if count == 0 || count > per.max_count() {
            return Err(RateLimitError::Count {
                value: format!("{count}/{}", per.as_str()),
                max: per.max_count(),
                per: per.as_str(),
            });
        }
        Ok(Self { count, per })
    }

    /// One send per `interval` (a Slack webhook's pace): `1/s` for a second, a count per minute
    /// when the interval divides a minute into whole sends, else the nearest slower per-minute
    /// limit (at least `1/min`).
    pub fn one_per(interval: Duration) -> Self {
        let ms = interval.as_millis().max(1);
        if ms == 1_000 {
            return Self { count: 1, per: RatePeriod::Second };
        }
        let count = u32::try_from(60_000 / ms).unwrap_or(u32::MAX).clamp(1, RatePeriod::Minute.max_count());
        Self { count, per: RatePeriod::Minute }
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn per(&self) -> RatePeriod {
        self.per
    }

    /// The spacing between two sends, in whole microseconds, rounded up: `count` sends spaced
    /// this far apart never fit in less than the period.
    pub fn interval_us(&self) -> u64 {
        let period = self.per.as_duration().as_micros() as u64;
        period.div_ceil(u64::from(self.count))
    }

    /// [`RateLimit::interval_us`] as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_micros(self.interval_us())
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.per.as_str())
    }
}

impl FromStr for RateLimit {
    type Err = RateLimitError;

    fn from_str(s: &str) -> Result<Self, RateLimitError> {
        let value = s.trim();
        let Some((count, per)) = value.split_once('/') else {
            return Err(RateLimitError::Shape(value.to_owned()));
        };
        let per = match per.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => RatePeriod::Second,
            "min" | "m" | "minute" => RatePeriod::Minute,
            _ => return Err(RateLimitError::Period(value.to_owned())),
        };
        let count: u32 = count.trim().parse().map_err(|_| RateLimitError::Count {
            value: value.to_owned(),
            max: per.max_count(),
            per: per.as_str(),
        })?;
        Self::new(count, per).map_err(|_| RateLimitError::Count {
            value: value.to_owned(),
            max: per.max_count(),
            per: per.as_str(),
        })
    }
}

impl Serialize for RateLimit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_per_second_and_minute() {
        let r: RateLimit = "10/s".parse().expect("10/s");
        assert_eq!((r.count(), r.per()), (10, RatePeriod::Second));
        assert_eq!(r.interval(), Duration::from_millis(100));
        let r: RateLimit = " 600 / min ".parse().expect("600/min");
        assert_eq!((r.count(), r.per()), (600, RatePeriod::Minute));
        assert_eq!(r.interval(), Duration::from_millis(100));
        assert_eq!(r.to_string(), "600/min");
        assert_eq!("50/second".parse::<RateLimit>().expect("long form").to_string(), "50/s");
    }

    #[test]
    fn refuses_bad_input_with_the_reason() {
        for (input, says) in [
            ("10", "expected <count>/s or <count>/min"),
            ("", "expected <count>/s or <count>/min"),
            ("0/s", "from 1 to 1000 per s"),
            ("1001/s", "from 1 to 1000 per s"),
            ("-3/s", "from 1 to 1000 per s"),
            ("1.5/s", "from 1 to 1000 per s"),
            ("60001/min", "from 1 to 60000 per min"),
            ("10/h", "must be s (per second) or min"),
        ] {
            let err = input.parse::<RateLimit>().expect_err(input).to_string();
            assert!(err.contains(says), "{input:?}: {err:?} does not say {says:?}");
        }
    }

    #[test]
    fn the_interval_rounds_up_so_a_period_never_holds_more_than_the_count() {
        for text in ["3/s", "7/s", "999/s", "1000/s", "7/min", "59999/min"] {
            let r: RateLimit = text.parse().expect(text);
            let period = r.per().as_duration().as_micros() as u64;
            // count + 1 sends, spaced by the interval, span at least the period.
            assert!(r.interval_us() * u64::from(r.count()) >= period, "{text}");
            // And the rounding costs less than one microsecond per send.
            assert!((r.interval_us() - 1) * u64::from(r.count()) < period, "{text}");
        }
    }

    #[test]
    fn one_per_interval_is_slack_pacing() {
        assert_eq!(RateLimit::one_per(Duration::from_secs(1)).to_string(), "1/s");
        assert_eq!(RateLimit::one_per(Duration::from_millis(300)).to_string(), "200/min");
        assert_eq!(RateLimit::one_per(Duration::from_secs(120)).to_string(), "1/min");
    }

    #[test]
    fn serde_uses_the_written_form() {
        let r: RateLimit = serde_json::from_str("\"50/s\"").expect("json");
        assert_eq!(serde_json::to_string(&r).expect("json"), "\"50/s\"");
        assert!(serde_json::from_str::<RateLimit>("\"50\"").is_err());
    }
}
