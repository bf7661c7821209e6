//! Upgrades that lose nothing (issue 27): the layout version a worker checks at start-up, the
//! previous release's keys and jobs (golden fixtures) drained by today's worker, and the
//! previous release's worker binary beside today's on one Redis while events flow.

use entraguard_testkit::HttpReceiver;

/// The fixture files: every key a release left in Redis, and what a drain owes.
mod fixture;

/// The tool (ignored test) that writes tests/fixtures/layout-v1/ from the previous release.
mod capture;

/// Today's worker drains the fixtures: every delivery arrives, dead letters show and replay.
mod drain;

/// The previous release's worker beside today's while events flow: 0 lost.
mod mixed;

/// The layout version: recorded by the first worker, a layout a worker cannot read refused.
mod version;

/// The previous release: main as it stood before issue 27's first commit (737ae7b,
/// deploy/monitoring's alerts), i.e. that commit's parent on main (`git log --graph 737ae7b`).
pub const PREVIOUS_RELEASE: &str = "bbfea639f024b7e2d2efb1261afdfe9e785e0b8d";

/// Whether a request whose body names `needle` (an event id) reached `receiver`.
fn arrived(receiver: &HttpReceiver, needle: &str) -> bool {
    receiver.requests().iter().any(|r| String::from_utf8_lossy(&r.body).contains(needle))
}

/// Redis's clock, Unix ms.
async fn redis_now_ms(conn: &mut redis::aio::MultiplexedConnection) -> i64 {
    let (s, us): (i64, i64) = redis::cmd("TIME").query_async(conn).await.expect("time");
    s * 1000 + us / 1000
}
