//! Silences: "mute what matches these matchers from this time to that one", for the whole
//! deployment or one endpoint, with an author and a comment (Alertmanager's silences, PagerDuty's
//! suppression rules). Pure: what a silence is, its validation, whether it silences a delivery at
//! a time (Redis's clock, given by the caller), and the audit entry of a change. The Redis side is
//! `entraguard_core::silences`; fan-out asks [`SilenceSet::candidates`].
//!
//! A silence never hides `scan.failed` unless its kind matcher names that kind: a broken scan is
//! news a mute made for findings must not swallow.

pub mod matcher;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::event::{Event, EventKind};
use crate::ids::{EndpointId, SilenceId};
pub use matcher::{Matchers, SeverityMatch};

/// The longest a silence may last: silences are for a time (a migration, a quarter's accepted
/// risk); a permanent mute is an endpoint's rules (its tenants, its severity floor).
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);
/// Longest author and comment.
pub const MAX_AUTHOR_CHARS: usize = 100;
pub const MAX_COMMENT_CHARS: usize = 1000;
/// How many of the last silenced events each silence remembers.
pub const RECENT_EVENTS: usize = 10;

/// What is wrong with a silence's input: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("invalid {field}: {reason}")]
    Field { field: &'static str, reason: String },
}

fn bad(field: &'static str, reason: impl Into<String>) -> SilenceError {
    SilenceError::Field { field, reason: reason.into() }
}

/// One silence as stored (times in Unix ms, Redis's clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: SilenceId,
    pub matchers: Matchers,
    /// Set when the silence has no matcher on purpose: it mutes every event (but `scan.failed`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub match_all: bool,
    /// Only this endpoint's deliveries; `None`: every endpoint's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<EndpointId>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub created_by: String,
    pub comment: String,
    pub created_at_ms: i64,
    /// Who expired it early, and when (then `ends_at_ms` is that time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_by: Option<String>,
}

/// Where a silence is in its life at a time.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    /// Starts later.
    Pending,
    Active,
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

impl Silence {
    pub fn state(&self, now_ms: i64) -> SilenceState {
        if now_ms >= self.ends_at_ms {
            SilenceState::Expired
        } else if now_ms < self.starts_at_ms {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }

    /// Whether it mutes `event` going to `endpoint`, whatever the time: its endpoint and its
    /// matchers (a `scan.failed` only when named).
    pub fn matches(&self, event: &Event, endpoint: &str) -> bool {
        if self.endpoint_id.as_ref().is_some_and(|e| e.as_str() != endpoint) {
            return false;
        }
        if event.kind() == EventKind::ScanFailed && !self.matchers.names_kind(EventKind::ScanFailed) {
            return false;
        }
        self.matchers.matches(event)
    }

    /// One line for people and the audit list: matchers, scope, window.
    pub fn summary(&self) -> String {
        let scope =
            self.endpoint_id.as_ref().map_or("every endpoint".to_owned(), |e| format!("endpoint {e}"));
        format!(
            "{} on {scope}, {} to {}",
            self.matchers,
            rfc3339_ms(self.starts_at_ms),
            rfc3339_ms(self.ends_at_ms)
        )
    }
}

/// A silence as a person writes it (CLI flags, the API's body, the page's form).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceDraft {
    /// Matcher expressions, all of which must match: `tenant=B`, `kind=finding.new`,
    /// `finding=PIM-002`, `category=privileged-access`, `severity=low,medium`,
    /// `severity<=medium`. Several values after `=` are alternatives.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// No matcher, on purpose: mute every event (but `scan.failed`) of the deployment, or of
    /// `endpoint_id`. Refused with matchers; required without.
    #[serde(default)]
    pub match_all: bool,
    /// Only this endpoint's deliveries (`ep_…`); absent: every endpoint's.
    #[serde(default)]
    pub endpoint_id: Option<String>,
    /// RFC 3339; absent: now (Redis's clock).
    #[serde(default)]
    pub starts_at: Option<String>,
    /// RFC 3339. Exactly one of `ends_at` and `duration`.
    #[serde(default)]
    pub ends_at: Option<String>,
    /// From `starts_at`: `3s`, `48h`, `90d`.
    #[serde(default)]
    pub duration: Option<String>,
    /// Who creates it.
    #[serde(default)]
    pub author: String,
    /// Why.
    #[serde(default)]
    pub comment: String,
}

impl SilenceDraft {
    /// Validates the draft into a new silence, created at `now_ms` (Redis's clock). Errors name
    /// the field.
    pub fn validate(&self, now_ms: i64) -> Result<Silence, SilenceError> {
        let matchers = Matchers::parse(self.matchers.iter().map(String::as_str))?;
        if matchers.is_empty() && !self.match_all {
            return Err(bad(
                "matchers",
                "none given: a silence without matchers would mute every event; name what to mute \
                 (e.g. tenant=B severity<=medium), or say match_all (--match-all) to mean it",
            ));
        }
        if !matchers.is_empty() && self.match_all {
            return Err(bad("match_all", "is for a silence without matchers; drop it or the matchers"));
        }
        let endpoint_id = match self.endpoint_id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(e) => Some(e.parse::<EndpointId>().map_err(|e| bad("endpoint_id", e.to_string()))?),
            None => None,
        };
        let starts_at_ms = match self.starts_at.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => parse_time("starts_at", s)?,
            None => now_ms,
        };
        let ends_at_ms = match (
            self.ends_at.as_deref().map(str::trim).filter(|s| !s.is_empty()),
            self.duration.as_deref().map(str::trim).filter(|s| !s.is_empty()),
        ) {
            (Some(_), Some(_)) => return Err(bad("duration", "give an end or a duration, not both")),
            (None, None) => {
                return Err(bad("ends_at", "missing: give an end (RFC 3339) or a duration (48h)"));
            }
            (Some(end), None) => parse_time("ends_at", end)?,
            (None, Some(d)) => {
                let d = humantime::parse_duration(d).map_err(|e| {
                    bad("duration", format!("{:?} is not a duration (3s, 48h, 90d): {e}", cut(d)))
                })?;
                if d.is_zero() {
                    return Err(bad("duration", "must be more than 0"));
                }
                starts_at_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            }
        };
        if ends_at_ms <= starts_at_ms {
            return Err(bad(
                "ends_at",
                format!("{} is not after the start, {}", rfc3339_ms(ends_at_ms), rfc3339_ms(starts_at_ms)),
            ));
        }
        if ends_at_ms <= now_ms {
            return Err(bad("ends_at", format!("{} is already past", rfc3339_ms(ends_at_ms))));
        }
        let max = i64::try_from(MAX_DURATION.as_millis()).unwrap_or(i64::MAX);
        if ends_at_ms - starts_at_ms > max {
            return Err(bad(
                "ends_at",
                "a silence lasts at most 366 days (a permanent mute is an endpoint's rules: tenants, min_severity)",
            ));
        }
        Ok(Silence {
            id: SilenceId::generate(),
            matchers,
            match_all: self.match_all,
            endpoint_id,
            starts_at_ms,
            ends_at_ms,
            created_by: person("author", &self.author)?,
            comment: text("comment", &self.comment, MAX_COMMENT_CHARS)?,
            created_at_ms: now_ms,
            expired_by: None,
        })
    }
}

/// An author's or expirer's name: 1 to 100 characters, one line.
pub fn person(field: &'static str, s: &str) -> Result<String, SilenceError> {
    text(field, s, MAX_AUTHOR_CHARS)
}

fn text(field: &'static str, s: &str, max: usize) -> Result<String, SilenceError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(bad(field, "missing: say who and why, it is kept in the audit list"));
    }
    if s.chars().count() > max {
        return Err(bad(field, format!("longer than {max} characters")));
    }
    if s.chars().any(|c| c.is_control() && c != '\n') || (max == MAX_AUTHOR_CHARS && s.contains('\n')) {
        return Err(bad(field, "holds control characters"));
    }
    Ok(s.to_owned())
}

fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

fn parse_time(field: &'static str, s: &str) -> Result<i64, SilenceError> {
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
        bad(field, format!("{:?} is not an RFC 3339 time, e.g. 2026-06-30T23:59:59Z", cut(s)))
    })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad(field, "out of range"))
}

/// A Unix ms time as RFC 3339 (UTC; milliseconds only when there are some).
pub fn rfc3339_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// What was done to a silence.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditAction {
    Created,
    Expired,
}

/// One entry of the silences' audit list: who did what to which silence, when.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339, Redis's clock.
    pub at: String,
    pub who: String,
    pub action: AuditAction,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub silence_id: SilenceId,
    /// The silence as it was then: matchers, scope, window; and its comment.
    pub what: String,
}

impl AuditEntry {
    pub fn new(at_ms: i64, who: &str, action: AuditAction, silence: &Silence) -> Self {
        AuditEntry {
            at: rfc3339_ms(at_ms),
            who: who.to_owned(),
            action,
            silence_id: silence.id.clone(),
            what: format!("{} ({})", silence.summary(), silence.comment),
        }
    }
}

/// A silence as the CLI, the API and the page show it: times as RFC 3339, its state now, and
/// what it silenced.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceView {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: SilenceId,
    pub state: SilenceState,
    pub matchers: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub match_all: bool,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub endpoint_id: Option<EndpointId>,
    pub starts_at: String,
    pub ends_at: String,
    pub created_by: String,
    pub created_at: String,
    pub comment: String,
    pub expired_by: Option<String>,
    /// Deliveries it kept from being made.
    pub silenced: u64,
    /// The last events it silenced (at most 10), newest first.
    pub recent_events: Vec<String>,
}

impl Silence {
    pub fn view(&self, now_ms: i64, silenced: u64, recent_events: Vec<String>) -> SilenceView {
        SilenceView {
            id: self.id.clone(),
            state: self.state(now_ms),
            matchers: self.matchers.expressions(),
            match_all: self.match_all,
            endpoint_id: self.endpoint_id.clone(),
            starts_at: rfc3339_ms(self.starts_at_ms),
            ends_at: rfc3339_ms(self.ends_at_ms),
            created_by: self.created_by.clone(),
            created_at: rfc3339_ms(self.created_at_ms),
            comment: self.comment.clone(),
            expired_by: self.expired_by.clone(),
            silenced,
            recent_events,
        }
    }
}

/// The deployment's silences as fan-out reads them.
#[derive(Debug, Clone, Default)]
pub struct SilenceSet {
    silences: Vec<Arc<Silence>>,
}

impl SilenceSet {
    pub fn new(mut silences: Vec<Silence>) -> Self {
        silences.sort_by(|a, b| a.id.cmp(&b.id));
        Self { silences: silences.into_iter().map(Arc::new).collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.silences.is_empty()
    }

    pub fn len(&self) -> usize {
        self.silences.len()
    }

    /// The silences that could mute `event` (for some endpoint, at some time), found in one pass
    /// over the set: what fan-out decides `event` with.
    pub fn candidates<'a>(&'a self, event: &Event) -> Candidates<'a> {
        Candidates(self.silences.iter().filter(|s| s.matches_any_endpoint(event)).map(Arc::as_ref).collect())
    }
}

/// The silences of a set that match one event but for their endpoint and time
/// ([`SilenceSet::candidates`]). Usually none: then fan-out needs neither Redis's clock nor any
/// further look.
#[derive(Debug, Clone, Default)]
pub struct Candidates<'a>(Vec<&'a Silence>);

impl<'a> Candidates<'a> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Those muting the event to `endpoint` at `now_ms` (Redis's clock), oldest first.
    pub fn silencing<'b>(
        &'b self,
        endpoint: &'b str,
        now_ms: i64,
    ) -> impl Iterator<Item = &'a SilenceId> + 'b {
        self.0
            .iter()
            .filter(move |s| {
                s.state(now_ms) == SilenceState::Active
                    && s.endpoint_id.as_ref().is_none_or(|e| e.as_str() == endpoint)
            })
            .map(|s| &s.id)
    }

    /// Whether every decision is the same anywhere within `margin` of `now_ms`: then an estimate
    /// of Redis's clock that close is as good as reading it.
    pub fn settled(&self, now_ms: i64, margin: Duration) -> bool {
        let m = i64::try_from(margin.as_millis()).unwrap_or(i64::MAX);
        let active = |s: &Silence, t: i64| s.state(t) == SilenceState::Active;
        self.0.iter().all(|s| {
            let at = active(s, now_ms);
            at == active(s, now_ms.saturating_sub(m)) && at == active(s, now_ms.saturating_add(m))
        })
    }
}

impl Silence {
    fn matches_any_endpoint(&self, event: &Event) -> bool {
        match &self.endpoint_id {
            Some(e) => self.matches(event, e.as_str()),
            None => self.matches(event, ""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000_000;

    fn finding(tenant: &str, severity: &str) -> Event {
        Event::from_json(
            format!(
                r#"{{"event":"finding.new","tenant_id":"{tenant}","scan_id":"s1","finding":{{"id":"PIM-002","title":"t",
                "severity":"{severity}","category":"privileged-access","remediation_url":"https://x.example/f"}}}}"#
            )
            .as_bytes(),
        )
        .expect("valid event")
    }

    fn scan_failed(tenant: &str) -> Event {
        Event::from_json(
            format!(
                r#"{{"event":"scan.failed","tenant_id":"{tenant}","scan":{{"run_id":"r","kind":"full","environment":"prod","error":{{"kind":"network","message":"boom"}}}}}}"#
            )
            .as_bytes(),
        )
        .expect("valid event")
    }

    fn draft(matchers: &[&str]) -> SilenceDraft {
        SilenceDraft {
            matchers: matchers.iter().map(|s| (*s).to_owned()).collect(),
            duration: Some("3s".into()),
            author: "alice".into(),
            comment: "tenant B is being migrated".into(),
            ..SilenceDraft::default()
        }
    }

    fn silence(matchers: &[&str]) -> Silence {
        draft(matchers).validate(NOW).expect("valid silence")
    }

    fn reason(e: SilenceError) -> (&'static str, String) {
        let SilenceError::Field { field, reason } = e;
        (field, reason)
    }

    #[test]
    fn a_severity_ceiling_matches_that_severity_and_every_lesser_one() {
        let s = silence(&["tenant=B", "severity<=medium"]);
        for (sev, muted) in
            [("critical", false), ("high", false), ("medium", true), ("low", true), ("info", true)]
        {
            assert_eq!(s.matches(&finding("B", sev), "ep_x"), muted, "B {sev}");
        }
        assert!(!s.matches(&finding("A", "low"), "ep_x"), "another tenant");
        assert_eq!(s.matchers.expressions(), ["tenant=B", "severity<=medium"]);
    }

    #[test]
    fn one_of_matches_any_listed_value_and_every_matcher_must_match() {
        let s =
            silence(&["tenant=A,B", "severity=low,info", "category=privileged-access", "finding=PIM-002"]);
        assert!(s.matches(&finding("A", "low"), "ep_x"));
        assert!(s.matches(&finding("B", "info"), "ep_x"));
        assert!(!s.matches(&finding("C", "low"), "ep_x"));
        assert!(!s.matches(&finding("A", "medium"), "ep_x"));
        let other_category = silence(&["category=mfa"]);
        assert!(!other_category.matches(&finding("A", "low"), "ep_x"));
        let kinds = silence(&["kind=finding.severity_changed"]);
        assert!(!kinds.matches(&finding("A", "low"), "ep_x"));
    }

    #[test]
    fn finding_matchers_never_match_an_event_without_a_finding() {
        let s = silence(&["severity<=critical", "kind=scan.failed,finding.new"]);
        assert!(!s.matches(&scan_failed("A"), "ep_x"));
        assert!(s.matches(&finding("A", "critical"), "ep_x"));
    }

    #[test]
    fn scan_failed_is_muted_only_by_a_silence_naming_its_kind() {
        let tenant = silence(&["tenant=B"]);
        assert!(tenant.matches(&finding("B", "high"), "ep_x"));
        assert!(!tenant.matches(&scan_failed("B"), "ep_x"), "a tenant-wide silence leaves failed scans");
        let mut all = draft(&[]);
        all.match_all = true;
        assert!(!all.validate(NOW).expect("valid").matches(&scan_failed("B"), "ep_x"));
        let named = silence(&["tenant=B", "kind=scan.failed"]);
        assert!(named.matches(&scan_failed("B"), "ep_x"));
    }

    #[test]
    fn an_endpoint_silence_mutes_only_that_endpoint() {
        let mut d = draft(&["tenant=B"]);
        d.endpoint_id = Some("ep_01JSAMPLE".into());
        let s = d.validate(NOW).expect("valid");
        assert!(s.matches(&finding("B", "low"), "ep_01JSAMPLE"));
        assert!(!s.matches(&finding("B", "low"), "ep_other"));
    }

    #[test]
    fn a_silence_is_active_from_its_start_until_its_end_by_the_clock_given() {
        let set = SilenceSet::new(vec![silence(&["tenant=B"])]);
        let low = finding("B", "low");
        let c = set.candidates(&low);
        assert_eq!(c.silencing("ep_x", NOW).count(), 1);
        assert_eq!(c.silencing("ep_x", NOW + 2_999).count(), 1);
        assert_eq!(c.silencing("ep_x", NOW + 3_000).count(), 0, "over at its end");
        assert_eq!(c.silencing("ep_x", NOW - 1).count(), 0, "not yet");
        let s = silence(&["tenant=B"]);
        assert_eq!(s.state(NOW - 1), SilenceState::Pending);
        assert_eq!(s.state(NOW), SilenceState::Active);
        assert_eq!(s.state(NOW + 3_000), SilenceState::Expired);
    }

    #[test]
    fn the_clock_estimate_is_enough_unless_an_edge_is_within_the_margin() {
        let mut d = draft(&["tenant=B"]);
        d.duration = Some("1h".into());
        let set = SilenceSet::new(vec![d.validate(NOW).expect("valid")]);
        let margin = Duration::from_secs(5);
        let low = finding("B", "low");
        let c = set.candidates(&low);
        assert!(!c.is_empty());
        assert!(set.candidates(&finding("A", "low")).is_empty());
        assert!(c.settled(NOW + 60_000, margin));
        assert!(!c.settled(NOW + 2_000, margin), "2 s after its start");
        assert!(!c.settled(NOW + 3_600_000 - 1_000, margin), "1 s before its end");
        assert!(set.candidates(&finding("A", "low")).settled(NOW + 1, margin), "it cannot match that event");
    }

    #[test]
    fn input_errors_name_the_field_and_say_why() {
        let cases: [(SilenceDraft, &str, &str); 10] = [
            (draft(&["team=B"]), "matchers", "unknown field \"team\""),
            (draft(&["severity=urgent"]), "matchers", "not a severity"),
            (draft(&["severity<=low,info"]), "matchers", "one severity"),
            (draft(&["tenant<=B"]), "matchers", "only severity takes <="),
            (draft(&["tenant!=B"]), "matchers", "only = and severity<="),
            (draft(&["tenant=B", "tenant=C"]), "matchers", "given twice"),
            (draft(&["kind=finding.old"]), "matchers", "not an event kind"),
            (draft(&["tenant"]), "matchers", "not a matcher"),
            (draft(&["tenant=B,"]), "matchers", "empty"),
            (draft(&[]), "matchers", "match_all"),
        ];
        for (d, field, expected) in cases {
            let (f, r) = reason(d.validate(NOW).expect_err("refused"));
            assert_eq!(f, field, "{d:?}: {r}");
            assert!(r.contains(expected), "{d:?}: expected {expected:?} in {r:?}");
        }
        let mut d = draft(&["tenant=B"]);
        d.starts_at = Some("2026-07-01T00:00:00Z".into());
        d.duration = None;
        d.ends_at = Some("2026-06-30T00:00:00Z".into());
        let (f, r) = reason(d.validate(NOW).expect_err("end before start"));
        assert_eq!(f, "ends_at");
        assert!(r.contains("not after the start"), "{r}");
        d.ends_at = Some("2026-07-01T00:00:00Z".into());
        d.duration = Some("1h".into());
        assert_eq!(reason(d.validate(NOW).expect_err("both")).0, "duration");
        let mut d = draft(&["tenant=B"]);
        d.duration = Some("soon".into());
        assert_eq!(reason(d.validate(NOW).expect_err("bad duration")).0, "duration");
        d.duration = Some("400d".into());
        assert!(reason(d.validate(NOW).expect_err("too long")).1.contains("366 days"));
        let mut d = draft(&["tenant=B"]);
        d.author = " ".into();
        assert_eq!(reason(d.validate(NOW).expect_err("no author")).0, "author");
        let mut d = draft(&["tenant=B"]);
        d.match_all = true;
        assert_eq!(reason(d.validate(NOW).expect_err("both")).0, "match_all");
        let mut d = draft(&["tenant=B"]);
        d.ends_at = Some("2020-01-01T00:00:00Z".into());
        d.duration = None;
        d.starts_at = Some("2019-01-01T00:00:00Z".into());
        assert!(reason(d.validate(NOW).expect_err("past")).1.contains("already past"));
    }

    #[test]
    fn the_api_body_refuses_unknown_fields() {
        let e = serde_json::from_str::<SilenceDraft>(r#"{"matchers":["tenant=B"],"duraton":"3s"}"#)
            .expect_err("unknown field");
        assert!(e.to_string().contains("duraton"), "{e}");
    }

    #[test]
    fn expressions_read_back_to_the_same_matchers_and_stored_json_round_trips() {
        let s = silence(&[" severity = low , medium ", "kind=finding.new", "tenant=B"]);
        let again = Matchers::parse(s.matchers.expressions().iter().map(String::as_str)).expect("parses");
        assert_eq!(again, s.matchers);
        let json = serde_json::to_string(&s).expect("json");
        assert_eq!(serde_json::from_str::<Silence>(&json).expect("reads"), s);
        assert_eq!(rfc3339_ms(1_780_000_000_250), "2026-05-28T20:26:40.25Z");
        assert_eq!(rfc3339_ms(1_780_000_000_000), "2026-05-28T20:26:40Z");
    }
}
