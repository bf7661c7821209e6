//! The Redis key layout: every key of one queue shard under one hash tag (`{entraguard}:…` for
//! shard 0) so a Redis Cluster keeps them in one slot and the Lua scripts may touch them
//! together; other shards use their own tag ([`crate::shards`]). The key table of
//! docs/redis-layout.md is written from this file.

use crate::ids::EndpointId;

/// The key names of one deployment (one `NOTIFY_KEY_PREFIX`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpace {
    prefix: String,
    tag: String,
}

/// A key prefix that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid key prefix {0:?}: use 1 to 64 letters, digits, `-`, `_`, `.` or `:`")]
pub struct KeyPrefixError(String);

impl KeySpace {
    pub const DEFAULT_PREFIX: &'static str = "entraguard";

    pub fn new(prefix: &str) -> Result<Self, KeyPrefixError> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !ok {
            return Err(KeyPrefixError(prefix.to_owned()));
        }
        Ok(Self { prefix: prefix.to_owned(), tag: format!("{{{prefix}}}") })
    }

    /// The deployment's prefix (`NOTIFY_KEY_PREFIX`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The hash tag of every key of this key space (`{entraguard}`, or a shard's: see
    /// [`crate::shards::ShardLayout`]).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The key space of one queue shard: the same prefix under another hash tag (`{prefix:…}`),
    /// so its keys hash to their own slot of a Redis Cluster.
    pub(crate) fn shard(&self, tag_body: &str) -> Self {
        Self { prefix: self.prefix.clone(), tag: format!("{{{tag_body}}}") }
    }

    /// ZSET of event jobs this shard routed to endpoints homed in shard `target`, scored by
    /// when (Unix ms, Redis clock): written with the event's acknowledgement, moved into the
    /// target shard's ready list by the worker that routed it (or, if it died, by any worker
    /// after [`crate::shards::OUTBOX_SWEEP_AGE`]), removed once moved.
    pub fn outbox(&self, target: usize) -> String {
        format!("{}:outbox:{target}", self.tag)
    }

    /// ZSET of event id → when a forwarded copy was accepted from another shard's outbox (Unix
    /// ms, Redis clock), so moving the same outbox entry twice enqueues it once.
    pub fn forwarded(&self) -> String {
        format!("{}:forwarded", self.tag)
    }

    /// HASH (shard 0 only) of the deployment's queue shard layout: `count`, the shards new work
    /// is placed in (`NOTIFY_QUEUE_SHARDS`), and `earlier`, the comma-separated counts it had
    /// before (their shards may still hold work; `stats` counts them). Written by the first
    /// producer or worker, changed only by a worker given `NOTIFY_DRAIN_SHARDS` = `count`; a
    /// process set to another count refuses to run ([`crate::shards::LayoutMismatch`]). Also
    /// `version`, the queue layout's version ([`crate::layout_version`]), recorded by the
    /// first worker: a worker that cannot read it refuses to start.
    pub fn layout(&self) -> String {
        format!("{}:layout", self.tag)
    }

    /// LIST of job JSON waiting to be taken (FIFO: pushed right, taken left).
    pub fn ready(&self) -> String {
        format!("{}:ready", self.tag)
    }

    /// LIST (queue layout version 2, [`crate::layout_version`]) of the fair-share flows that
    /// hold fresh work: each name once, the key of a [`KeySpace::tenant_flow`] or an
    /// [`KeySpace::endpoint_flow`] that is not empty. Taking rotates it (`take` in prelude.lua),
    /// so every tenant's events and every endpoint's deliveries get a turn in round robin.
    pub fn flows(&self) -> String {
        format!("{}:flows", self.tag)
    }

    /// LIST (layout version 2) of one tenant's events waiting for fan-out, FIFO, named in
    /// [`KeySpace::flows`] while not empty. Urgent events skip it: they go to the front of
    /// [`KeySpace::ready`] (version 2) or to [`KeySpace::urgent_tenant_flow`] (version 3).
    pub fn tenant_flow(&self, tenant: &str) -> String {
        format!("{}:flow:t:{tenant}", self.tag)
    }

    /// LIST (layout version 2) of one endpoint's fresh deliveries (first attempts) waiting to be
    /// taken, FIFO, named in [`KeySpace::flows`] while not empty. Urgent ones skip it.
    pub fn endpoint_flow(&self, endpoint: &str) -> String {
        format!("{}:flow:e:{endpoint}", self.tag)
    }

    /// LIST (layout version 3) of the urgent flows that hold work, as [`KeySpace::flows`] names
    /// the others: every take serves it first. The scripts find it beside the flows ring (its
    /// name with `flows` replaced by `uflows`: `urgent_ring` in prelude.lua).
    pub fn urgent_flows(&self) -> String {
        format!("{}:uflows", self.tag)
    }

    /// LIST (layout version 3) of one tenant's urgent events (critical and high findings,
    /// failed scans) waiting for fan-out, FIFO, named in [`KeySpace::urgent_flows`] while not
    /// empty.
    pub fn urgent_tenant_flow(&self, tenant: &str) -> String {
        format!("{}:uflow:t:{tenant}", self.tag)
    }

    /// LIST (layout version 3) of one endpoint's urgent fresh deliveries, FIFO, named in
    /// [`KeySpace::urgent_flows`] while not empty.
    pub fn urgent_endpoint_flow(&self, endpoint: &str) -> String {
        format!("{}:uflow:e:{endpoint}", self.tag)
    }

    /// LIST of retries and replays that are due: taken only when the ready list is empty, so a
    /// backlog of them never holds up a first attempt.
    pub fn retry(&self) -> String {
        format!("{}:retry", self.tag)
    }

    /// LIST of one endpoint's deliveries waiting for it to take them (at its in-flight cap, or
    /// its send slot taken): they cost nothing while they wait.
    pub fn lane(&self, endpoint: &str) -> String {
        format!("{}:lane:{endpoint}", self.tag)
    }

    /// ZSET of endpoint id → when its lane is next looked at (Unix ms, Redis clock): only
    /// endpoints with deliveries waiting in their lane are listed.
    pub fn lanes(&self) -> String {
        format!("{}:lanes", self.tag)
    }

    /// HASH of endpoint id → deliveries dead-lettered as "endpoint lane full" (its lane already
    /// held `NOTIFY_LANE_MAX`), since the key space began.
    pub fn lane_full(&self) -> String {
        format!("{}:lane_full", self.tag)
    }

    /// HASH of body id (`<event id>:<16 hex of its SHA-256>`) → the event's JSON, kept once for
    /// every delivery of it that waits in a lane or lies in the dead-letter queue: those keep
    /// `"event":{"$ref":"<body id>"}` instead of a copy (see [`crate::job::StoredDelivery`]).
    pub fn bodies(&self) -> String {
        format!("{}:bodies", self.tag)
    }

    /// HASH of body id → how many waiting or dead deliveries refer to it; a body goes when its
    /// count reaches 0 (a release, a replay or a purge).
    pub fn body_refs(&self) -> String {
        format!("{}:body_refs", self.tag)
    }

    /// HASH: one endpoint's circuit breaker, shared by every worker. Absent while the endpoint
    /// is healthy. Fields: `state` (`closed`, `open`, `half_open`, `disabled`), `failures`
    /// (consecutive retryable failures), `last_error`, `opened_at` (Unix ms, Redis clock, when it
    /// opened), `interval` (ms between probes, doubled per failed probe), `next_probe` (Unix ms:
    /// when the next probe may be claimed) and `probe_deadline` (Unix ms: when a claimed probe
    /// that never reported may be taken over).
    pub fn breaker(&self, endpoint: &str) -> String {
        format!("{}:breaker:{endpoint}", self.tag)
    }

    /// LIST of the jobs one worker process has taken and not yet finished.
    pub fn processing(&self, worker: &str) -> String {
        format!("{}:processing:{worker}", self.tag)
    }

    /// ZSET of worker id → lease expiry (Unix ms, Redis clock): every worker process that may
    /// hold jobs. A score in the future is a live worker; a worker whose lease ran out stays
    /// listed until its processing list has been handed back and it has been dead a while, so
    /// a late fetch of a dead worker is still found by the reapers.
    pub fn leases(&self) -> String {
        format!("{}:leases", self.tag)
    }

    /// ZSET of event id → when it was accepted (Unix ms, Redis clock), for the publish dedupe
    /// window: publishing an id again within the window is acknowledged without a second job.
    pub fn published(&self) -> String {
        format!("{}:published", self.tag)
    }

    /// STRING with a 60 s TTL, set when Redis refused a publish for memory (`OOM`): `/readyz`
    /// and `entraguard_redis_full` report a full Redis for that minute, also once the refused
    /// batch's own size no longer counts (used memory falls back below `maxmemory` right after).
    pub fn publish_refused(&self) -> String {
        format!("{}:publish_refused", self.tag)
    }

    /// ZSET of job JSON scored by the due time (Unix ms, Redis clock): scheduled retries.
    pub fn delayed(&self) -> String {
        format!("{}:delayed", self.tag)
    }

    /// LIST of dead-letter ids, newest first.
    pub fn dlq(&self) -> String {
        format!("{}:dlq", self.tag)
    }

    /// HASH of one dead letter: the job, the reason, every attempt.
    pub fn dlq_entry(&self, id: &str) -> String {
        format!("{}:dlq:{id}", self.tag)
    }

    /// STRING with a TTL: an endpoint's send slot, for pacing (Slack takes about one message a
    /// second per webhook).
    pub fn pace(&self, endpoint: &str) -> String {
        format!("{}:pace:{endpoint}", self.tag)
    }

    /// LIST of one endpoint's recent delivery attempts ([`crate::history::DeliveryRecord`] JSON),
    /// newest first: `LPUSH`, `LTRIM` to [`crate::history::HISTORY_MAX_ENTRIES`] and `PEXPIRE`
    /// [`crate::history::HISTORY_MAX_AGE`] on every write; readers skip entries older than that.
    pub fn history(&self, endpoint: &str) -> String {
        format!("{}:history:{endpoint}", self.tag)
    }

    /// HASH of endpoint id to endpoint JSON.
    pub fn endpoints(&self) -> String {
        format!("{}:endpoints", self.tag)
    }

    /// STRING (integer): the endpoints' revision, raised by every write to the endpoints hash
    /// (in the same step). Workers cache endpoints and read it with every fetch: a change
    /// reaches every delivery fetched after it.
    pub fn endpoints_rev(&self) -> String {
        format!("{}:endpoints:rev", self.tag)
    }

    /// STRING: which key seals this deployment's endpoint URLs and secrets — a key id
    /// (`Cipher::key_id`, 8 hex digits), or `none` for a deployment that stores them in clear.
    /// Written by the first endpoint write, moved by `reseal`; a writer with another key (or
    /// none) is refused, so a CLI or admin without the workers' key cannot store endpoints the
    /// workers cannot open, or store secrets in clear beside sealed ones.
    pub fn sealing(&self) -> String {
        format!("{}:sealing", self.tag)
    }

    /// STRING with a TTL: one admin sign-in session, named by the SHA-256 (hex) of its id (the
    /// id itself, the cookie's value, is never stored). Holds the session's absolute expiry (Unix
    /// ms); the TTL is the idle expiry, pushed back on each use; sign-out deletes it.
    pub fn session(&self, id_sha256: &str) -> String {
        format!("{}:session:{id_sha256}", self.tag)
    }

    /// ZSET of one endpoint's dedupe window: finding key (hash of tenant, finding id, kind and
    /// severity) → when it was last sent there (Unix ms, Redis clock). Entries older than the
    /// window are trimmed on each add, and the key expires a window after the last one.
    pub fn dedupe(&self, endpoint: &str) -> String {
        format!("{}:dedupe:{endpoint}", self.tag)
    }

    /// HASH of endpoint id → finding events its dedupe window kept from it (a counter).
    pub fn suppressed(&self) -> String {
        format!("{}:suppressed", self.tag)
    }

    /// HASH (shard 0 only) of silence id → silence JSON ([`crate::silences`]): active, pending
    /// and expired ones (an expired one is deleted 7 days after its end). Every write raises
    /// [`KeySpace::endpoints_rev`] in the same step, so workers read them again at their next fetch.
    pub fn silences(&self) -> String {
        format!("{}:silences", self.tag)
    }

    /// LIST (shard 0 only) of the silences' audit entries (JSON: who, when, what), newest first,
    /// trimmed to [`crate::silences::AUDIT_MAX_ENTRIES`].
    pub fn silences_audit(&self) -> String {
        format!("{}:silences:audit", self.tag)
    }

    /// HASH, in each queue shard, of what silences kept from this shard's endpoints:
    /// `<silence id>` → deliveries not made (a counter), `<silence id>:recent` → the last
    /// silenced event ids, newest first, space-separated. Written by fan-out (`route.lua`) in the
    /// same step as the event's acknowledgement.
    pub fn silenced(&self) -> String {
        format!("{}:silenced", self.tag)
    }

    /// LIST of the findings one digest has collected (`<endpoint>:<hash of tenant and scan>`),
    /// oldest first.
    pub fn digest(&self, id: &str) -> String {
        format!("{}:digest:{id}", self.tag)
    }

    /// LIST of a flushed digest's findings, renamed from [`KeySpace::digest`] by the flush so
    /// that later findings start a new digest; deleted by the step that makes its delivery.
    pub fn digest_flushed(&self, id: &str, flush: &str) -> String {
        format!("{}:digest:{id}:{flush}", self.tag)
    }

    /// ZSET of open digests: digest id → when it is sent at the latest (Unix ms, Redis clock),
    /// if its scan never ends.
    pub fn digests(&self) -> String {
        format!("{}:digests", self.tag)
    }

    /// ZSET of scans whose end fan-out has seen, per digest: `<reason>|<digest id>` (`reason`
    /// `scan.completed` or `scan.failed`) → when (Unix ms, Redis clock), kept a day. A digest
    /// of such a scan opened later is due after `LATE_FINDINGS_WAIT` (10 s), not its longest wait.
    pub fn scans_ended(&self) -> String {
        format!("{}:scans_ended", self.tag)
    }

    /// HASH of open digest id → its timer job (`digest_due.v1`) in the delayed set, so a flush
    /// can take the timer it no longer needs out of the delayed set.
    pub fn digest_timers(&self) -> String {
        format!("{}:digest_timers", self.tag)
    }

    /// The field of one endpoint in [`KeySpace::endpoints`].
    pub fn endpoint_field(id: &EndpointId) -> &str {
        id.as_str()
    }
}

impl Default for KeySpace {
    fn default() -> Self {
        Self { prefix: Self::DEFAULT_PREFIX.to_owned(), tag: format!("{{{}}}", Self::DEFAULT_PREFIX) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scripts find the urgent flows' ring from the flows ring's name (`urgent_ring` in
    /// prelude.lua: its last five characters, `flows`, become `uflows`).
    #[test]
    fn the_urgent_ring_is_named_as_the_scripts_derive_it() {
        let k = KeySpace::new("acme").expect("valid");
        let flows = k.flows();
        assert!(flows.ends_with("flows"), "{flows}");
        assert_eq!(k.urgent_flows(), format!("{}uflows", &flows[..flows.len() - 5]));
    }

    #[test]
    fn all_keys_share_one_hash_tag() {
        let k = KeySpace::new("acme").expect("valid");
        for key in [
            k.ready(),
            k.processing("w1"),
            k.leases(),
            k.published(),
            k.retry(),
            k.lane("ep_1"),
            k.lanes(),
            k.bodies(),
            k.body_refs(),
            k.breaker("ep_1"),
            k.delayed(),
            k.dlq(),
            k.dlq_entry("d"),
            k.endpoints(),
            k.sealing(),
            k.session("abc"),
            k.dedupe("ep_1"),
            k.suppressed(),
            k.silences(),
            k.silences_audit(),
            k.silenced(),
            k.digest("ep_1:ab"),
            k.digest_flushed("ep_1:ab", "f"),
            k.digests(),
            k.digest_timers(),
            k.scans_ended(),
            k.history("ep_1"),
            k.outbox(2),
            k.forwarded(),
        ] {
            assert!(key.starts_with("{acme}:"), "{key}");
        }
    }

    #[test]
    fn prefixes_with_braces_or_spaces_are_refused() {
        assert!(KeySpace::new("a}b").is_err());
        assert!(KeySpace::new("a b").is_err());
        assert!(KeySpace::new("").is_err());
    }
}
