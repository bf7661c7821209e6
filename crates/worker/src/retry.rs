//! The retry decision: after an attempt, deliver nothing more, try again after a delay, or give
//! up. Pure, so the whole timeline is tested without Redis or a network.

use std::time::Duration;

use entraguard_core::retry::RetrySchedule;

use crate::outcome::Outcome;

/// What happens after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Done,
    RetryIn(Duration),
    /// Into the dead-letter queue, with this reason.
    Dead(String),
}

/// Decides what follows attempt number `attempt` (1-based) that came to `outcome`.
///
/// A retryable failure waits the schedule's next delay, or longer if the receiver's
/// `Retry-After` asks for more (capped at `max_retry_after`); when the schedule is exhausted,
/// or the failure is permanent, the delivery goes to the dead-letter queue.
pub fn decide(outcome: &Outcome, attempt: u32, schedule: &RetrySchedule, max_retry_after: Duration) -> Next {
    match outcome {
        Outcome::Delivered { .. } => Next::Done,
        Outcome::Permanent { error, .. } => Next::Dead(format!("permanent failure: {error}")),
        Outcome::Retryable { error, retry_after, .. } => match schedule.delay_before_retry(attempt) {
            None => Next::Dead(format!(
                "gave up after {attempt} attempt{}: {error}",
                if attempt == 1 { "" } else { "s" }
            )),
            Some(delay) => {
                let asked = retry_after.map(|d| d.min(max_retry_after)).unwrap_or_default();
                Next::RetryIn(delay.max(asked))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn fail() -> Outcome {
        Outcome::retryable(Some(500), "HTTP 500")
    }

    #[test]
    fn the_default_timeline_is_10s_1m_5m_then_dead() {
        let s = RetrySchedule::default();
        assert_eq!(decide(&fail(), 1, &s, HOUR), Next::RetryIn(Duration::from_secs(10)));
        assert_eq!(decide(&fail(), 2, &s, HOUR), Next::RetryIn(Duration::from_secs(60)));
        assert_eq!(decide(&fail(), 3, &s, HOUR), Next::RetryIn(Duration::from_secs(300)));
        assert_eq!(decide(&fail(), 4, &s, HOUR), Next::Dead("gave up after 4 attempts: HTTP 500".into()));
    }

    #[test]
    fn retry_after_lengthens_but_never_shortens_and_is_capped() {
        let s = RetrySchedule::default();
        let ra = |secs| Outcome::Retryable {
            status: Some(429),
            error: "HTTP 429".into(),
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(decide(&ra(120), 1, &s, HOUR), Next::RetryIn(Duration::from_secs(120)));
        assert_eq!(decide(&ra(1), 1, &s, HOUR), Next::RetryIn(Duration::from_secs(10)));
        assert_eq!(decide(&ra(86_400), 1, &s, HOUR), Next::RetryIn(HOUR));
    }

    #[test]
    fn permanent_failures_and_success() {
        let s = RetrySchedule::default();
        assert_eq!(decide(&Outcome::Delivered { status: Some(200) }, 1, &s, HOUR), Next::Done);
        assert_eq!(
            decide(&Outcome::permanent(Some(404), "slack: 404 no_service"), 1, &s, HOUR),
            Next::Dead("permanent failure: slack: 404 no_service".into())
        );
        assert_eq!(
            decide(&fail(), 1, &RetrySchedule::none(), HOUR),
            Next::Dead("gave up after 1 attempt: HTTP 500".into())
        );
    }
}
