//! Finish and fetch in one step (issue 26): acknowledging a delivered job (or scheduling a failed
//! one's retry, or parking one in its endpoint's lane) takes the next ready jobs onto the worker's processing list in the same script
//! call, so a busy worker's delivery
//! costs one round trip. The guarantees of a separate fetch hold: an answer lost on the way
//! (Redis paused past the command timeout) and a worker killed before it read the answer both
//! leave the taken jobs where they are handed back and delivered.

use std::collections::HashSet;
use std::time::Duration;

use entraguard_core::job::{DeliveryJob, Job};
use entraguard_core::queue::{MAX_JOB_BYTES, WorkerId};
use entraguard_testkit::{HttpReceiver, Reply, wait_until};
use redis::AsyncCommands;

use crate::harness::{Stack, finding_event};

/// Successful calls of one command in `INFO commandstats` (`calls` less `failed_calls`: the
/// first `EVALSHA` of a script not yet loaded fails with NOSCRIPT and is sent again).
fn calls(info: &str, command: &str) -> u64 {
    let Some(line) = info.lines().find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:"))) else {
        return 0;
    };
    let field = |name: &str| -> u64 {
        line.split(',')
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    field("calls") - field("failed_calls")
}

/// What a finishing step that took the next job for its slot must show: one script call in
/// `info` (its `INFO commandstats`, reset before) and exactly `next` taken.
fn one_call_took(info: &str, taken: &entraguard_core::queue::Fetched, next: &[u8]) {
    assert_eq!(calls(info, "evalsha") + calls(info, "eval"), 1, "one script call: {info}");
    let got: Vec<&[u8]> = taken.jobs.iter().map(|c| c.bytes()).collect();
    assert_eq!(got, vec![next], "the next ready job, for the freed slot");
}

/// One test's Redis with one webhook endpoint for `finding.new` (its receiver kept running),
/// the queue's keys and a connection.
struct OneEndpoint {
    stack: Stack,
    receiver: HttpReceiver,
    ep: entraguard_core::endpoint::Endpoint,
    keys: entraguard_core::keys::KeySpace,
    conn: redis::aio::MultiplexedConnection,
}

async fn one_endpoint() -> OneEndpoint {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    let ep = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let keys = stack.queue.keys().clone();
    let conn = stack.redis.connection().await;
    OneEndpoint { stack, receiver, ep, keys, conn }
}

/// A fresh delivery of a finding of `tenant` to `ep`.
fn delivery(ep: &entraguard_core::endpoint::Endpoint, tenant: &str) -> DeliveryJob {
    DeliveryJob::new(finding_event(tenant), ep.id.clone())
}

/// Three fresh deliveries on ready (of tenants `tenants`, in order), the first claimed by a new
/// worker, and Redis's command statistics reset, so that a finishing step's one script call
/// is counted alone.
struct FirstOfThree {
    one: OneEndpoint,
    jobs: [DeliveryJob; 3],
    encoded: Vec<String>,
    worker: WorkerId,
    claimed: entraguard_core::queue::Claimed,
}

async fn first_of_three(tenants: [&str; 3]) -> FirstOfThree {
    let mut one = one_endpoint().await;
    let jobs = tenants.map(|t| delivery(&one.ep, t));
    let encoded: Vec<String> = jobs.iter().map(|d| Job::Delivery(d.clone()).encode()).collect();
    let _: () = one.conn.rpush(one.keys.ready(), &encoded).await.expect("ready");
    let worker = WorkerId::generate();
    let mut fetcher = one.stack.queue.fetcher(&worker, Duration::from_secs(1)).await.expect("fetcher");
    let claimed = fetcher.try_fetch().await.expect("fetch").expect("a job");
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut one.conn).await.expect("resetstat");
    FirstOfThree { one, jobs, encoded, worker, claimed }
}

/// At the queue: one acknowledgement (one `EVALSHA`) finishes the job and takes the next ones,
/// ready before retries, an oversized one counted and not returned, all on the same
/// processing list; asking for none takes none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_takes_the_next_jobs_in_the_same_step() {
    let OneEndpoint { stack, receiver: _receiver, ep, keys, mut conn } = one_endpoint().await;
    let job = |tenant: &str| Job::Delivery(delivery(&ep, tenant)).encode();
    let (first, second, retried) = (job("first"), job("second"), job("retried"));
    let big = "x".repeat(MAX_JOB_BYTES + 1);
    let _: () = conn.rpush(keys.ready(), &[&first, &second, &big]).await.expect("ready");
    let _: () = conn.rpush(keys.retry(), &retried).await.expect("retry");

    let worker = WorkerId::generate();
    let mut fetcher = stack.queue.fetcher(&worker, Duration::from_secs(1)).await.expect("fetcher");
    let claimed = fetcher.try_fetch().await.expect("fetch").expect("a job");
    assert_eq!(claimed.bytes(), first.as_bytes());
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut conn).await.expect("resetstat");

    let (acked, taken) =
        stack.queue.ack_delivered_many(&[(&claimed.claim(), &ep.id, "")], 3).await.expect("ack and take");
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await.expect("info");
    claimed.finish();
    assert_eq!(acked.len(), 1);
    assert_eq!(calls(&info, "evalsha") + calls(&info, "eval"), 1, "one script call: {info}");
    assert_eq!(calls(&info, "blmove") + calls(&info, "evalsha_ro"), 0, "no separate fetch: {info}");
    let got: Vec<&[u8]> = taken.jobs.iter().map(|c| c.bytes()).collect();
    assert_eq!(got, vec![second.as_bytes(), retried.as_bytes()], "ready before retries");
    assert_eq!(taken.oversized, 1, "the oversized job is taken, not returned");
    assert!(taken.endpoints_rev.is_some(), "shard 0 answers the endpoints' revision with them");
    let listed: Vec<Vec<u8>> =
        conn.lrange(keys.processing(worker.as_str()), 0, -1).await.expect("processing list");
    assert_eq!(listed.len(), 3, "the taken jobs are on the worker's list, the acknowledged one is not");
    assert!(!listed.iter().any(|j| j == first.as_bytes()));

    // Asking for none takes none: the taken jobs finish without taking anything more.
    let _: () = conn.rpush(keys.ready(), job("left")).await.expect("ready");
    let pairs: Vec<_> = taken.jobs.iter().map(|c| c.claim()).collect();
    let refs: Vec<_> = pairs.iter().map(|c| (c, &ep.id, "")).collect();
    let (acked, none) = stack.queue.ack_delivered_many(&refs, 0).await.expect("ack");
    assert!(acked.iter().all(|a| *a == entraguard_core::queue::Acked::Done), "{acked:?}");
    assert!(none.jobs.is_empty() && none.oversized == 0 && none.endpoints_rev.is_none());
    assert_eq!(conn.llen::<_, usize>(keys.ready()).await.expect("llen"), 1, "nothing taken");
    for c in taken.jobs {
        c.finish();
    }

    // A fan-out's acknowledgement takes the next job the same way, after its own pushes.
    let (routed, after) = (job("routed"), job("after"));
    let _: () = conn.del(keys.ready()).await.expect("del");
    let _: () = conn.rpush(keys.ready(), &[&routed, &after]).await.expect("ready");
    let claimed = fetcher.try_fetch().await.expect("fetch").expect("a job");
    let (answers, taken) =
        stack.queue.route_many(&[(&claimed.claim(), &[])], 1, None).await.expect("route and take");
    claimed.finish();
    assert!(answers[0].is_some(), "acknowledged");
    let got: Vec<&[u8]> = taken.jobs.iter().map(|c| c.bytes()).collect();
    assert_eq!(got, vec![after.as_bytes()]);
    for c in taken.jobs {
        c.finish();
    }
}

/// At the queue: a failed attempt's retry (one `EVALSHA`) schedules the next attempt, records
/// the failure in Recent Deliveries and takes the next ready job for the freed slot; a retry
/// whose lease is lost schedules nothing and takes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_takes_the_next_job_in_the_same_step() {
    let OneEndpoint { stack, receiver: _receiver, ep, keys, mut conn } = one_endpoint().await;
    let job = |tenant: &str| Job::Delivery(delivery(&ep, tenant)).encode();
    let (failed, next, left) = (job("failed"), job("next"), job("left"));
    let _: () = conn.rpush(keys.ready(), &[&failed, &next, &left]).await.expect("ready");
    let worker = WorkerId::generate();
    let mut fetcher = stack.queue.fetcher(&worker, Duration::from_secs(1)).await.expect("fetcher");
    let claimed = fetcher.try_fetch().await.expect("fetch").expect("a job");
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut conn).await.expect("resetstat");

    let (done, taken) = stack
        .queue
        .retry_later_recorded(
            &claimed.claim(),
            b"the next attempt",
            Duration::from_secs(60),
            Some((&ep.id, "{}")),
            1,
        )
        .await
        .expect("retry and take");
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await.expect("info");
    claimed.finish();
    assert!(done);
    one_call_took(&info, &taken, next.as_bytes());
    let delayed: Vec<String> = conn.zrange(keys.delayed(), 0, -1).await.expect("delayed");
    assert_eq!(delayed, ["the next attempt"]);
    assert_eq!(conn.llen::<_, usize>(keys.history(ep.id.as_str())).await.expect("history"), 1);
    let listed: Vec<Vec<u8>> = conn.lrange(keys.processing(worker.as_str()), 0, -1).await.expect("list");
    assert_eq!(listed, vec![next.as_bytes().to_vec()], "the failed job left, the next one is on the list");

    // Its lease lost (the job no longer on the list): nothing scheduled, nothing taken.
    let taken = taken.jobs.into_iter().next().expect("taken");
    let _: i64 = conn.lrem(keys.processing(worker.as_str()), 1, taken.bytes()).await.expect("lrem");
    let (done, none) = stack
        .queue
        .retry_later_recorded(&taken.claim(), b"never", Duration::from_secs(60), None, 1)
        .await
        .expect("retry");
    taken.finish();
    assert!(!done && none.jobs.is_empty());
    assert_eq!(conn.llen::<_, usize>(keys.ready()).await.expect("llen"), 1, "the last job still waits");
    assert_eq!(conn.zcard::<_, usize>(keys.delayed()).await.expect("zcard"), 1);
}

/// At the queue: a delivery dead-lettered after its last attempt (one `EVALSHA`) records the
/// entry and the attempt's history and takes the next ready job for the freed slot; asking for
/// none takes none, and a dead letter whose lease is lost writes nothing and takes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_takes_the_next_job_in_the_same_step() {
    use entraguard_core::queue::DeadLetterDraft;
    let FirstOfThree { one, jobs: [dying, next, left], encoded, worker, claimed } =
        first_of_three(["dying", "next", "left"]).await;
    let OneEndpoint { stack, receiver: _receiver, ep, keys, mut conn } = one;

    let draft = |d: &DeliveryJob| DeadLetterDraft {
        id: d.delivery_id.to_string(),
        reason: "HTTP 500 after 4 attempts".to_owned(),
        delivery: Some(d.clone()),
    };
    let (done, taken) = stack
        .queue
        .dead_letter_taking(&claimed.claim(), &draft(&dying), Some((&ep.id, "{}")), 1)
        .await
        .expect("dead-letter and take");
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await.expect("info");
    claimed.finish();
    assert!(done);
    one_call_took(&info, &taken, encoded[1].as_bytes());
    let dead: Vec<String> = conn.lrange(keys.dlq(), 0, -1).await.expect("dlq");
    assert_eq!(dead, [dying.delivery_id.to_string()]);
    let shown = stack.queue.dead_letter_by_id(dying.delivery_id.as_str()).await.expect("read").expect("kept");
    assert_eq!(shown.reason, "HTTP 500 after 4 attempts");
    assert_eq!(conn.llen::<_, usize>(keys.history(ep.id.as_str())).await.expect("history"), 1);
    let listed: Vec<Vec<u8>> = conn.lrange(keys.processing(worker.as_str()), 0, -1).await.expect("list");
    assert_eq!(
        listed,
        vec![encoded[1].as_bytes().to_vec()],
        "the dead job left, the next one is on the list"
    );

    // Asking for none takes none (the other callers of a dead letter).
    let taken = taken.jobs.into_iter().next().expect("taken");
    let (done, none) =
        stack.queue.dead_letter_taking(&taken.claim(), &draft(&next), None, 0).await.expect("dead-letter");
    assert!(done && none.jobs.is_empty());
    assert_eq!(conn.llen::<_, usize>(keys.ready()).await.expect("llen"), 1, "the last job still waits");

    // Its lease lost (the job no longer on the list): nothing written, nothing taken.
    let (done, none) =
        stack.queue.dead_letter_taking(&taken.claim(), &draft(&left), None, 1).await.expect("dead-letter");
    taken.finish();
    assert!(!done && none.jobs.is_empty());
    assert_eq!(conn.llen::<_, usize>(keys.ready()).await.expect("llen"), 1, "the last job still waits");
    assert_eq!(conn.llen::<_, usize>(keys.dlq()).await.expect("dlq"), 2, "no entry for the lost one");
}

/// At the queue: a delivery parked in its endpoint's lane (one `EVALSHA`) takes the next ready
/// job for the slot it frees; a full lane (the delivery to be dead-lettered) and a lost lease
/// take nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_park_takes_the_next_job_in_the_same_step() {
    use entraguard_core::queue::{Park, Parked};
    let FirstOfThree { one, jobs: [parked, next, _left], encoded, worker, claimed } =
        first_of_three(["parked", "next", "left"]).await;
    let OneEndpoint { stack, receiver: _receiver, ep, keys, mut conn } = one;

    let park = Park { wake_in: Duration::from_secs(60), lane_max: 1, ..Park::default() };
    let (done, taken) =
        stack.queue.park_job(&claimed.claim(), &parked, park, 1).await.expect("park and take");
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await.expect("info");
    claimed.finish();
    assert_eq!(done, Parked::Parked);
    one_call_took(&info, &taken, encoded[1].as_bytes());
    assert_eq!(conn.llen::<_, usize>(keys.lane(ep.id.as_str())).await.expect("lane"), 1);

    // The lane is full now (NOTIFY_LANE_MAX 1): the next one is not parked, and takes nothing.
    let taken = taken.jobs.into_iter().next().expect("taken");
    let (done, none) = stack.queue.park_job(&taken.claim(), &next, park, 1).await.expect("park");
    assert_eq!(done, Parked::LaneFull);
    assert!(none.jobs.is_empty());
    // Its lease lost: nothing parked, nothing taken.
    let _: i64 = conn.lrem(keys.processing(worker.as_str()), 1, taken.bytes()).await.expect("lrem");
    let (done, none) = stack.queue.park_job(&taken.claim(), &next, park, 1).await.expect("park");
    taken.finish();
    assert_eq!(done, Parked::LeaseLost);
    assert!(none.jobs.is_empty());
    assert_eq!(conn.llen::<_, usize>(keys.ready()).await.expect("llen"), 1, "the last job still waits");
}

/// A batch of deliveries to one endpoint finished in one acknowledgement: each job's answer is
/// what it would be alone (a count of failures cleared, the lane's waiting deliveries released
/// one per finished job), and the endpoint's breaker and lane are read once for the batch, not
/// once per job (`looked` in `ack_delivered.lua`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_for_one_endpoint_reads_its_breaker_and_lane_once() {
    let OneEndpoint { stack, receiver: _receiver, ep, keys, mut conn } = one_endpoint().await;
    let jobs: Vec<String> =
        ["one", "two", "three"].iter().map(|t| Job::Delivery(delivery(&ep, t)).encode()).collect();
    let _: () = conn.rpush(keys.ready(), &jobs).await.expect("ready");
    // A closed breaker that counted two failures, and one delivery waiting in the lane.
    let breaker = keys.breaker(ep.id.as_str());
    let _: () =
        conn.hset_multiple(&breaker, &[("state", "closed"), ("failures", "2")]).await.expect("breaker");
    let _: () = conn.rpush(keys.lane(ep.id.as_str()), "waiting").await.expect("lane");

    let worker = WorkerId::generate();
    let mut fetcher = stack.queue.fetcher(&worker, Duration::from_secs(1)).await.expect("fetcher");
    let taken = fetcher.try_fetch_many(3).await.expect("fetch");
    assert_eq!(taken.jobs.len(), 3);
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut conn).await.expect("resetstat");
    let claims: Vec<_> = taken.jobs.iter().map(|c| c.claim()).collect();
    let refs: Vec<_> = claims.iter().map(|c| (c, &ep.id, "")).collect();
    let (acked, _) = stack.queue.ack_delivered_many(&refs, 0).await.expect("ack");
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await.expect("info");
    for c in taken.jobs {
        c.finish();
    }
    use entraguard_core::queue::Acked;
    assert_eq!(acked, vec![Acked::LaneWaiting; 3], "each finished job releases one from the lane");
    assert_eq!(calls(&info, "hmget"), 1, "the breaker read once for the batch: {info}");
    assert_eq!(calls(&info, "llen"), 1, "the lane read once for the batch: {info}");
    assert_eq!(calls(&info, "hdel"), 1, "the failures cleared once: {info}");
    let failures: Option<String> = conn.hget(&breaker, "failures").await.expect("hget");
    assert_eq!(failures, None, "the count of failures ended");
}

/// An acknowledgement's answer, with the job it took, lost to a Redis paused past the command
/// timeout while the worker (one slot: every job after the first comes with an
/// acknowledgement) waits on it. The paused command runs when Redis resumes and takes a job
/// whose answer nobody reads: the worker finds it on its list and hands it back, and every event
/// arrives, without restarting the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_taken_by_an_acknowledgement_whose_answer_was_lost_is_handed_back() {
    lost_answer(200).await;
}

/// The same with a failed attempt: the retry's step (its next attempt scheduled, and the job
/// it took for the freed slot) waits in the paused Redis; the retried event and the taken job
/// both arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_taken_by_a_retry_whose_answer_was_lost_is_handed_back() {
    lost_answer(503).await;
}

async fn lost_answer(third: u16) {
    const N: usize = 12;
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    // The third delivery's answer comes late: Redis is paused by then, so its acknowledgement
    // or retry (and the job it takes) waits in the paused Redis and the worker gives up on the
    // answer.
    receiver.push_replies([
        Reply::status(200),
        Reply::status(200),
        Reply::status(third).delay(Duration::from_secs(2)),
    ]);
    let ep = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let evs: Vec<_> = (0..N).map(|i| finding_event(&format!("lost-answer-{i}"))).collect();
    stack.producer.publish_batch(&evs).await.expect("published");
    let mut worker = stack.spawn_worker_process(&[
        "--concurrency",
        "1",
        "--redis-timeout",
        "1s",
        "--fetch-block",
        "1s",
        "--lease",
        "3s",
    ]);
    receiver.wait_for_requests(3, Duration::from_secs(60)).await;
    stack.redis.pause();
    tokio::time::sleep(Duration::from_secs(4)).await; // the fault itself: Redis frozen 4 s
    stack.redis.resume();

    let want: HashSet<String> = evs.iter().map(|e| e.id.to_string()).collect();
    wait_until(Duration::from_secs(90), "every event delivered after the pause", || async {
        let got: HashSet<String> = receiver
            .requests()
            .iter()
            .map(|r| r.json()["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        want.is_subset(&got)
    })
    .await;
    stack.wait_drained(Duration::from_secs(60)).await;
    assert!(worker.try_wait().expect("wait").is_none(), "the same worker, never restarted, did it");
    worker.kill().await.expect("stop");
    // The finishing step whose answer was lost ran once Redis resumed, and so did the worker's
    // retries of it: each attempt is still in Recent Deliveries once.
    let recorded = stack.queue.recent_deliveries(&ep.id, 200).await.expect("history");
    let mut seen = HashSet::new();
    for r in &recorded {
        assert!(
            seen.insert((r.delivery_id.to_string(), r.attempt)),
            "attempt {} of {} recorded twice: {recorded:?}",
            r.attempt,
            r.delivery_id
        );
    }
}

/// A slot's next job runs beside the previous delivery's acknowledgement
/// (crates/worker/src/slot.rs): a one-slot worker, its fourth delivery answered late, Redis
/// paused once the third's acknowledgement has taken the fifth job. The fourth's
/// acknowledgement then waits in the paused Redis, and the fifth, at hand, is delivered anyway
/// (before, the slot waited for the acknowledgement: no fifth request until Redis came back).
/// Only one: the fifth's acknowledgement waits behind the fourth's, so no sixth comes. Every
/// event arrives once, after Redis resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_delivers_its_next_job_while_the_last_acknowledgement_waits() {
    const N: usize = 8;
    let OneEndpoint { stack, receiver, ep, keys, conn } = one_endpoint().await;
    // Long enough that the third's acknowledgement is in well before it, on a busy machine too.
    let slow = Duration::from_secs(10);
    receiver.push_replies([
        Reply::status(200),
        Reply::status(200),
        Reply::status(200),
        Reply::status(200).delay(slow),
    ]);
    // Deliveries straight onto ready: fan-out steps between them would need Redis too.
    let evs: Vec<_> = (0..N).map(|i| finding_event(&format!("beside-{i}"))).collect();
    let jobs: Vec<String> =
        evs.iter().map(|e| Job::Delivery(DeliveryJob::new(e.clone(), ep.id.clone())).encode()).collect();
    let _: () = conn.clone().rpush(keys.ready(), &jobs).await.expect("ready");
    // The breaker's word on the endpoint (closed) is cached for its probe interval: long, so
    // the fifth's admission needs no Redis either.
    let mut worker = stack.spawn_worker_process(&[
        "--concurrency",
        "1",
        "--redis-timeout",
        "60s",
        "--lease",
        "60s",
        "--breaker-probe",
        "60s",
        "--delivery-timeout",
        "60s",
    ]);
    receiver.wait_for_requests(4, Duration::from_secs(60)).await;
    let fourth_sent = std::time::Instant::now();
    // The fourth is being answered (10 s); the third's acknowledgement (its history entry) is in.
    wait_until(Duration::from_secs(30), "the third delivery acknowledged", || {
        let mut conn = conn.clone();
        let history = keys.history(ep.id.as_str());
        async move { conn.llen::<_, usize>(history).await.expect("llen") >= 3 }
    })
    .await;
    stack.redis.pause();
    assert!(
        fourth_sent.elapsed() < slow - Duration::from_secs(1),
        "the fourth's answer must still be on its way when Redis is paused (the machine took {:?})",
        fourth_sent.elapsed()
    );
    assert_eq!(receiver.requests().len(), 4, "nothing after the fourth yet");
    // Polled, not `wait_for_requests` (it panics at its deadline, with Redis still paused).
    let fifth = tokio::time::timeout(Duration::from_secs(20), async {
        while receiver.requests().len() < 5 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let seen = receiver.requests().len();
    // The window in which a sixth would come if the slot did not wait.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = receiver.requests().len();
    stack.redis.resume();
    assert!(fifth.is_ok(), "the fifth delivery, at hand, went out while Redis was paused (saw {seen})");
    assert_eq!(after, 5, "one delivery beside a waiting acknowledgement, not more");

    let want: HashSet<String> = evs.iter().map(|e| e.id.to_string()).collect();
    let got = receiver.wait_for_requests(N, Duration::from_secs(60)).await;
    let ids: HashSet<String> =
        got.iter().map(|r| r.json()["id"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(ids, want, "every event arrived");
    stack.wait_drained(Duration::from_secs(60)).await;
    assert_eq!(receiver.requests().len(), N, "each once");
    worker.kill().await.expect("stop");
}

/// A worker killed between its acknowledgement's step and reading its answer: the jobs that
/// step took sit on the dead worker's processing list. When its lease runs out, a live worker
/// hands them back and delivers them; no processing list is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_taken_for_a_worker_killed_before_it_read_the_answer_are_delivered_by_another() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::start();
    let ep = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let events: Vec<_> = ["killed-a", "killed-b", "killed-c"].iter().map(|t| finding_event(t)).collect();
    let jobs: Vec<String> =
        events.iter().map(|e| Job::Delivery(DeliveryJob::new(e.clone(), ep.id.clone())).encode()).collect();
    let keys = stack.queue.keys().clone();
    let mut conn = stack.redis.connection().await;
    let _: () = conn.rpush(keys.ready(), &jobs).await.expect("ready");

    // The doomed worker: registered with a short lease, it delivers the first job (by hand
    // here), and its acknowledgement takes the other two; then it dies without reading them.
    let doomed = WorkerId::generate();
    stack.queue.heartbeat(&doomed, Duration::from_secs(1)).await.expect("lease");
    let mut fetcher = stack.queue.fetcher(&doomed, Duration::from_secs(1)).await.expect("fetcher");
    let first = fetcher.try_fetch().await.expect("fetch").expect("a job");
    let (_, taken) = stack.queue.ack_delivered_many(&[(&first.claim(), &ep.id, "")], 2).await.expect("ack");
    first.finish();
    assert_eq!(taken.jobs.len(), 2, "the acknowledgement took both");
    for c in taken.jobs {
        c.finish(); // the process holding them is gone: nobody will finish them here
    }
    assert_eq!(conn.llen::<_, usize>(keys.processing(doomed.as_str())).await.expect("llen"), 2);

    let survivor = stack.spawn_worker(&[]);
    let got = receiver.wait_for_requests(2, Duration::from_secs(60)).await;
    let ids: HashSet<String> =
        got.iter().map(|r| r.json()["id"].as_str().unwrap_or_default().to_owned()).collect();
    let want: HashSet<String> = events[1..].iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, want, "the two taken jobs, delivered by the live worker");
    stack.wait_drained(Duration::from_secs(30)).await;
    wait_until(Duration::from_secs(30), "the dead worker's list is gone", || async {
        let n: usize =
            stack.redis.connection().await.llen(keys.processing(doomed.as_str())).await.unwrap_or(1);
        n == 0
    })
    .await;
    survivor.stop().await;
}

/// The acknowledgement is one pipeline: an `LREM` per job, `ack_delivered.lua`, and each
/// endpoint's entries pushed with plain commands (the jobs and entries stay out of the script,
/// whose Lua hashes every byte it is handed). It answers as the script alone did when a lease
/// was lost (that job answers LeaseLost; its attempt, made and answered, is recorded), when
/// Redis lost its scripts (SCRIPT FLUSH, as after a restart: loaded again, and the next job still
/// taken), and when Redis is at its maxmemory, which refuses the plain `LPUSH`: the entries go
/// through a script allowed then, and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_answers_and_records_when_a_lease_was_lost_scripts_are_gone_or_redis_is_full() {
    use entraguard_core::history::{AttemptResult, DeliveryRecord};
    use entraguard_core::job::AttemptRecord;
    use entraguard_core::queue::Acked;
    use entraguard_core::timestamp::Timestamp;
    let OneEndpoint { stack, receiver: _receiver, ep, keys, mut conn } = one_endpoint().await;
    let jobs: Vec<DeliveryJob> = ["a", "b", "c", "next"].iter().map(|t| delivery(&ep, t)).collect();
    let encoded: Vec<String> = jobs.iter().map(|d| Job::Delivery(d.clone()).encode()).collect();
    let _: () = conn.rpush(keys.ready(), &encoded).await.expect("ready");
    let worker = WorkerId::generate();
    let mut fetcher = stack.queue.fetcher(&worker, Duration::from_secs(1)).await.expect("fetcher");
    let taken = fetcher.try_fetch_many(3).await.expect("fetch");
    assert_eq!(taken.jobs.len(), 3);
    let processing = keys.processing(worker.as_str());
    // b's lease ran out: another worker's lease check took it back.
    let _: i64 = conn.lrem(&processing, 1, &encoded[1]).await.expect("lrem");
    let entries: Vec<String> = jobs[..3]
        .iter()
        .map(|job| {
            let attempt = AttemptRecord {
                attempt: 1,
                at: Timestamp::now(),
                duration_ms: 3,
                status: Some(200),
                error: None,
            };
            DeliveryRecord::new(
                job,
                &attempt,
                AttemptResult::Delivered,
                [("x-coderaft-delivery", job.delivery_id.as_str())],
                None,
            )
            .encode()
        })
        .collect();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.expect("script flush");
    let set = |name: &str, value: &str| redis::cmd("CONFIG").arg("SET").arg(name).arg(value).to_owned();
    let _: () = set("maxmemory-policy", "noeviction").query_async(&mut conn).await.expect("policy");
    let _: () = set("maxmemory", "1").query_async(&mut conn).await.expect("maxmemory");
    let refused: redis::RedisResult<i64> = conn.lpush("probe", "x").await;
    assert!(refused.is_err_and(|e| e.to_string().contains("OOM")), "Redis refuses a plain LPUSH now");

    let claims: Vec<_> = taken.jobs.iter().map(|c| c.claim()).collect();
    let items: Vec<_> = claims.iter().zip(&entries).map(|(c, e)| (c, &ep.id, e.as_str())).collect();
    let (acked, next) = stack.queue.ack_delivered_many(&items, 1).await.expect("ack");
    let _: () = set("maxmemory", "0").query_async(&mut conn).await.expect("maxmemory");
    for c in taken.jobs {
        c.finish();
    }
    assert_eq!(acked, vec![Acked::Done, Acked::LeaseLost, Acked::Done]);
    let got: Vec<String> =
        next.jobs.iter().map(|c| String::from_utf8_lossy(c.bytes()).into_owned()).collect();
    assert_eq!(got, vec![encoded[3].clone()], "the script was loaded again and took the next job");
    let listed: Vec<String> = conn.lrange(&processing, 0, -1).await.expect("processing");
    assert_eq!(listed, vec![encoded[3].clone()], "only the job just taken is on the list");
    let recorded = stack.queue.recent_deliveries(&ep.id, 10).await.expect("history");
    let ids: Vec<&str> = recorded.iter().map(|r| r.delivery_id.as_str()).collect();
    let expected: Vec<&str> = jobs[..3].iter().rev().map(|j| j.delivery_id.as_str()).collect();
    assert_eq!(ids, expected, "every attempt recorded at maxmemory, newest first");
    for c in next.jobs {
        c.finish();
    }
}

/// Server errors inside the acknowledgement's pipeline. One in an `LREM`'s place (here the
/// worker's processing list overwritten by hand, WRONGTYPE; in production a cluster mid-failover)
/// says nothing of the lease: the batch fails and the delivery tries again, instead of reading
/// it as a lost lease (the job would be handed back and delivered twice). One from the script (a
/// corrupt breaker record) comes after the job left the list: the job is acknowledged, and its
/// entry recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_fails_on_a_server_error_for_the_job_and_not_for_a_corrupt_breaker() {
    use entraguard_core::queue::Acked;
    let OneEndpoint { stack, receiver: _receiver, ep, keys, mut conn } = one_endpoint().await;
    let jobs: Vec<DeliveryJob> = ["a", "b"].iter().map(|t| delivery(&ep, t)).collect();
    let encoded: Vec<String> = jobs.iter().map(|d| Job::Delivery(d.clone()).encode()).collect();
    let _: () = conn.rpush(keys.ready(), &encoded).await.expect("ready");
    let worker = WorkerId::generate();
    let mut fetcher = stack.queue.fetcher(&worker, Duration::from_secs(1)).await.expect("fetcher");
    let taken = fetcher.try_fetch_many(2).await.expect("fetch");
    assert_eq!(taken.jobs.len(), 2);
    let processing = keys.processing(worker.as_str());

    // The breaker's record is not a hash: the script fails after the job left the list.
    let _: () = conn.set(keys.breaker(ep.id.as_str()), "not a hash").await.expect("corrupt breaker");
    let first = taken.jobs[0].claim();
    let (acked, _) = stack.queue.ack_delivered_many(&[(&first, &ep.id, "entry-a")], 0).await.expect("ack");
    assert_eq!(acked, vec![Acked::Done], "the job is off the list: acknowledged");
    let history: Vec<String> = conn.lrange(keys.history(ep.id.as_str()), 0, -1).await.expect("history");
    assert_eq!(history, vec!["entry-a".to_owned()], "its entry recorded");

    // The processing list is not a list: LREM answers WRONGTYPE, which is not a lost lease.
    let listed: Vec<String> = conn.lrange(&processing, 0, -1).await.expect("processing");
    let _: () = conn.del(&processing).await.expect("del");
    let _: () = conn.set(&processing, "not a list").await.expect("corrupt list");
    let second = taken.jobs[1].claim();
    let got = stack.queue.ack_delivered_many(&[(&second, &ep.id, "")], 0).await;
    assert!(got.is_err(), "a server error in the LREM's place fails the batch: {got:?}");
    let _: () = conn.del(&processing).await.expect("del");
    let _: () = conn.rpush(&processing, &listed).await.expect("restore");
    let _: () = conn.del(keys.breaker(ep.id.as_str())).await.expect("del");
    // The delivery's next try finds its job still on the list and finishes it.
    let retried = stack.queue.ack_delivered_retried(&second, &ep.id, "").await.expect("retried");
    assert_eq!(retried, Acked::Done);
    assert_eq!(conn.llen::<_, usize>(&processing).await.expect("llen"), 0);
    for c in taken.jobs {
        c.finish();
    }
}
