//! An endpoint's circuit breaker in Redis (`breaker.lua`, `breaker_admit.lua`): admission,
//! reports, and the state the CLI, the admin API and `/metrics` show. The breaker's model is
//! [`crate::breaker`].

use std::time::Duration;

use redis::AsyncCommands;

use super::{Queue, QueueError};

impl Queue {
    /// Asks an endpoint's circuit breaker whether a delivery may run (claiming the probe when its
    /// time has come; a claimed probe may be taken over after `probe_deadline`). While a closed
    /// breaker has counted failures, a delivery runs only as a trial, while the failures, the
    /// trials out and `in_flight` (the asking worker's other attempts to the endpoint, trials not
    /// counted) stay under `failures` (the threshold).
    pub async fn breaker_admit(
        &self,
        endpoint: &crate::ids::EndpointId,
        probe_deadline: Duration,
        failures: u32,
        in_flight: usize,
    ) -> Result<crate::breaker::Admit, QueueError> {
        use crate::breaker::Admit;
        let mut conn = self.conn.clone();
        let (answer, ms, _failures, generation): (String, i64, i64, i64) = self
            .scripts
            .breaker_admit
            .key(self.keys.breaker(endpoint.as_str()))
            .arg(u64::try_from(probe_deadline.as_millis()).unwrap_or(u64::MAX).max(1))
            .arg(failures.max(1))
            .arg(in_flight)
            .invoke_async(&mut conn)
            .await?;
        let ms = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        let generation = u64::try_from(generation).unwrap_or(0);
        Ok(match answer.as_str() {
            "probe" => Admit::Probe { generation },
            "open" => Admit::Open(ms),
            "disabled" => Admit::Disabled,
            "trial" => Admit::Trial { generation },
            "wait" => Admit::Wait,
            _ => Admit::Closed { generation },
        })
    }

    /// Tells an endpoint's circuit breaker how an attempt ended (or resets it), and says what
    /// it did. A state change is announced, in the same step, by an `endpoint.health_changed`
    /// event naming the endpoint `name` (`None`: no announcement), unless announcements are
    /// damped. See `breaker.lua`.
    pub async fn breaker_report(
        &self,
        endpoint: &crate::ids::EndpointId,
        name: Option<&str>,
        report: crate::breaker::Report<'_>,
        settings: &crate::breaker::BreakerSettings,
    ) -> Result<crate::breaker::Answer, QueueError> {
        self.breaker_report_attempt(endpoint, name, report, settings, crate::breaker::AttemptFacts::default())
            .await
    }

    /// [`Queue::breaker_report`] with what the worker knows of the attempt (its generation,
    /// whether it was a trial, whether the failing delivery parks).
    pub async fn breaker_report_attempt(
        &self,
        endpoint: &crate::ids::EndpointId,
        name: Option<&str>,
        report: crate::breaker::Report<'_>,
        settings: &crate::breaker::BreakerSettings,
        facts: crate::breaker::AttemptFacts,
    ) -> Result<crate::breaker::Answer, QueueError> {
        use crate::breaker::Report;
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        let (op, error, probe) = match report {
            Report::Failure { error, probe } => ("fail", error, probe),
            Report::Success { probe } => ("ok", "", probe),
            Report::Reset => ("reset", "", false),
            Report::Release => ("release", "", false),
        };
        let mut conn = self.conn.clone();
        let id = endpoint.as_str();
        let answer: crate::breaker::ScriptAnswer = self
            .scripts
            .breaker
            .key(self.keys.breaker(id))
            .key(self.keys.lane(id))
            .key(self.keys.ready())
            .key(self.keys.retry())
            .key(self.keys.lanes())
            .key(self.keys.endpoints())
            .key(self.keys.endpoints_rev())
            .key(self.keys.bodies())
            .key(self.keys.body_refs())
            .arg(op)
            .arg(id)
            .arg(settings.failures.max(1))
            .arg(ms(settings.probe))
            .arg(ms(settings.max_probe))
            .arg(ms(settings.disable_after))
            .arg(crate::breaker::cut_error(error))
            .arg(if probe { "1" } else { "0" })
            .arg(name.map(|n| crate::breaker::announcement(endpoint, n, error)).unwrap_or_default())
            .arg(facts.generation.map(|g| g.to_string()).unwrap_or_default())
            .arg(if facts.trial { "1" } else { "0" })
            .arg(if facts.parks { "1" } else { "0" })
            .arg(settings.release.max(1))
            .invoke_async(&mut conn)
            .await?;
        Ok(crate::breaker::Answer::from_script(answer))
    }

    /// What an endpoint's breaker says now, and how many deliveries wait in its lane.
    pub async fn breaker_status(
        &self,
        endpoint: &crate::ids::EndpointId,
    ) -> Result<crate::breaker::BreakerStatus, QueueError> {
        let mut conn = self.conn.clone();
        let id = endpoint.as_str();
        type Fields = (Option<String>, Option<u64>, Option<String>, Option<i64>, Option<i64>);
        let ((state, failures, last_error, opened_at, next_probe), parked): (Fields, u64) = redis::pipe()
            .cmd("HMGET")
            .arg(self.keys.breaker(id))
            .arg(&["state", "failures", "last_error", "opened_at", "next_probe"])
            .llen(self.keys.lane(id))
            .query_async(&mut conn)
            .await?;
        Ok(crate::breaker::BreakerStatus::from_fields(
            state, failures, last_error, opened_at, next_probe, parked,
        ))
    }

    /// Every endpoint's breaker state and parked count, for the metrics (two pipelined reads
    /// per endpoint, at scrape time).
    pub async fn breaker_overview(
        &self,
    ) -> Result<Vec<(String, crate::breaker::BreakerState, u64)>, QueueError> {
        let ids = self.endpoint_ids().await?;
        self.breaker_overview_of(ids).await
    }

    /// The ids of every stored endpoint (shard 0's endpoints hash).
    pub async fn endpoint_ids(&self) -> Result<Vec<String>, QueueError> {
        let mut conn = self.conn.clone();
        Ok(conn.hkeys(self.keys.endpoints()).await?)
    }

    /// [`Queue::breaker_overview`] of these endpoints, read in this shard.
    pub async fn breaker_overview_of(
        &self,
        ids: Vec<String>,
    ) -> Result<Vec<(String, crate::breaker::BreakerState, u64)>, QueueError> {
        let mut conn = self.conn.clone();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hget(self.keys.breaker(id), "state").llen(self.keys.lane(id));
        }
        let answers: Vec<(Option<String>, u64)> = pipe.query_async(&mut conn).await?;
        Ok(ids
            .into_iter()
            .zip(answers)
            .map(|(id, (state, parked))| {
                let status =
                    crate::breaker::BreakerStatus::from_fields(state, None, None, None, None, parked);
                (id, status.state, parked)
            })
            .collect())
    }
}
