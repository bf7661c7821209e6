//! The golden fixtures (`tests/fixtures/layout-v*/`): keys and jobs an earlier release wrote,
//! loaded into a test's Redis and drained by today's worker. Every delivery they owe arrives,
//! the dead letters show whole and replay, Recent Deliveries read. A layout change that today's
//! worker cannot read fails here.

use std::collections::BTreeMap;
use std::time::Duration;

use entraguard_core::history::DeliveryRecord;
use entraguard_core::layout_version::LAYOUT_VERSION;
use entraguard_core::queue::ReplayOutcome;
use entraguard_testkit::HttpReceiver;

use super::fixture::{Fixture, KeyValue, dir, load};
use super::{arrived, redis_now_ms};
use crate::harness::{Stack, keys};

/// The fixture at `name` (under tests/fixtures), loaded into a fresh Redis with one receiver per
/// endpoint role, every receiver answering 200.
async fn loaded(name: &str) -> (Fixture, Stack, BTreeMap<String, HttpReceiver>) {
    let fixture = Fixture::read(&dir().join(name));
    let stack = Stack::start().await;
    let receivers: BTreeMap<String, HttpReceiver> =
        fixture.endpoints.values().map(|role| (role.clone(), HttpReceiver::start())).collect();
    let targets = fixture
        .endpoints
        .iter()
        .map(|(id, role)| (id.clone(), receivers[role].url_for(&format!("/{role}"))))
        .collect();
    let mut conn = stack.redis.connection().await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.expect("flushall");
    let now = redis_now_ms(&mut conn).await;
    load(&mut conn, &fixture.keys, now, &targets).await;
    (fixture, stack, receivers)
}

/// The previous release (main before issue 27): lanes of `delivery_ref.v1` references, dead
/// letters as fields with a body reference.
#[tokio::test]
async fn todays_worker_drains_what_the_previous_release_left() {
    drains("layout-v1/previous-release.json").await;
}

/// The release before event bodies were kept once (`b9509bb^`): lanes of full `delivery.v1`
/// jobs, dead letters keeping `job` and `replay_job`.
#[tokio::test]
async fn todays_worker_drains_what_the_release_before_bodies_left() {
    drains("layout-v1/before-bodies.json").await;
}

/// Loads fixture `name` and checks what today's readers and worker make of it.
async fn drains(name: &str) {
    let (fixture, stack, receivers) = loaded(name).await;
    assert!(!fixture.expect.deliveries.is_empty() && !fixture.expect.dead_letters.is_empty());

    // Read before any worker runs: every Recent Deliveries entry decodes, every dead letter
    // shows whole (its event from the kept body) and is replayable.
    let mut history_entries = 0;
    for k in fixture.keys.iter().filter(|k| k.key.contains(":history:")) {
        let KeyValue::List(entries) = &k.value else { panic!("{} is a list", k.key) };
        for e in entries {
            assert!(DeliveryRecord::decode(e.as_bytes()).is_some(), "{}: today's reader decodes {e}", k.key);
            history_entries += 1;
        }
    }
    assert!(history_entries > 0, "the fixture holds Recent Deliveries");
    for id in &fixture.expect.dead_letters {
        let d =
            stack.queue.dead_letter_by_id(id).await.expect("read").unwrap_or_else(|| panic!("{id} shows"));
        assert!(d.replayable, "{id} is replayable: {d:?}");
        let event_id = d.event_id.clone().expect("a delivery's dead letter names its event");
        assert!(d.job.contains(&event_id), "{id}'s job carries its event: {}", d.job);
        assert_eq!(d.endpoint_id.as_deref(), Some(fixture.endpoint("rejecting")), "{d:?}");
    }
    let listed = stack.queue.dead_letters(0, 100).await.expect("list");
    assert_eq!(listed.len(), fixture.expect.dead_letters.len(), "{listed:?}");

    let _worker = stack.spawn_worker_process(&[]);
    for id in &fixture.expect.dead_letters {
        assert!(
            matches!(stack.queue.replay(id).await.expect("replay"), ReplayOutcome::Replayed),
            "{id} replays"
        );
    }
    let missing = || -> Vec<String> {
        let deliveries =
            fixture.expect.deliveries.iter().filter(|(role, event)| !arrived(&receivers[role], event));
        let digested = fixture.expect.digested.iter().filter(|(role, finding)| {
            !receivers[role].requests().iter().any(|r| {
                r.header("x-coderaft-event") == Some("finding.digest")
                    && String::from_utf8_lossy(&r.body).contains(finding.as_str())
            })
        });
        deliveries.chain(digested).map(|(role, id)| format!("{id} to {role}")).collect()
    };
    // Once drained (nothing ready, retrying, parked, in flight or scheduled), every delivery
    // that will come has come: receivers record a request before its acknowledgement.
    stack.wait_drained(Duration::from_secs(90)).await;
    assert!(missing().is_empty(), "never delivered: {:?}", missing());
    let s = stack.stats().await;
    assert_eq!(s.dead, 0, "nothing died on the way: {s:?}");
    let mut conn = stack.queue.connection();
    let version: Option<String> =
        redis::cmd("HGET").arg(keys().layout()).arg("version").query_async(&mut conn).await.expect("hget");
    assert_eq!(version, Some(LAYOUT_VERSION.to_string()), "today's worker recorded its version");
}
