//! Per-endpoint alert-fatigue rules (issue 15): which tenants an endpoint hears about, the
//! severity floor of finding events, a dedupe window, a per-scan digest and quiet hours.
//!
//! Rules are routing data: they are stored unsealed beside the subscription, so fan-out decides
//! without opening an endpoint's URL or secret. Every rule defaults to the behaviour before
//! rules existed, and an endpoint record stored without them reads as the defaults.
//! [`RulesDraft`] is what people type (CLI, admin API, page); [`RulesDraft::validate`] is the
//! one validation they share.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventBody, EventKind, Severity};
use crate::validation::EndpointError;

/// Most tenants one endpoint may name.
pub const MAX_TENANTS: usize = 1000;
/// Longest dedupe window.
pub const MAX_DEDUPE_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default longest wait of a digest whose scan never ends.
pub const DEFAULT_DIGEST_MAX_WAIT: Duration = Duration::from_secs(3600);
/// Longest wait of a digest.
pub const MAX_DIGEST_MAX_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

fn bad(field: &'static str, reason: impl Into<String>) -> EndpointError {
    EndpointError::Field { field, reason: reason.into() }
}

/// A day of the week, as quiet hours name them (`mon` … `sun`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    pub const ALL: [Weekday; 7] =
        [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun];

    fn as_str(self) -> &'static str {
        match self {
            Weekday::Mon => "mon",
            Weekday::Tue => "tue",
            Weekday::Wed => "wed",
            Weekday::Thu => "thu",
            Weekday::Fri => "fri",
            Weekday::Sat => "sat",
            Weekday::Sun => "sun",
        }
    }

    fn of(d: jiff::civil::Weekday) -> Weekday {
        use jiff::civil::Weekday as J;
        match d {
            J::Monday => Weekday::Mon,
            J::Tuesday => Weekday::Tue,
            J::Wednesday => Weekday::Wed,
            J::Thursday => Weekday::Thu,
            J::Friday => Weekday::Fri,
            J::Saturday => Weekday::Sat,
            J::Sunday => Weekday::Sun,
        }
    }

    fn parse(s: &str) -> Option<Weekday> {
        let s = s.trim().to_ascii_lowercase();
        let full = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
        Weekday::ALL
            .into_iter()
            .zip(full)
            .find(|(_, f)| s.len() >= 3 && f.starts_with(s.as_str()))
            .map(|(d, _)| d)
    }
}

/// A wall-clock time of day, `HH:MM` (24 h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClockTime {
    minutes: u16,
}

impl ClockTime {
    pub fn new(hour: u8, minute: u8) -> Option<ClockTime> {
        (hour < 24 && minute < 60).then_some(ClockTime { minutes: u16::from(hour) * 60 + u16::from(minute) })
    }

    pub fn hour(self) -> i8 {
        i8::try_from(self.minutes / 60).unwrap_or(0)
    }

    pub fn minute(self) -> i8 {
        i8::try_from(self.minutes % 60).unwrap_or(0)
    }

    pub fn parse(s: &str) -> Option<ClockTime> {
        let (h, m) = s.trim().split_once(':')?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return None;
        }
        ClockTime::new(h.parse().ok()?, m.parse().ok()?)
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

impl Serialize for ClockTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ClockTime::parse(&s).ok_or_else(|| serde::de::Error::custom("expected a time of day HH:MM"))
    }
}

/// Durations as people write them (`24h`, `1h 30m`), in storage and in views.
mod human {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(s) => humantime::parse_duration(&s).map(Some).map_err(serde::de::Error::custom),
                None => Ok(None),
            }
        }
    }
}

/// Findings of these severities are collected per (endpoint, tenant, scan) and sent as one
/// `finding.digest` when the scan ends, or after `max_wait`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestRule {
    pub severities: BTreeSet<Severity>,
    /// Longest a digest waits for its scan to end, e.g. `1h`.
    #[serde(with = "human", default = "default_max_wait")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "1h"))]
    pub max_wait: Duration,
}

fn default_max_wait() -> Duration {
    DEFAULT_DIGEST_MAX_WAIT
}

/// A daily window in one time zone during which deliveries below `at_once` are held (as
/// scheduled jobs) until the window ends. A window that ends at or before it starts runs past
/// midnight into the next day; `days` are the days a window starts on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    /// IANA time zone name, e.g. `Europe/Berlin`.
    pub time_zone: String,
    /// Start, `HH:MM` local time.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "20:00"))]
    pub from: ClockTime,
    /// End, `HH:MM` local time (at or before `from`: the next day).
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "07:00"))]
    pub to: ClockTime,
    #[serde(default = "all_days")]
    pub days: BTreeSet<Weekday>,
    /// Deliveries this severe or more go at once, whatever the hour.
    #[serde(default = "default_at_once")]
    pub at_once: Severity,
}

fn all_days() -> BTreeSet<Weekday> {
    Weekday::ALL.into_iter().collect()
}

fn default_at_once() -> Severity {
    Severity::Critical
}

impl QuietHours {
    /// Whether a delivery of `severity` can be held at all (it is below `at_once`).
    pub fn may_hold(&self, severity: Severity) -> bool {
        severity > self.at_once
    }

    /// When a delivery of `severity` made at `now_ms` (Unix ms, Redis's clock) may go: `None`
    /// for at once, or the end of the quiet window it falls in (Unix ms). Local times that a
    /// daylight-saving change skips are read as the time after the gap, and repeated ones as
    /// their first occurrence.
    pub fn hold_until(&self, now_ms: i64, severity: Severity) -> Option<i64> {
        if !self.may_hold(severity) {
            return None;
        }
        let tz = jiff::tz::TimeZone::get(&self.time_zone).ok()?;
        let now = jiff::Timestamp::from_millisecond(now_ms).ok()?;
        let today = now.to_zoned_datetime(tz.clone()).date();
        let mut until: Option<jiff::Timestamp> = None;
        // A window that started yesterday may still run; one that starts today may have begun.
        for back in [1i64, 0] {
            let Ok(day) = today.checked_sub(jiff::Span::new().days(back)) else { continue };
            if !self.days.contains(&Weekday::of(day.weekday())) {
                continue;
            }
            let end_day = if self.to <= self.from { day.tomorrow().ok()? } else { day };
            let start =
                day.at(self.from.hour(), self.from.minute(), 0, 0).to_zoned_datetime(tz.clone()).ok()?;
            let end =
                end_day.at(self.to.hour(), self.to.minute(), 0, 0).to_zoned_datetime(tz.clone()).ok()?;
            let (start, end) = (start.timestamp(), end.timestamp());
            if start <= now && now < end {
                until = Some(until.map_or(end, |u| u.max(end)));
            }
        }
        until.map(|t| t.as_millisecond())
    }
}

/// One endpoint's rules. `Default` is "no rule": every tenant, every severity, no dedupe, no
/// digest, no quiet hours.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// `None`: every tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenants: Option<BTreeSet<String>>,
    /// Finding events below this severity are not sent (a severity change is sent when its old
    /// or its new severity reaches it).
    #[serde(default = "default_floor", skip_serializing_if = "is_info")]
    pub min_severity: Severity,
    /// A finding event whose (tenant, finding, kind, severity) was sent to this endpoint within
    /// the window is not sent again.
    #[serde(default, with = "human::option", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "24h"))]
    pub dedupe_window: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
}

fn default_floor() -> Severity {
    Severity::Info
}

fn is_info(s: &Severity) -> bool {
    *s == Severity::Info
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            tenants: None,
            min_severity: Severity::Info,
            dedupe_window: None,
            digest: None,
            quiet_hours: None,
        }
    }
}

impl Rules {
    pub fn is_default(&self) -> bool {
        *self == Rules::default()
    }

    /// Whether the tenant list and the severity floor let `event` through. The notifier's own
    /// events (`endpoint.health_changed`, tenant `entraguard-notify`) belong to no customer
    /// tenant and pass the tenant list.
    pub fn admits(&self, event: &Event) -> bool {
        if let Some(tenants) = &self.tenants
            && event.kind() != EventKind::EndpointHealthChanged
            && !tenants.contains(&event.tenant_id)
        {
            return false;
        }
        match &event.body {
            EventBody::FindingNew { finding } => finding.severity <= self.min_severity,
            // A drop below the floor is still announced once: the old severity reached it.
            EventBody::FindingSeverityChanged { finding } => {
                finding.severity <= self.min_severity
                    || finding.previous_severity.is_some_and(|p| p <= self.min_severity)
            }
            _ => true,
        }
    }

    /// The dedupe member of a finding event (tenant, finding id, kind, severity, hashed) and
    /// the window, when this endpoint dedupes.
    pub fn dedupe(&self, event: &Event) -> Option<(String, Duration)> {
        let window = self.dedupe_window?;
        let finding = event.finding()?;
        Some((dedupe_member(&event.tenant_id, &finding.id, event.kind(), finding.severity), window))
    }

    /// Whether `event` goes into a digest instead of being sent alone: a finding event of a
    /// digested severity that names its scan.
    pub fn digests(&self, event: &Event) -> bool {
        let (Some(rule), Some(finding)) = (&self.digest, event.finding()) else { return false };
        event.scan_id.is_some() && rule.severities.contains(&finding.severity)
    }

    /// When a delivery of `event` made at `now_ms` may go (see [`QuietHours::hold_until`]).
    pub fn hold_until(&self, event: &Event, now_ms: i64) -> Option<i64> {
        self.quiet_hours.as_ref()?.hold_until(now_ms, quiet_severity(event))
    }
}

/// How urgent an event is for quiet hours: a finding's severity, a failed scan as `high`, a
/// completed scan or a digest as its most severe finding, anything else as `info`.
pub fn quiet_severity(event: &Event) -> Severity {
    match &event.body {
        EventBody::ScanFailed { .. } => Severity::High,
        EventBody::FindingDigest { digest } => digest.counts.highest().unwrap_or(Severity::Info),
        _ => event.severity().unwrap_or(Severity::Info),
    }
}

/// The dedupe key of a finding event: a SHA-256 (hex, 128 bits) of tenant, finding id, kind
/// and severity, so the member stays short whatever the ids are.
pub fn dedupe_member(tenant: &str, finding: &str, kind: EventKind, severity: Severity) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [tenant, finding, kind.as_str(), severity.as_str()] {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    hex::encode(&h.finalize()[..16])
}

/// Quiet hours as people type them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursDraft {
    pub time_zone: String,
    pub from: String,
    pub to: String,
    /// Days a window starts on (`mon` … `sun`, or `all`); empty or absent: every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// Severity that always goes at once (and everything above it); default `critical`.
    #[serde(default)]
    pub at_once: Option<String>,
}

/// A digest rule as people type it: the shape the API shows ([`DigestRule`]) and takes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DigestDraft {
    /// Severities to collect into one digest per scan, e.g. `["low","medium"]`; empty (or
    /// `["off"]`): no digest.
    pub severities: Vec<String>,
    /// Longest a digest waits for its scan to end; default `1h`.
    pub max_wait: Option<String>,
}

/// Rules as people type them: every field optional, absent meaning the default. Unknown fields
/// are refused (a typo must not drop a rule without a word), and the shape is the one the API
/// shows ([`Rules`]), so a fetched endpoint's rules can be sent back as they are.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesDraft {
    /// Tenant ids, or `["all"]` (or absent, or empty) for every tenant.
    pub tenants: Vec<String>,
    /// `info` (default) … `critical`.
    pub min_severity: Option<String>,
    /// e.g. `24h`; absent, empty or `off`: no dedupe.
    pub dedupe_window: Option<String>,
    /// `{"severities": ["low","medium"], "max_wait": "1h"}`; absent, `null` or no severities:
    /// none.
    #[serde(deserialize_with = "digest_object")]
    pub digest: Option<DigestDraft>,
    pub quiet_hours: Option<QuietHoursDraft>,
}

/// `rules.digest`: an object (or `null`) only, so the list form of earlier versions is refused
/// with the shape to send instead.
fn digest_object<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<DigestDraft>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<DigestDraft>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a digest rule {"severities": ["low", "medium"], "max_wait": "1h"}, or null"#)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            DigestDraft::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_option(V)
}

fn severity(field: &'static str, s: &str) -> Result<Severity, EndpointError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "critical" => Ok(Severity::Critical),
        "high" => Ok(Severity::High),
        "medium" => Ok(Severity::Medium),
        "low" => Ok(Severity::Low),
        "info" => Ok(Severity::Info),
        other => Err(bad(
            field,
            format!("{:?} is not a severity: expected critical, high, medium, low or info", cut(other)),
        )),
    }
}

fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

fn off(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(|s| s.trim().is_empty() || s.trim().eq_ignore_ascii_case("off"))
}

fn duration(field: &'static str, s: &str, max: Duration) -> Result<Duration, EndpointError> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| bad(field, format!("{:?} is not a duration like 30m or 24h: {e}", cut(s))))?;
    if d < Duration::from_secs(1) || d > max {
        return Err(bad(field, format!("must be from 1s to {}", humantime::format_duration(max))));
    }
    Ok(d)
}

impl RulesDraft {
    /// Validates the draft; errors name the field (`rules.min_severity`, …).
    pub fn validate(&self) -> Result<Rules, EndpointError> {
        let listed: Vec<&str> = self.tenants.iter().map(|t| t.trim()).filter(|t| !t.is_empty()).collect();
        let tenants = if listed.is_empty() || listed.iter().any(|t| t.eq_ignore_ascii_case("all")) {
            None
        } else {
            if listed.len() > MAX_TENANTS {
                return Err(bad("rules.tenants", format!("names more than {MAX_TENANTS} tenants")));
            }
            for t in &listed {
                if t.chars().count() > 256 || t.chars().any(char::is_control) {
                    return Err(bad("rules.tenants", "tenant ids are at most 256 printable characters"));
                }
            }
            Some(listed.iter().map(|t| (*t).to_owned()).collect())
        };
        let min_severity = match self.min_severity.as_deref().map(str::trim) {
            None | Some("") => Severity::Info,
            Some(s) => severity("rules.min_severity", s)?,
        };
        let dedupe_window = if off(&self.dedupe_window) {
            None
        } else {
            Some(duration(
                "rules.dedupe_window",
                self.dedupe_window.as_deref().unwrap_or(""),
                MAX_DEDUPE_WINDOW,
            )?)
        };
        let draft = self.digest.clone().unwrap_or_default();
        let listed: Vec<&str> = draft.severities.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
        let severities = listed
            .iter()
            .filter(|s| !s.eq_ignore_ascii_case("off"))
            .map(|s| severity("rules.digest.severities", s))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let max_wait = match draft.max_wait.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_DIGEST_MAX_WAIT,
            // A wait without severities would be dropped without a word (`off` says "none").
            Some(_) if listed.is_empty() => {
                return Err(bad(
                    "rules.digest.max_wait",
                    "applies to a digest: name its severities too (rules.digest.severities)",
                ));
            }
            Some(s) => duration("rules.digest.max_wait", s, MAX_DIGEST_MAX_WAIT)?,
        };
        let digest = (!severities.is_empty()).then_some(DigestRule { severities, max_wait });
        let quiet_hours = match &self.quiet_hours {
            None => None,
            Some(q)
                if q.time_zone.trim().is_empty() && q.from.trim().is_empty() && q.to.trim().is_empty() =>
            {
                None
            }
            Some(q) => Some(q.validate()?),
        };
        Ok(Rules { tenants, min_severity, dedupe_window, digest, quiet_hours })
    }
}

impl QuietHoursDraft {
    fn validate(&self) -> Result<QuietHours, EndpointError> {
        let time_zone = self.time_zone.trim();
        if time_zone.is_empty() || jiff::tz::TimeZone::get(time_zone).is_err() {
            return Err(bad(
                "rules.quiet_hours.time_zone",
                format!("{:?} is not an IANA time zone name (like Europe/Berlin)", cut(time_zone)),
            ));
        }
        let clock = |field, s: &str| {
            ClockTime::parse(s).ok_or_else(|| bad(field, format!("{:?} is not a time of day HH:MM", cut(s))))
        };
        let from = clock("rules.quiet_hours.from", &self.from)?;
        let to = clock("rules.quiet_hours.to", &self.to)?;
        if from == to {
            return Err(bad("rules.quiet_hours.to", "must differ from `from`"));
        }
        let mut days = BTreeSet::new();
        for d in self.days.iter().flat_map(|d| d.split(',')).map(str::trim).filter(|d| !d.is_empty()) {
            if d.eq_ignore_ascii_case("all") {
                days.extend(Weekday::ALL);
            } else {
                days.insert(Weekday::parse(d).ok_or_else(|| {
                    bad("rules.quiet_hours.days", format!("{:?} is not a weekday (mon … sun)", cut(d)))
                })?);
            }
        }
        if days.is_empty() {
            days = all_days();
        }
        let at_once = match self.at_once.as_deref().map(str::trim) {
            None | Some("") => Severity::Critical,
            Some(s) => severity("rules.quiet_hours.at_once", s)?,
        };
        Ok(QuietHours { time_zone: time_zone.to_owned(), from, to, days, at_once })
    }
}

impl Rules {
    /// The draft that recreates these rules, for partial updates.
    pub fn to_draft(&self) -> RulesDraft {
        RulesDraft {
            tenants: self.tenants.iter().flatten().cloned().collect(),
            min_severity: Some(self.min_severity.to_string()),
            dedupe_window: self.dedupe_window.map(|d| humantime::format_duration(d).to_string()),
            digest: self.digest.as_ref().map(|d| DigestDraft {
                severities: d.severities.iter().map(|s| s.to_string()).collect(),
                max_wait: Some(humantime::format_duration(d.max_wait).to_string()),
            }),
            quiet_hours: self.quiet_hours.as_ref().map(|q| QuietHoursDraft {
                time_zone: q.time_zone.clone(),
                from: q.from.to_string(),
                to: q.to.to_string(),
                days: q.days.iter().map(|d| d.as_str().to_owned()).collect(),
                at_once: Some(q.at_once.to_string()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(kind: &str, tenant: &str, severity: &str, previous: Option<&str>) -> Event {
        let prev = previous.map(|p| format!(r#""previous_severity":"{p}","#)).unwrap_or_default();
        Event::from_json(
            format!(
                r#"{{"event":"{kind}","tenant_id":"{tenant}","scan_id":"s1","finding":{{"id":"F-1","title":"t",
                "severity":"{severity}",{prev}"category":"c","remediation_url":"https://x.example/f/F-1"}}}}"#
            )
            .as_bytes(),
        )
        .expect("valid event")
    }

    fn rules(json: &str) -> Rules {
        serde_json::from_str::<RulesDraft>(json).expect("draft").validate().expect("valid rules")
    }

    fn ms(rfc3339: &str) -> i64 {
        rfc3339.parse::<jiff::Timestamp>().expect("timestamp").as_millisecond()
    }

    #[test]
    fn defaults_change_nothing_and_old_records_read() {
        let r: Rules = serde_json::from_str("{}").expect("an empty record reads");
        assert!(r.is_default());
        assert_eq!(serde_json::to_string(&r).expect("json"), "{}");
        assert_eq!(RulesDraft::default().validate().expect("valid"), Rules::default());
        assert!(r.admits(&finding("finding.new", "t", "info", None)));
    }

    #[test]
    fn tenants_filter_but_the_notifiers_own_events_pass() {
        let r = rules(r#"{"tenants":["a","b"]}"#);
        assert!(r.admits(&finding("finding.new", "a", "low", None)));
        assert!(!r.admits(&finding("finding.new", "c", "low", None)));
        assert_eq!(rules(r#"{"tenants":["all"]}"#).tenants, None);
    }

    #[test]
    fn the_floor_lets_a_severity_change_through_in_both_directions() {
        let r = rules(r#"{"min_severity":"high"}"#);
        assert!(r.admits(&finding("finding.new", "t", "critical", None)));
        assert!(r.admits(&finding("finding.new", "t", "high", None)));
        assert!(!r.admits(&finding("finding.new", "t", "medium", None)));
        // up into the floor, down out of it: both announced; below it all along: not.
        assert!(r.admits(&finding("finding.severity_changed", "t", "high", Some("low"))));
        assert!(r.admits(&finding("finding.severity_changed", "t", "low", Some("high"))));
        assert!(!r.admits(&finding("finding.severity_changed", "t", "low", Some("medium"))));
    }

    #[test]
    fn bad_input_names_the_field() {
        let err = |j: &str| {
            serde_json::from_str::<RulesDraft>(j).expect("draft").validate().expect_err("bad").field()
        };
        assert_eq!(err(r#"{"min_severity":"urgent"}"#), "rules.min_severity");
        assert_eq!(err(r#"{"dedupe_window":"soon"}"#), "rules.dedupe_window");
        assert_eq!(err(r#"{"digest":{"severities":["lo"]}}"#), "rules.digest.severities");
        assert_eq!(err(r#"{"digest":{"severities":["low"],"max_wait":"30d"}}"#), "rules.digest.max_wait");
        assert_eq!(err(r#"{"digest":{"max_wait":"2h"}}"#), "rules.digest.max_wait");
        assert_eq!(
            err(r#"{"quiet_hours":{"time_zone":"Mars/Olympus","from":"20:00","to":"07:00"}}"#),
            "rules.quiet_hours.time_zone"
        );
        assert_eq!(
            err(r#"{"quiet_hours":{"time_zone":"UTC","from":"25:00","to":"07:00"}}"#),
            "rules.quiet_hours.from"
        );
        assert_eq!(
            err(r#"{"quiet_hours":{"time_zone":"UTC","from":"20:00","to":"07:00","days":["funday"]}}"#),
            "rules.quiet_hours.days"
        );
    }

    #[test]
    fn rules_round_trip_through_storage_and_draft() {
        let r = rules(
            r#"{"tenants":["a"],"min_severity":"medium","dedupe_window":"24h","digest":{"severities":["low","medium"]},
            "quiet_hours":{"time_zone":"Europe/Berlin","from":"20:00","to":"07:00","days":["mon","tue"],"at_once":"high"}}"#,
        );
        let stored = serde_json::to_string(&r).expect("json");
        assert_eq!(serde_json::from_str::<Rules>(&stored).expect("reads"), r);
        assert_eq!(r.to_draft().validate().expect("valid"), r);
        assert_eq!(r.digest.as_ref().map(|d| d.max_wait), Some(DEFAULT_DIGEST_MAX_WAIT));
        // Issue 23: the shape the API shows is the shape it takes.
        let shown = serde_json::to_value(&r).expect("json");
        assert_eq!(shown["digest"], serde_json::json!({"severities": ["medium", "low"], "max_wait": "1h"}));
        let back: RulesDraft = serde_json::from_value(shown).expect("the shown rules read as a draft");
        assert_eq!(back.validate().expect("valid"), r);
    }

    /// Issue 24: a typo is refused, naming the field, instead of dropping a rule without a word.
    #[test]
    fn unknown_rule_fields_are_refused_by_name() {
        for (json, name) in [
            (r#"{"bogus_rule":true}"#, "bogus_rule"),
            (r#"{"digest":{"severities":["low"],"maxwait":"1h"}}"#, "maxwait"),
            (r#"{"quiet_hours":{"time_zone":"UTC","from":"20:00","to":"07:00","day":["mon"]}}"#, "day"),
        ] {
            let err = serde_json::from_str::<RulesDraft>(json).expect_err("refused").to_string();
            assert!(err.contains(&format!("unknown field `{name}`")), "{json}: {err}");
        }
    }

    #[test]
    fn dedupe_keys_differ_by_severity_and_kind() {
        let r = rules(r#"{"dedupe_window":"1h"}"#);
        let a = r.dedupe(&finding("finding.new", "t", "low", None)).expect("dedupes");
        let b = r.dedupe(&finding("finding.new", "t", "high", None)).expect("dedupes");
        let c = r.dedupe(&finding("finding.severity_changed", "t", "low", Some("high"))).expect("dedupes");
        assert_eq!(a.1, Duration::from_secs(3600));
        assert!(a.0 != b.0 && a.0 != c.0);
        assert_eq!(a, r.dedupe(&finding("finding.new", "t", "low", None)).expect("dedupes"));
        assert_eq!(Rules::default().dedupe(&finding("finding.new", "t", "low", None)), None);
    }

    #[test]
    fn quiet_hours_across_midnight() {
        let q = rules(r#"{"quiet_hours":{"time_zone":"Europe/Berlin","from":"20:00","to":"07:00"}}"#)
            .quiet_hours
            .expect("set");
        // 2026-01-14 is a Wednesday; Berlin is UTC+1 in winter.
        assert_eq!(q.hold_until(ms("2026-01-14T18:59:59Z"), Severity::Low), None, "19:59 local: not yet");
        assert_eq!(q.hold_until(ms("2026-01-14T19:00:00Z"), Severity::Low), Some(ms("2026-01-15T06:00:00Z")));
        assert_eq!(q.hold_until(ms("2026-01-14T23:30:00Z"), Severity::Low), Some(ms("2026-01-15T06:00:00Z")));
        assert_eq!(q.hold_until(ms("2026-01-15T05:59:00Z"), Severity::Low), Some(ms("2026-01-15T06:00:00Z")));
        assert_eq!(q.hold_until(ms("2026-01-15T06:00:00Z"), Severity::Low), None, "07:00 local: over");
        assert_eq!(
            q.hold_until(ms("2026-01-14T23:30:00Z"), Severity::Critical),
            None,
            "critical goes at once"
        );
    }

    #[test]
    fn quiet_hours_on_the_days_they_start() {
        let q = rules(r#"{"quiet_hours":{"time_zone":"UTC","from":"22:00","to":"06:00","days":["fri"],"at_once":"high"}}"#)
            .quiet_hours
            .expect("set");
        // Friday 2026-01-16 23:00 and Saturday 05:00 are in Friday's window; Saturday 23:00 is not.
        assert_eq!(
            q.hold_until(ms("2026-01-16T23:00:00Z"), Severity::Medium),
            Some(ms("2026-01-17T06:00:00Z"))
        );
        assert_eq!(
            q.hold_until(ms("2026-01-17T05:00:00Z"), Severity::Medium),
            Some(ms("2026-01-17T06:00:00Z"))
        );
        assert_eq!(q.hold_until(ms("2026-01-17T23:00:00Z"), Severity::Medium), None);
        assert_eq!(q.hold_until(ms("2026-01-16T23:00:00Z"), Severity::High), None);
    }

    #[test]
    fn quiet_hours_across_daylight_saving_changes() {
        let q = rules(r#"{"quiet_hours":{"time_zone":"Europe/Berlin","from":"20:00","to":"07:00"}}"#)
            .quiet_hours
            .expect("set");
        // Spring forward, night of 2026-03-28/29 (02:00 CET → 03:00 CEST): the window opens at
        // 20:00 CET (19:00Z) and closes at 07:00 CEST (05:00Z): ten hours, not eleven.
        assert_eq!(q.hold_until(ms("2026-03-28T19:30:00Z"), Severity::Low), Some(ms("2026-03-29T05:00:00Z")));
        assert_eq!(q.hold_until(ms("2026-03-29T04:59:00Z"), Severity::Low), Some(ms("2026-03-29T05:00:00Z")));
        assert_eq!(q.hold_until(ms("2026-03-29T05:00:00Z"), Severity::Low), None);
        // Fall back, night of 2026-10-24/25 (03:00 CEST → 02:00 CET): opens 20:00 CEST (18:00Z),
        // closes 07:00 CET (06:00Z): twelve hours.
        assert_eq!(q.hold_until(ms("2026-10-24T18:00:00Z"), Severity::Low), Some(ms("2026-10-25T06:00:00Z")));
        assert_eq!(q.hold_until(ms("2026-10-25T05:30:00Z"), Severity::Low), Some(ms("2026-10-25T06:00:00Z")));
        assert_eq!(q.hold_until(ms("2026-10-24T17:59:00Z"), Severity::Low), None);
        // A window edge inside the skipped hour (02:30 on 2026-03-29 does not exist in Berlin):
        // read as the time after the gap, 03:30 CEST (01:30Z).
        let gap = rules(r#"{"quiet_hours":{"time_zone":"Europe/Berlin","from":"22:00","to":"02:30"}}"#)
            .quiet_hours
            .expect("set");
        assert_eq!(
            gap.hold_until(ms("2026-03-28T23:00:00Z"), Severity::Low),
            Some(ms("2026-03-29T01:30:00Z"))
        );
    }
}
