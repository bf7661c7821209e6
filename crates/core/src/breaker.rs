//! The circuit breaker per endpoint, with its state in Redis ([`KeySpace::breaker`]) so every
//! worker sees the same:
//! - **closed**: deliveries run; `NOTIFY_BREAKER_FAILURES` retryable failures in a row (timeouts,
//!   5xx, 429, connection errors; never a permanent 4xx) open it, a success clears the count.
//!   Once a failure is counted, deliveries are admitted one by one in Redis, only while the
//!   failures plus the attempts in flight stay under the threshold, so it opens at its Nth
//!   failure with nothing more sent, and failures of attempts that began before the last
//!   opening or closing (its *generation*) count toward nothing;
//! - **open**: the endpoint's deliveries park in its lane until the probe time
//!   (`NOTIFY_BREAKER_PROBE`, doubled after each failed probe, up to 10 minutes; re-opening
//!   soon after closing continues the doubling). A delivery whose attempt failed is parked with
//!   that attempt spent, or dead-lettered when it was its last;
//! - **half-open**: one delivery, the probe, was admitted; its success closes the breaker and
//!   the lane drains oldest first (no other success closes it: one that began before it opened
//!   says nothing of now), its failure re-opens it. A probe that never reports (its worker
//!   died) is taken over after its deadline;
//! - **disabled**: open longer than `NOTIFY_ENDPOINT_DISABLE_AFTER`: the endpoint is disabled (no
//!   new fan-out to it); its lane keeps what was parked (at most what was fanned out to it while
//!   it was enabled) until `endpoint enable` or `endpoint reset`, which call [`enable_endpoint`]
//!   and [`reset`] here and drain it.
//!
//! Changes are announced by `endpoint.health_changed`, damped: at most one opening (and its
//! closing) per probe interval; see `queue/breaker.lua`. `NOTIFY_BREAKER_FAILURES=off` turns the
//! breaker off ([`BreakerSettings::is_off`]).
//!
//! [`KeySpace::breaker`]: crate::keys::KeySpace::breaker

use std::time::Duration;

use crate::ids::EndpointId;
use crate::timestamp::Timestamp;

/// Longest error text a breaker keeps.
pub const MAX_ERROR: usize = 500;

/// Longest time between two probes.
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(600);

/// The breaker's settings, the same in every worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Retryable failures in a row that open it; 0: the breaker is off.
    pub failures: u32,
    /// First wait before a probe; doubled after each failed probe.
    pub probe: Duration,
    /// Longest wait between probes.
    pub max_probe: Duration,
    /// Open this long, the endpoint is disabled.
    pub disable_after: Duration,
    /// Deliveries a closing releases from the lane at once (the endpoint's cap); each finishing
    /// delivery then releases the next oldest.
    pub release: usize,
}

/// What a closing releases at once when the caller knows no worker's cap (the CLI, the admin
/// server): the oldest alone. Its finish finds the lane holding work and releases as many as
/// that worker has free slots, so the lane reaches the cap after one delivery without releasing
/// more than a worker takes (the surplus would park again, behind the rest).
pub const DEFAULT_RELEASE: usize = 1;

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failures: 5,
            probe: Duration::from_secs(30),
            max_probe: MAX_PROBE_INTERVAL,
            disable_after: Duration::from_secs(3 * 86_400),
            release: DEFAULT_RELEASE,
        }
    }
}

impl BreakerSettings {
    /// `NOTIFY_BREAKER_FAILURES=off`: deliveries never park for the breaker and failures are not
    /// counted; a breaker left open from before closes at the next success.
    pub fn is_off(&self) -> bool {
        self.failures == 0
    }
}

/// What a worker tells the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report<'a> {
    /// A retryable failure; `probe` when the delivery was the admitted probe.
    Failure { error: &'a str, probe: bool },
    /// A success; only the probe's (`probe`) closes an open breaker.
    Success { probe: bool },
    /// Close by hand, whatever the state, and drain the lane.
    Reset,
    /// Give a trial's slot back ([`AttemptFacts::trial`]), nothing counted: the attempt ended
    /// in a permanent failure, or was never made.
    Release,
}

/// What the reporting worker knows of the attempt, beyond how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttemptFacts {
    /// The breaker's generation the attempt was admitted under (`None`: the current one). An
    /// attempt of an older generation began before the breaker last opened or closed: its
    /// failure counts toward nothing and its success closes nothing.
    pub generation: Option<u64>,
    /// It was admitted as a trial ([`Admit::Trial`]): its slot is given back.
    pub trial: bool,
    /// The failing delivery parks when the breaker is not closed after this report: an opening
    /// counts it among the parked.
    pub parks: bool,
}

/// The breaker's answer to an admission question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Run it: no failure counted. `generation` is the breaker's generation.
    Closed { generation: u64 },
    /// Run it, as one of the attempts a closed breaker with failures counted lets through;
    /// report it with [`AttemptFacts::trial`].
    Trial { generation: u64 },
    /// Park it: the failures counted and the attempts in flight could open the breaker.
    Wait,
    /// Run it: it is the probe.
    Probe { generation: u64 },
    /// Park it; a probe may be claimed after this.
    Open(Duration),
    /// Park it: the endpoint was disabled by the breaker.
    Disabled,
}

pub use crate::health::BreakerState;

/// What the breaker did with a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The state after it: closed, open or disabled.
    pub state: BreakerState,
    /// The state changed to `state` (emit `endpoint.health_changed`).
    pub changed: bool,
    /// Open: time until the next probe may be claimed.
    pub probe_in: Duration,
    /// Deliveries drained (closed) or kept in the lane (disabled).
    pub parked: u64,
    pub failures: u64,
    /// The breaker's generation after it.
    pub generation: u64,
    /// This report's step announced a change (`endpoint.health_changed`); a change is left
    /// unannounced while the announcements are damped.
    pub announced: bool,
    /// Changes left unannounced (damped) before this step.
    pub quiet: u64,
}

/// What `breaker.lua` answers.
#[cfg(feature = "consume")]
pub(crate) type ScriptAnswer = (String, String, i64, i64, i64, i64, i64);

#[cfg(feature = "consume")]
impl Answer {
    pub(crate) fn from_script(answer: ScriptAnswer) -> Self {
        let (state, change, n, failures, generation, announced, quiet) = answer;
        let state = BreakerState::parse(&state);
        let n = u64::try_from(n).unwrap_or(0);
        Answer {
            state,
            changed: !change.is_empty(),
            probe_in: if state == BreakerState::Open { Duration::from_millis(n) } else { Duration::ZERO },
            parked: if state == BreakerState::Open { 0 } else { n },
            failures: u64::try_from(failures).unwrap_or(0),
            generation: u64::try_from(generation).unwrap_or(0),
            announced: announced == 1,
            quiet: u64::try_from(quiet).unwrap_or(0),
        }
    }
}

/// An endpoint's breaker as `endpoint show`, the admin API and metrics see it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BreakerStatus {
    pub state: BreakerState,
    /// Retryable failures in a row.
    pub consecutive_failures: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Deliveries waiting in the endpoint's lane.
    pub parked: u64,
    /// When it opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub since: Option<Timestamp>,
    /// When the next probe may go.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub next_probe: Option<Timestamp>,
}

#[cfg(feature = "consume")]
impl BreakerStatus {
    pub(crate) fn from_fields(
        state: Option<String>,
        failures: Option<u64>,
        last_error: Option<String>,
        opened_at: Option<i64>,
        next_probe: Option<i64>,
        parked: u64,
    ) -> Self {
        let state = state.as_deref().map_or(BreakerState::Closed, BreakerState::parse);
        let open = state != BreakerState::Closed;
        BreakerStatus {
            state,
            consecutive_failures: failures.unwrap_or(0),
            last_error,
            parked,
            since: opened_at.filter(|_| open).map(Timestamp::from_unix_millis),
            next_probe: next_probe.filter(|_| open).map(Timestamp::from_unix_millis),
        }
    }
}

/// The error text a breaker keeps: at most [`MAX_ERROR`] characters.
pub fn cut_error(error: &str) -> String {
    error.chars().take(MAX_ERROR).collect()
}

/// The `endpoint.health_changed` job that announces a change of `id`'s breaker, built for state
/// `open` with 0 parked: `breaker.lua` sets both when it records the change. `error` is the
/// failure reported (`""`: none, `last_error` is `null`, as in every closing).
pub fn announcement(id: &EndpointId, name: &str, error: &str) -> String {
    let event = crate::event::Event::endpoint_health(crate::event::EndpointHealth {
        id: id.to_string(),
        name: name.to_owned(),
        state: BreakerState::Open,
        last_error: (!error.is_empty()).then(|| cut_error(error)),
        parked: 0,
        since: Timestamp::now(),
    });
    crate::job::Job::Event(crate::job::EventJob::notifier(event)).encode()
}
