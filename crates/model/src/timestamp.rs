//! RFC 3339 timestamps as the spec writes them: UTC, whole seconds, `Z` (`2026-04-28T07:12:43Z`).

use std::fmt;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// A point in time, always UTC and truncated to the second. On the wire: an RFC 3339 string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

/// A timestamp that is not RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {0:?}: expected RFC 3339, e.g. 2026-04-28T07:12:43Z")]
pub struct TimestampError(String);

impl Timestamp {
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    pub fn from_datetime(t: OffsetDateTime) -> Self {
        let t = t.to_offset(UtcOffset::UTC);
        Self(t.replace_nanosecond(0).unwrap_or(t))
    }

    pub fn from_unix_millis(ms: i64) -> Self {
        let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Self::from_datetime(t)
    }

    pub fn unix_seconds(&self) -> i64 {
        self.0.unix_timestamp()
    }

    pub fn datetime(&self) -> OffsetDateTime {
        self.0
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, TimestampError> {
        if let Some(t) = parse_canonical(s) {
            return Ok(t);
        }
        OffsetDateTime::parse(s, &Rfc3339)
            .map(Self::from_datetime)
            .map_err(|_| TimestampError(s.chars().take(64).collect()))
    }
}

/// Reads the form we write (`2026-04-28T07:12:43Z`) without the general RFC 3339 parser (every
/// job and event carries timestamps); `None` for anything else, which the general parser reads.
fn parse_canonical(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u16> {
        b[from..to].iter().try_fold(0u16, |n, d| d.is_ascii_digit().then(|| n * 10 + u16::from(d - b'0')))
    };
    let month = time::Month::try_from(u8::try_from(num(5, 7)?).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::from(num(0, 4)?), month, u8::try_from(num(8, 10)?).ok()?).ok()?;
    let at = time::Time::from_hms(
        u8::try_from(num(11, 13)?).ok()?,
        u8::try_from(num(14, 16)?).ok()?,
        u8::try_from(num(17, 19)?).ok()?,
    )
    .ok()?;
    Some(Timestamp(date.with_time(at).assume_utc()))
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match canonical(self.0) {
            Some(buf) => s.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?),
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` written without the general formatter, for years 0 to 9999 (the
/// general one writes the rest).
fn canonical(t: OffsetDateTime) -> Option<[u8; 20]> {
    let year = u16::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let mut out = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, mut n: u16| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, u16::from(u8::from(t.month())));
    put(8, 2, u16::from(t.day()));
    put(11, 2, u16::from(t.hour()));
    put(14, 2, u16::from(t.minute()));
    put(17, 2, u16::from(t.second()));
    Some(out)
}

impl TryFrom<String> for Timestamp {
    type Error = TimestampError;
    fn try_from(s: String) -> Result<Self, TimestampError> {
        s.parse()
    }
}

impl From<Timestamp> for String {
    fn from(t: Timestamp) -> String {
        t.to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(buf) = canonical(self.0) {
            return f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?);
        }
        // Years before 1 (the fast path covers 0001–9999): what `[year]` of a format
        // description writes, a sign and four digits.
        let t = self.0;
        let sign = if t.year() < 0 { "-" } else { "" };
        write!(
            f,
            "{sign}{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year().unsigned_abs(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_seconds_with_z() {
        let t: Timestamp = "2026-04-28T09:12:43.789+02:00".parse().expect("valid");
        assert_eq!(t.to_string(), "2026-04-28T07:12:43Z");
    }

    #[test]
    fn the_fast_paths_agree_with_the_general_ones() {
        let general = |t: &Timestamp| {
            t.0.format(
                &time::format_description::parse_borrowed::<2>(
                    "[year]-[month]-[day]T[hour]:[minute]:[second]Z",
                )
                .expect("a format"),
            )
            .expect("formats")
        };
        for s in [
            "2026-04-28T07:12:43Z",
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59Z",
            "0001-12-31T09:05:07Z",
            "9999-12-31T23:59:59Z",
        ] {
            let fast = parse_canonical(s).expect("canonical");
            let slow = Timestamp::from_datetime(OffsetDateTime::parse(s, &Rfc3339).expect("rfc 3339"));
            assert_eq!(fast, slow, "{s}");
            assert_eq!(fast.to_string(), general(&fast));
            assert_eq!(serde_json::to_string(&fast).expect("writes"), format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<Timestamp>(&format!("\"{s}\"")).expect("reads"), fast);
        }
        // Not the canonical form: left to the general parser, which reads or refuses it.
        for s in [
            "2026-02-30T07:12:43Z",
            "2026-04-28T24:00:00Z",
            "2026-04-28t07:12:43z",
            "2026-04-28T07:12:60Z",
            "+2026-04-28T07:12:4Z",
        ] {
            assert_eq!(parse_canonical(s), None, "{s}");
        }
        assert_eq!(
            "2026-04-28t07:12:43z".parse::<Timestamp>().ok(),
            OffsetDateTime::parse("2026-04-28t07:12:43z", &Rfc3339).ok().map(Timestamp::from_datetime)
        );
        assert!(serde_json::from_str::<Timestamp>("\"2026-02-30T07:12:43Z\"").is_err());
        assert!(serde_json::from_str::<Timestamp>("12").is_err());
    }

    #[test]
    fn refuses_non_rfc3339() {
        assert!("28/04/2026".parse::<Timestamp>().is_err());
    }
}
