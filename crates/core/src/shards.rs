//! Queue shards (`NOTIFY_QUEUE_SHARDS`): the queue's keys split over several hash tags, so a
//! Redis Cluster spreads them over its primaries. Each shard is a whole queue (ready, retry,
//! delayed, processing lists, leases, dead letters, lanes, breakers…) under its own tag.
//!
//! - **Events are placed by event id**: a producer publishes each event into the shard
//!   [`ShardLayout::of_event`] names; its dedupe window lives there.
//! - **Deliveries are placed by endpoint** ([`ShardLayout::of_endpoint`]): an endpoint's
//!   deliveries, retries, lane, breaker, pacing slot, dedupe window, digests and Recent
//!   Deliveries share one slot, so every script about the endpoint stays one atomic step.
//! - **Fan-out crosses shards through an outbox.** The worker fanning an event out in its shard
//!   routes the event to that shard's endpoints as on one server, and, in the same step as the
//!   event's acknowledgement, adds a copy of the event for each other shard that has endpoints
//!   for it to the shard's outbox ([`KeySpace::outbox`]). The copy is then moved into the target
//!   shard's ready list, deduplicated there by event id ([`KeySpace::forwarded`]), and removed
//!   from the outbox: moving twice enqueues once, so a worker killed between the two steps loses
//!   nothing and doubles nothing. There a worker fans it out to the endpoints homed in that
//!   shard only, with their dedupe windows, quiet hours and digests in their own slot.
//! - **The endpoint store** (endpoints, their revision, the sealing key id, admin sessions)
//!   stays in shard 0, whose tag is the one-server tag `{prefix}`: going from one shard to
//!   several moves no existing key.
//!
//! Shard `i > 0` is tagged `{prefix:i}`, or `{prefix:i.k}` with the smallest `k` that puts its
//! slot in the `i`-th share of the slot range that shard 0 does not fall in: a cluster whose
//! primaries hold equal slot ranges (what `redis-cli --cluster create` and the managed services
//! set up) then gets one shard per primary when there are as many shards as primaries.
//!
//! Changing the count moves endpoints between shards. Work already in a shard stays there and
//! is served by workers that list it in `NOTIFY_DRAIN_SHARDS` (the old count) until it is
//! empty: see "Scaling past one Redis" in docs/deploy-and-scaling.md.
//!
//! **The count is recorded in Redis** ([`KeySpace::layout`], in shard 0), so processes set to
//! different counts cannot disagree silently (work placed with one count waits in shards the
//! other never serves): the first producer or worker records its count; a process set to another
//! count refuses to run ([`decide`], [`LayoutMismatch`]), except a worker whose
//! `NOTIFY_DRAIN_SHARDS` names the recorded count: it records its own, the old one among the
//! `earlier` counts, whose shards `stats` and `/metrics` keep counting.

use std::time::Duration;

use crate::keys::KeySpace;

/// Most shards a deployment may have.
pub const MAX_SHARDS: u16 = 64;

/// How old an outbox entry must be before any worker moves it: younger ones are being moved
/// by the worker that routed them.
pub const OUTBOX_SWEEP_AGE: Duration = Duration::from_secs(10);

/// How long a target shard remembers a forwarded event id: far longer than a move can take
/// (the dedupe only has to outlast the time between a move and the outbox removal).
pub const FORWARD_DEDUPE_WINDOW: Duration = Duration::from_secs(3600);

/// How long a worker waits for the target shard's replicas to confirm an outbox move, with
/// `NOTIFY_PUBLISH_REPLICAS` set ([`crate::queue::Shards::with_forward_replicas`]); a move not
/// confirmed in time stays in the outbox for the sweep.
pub const FORWARD_REPLICA_WAIT: Duration = Duration::from_secs(2);

/// Redis Cluster's slot count.
const SLOTS: u32 = 16_384;

/// A shard count that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid shard count {0}: use 1 to {MAX_SHARDS}")]
pub struct ShardCountError(pub u16);

/// Which shards a deployment has, and which of them a process serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLayout {
    /// Shards new work is placed in, shard 0 first.
    placed: Vec<KeySpace>,
    /// Shards of an earlier count still served until empty (`NOTIFY_DRAIN_SHARDS`), not in
    /// `placed`.
    draining: Vec<KeySpace>,
    /// Shards of earlier recorded counts ([`RecordedLayout::earlier`]) this process does not
    /// serve: only counted (`stats`, `/metrics`), so work left in them is seen.
    observed: Vec<KeySpace>,
}

impl ShardLayout {
    /// One shard: the one-server layout.
    pub fn single(keys: KeySpace) -> Self {
        Self { placed: vec![keys], draining: Vec::new(), observed: Vec::new() }
    }

    /// `count` shards of `keys`'s prefix; with `drain`, the shards of that earlier count are
    /// served too (until empty), though nothing new is placed in those not in `count`.
    pub fn new(keys: &KeySpace, count: u16, drain: Option<u16>) -> Result<Self, ShardCountError> {
        let placed = tags(keys, count)?;
        let draining = match drain {
            Some(d) => tags(keys, d)?.into_iter().filter(|k| !placed.contains(k)).collect(),
            None => Vec::new(),
        };
        Ok(Self { placed, draining, observed: Vec::new() })
    }

    /// This layout, also counting (not serving) the shards of `counts` it does not serve.
    pub fn observing(mut self, counts: &[u16]) -> Self {
        let prefix = self.home().clone();
        for c in counts {
            for k in tags(&prefix, *c).unwrap_or_default() {
                if !self.counted().any(|s| *s == k) {
                    self.observed.push(k);
                }
            }
        }
        self
    }

    /// Every shard `stats` and `/metrics` count: the served ones, then those of earlier recorded
    /// counts that are not served ([`ShardLayout::observing`]).
    pub fn counted(&self) -> impl Iterator<Item = &KeySpace> {
        self.served().chain(self.observed.iter())
    }

    /// How many shards are served (placed and draining).
    pub fn served_count(&self) -> usize {
        self.placed.len() + self.draining.len()
    }

    /// How many shards new work is placed in.
    pub fn count(&self) -> usize {
        self.placed.len()
    }

    /// Shard `i`'s keys (`i < count`).
    pub fn keys(&self, i: usize) -> &KeySpace {
        &self.placed[i.min(self.placed.len() - 1)]
    }

    /// Shard 0's keys: where the endpoint store lives.
    pub fn home(&self) -> &KeySpace {
        &self.placed[0]
    }

    /// Every shard a worker serves and `stats` counts: the placed ones, then the draining ones.
    pub fn served(&self) -> impl Iterator<Item = &KeySpace> {
        self.placed.iter().chain(self.draining.iter())
    }

    /// The shard an event is published into.
    pub fn of_event(&self, event_id: &str) -> usize {
        self.place(event_id)
    }

    /// The shard an endpoint's deliveries and state live in.
    pub fn of_endpoint(&self, endpoint_id: &str) -> usize {
        self.place(endpoint_id)
    }

    /// A fresh endpoint id whose endpoint lands in shard `shard` (tools and tests placing an
    /// endpoint on purpose; ids are ULIDs, so about `count` tries).
    pub fn endpoint_id_in(&self, shard: usize) -> crate::ids::EndpointId {
        let shard = shard.min(self.placed.len() - 1);
        std::iter::repeat_with(crate::ids::EndpointId::generate)
            .find(|id| self.of_endpoint(id.as_str()) == shard)
            .unwrap_or_else(crate::ids::EndpointId::generate)
    }

    fn place(&self, id: &str) -> usize {
        if self.placed.len() == 1 {
            return 0;
        }
        // FNV-1a: stable across versions and platforms (the std hasher is not).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in id.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        usize::try_from(h % self.placed.len() as u64).unwrap_or(0)
    }
}

/// The layout recorded in Redis ([`KeySpace::layout`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordedLayout {
    /// The count new work is placed in; `None` before the first producer or worker ran.
    pub count: Option<u16>,
    /// Counts the deployment had before, oldest first: their shards may still hold work.
    pub earlier: Vec<u16>,
}

impl RecordedLayout {
    /// From the hash's `count` and `earlier` fields (unreadable parts are left out).
    pub fn parse(count: Option<&str>, earlier: Option<&str>) -> Self {
        let earlier = earlier
            .unwrap_or_default()
            .split(',')
            .filter_map(|c| c.trim().parse::<u16>().ok())
            .filter(|c| (1..=MAX_SHARDS).contains(c))
            .collect();
        Self { count: count.and_then(|c| c.trim().parse().ok()), earlier }
    }

    /// The `earlier` field's text.
    pub fn earlier_field(&self) -> String {
        self.earlier.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
    }
}

/// What a process is, for the layout check ([`decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutRole {
    /// Places events (the producer library, `entraguard-notify publish`): records its count on
    /// a deployment's first start.
    Producer,
    /// A worker: records its count on a first start; with `NOTIFY_DRAIN_SHARDS` = the recorded
    /// count, changes the recorded count to its own.
    Worker { drain: Option<u16> },
    /// Reads and manages (the CLI, the admin server): records nothing.
    Reader,
}

impl LayoutRole {
    fn name(self) -> &'static str {
        match self {
            LayoutRole::Producer => "producer",
            LayoutRole::Worker { .. } => "worker",
            LayoutRole::Reader => "process",
        }
    }
}

/// What to do with the recorded layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutDecision {
    /// The recorded count is this process's.
    Agree,
    /// Nothing recorded, nothing to record (a reader before any producer or worker ran).
    Unrecorded,
    /// Nothing recorded yet: record this process's count (the deployment's first start).
    Record,
    /// A worker draining the recorded count `from`: record its own count, `from` among the
    /// earlier ones (`earlier` is the new field).
    Change { from: u16, earlier: Vec<u16> },
}

/// A process set to another queue shard count than the deployment records: it refuses to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "this {role} is set to {configured} queue shard(s) (NOTIFY_QUEUE_SHARDS={configured}) but the deployment records {recorded} in Redis ({key}){drain_note}: work placed with another count waits in shards no worker serves, and reads miss it. Set NOTIFY_QUEUE_SHARDS={recorded}, as for every producer, worker, CLI and admin server of this deployment; to change the count to {configured} on purpose, start the workers with NOTIFY_QUEUE_SHARDS={configured} NOTIFY_DRAIN_SHARDS={recorded}, then set {configured} everywhere else (docs/deploy-and-scaling.md, \"Scaling past one Redis\")",
    drain_note = match drain { Some(d) => format!(" and NOTIFY_DRAIN_SHARDS={d} is not the recorded count"), None => String::new() }
)]
pub struct LayoutMismatch {
    pub role: &'static str,
    /// The layout hash's key.
    pub key: String,
    pub recorded: u16,
    pub configured: u16,
    /// The worker's `NOTIFY_DRAIN_SHARDS`, when it names another count than the recorded one.
    pub drain: Option<u16>,
}

/// Whether a process set to `configured` shards may run against `recorded` (read from `key`),
/// and what it records.
pub fn decide(
    recorded: &RecordedLayout,
    configured: u16,
    role: LayoutRole,
    key: &str,
) -> Result<LayoutDecision, LayoutMismatch> {
    let Some(count) = recorded.count else {
        return Ok(match role {
            LayoutRole::Reader => LayoutDecision::Unrecorded,
            LayoutRole::Producer | LayoutRole::Worker { .. } => LayoutDecision::Record,
        });
    };
    if count == configured {
        return Ok(LayoutDecision::Agree);
    }
    match role {
        LayoutRole::Worker { drain: Some(d) } if d == count => {
            let mut earlier: Vec<u16> =
                recorded.earlier.iter().copied().filter(|c| *c != count && *c != configured).collect();
            earlier.push(count);
            Ok(LayoutDecision::Change { from: count, earlier })
        }
        LayoutRole::Worker { drain } => {
            Err(LayoutMismatch { role: role.name(), key: key.to_owned(), recorded: count, configured, drain })
        }
        _ => Err(LayoutMismatch {
            role: role.name(),
            key: key.to_owned(),
            recorded: count,
            configured,
            drain: None,
        }),
    }
}

/// The key spaces of `count` shards of `keys`'s prefix (see the module docs for their tags).
fn tags(keys: &KeySpace, count: u16) -> Result<Vec<KeySpace>, ShardCountError> {
    if count == 0 || count > MAX_SHARDS {
        return Err(ShardCountError(count));
    }
    let prefix = keys.prefix();
    let n = u32::from(count);
    let share = |slot: u16| u32::from(slot) * n / SLOTS;
    let first = share(slot(prefix));
    // The shares shard 0's slot does not fall in, in order, one per other shard.
    let targets: Vec<u32> = (0..n).filter(|s| *s != first).collect();
    let mut out = vec![keys.clone()];
    for (i, target) in (1..n).zip(targets) {
        let base = format!("{prefix}:{i}");
        let body = std::iter::once(base.clone())
            .chain((1..).map(|k| format!("{base}.{k}")))
            .find(|body| share(slot(body)) == target)
            .unwrap_or(base);
        out.push(keys.shard(&body));
    }
    Ok(out)
}

/// The Redis Cluster slot of a hash tag's body: CRC16 (XMODEM) mod 16 384.
pub fn slot(tag_body: &str) -> u16 {
    let mut crc: u16 = 0;
    for b in tag_body.as_bytes() {
        crc ^= u16::from(*b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc % 16_384
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(count: Option<u16>, earlier: &[u16]) -> RecordedLayout {
        RecordedLayout { count, earlier: earlier.to_vec() }
    }

    #[test]
    fn the_first_producer_or_worker_records_its_count_and_readers_record_nothing() {
        let none = recorded(None, &[]);
        assert_eq!(decide(&none, 3, LayoutRole::Producer, "k"), Ok(LayoutDecision::Record));
        assert_eq!(decide(&none, 1, LayoutRole::Worker { drain: None }, "k"), Ok(LayoutDecision::Record));
        assert_eq!(decide(&none, 1, LayoutRole::Reader, "k"), Ok(LayoutDecision::Unrecorded));
        assert_eq!(decide(&recorded(Some(3), &[]), 3, LayoutRole::Reader, "k"), Ok(LayoutDecision::Agree));
    }

    #[test]
    fn another_count_is_refused_naming_both_counts_and_the_fix() {
        for role in [LayoutRole::Producer, LayoutRole::Reader, LayoutRole::Worker { drain: None }] {
            let e = decide(&recorded(Some(3), &[]), 1, role, "{entraguard}:layout").expect_err("refused");
            let text = e.to_string();
            for want in [
                "NOTIFY_QUEUE_SHARDS=1",
                "records 3",
                "{entraguard}:layout",
                "NOTIFY_QUEUE_SHARDS=3",
                "NOTIFY_DRAIN_SHARDS=3",
            ] {
                assert!(text.contains(want), "{want:?} in {text}");
            }
        }
        let e = decide(&recorded(Some(3), &[]), 4, LayoutRole::Worker { drain: Some(2) }, "k")
            .expect_err("refused");
        assert!(e.to_string().contains("NOTIFY_DRAIN_SHARDS=2 is not the recorded count"), "{e}");
    }

    #[test]
    fn a_worker_draining_the_recorded_count_changes_it() {
        let d = decide(&recorded(Some(3), &[4]), 4, LayoutRole::Worker { drain: Some(3) }, "k");
        assert_eq!(d, Ok(LayoutDecision::Change { from: 3, earlier: vec![3] }));
        let d = decide(&recorded(Some(3), &[1]), 4, LayoutRole::Worker { drain: Some(3) }, "k");
        assert_eq!(d, Ok(LayoutDecision::Change { from: 3, earlier: vec![1, 3] }));
        // Once changed, the same worker (restarted) agrees.
        assert_eq!(
            decide(&recorded(Some(4), &[3]), 4, LayoutRole::Worker { drain: Some(3) }, "k"),
            Ok(LayoutDecision::Agree)
        );
        let parsed = RecordedLayout::parse(Some("4"), Some("1,3,x,0"));
        assert_eq!(parsed, recorded(Some(4), &[1, 3]));
        assert_eq!(parsed.earlier_field(), "1,3");
    }

    #[test]
    fn observed_shards_are_counted_not_served() {
        let layout = ShardLayout::new(&KeySpace::default(), 4, None).expect("valid").observing(&[3, 4, 1]);
        assert_eq!(layout.served().count(), 4);
        let three = ShardLayout::new(&KeySpace::default(), 3, None).expect("valid");
        for k in three.served() {
            assert!(layout.counted().any(|c| c == k), "{} counted", k.tag());
        }
        let mut tags: Vec<&str> = layout.counted().map(KeySpace::tag).collect();
        let n = tags.len();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), n, "each shard once");
    }

    #[test]
    fn slots_match_redis_cluster() {
        // `CLUSTER KEYSLOT` answers: foo 12182, {entraguard} 11540 (the report).
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("entraguard"), 11540);
    }

    #[test]
    fn one_shard_is_the_one_server_layout() {
        let layout = ShardLayout::new(&KeySpace::default(), 1, None).expect("valid");
        assert_eq!(layout.count(), 1);
        assert_eq!(layout.keys(0), &KeySpace::default());
        assert_eq!(layout.of_event("evt_1"), 0);
        assert_eq!(layout.served().count(), 1);
    }

    #[test]
    fn shard_zero_keeps_the_one_server_tag_and_the_others_spread_over_equal_slot_ranges() {
        for count in [2u16, 3, 4, 6, 16] {
            let layout = ShardLayout::new(&KeySpace::default(), count, None).expect("valid");
            assert_eq!(layout.home().tag(), "{entraguard}");
            let mut shares: Vec<u32> = (0..layout.count())
                .map(|i| {
                    let body = layout.keys(i).tag().trim_matches(|c| c == '{' || c == '}').to_owned();
                    u32::from(slot(&body)) * u32::from(count) / SLOTS
                })
                .collect();
            shares.sort_unstable();
            assert_eq!(shares, (0..u32::from(count)).collect::<Vec<_>>(), "{count} shards: one per range");
        }
        let three = ShardLayout::new(&KeySpace::default(), 3, None).expect("valid");
        assert!(three.keys(1).tag().starts_with("{entraguard:1"), "{}", three.keys(1).tag());
        assert!(three.keys(2).tag().starts_with("{entraguard:2"), "{}", three.keys(2).tag());
    }

    #[test]
    fn placement_is_stable_and_spreads() {
        let layout = ShardLayout::new(&KeySpace::default(), 3, None).expect("valid");
        let mut per = [0usize; 3];
        for i in 0..3000 {
            per[layout.of_endpoint(&format!("ep_{i:026}"))] += 1;
        }
        assert!(per.iter().all(|n| *n > 800), "{per:?}");
        assert_eq!(layout.of_event("evt_x"), layout.of_event("evt_x"));
    }

    #[test]
    fn draining_shards_are_served_but_not_placed_in() {
        let layout = ShardLayout::new(&KeySpace::default(), 2, Some(3)).expect("valid");
        assert_eq!(layout.count(), 2);
        let served: Vec<&str> = layout.served().map(KeySpace::tag).collect();
        let old = ShardLayout::new(&KeySpace::default(), 3, None).expect("valid");
        for k in old.served() {
            assert!(served.contains(&k.tag()), "{} of the old count is served", k.tag());
        }
        let mut unique = served.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), served.len(), "each shard once: {served:?}");
        assert!(served.len() > 3 - 1);
        assert!(ShardLayout::new(&KeySpace::default(), 0, None).is_err());
        assert!(ShardLayout::new(&KeySpace::default(), MAX_SHARDS + 1, None).is_err());
    }
}
