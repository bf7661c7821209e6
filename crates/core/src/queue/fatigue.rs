//! The Redis side of the alert-fatigue rules (issue 15): fan-out with dedupe, quiet-hour holds
//! and digest collection in one step with the event's acknowledgement, and a digest's flush and
//! delivery, each one step. Scripts live beside this file; they declare `allow-oom` like every
//! script a worker runs.

use std::time::Duration;

use super::{Claim, Fetched, MAX_JOB_BYTES, Queue, QueueError};
use crate::digest::DigestRef;

/// Most findings of one digest a worker reads in one command.
const DIGEST_READ_CHUNK: isize = 1000;

/// One thing fan-out does for one endpoint (see `route.lua`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteStep {
    /// Push a delivery job now (urgent: to the front), or hold it until `hold_until` (Unix ms,
    /// Redis clock). With `park_as` (the id its event's body is kept under, see
    /// [`crate::job::body_id`]) and [`FanoutParking`] on, a delivery whose endpoint's breaker is
    /// open (its probe not due) or disabled goes straight into the endpoint's lane instead.
    Send {
        endpoint: String,
        job: String,
        urgent: bool,
        hold_until: Option<i64>,
        dedupe: Option<Dedupe>,
        park_as: Option<String>,
    },
    /// Append a finding to a digest; a new digest is flushed after `max_wait` at the latest by
    /// `timer` (a `digest_due.v1` job).
    Collect { digest: DigestRef, item: String, timer: String, max_wait: Duration, dedupe: Option<Dedupe> },
    /// A digest's scan ended: flush it after `grace` with `timer` (a `digest_due.v1` job), so
    /// findings of the scan other workers are still fanning out join it.
    Flush { digest: DigestRef, timer: String, grace: Duration },
    /// Queue shards: hand the event to the endpoints homed in shard `shard` through this
    /// shard's outbox (`job` is the `event.v1` job scoped to that shard; see
    /// [`crate::shards`]).
    Forward { shard: usize, job: String },
    /// A delivery `silences` mute: not made, counted for each of them with the event's id
    /// (see `crate::silences`).
    Silence { endpoint: String, event_id: String, silences: Vec<crate::ids::SilenceId> },
}

/// A dedupe check: `member` (see `rules::dedupe_member`) seen within `window` skips the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dedupe {
    pub member: String,
    pub window: Duration,
}

/// Fan-out parks a fresh delivery in its endpoint's lane when the endpoint's breaker is open (its
/// probe not due) or disabled, in the same step as the event's acknowledgement: no fetch, no
/// admission, no separate park (`route.lua`). The lane is what `park.lua` would have made of it
/// after a fetch: the delivery kept as a `delivery_ref.v1` job, its event's body once in
/// `{p}:bodies`, the lane's next look at the probe time (a disabled endpoint's a day later), no
/// Recent Deliveries entry (no attempt was made). A lane holding `lane_max` already
/// (`NOTIFY_LANE_MAX`; 0: no limit) takes nothing: the delivery goes to ready, where the worker
/// that fetches it dead-letters it as "endpoint lane full", as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutParking {
    pub lane_max: u64,
}

/// What one fan-out step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Routed {
    pub sent: u64,
    /// Held until quiet hours end.
    pub held: u64,
    /// Findings added to digests.
    pub collected: u64,
    /// Digests whose scan ended (flushed after a short grace).
    pub flushed: u64,
    /// Skipped by a dedupe window.
    pub suppressed: u64,
    /// Handed to other queue shards through the outbox.
    pub forwarded: u64,
    /// Put straight into their endpoint's lane: its breaker is open or it is disabled (see
    /// [`FanoutParking`]). Counted in `sent` too.
    pub parked: u64,
    /// Deliveries not made: a silence mutes them.
    pub silenced: u64,
    /// This event parked deliveries, and its batch set or brought forward a lane's next look:
    /// a promoter waiting for a later look must look again. Parking behind a look already due
    /// sooner (the usual case while a breaker stays open) leaves it false.
    pub lane_look_moved: bool,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Queue {
    /// Redis's clock, Unix ms (quiet hours are computed from it, not the worker's).
    pub async fn redis_time_ms(&self) -> Result<i64, QueueError> {
        let mut conn = self.conn.clone();
        let (s, us): (i64, i64) = conn.query_at(&redis::cmd("TIME"), &self.keys.delayed()).await?;
        Ok(s * 1000 + us / 1000)
    }

    /// Acknowledges an event job and carries out its fan-out `steps`, in one atomic step.
    /// `None` if the lease was lost (nothing was done).
    pub async fn route(&self, job: &Claim, steps: &[RouteStep]) -> Result<Option<Routed>, QueueError> {
        let (answers, _) = self.route_many(&[(job, steps)], 0, None).await?;
        Ok(answers.into_iter().next().flatten())
    }

    /// [`Queue::route`] for many event jobs of one worker (one processing list), in one script run: each event's
    /// acknowledgement and steps stay one atomic step; each dedupe key is read and written once
    /// for the batch. One answer per event, in order. In the same step, after the pushes, up to
    /// `take` next jobs are taken onto the processing list, as
    /// [`Queue::ack_delivered_many`] takes them. With `parking`, deliveries to an endpoint whose
    /// breaker is open go straight into its lane (see [`FanoutParking`]).
    pub async fn route_many(
        &self,
        events: &[(&Claim, &[RouteStep])],
        take: usize,
        parking: Option<FanoutParking>,
    ) -> Result<(Vec<Option<Routed>>, Fetched), QueueError> {
        let Some((first, _)) = events.first() else { return Ok((Vec::new(), Fetched::default())) };
        debug_assert!(events.iter().all(|(j, _)| j.list() == first.list()), "one processing list");
        let k = &self.keys;
        let mut keys: Vec<String> = vec![
            first.list().to_owned(),
            k.ready(),
            k.delayed(),
            k.digests(),
            k.suppressed(),
            k.digest_timers(),
        ];
        // Each key once: the script groups a batch's dedupe checks by key index.
        let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut key = |name: String| {
            *index.entry(name).or_insert_with_key(|name| {
                keys.push(name.clone());
                keys.len()
            })
        };
        let mut args: Vec<Vec<u8>> = vec![events.len().to_string().into_bytes()];
        for (job, steps) in events {
            args.push(job.bytes().to_vec());
            args.push(steps.len().to_string().into_bytes());
            for step in *steps {
                step_args(k, step, parking.is_some(), &mut key, &mut args);
            }
        }
        let (retry, rev) = match take {
            0 => (0, 0),
            _ => (key(k.retry()), if self.home { key(k.endpoints_rev()) } else { 0 }),
        };
        for v in [take, MAX_JOB_BYTES, retry, rev] {
            args.push(v.to_string().into_bytes());
        }
        let (lane_max, lanes, bodies, refs) = match parking {
            Some(p) => (p.lane_max, key(k.lanes()), key(k.bodies()), key(k.body_refs())),
            None => (0, 0, 0, 0),
        };
        args.push(lane_max.to_string().into_bytes());
        for v in [lanes, bodies, refs, key(k.layout()), key(k.flows())] {
            args.push(v.to_string().into_bytes());
        }
        args.push(k.endpoint_flow("").into_bytes());
        args.push(k.urgent_endpoint_flow("").into_bytes());
        args.push(key(k.scans_ended()).to_string().into_bytes());
        args.push(ms(crate::digest::LATE_FINDINGS_WAIT).to_string().into_bytes());
        let mut inv = self.scripts.route.prepare_invoke();
        for name in &keys {
            inv.key(name);
        }
        for a in &args {
            inv.arg(a.as_slice());
        }
        let mut conn = self.conn.clone();
        let (out, taken, looks_moved): (Vec<i64>, Vec<redis::Value>, i64) =
            inv.invoke_async(&mut conn).await?;
        let at = |i: usize| u64::try_from(out.get(i).copied().unwrap_or(0)).unwrap_or(0);
        let routed = (0..events.len())
            .map(|e| {
                let b = e * 8;
                (out.get(b).is_some_and(|&sent| sent >= 0)).then(|| Routed {
                    sent: at(b),
                    held: at(b + 1),
                    collected: at(b + 2),
                    flushed: at(b + 3),
                    suppressed: at(b + 4),
                    forwarded: at(b + 5),
                    silenced: at(b + 6),
                    parked: at(b + 7),
                    lane_look_moved: looks_moved > 0 && at(b + 7) > 0,
                })
            })
            .collect();
        Ok((routed, Fetched::from_take(taken, first.shared_list())))
    }

    /// A digest's timer came due: flush it with `job` (a `digest.v1` job) if it is still open
    /// and its deadline has come. `None` if the lease was lost, else whether it was flushed.
    pub async fn digest_due(
        &self,
        claim: &Claim,
        digest: &DigestRef,
        job: &str,
    ) -> Result<Option<bool>, QueueError> {
        let k = &self.keys;
        let id = digest.id();
        let mut conn = self.conn.clone();
        let done: i64 = self
            .scripts
            .digest_due
            .key(claim.list())
            .key(k.ready())
            .key(k.digests())
            .key(k.digest(&id))
            .key(k.digest_flushed(&id, &digest.flush))
            .key(k.digest_timers())
            .arg(claim.bytes())
            .arg(&id)
            .arg(job)
            .invoke_async(&mut conn)
            .await?;
        Ok(match done {
            0 => None,
            2 => Some(true),
            _ => Some(false),
        })
    }

    /// The findings of a flushed digest, oldest first.
    pub async fn digest_items(&self, digest: &DigestRef) -> Result<Vec<Vec<u8>>, QueueError> {
        let key = self.keys.digest_flushed(&digest.id(), &digest.flush);
        let mut conn = self.conn.clone();
        let mut out = Vec::new();
        let mut from = 0isize;
        loop {
            let chunk: Vec<Vec<u8>> = redis::cmd("LRANGE")
                .arg(&key)
                .arg(from)
                .arg(from + DIGEST_READ_CHUNK - 1)
                .query_async(&mut conn)
                .await?;
            let n = chunk.len();
            out.extend(chunk);
            if n < usize::try_from(DIGEST_READ_CHUNK).unwrap_or(0) {
                return Ok(out);
            }
            from += DIGEST_READ_CHUNK;
        }
    }

    /// Finishes a flushed digest: its delivery job (`None`: nothing to send) pushed now or held
    /// until `hold_until`, the findings deleted, the `digest.v1` job acknowledged, in one step.
    /// `false` if the lease was lost.
    pub async fn digest_send(
        &self,
        job: &Claim,
        digest: &DigestRef,
        delivery: Option<&str>,
        hold_until: Option<i64>,
    ) -> Result<bool, QueueError> {
        let k = &self.keys;
        let mut conn = self.conn.clone();
        let done: i64 = self
            .scripts
            .digest_send
            .key(job.list())
            .key(k.ready())
            .key(k.delayed())
            .key(k.digest_flushed(&digest.id(), &digest.flush))
            .arg(job.bytes())
            .arg(delivery.unwrap_or(""))
            .arg(hold_until.unwrap_or(0))
            .invoke_async(&mut conn)
            .await?;
        Ok(done == 1)
    }

    /// How many finding events one endpoint's dedupe window kept from it.
    pub async fn suppressed_count(&self, endpoint: &crate::ids::EndpointId) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        let n: Option<u64> = redis::cmd("HGET")
            .arg(self.keys.suppressed())
            .arg(endpoint.as_str())
            .query_async(&mut conn)
            .await?;
        Ok(n.unwrap_or(0))
    }

    /// How many digests are collecting findings.
    pub async fn open_digests(&self) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("ZCARD").arg(self.keys.digests()).query_async(&mut conn).await?)
    }
}

/// The 11 script arguments of one step (see `route.lua`); `key` gives a key's index in KEYS.
/// With `parking`, a send that may park names its endpoint's lane (key index A), breaker (key
/// index B) and body id (extra).
fn step_args(
    k: &crate::keys::KeySpace,
    step: &RouteStep,
    parking: bool,
    key: &mut impl FnMut(String) -> usize,
    args: &mut Vec<Vec<u8>>,
) {
    let silenced_ids: String;
    let mut kb = 0;
    let (op, endpoint, dedupe, ka, id, payload, extra, n): (_, String, _, usize, String, &str, &str, i64) =
        match step {
            RouteStep::Send { endpoint, job, urgent, hold_until, dedupe, park_as } => {
                let park_as = park_as.as_deref().filter(|_| parking && hold_until.is_none());
                let ka = match park_as {
                    Some(_) => {
                        kb = key(k.breaker(endpoint));
                        key(k.lane(endpoint))
                    }
                    None => 0,
                };
                (
                    "send",
                    endpoint.clone(),
                    dedupe,
                    ka,
                    if *urgent { "1" } else { "0" }.to_owned(),
                    job.as_str(),
                    park_as.unwrap_or(""),
                    hold_until.unwrap_or(0),
                )
            }
            RouteStep::Collect { digest, item, timer, max_wait, dedupe } => {
                let id = digest.id();
                let ka = key(k.digest(&id));
                let wait = i64::try_from(ms(*max_wait)).unwrap_or(i64::MAX);
                (
                    "collect",
                    digest.endpoint_id.to_string(),
                    dedupe,
                    ka,
                    id,
                    item.as_str(),
                    timer.as_str(),
                    wait,
                )
            }
            RouteStep::Flush { digest, timer, grace } => {
                let id = digest.id();
                let ka = key(k.digest(&id));
                let grace = i64::try_from(ms(*grace)).unwrap_or(i64::MAX);
                ("flush", digest.endpoint_id.to_string(), &None, ka, id, timer.as_str(), "", grace)
            }
            RouteStep::Forward { shard, job } => {
                let ka = key(k.outbox(*shard));
                ("forward", String::new(), &None, ka, String::new(), job.as_str(), "", 0)
            }
            RouteStep::Silence { endpoint, event_id, silences } => {
                let ka = key(k.silenced());
                let ids = silences.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ");
                silenced_ids = ids;
                ("silence", endpoint.clone(), &None, ka, event_id.clone(), silenced_ids.as_str(), "", 0)
            }
        };
    let (dk, member, window) = match dedupe {
        Some(d) => (key(k.dedupe(&endpoint)), d.member.clone(), ms(d.window)),
        None => (0, String::new(), 0),
    };
    for v in [
        op.to_owned(),
        endpoint,
        dk.to_string(),
        member,
        window.to_string(),
        ka.to_string(),
        kb.to_string(),
        id,
    ] {
        args.push(v.into_bytes());
    }
    args.push(payload.as_bytes().to_vec());
    args.push(extra.as_bytes().to_vec());
    args.push(n.to_string().into_bytes());
}
