//! The queue layout's version: which shapes of keys, jobs and records a release writes into
//! Redis and which it can read, recorded in the deployment's layout hash
//! ([`crate::keys::KeySpace::layout`], field [`VERSION_FIELD`]) so a worker that finds a layout
//! it cannot read refuses to start ([`decide`], [`LayoutVersionError`]) instead of guessing at
//! records it would misread and dead-letter.
//!
//! **Version 1** is the layout of `docs/redis-layout.md` as the first versioned release found it
//! and as the release before it wrote it: the key table there; jobs `event.v1`, `delivery.v1`,
//! `delivery_ref.v1` (in lanes, its event in `bodies`), `digest_due.v1`, `digest.v1`; dead
//! letters either as fields with a `body` reference or, from releases before 2026-12, with `job`
//! and `replay_job`. Releases before this field existed wrote version 1 (or older shapes that
//! version 1 still reads), so a layout hash without the field is version 1.
//! `tests/fixtures/layout-v1/` holds what the previous release wrote; the fixtures test drains
//! it with today's worker.
//!
//! **Version 2** adds fair share: fresh work that is not urgent waits in one list per tenant
//! (events) and per endpoint (deliveries), the flows ([`crate::keys::KeySpace::tenant_flow`],
//! [`crate::keys::KeySpace::endpoint_flow`]), named in a ring ([`crate::keys::KeySpace::flows`])
//! that taking rotates. Every job shape is version 1's. A release before it never reads the
//! flows, so a shard writes them only while its own layout hash records version 2 (the scripts
//! read it: `layout_version` in prelude.lua). A new deployment's first worker records 2 on every shard,
//! or 1 when another worker holds a live lease (a release before the field, running on); a
//! deployment that records 1 stays on 1 (this release reads and writes it) until
//! `entraguard-notify layout raise`, run once every worker runs this release;
//! `entraguard-notify layout lower` goes back, moving the flows' jobs to the ready list, before
//! a rollback ([`crate::queue::Shards::relayout`]).
//!
//! **Version 3** adds the same fair share for urgent work (critical and high findings, failed
//! scans): instead of the front of the ready list, one urgent flow per tenant (events) and per
//! endpoint (deliveries) ([`crate::keys::KeySpace::urgent_tenant_flow`],
//! [`crate::keys::KeySpace::urgent_endpoint_flow`]), named in a ring of their own
//! ([`crate::keys::KeySpace::urgent_flows`]) that every take serves first, so one tenant's
//! flood of critical findings holds up neither another tenant's critical findings nor, beyond
//! its turns, anything else. The shards record it, raise it and lower it as version 2; `layout
//! lower` moves the urgent flows' jobs to the front of the ready list, where a release before
//! version 3 looks for urgent work.
//!
//! **When to raise it.** A change that writes a shape the previous release cannot read is a new
//! version, and a rolling upgrade mixes the two releases, so read first, write later: one
//! release learns to read the shape and still writes the old one; the next writes it, raises
//! [`LAYOUT_VERSION`] and captures `tests/fixtures/layout-v<N>/` (keep the older fixtures for as
//! long as [`OLDEST_READABLE`] names them; the mixed-version test runs the previous release
//! beside today's). Adding a key, or a field older readers ignore, is not a new version. A
//! release raising it adds the raise too (a compare-and-set script: two releases starting at once
//! must not lower it); this one has nothing to raise. See "Upgrades" in
//! docs/deploy-and-scaling.md.
//!
//! Only workers check and record it: they are what reads every record. A producer writes
//! `event.v1` jobs, which every version reads; refusing it would stop the scanner mid-rollout.

/// The newest layout version this release writes, and records on a new deployment (version 1
/// too, while the deployment records it).
pub const LAYOUT_VERSION: u32 = 3;

/// The layout version from which a shard keeps fresh work in fair-share flows.
pub const FAIR_SHARE_VERSION: u32 = 2;

/// The layout version from which a shard keeps urgent work in fair-share flows too.
pub const URGENT_SHARE_VERSION: u32 = 3;

/// The oldest layout version this release still reads.
pub const OLDEST_READABLE: u32 = 1;

/// The layout hash's field holding the version.
pub const VERSION_FIELD: &str = "version";

/// What a worker does with the recorded version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionDecision {
    /// The recorded version is one this release reads and writes.
    Agree,
    /// Nothing recorded: record [`LAYOUT_VERSION`]. The deployment is new, or it ran only
    /// releases before the field (their layout is version 1, which this release reads).
    Record,
    /// Nothing recorded, and Redis refused the record for memory (`maxmemory`, `noeviction`):
    /// what is there is version 1, which this release reads, so the worker serves (delivering is
    /// what frees memory) and a later start records it.
    Unrecorded,
}

/// Why a worker refuses the recorded layout: each message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutVersionError {
    /// A newer release wrote the layout.
    #[error(
        "Redis records queue layout version {recorded} ({key}, field `{VERSION_FIELD}`), newer than this worker's {LAYOUT_VERSION}: a newer release has written records this one may misread, so it does not start. Run workers of the newer release (the one that recorded version {recorded}) or later. To go back to this release, drain the queue with the newer workers first (stop the producers, wait until `entraguard-notify stats` shows nothing ready, retrying, scheduled, parked or processing, and replay or purge the dead letters), then set the field back: HSET '{key}' {VERSION_FIELD} {LAYOUT_VERSION} (docs/deploy-and-scaling.md, \"Upgrades\")"
    )]
    Newer { key: String, recorded: u32 },
    /// A layout older than this release reads.
    #[error(
        "Redis records queue layout version {recorded} ({key}, field `{VERSION_FIELD}`), which this release no longer reads (it reads {OLDEST_READABLE} to {LAYOUT_VERSION}): it does not start. Upgrade through a release that reads version {recorded} and writes a later one: run its workers until `entraguard-notify stats` shows the queue drained, then start this one (docs/deploy-and-scaling.md, \"Upgrades\")"
    )]
    Older { key: String, recorded: u32 },
    /// The field holds no version number.
    #[error(
        "Redis records queue layout version {recorded:?} ({key}, field `{VERSION_FIELD}`), which is no version number: this worker does not guess what wrote the queue, so it does not start. If the field was edited by hand and the queue was written by this release or the one before, set it back: HSET '{key}' {VERSION_FIELD} {LAYOUT_VERSION}"
    )]
    Unreadable { key: String, recorded: String },
}

/// Whether a worker of this release may run on the layout recorded in `key`'s
/// [`VERSION_FIELD`] (`recorded`, `None` when absent).
pub fn decide(recorded: Option<&str>, key: &str) -> Result<VersionDecision, LayoutVersionError> {
    let Some(raw) = recorded else {
        return Ok(VersionDecision::Record);
    };
    let Ok(version) = raw.trim().parse::<u32>() else {
        return Err(LayoutVersionError::Unreadable { key: key.to_owned(), recorded: raw.to_owned() });
    };
    if version > LAYOUT_VERSION {
        Err(LayoutVersionError::Newer { key: key.to_owned(), recorded: version })
    } else if version < OLDEST_READABLE {
        Err(LayoutVersionError::Older { key: key.to_owned(), recorded: version })
    } else {
        Ok(VersionDecision::Agree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "{entraguard}:layout";

    #[test]
    fn an_absent_version_is_recorded_and_a_readable_one_agrees() {
        assert_eq!(decide(None, KEY), Ok(VersionDecision::Record));
        assert_eq!(decide(Some(&LAYOUT_VERSION.to_string()), KEY), Ok(VersionDecision::Agree));
        assert_eq!(decide(Some(" 1 "), KEY), Ok(VersionDecision::Agree));
        assert_eq!(decide(Some("2"), KEY), Ok(VersionDecision::Agree), "fair share without urgent share");
    }

    #[test]
    fn a_newer_version_is_refused_saying_what_to_do() {
        let e = decide(Some("4"), KEY).expect_err("newer refused");
        assert_eq!(e, LayoutVersionError::Newer { key: KEY.into(), recorded: 4 });
        let text = e.to_string();
        for want in
            ["version 4", KEY, "newer than this worker's 3", "Run workers of the newer release", "HSET"]
        {
            assert!(text.contains(want), "{want:?} in {text}");
        }
    }

    #[test]
    fn a_version_without_a_reader_is_refused() {
        let e = decide(Some("0"), KEY).expect_err("older refused");
        assert!(matches!(e, LayoutVersionError::Older { recorded: 0, .. }), "{e:?}");
        assert!(e.to_string().contains("no longer reads (it reads 1 to 3)"), "{e}");
        let e = decide(Some("v2"), KEY).expect_err("garbage refused");
        assert!(matches!(e, LayoutVersionError::Unreadable { .. }), "{e:?}");
        assert!(e.to_string().contains("\"v2\""), "{e}");
    }
}
