//! Counting failures honestly: across workers, at exactly N with attempts in flight, stale
//! outcomes ignored, a flapping receiver damped, and the breaker turned off.

use super::*;

/// "N failures in a row" means in a row across workers: a success acknowledged by any worker
/// ends the run. (Before, a worker whose cache said "closed, clean" did not tell the breaker
/// of its success, so another worker's failures before and after it added up and opened it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_on_any_worker_ends_the_run_of_failures() {
    use entraguard_core::breaker::{BreakerSettings, Report};
    use entraguard_core::queue::Acked;
    let stack = Stack::start().await;
    let ep = stack.add_endpoint("webhook", "http://127.0.0.1:9/x", &["finding.new"], None).await;
    let settings = BreakerSettings::default();
    let fail = Report::Failure { error: "503", probe: false };
    for _ in 0..settings.failures - 1 {
        stack.queue.breaker_report(&ep.id, Some(&ep.name), fail, &settings).await.expect("reported");
    }
    let (_worker, raw) = fetched_delivery(&stack, &ep).await;
    let acked = stack.queue.ack_delivered(&raw, &ep.id).await.expect("acked");
    assert_eq!(acked, Acked::Done);
    let answer = stack.queue.breaker_report(&ep.id, Some(&ep.name), fail, &settings).await.expect("reported");
    assert_eq!(answer.state, BreakerState::Closed, "one failure after a success does not open it");
    assert_eq!(answer.failures, 1);
    // An open breaker is left to the explicit report, and the acknowledgement says so.
    for _ in 0..settings.failures {
        stack.queue.breaker_report(&ep.id, Some(&ep.name), fail, &settings).await.expect("reported");
    }
    assert_eq!(state(&stack, &ep).await, BreakerState::Open);
    // Its announcement waits on the ready list; a fetch would take it first.
    let mut conn = stack.redis.connection().await;
    let _: () = conn.del(format!("{{{PREFIX}}}:ready")).await.expect("del");
    let (_worker, raw) = fetched_delivery(&stack, &ep).await;
    let acked = stack.queue.ack_delivered(&raw, &ep.id).await.expect("acked");
    assert_eq!(acked, Acked::BreakerOpen);
    assert_eq!(state(&stack, &ep).await, BreakerState::Open);
}

/// A breaker's state change and its `endpoint.health_changed` announcement are one step: the
/// report that opens (or closes) the breaker leaves the event on the ready list itself, so a
/// worker that dies right after the change cannot lose the news, and a report with no change
/// announces nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_change_and_its_announcement_are_one_step() {
    use entraguard_core::breaker::{BreakerSettings, Report};
    let stack = Stack::start().await;
    let ep = stack.add_endpoint("webhook", "http://127.0.0.1:9/x", &["finding.new"], None).await;
    let settings = BreakerSettings { failures: 2, ..BreakerSettings::default() };
    let ready = format!("{{{PREFIX}}}:ready");
    let mut conn = stack.redis.connection().await;
    let fail = Report::Failure { error: "HTTP 503 from \"receiver\"", probe: false };
    stack.queue.breaker_report(&ep.id, Some(&ep.name), fail, &settings).await.expect("reported");
    let n: usize = conn.llen(&ready).await.expect("llen");
    assert_eq!(n, 0, "no change, no announcement");
    let answer = stack.queue.breaker_report(&ep.id, Some(&ep.name), fail, &settings).await.expect("reported");
    assert!(answer.changed && answer.state == BreakerState::Open);
    let jobs: Vec<Vec<u8>> = conn.lrange(&ready, 0, -1).await.expect("lrange");
    assert_eq!(jobs.len(), 1, "the change announced itself");
    let Job::Event(job) = Job::decode(&jobs[0]).expect("a valid job") else { panic!("an event job") };
    let health = job.event.about_endpoint().map(str::to_owned);
    assert_eq!(health.as_deref(), Some(ep.id.as_str()));
    let v = serde_json::to_value(&job.event).expect("json");
    assert_eq!(v["endpoint"]["state"], "open");
    assert_eq!(v["endpoint"]["name"], ep.name.as_str());
    assert_eq!(v["endpoint"]["last_error"], "HTTP 503 from \"receiver\"");
    let _: () = conn.del(&ready).await.expect("del");
    // Park two deliveries, then close it by hand: the announcement counts what was released.
    for _ in 0..2 {
        let (_worker, raw) = fetched_delivery(&stack, &ep).await;
        let Job::Delivery(waiting) = raw.decode().expect("a job") else { panic!("a delivery") };
        assert!(stack.queue.park(&raw, &waiting, Duration::from_secs(60)).await.expect("parked"));
    }
    let reset = entraguard_core::operator::reset(&stack.queue, &ep).await.expect("reset");
    assert_eq!(reset.waiting, 2);
    let jobs: Vec<Vec<u8>> = conn.lrange(&ready, 0, -1).await.expect("lrange");
    let events: Vec<serde_json::Value> = jobs
        .iter()
        .filter_map(|raw| match Job::decode(raw).expect("valid") {
            Job::Event(e) => Some(serde_json::to_value(&e.event).expect("json")),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["endpoint"]["state"], "closed");
    assert_eq!(events[0]["endpoint"]["parked"], 2);
    assert!(events[0]["endpoint"]["last_error"].is_null(), "present, and null: {events:?}");
}

/// Issue 22 (4): with 16 deliveries in flight to an endpoint that starts failing, the breaker
/// opens at exactly its threshold: the in-flight attempts' failures are not added to the count
/// (before: 16 to 18), and no new attempt is started once failures are counted beyond what
/// could still open it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_at_exactly_n_failures_with_16_in_flight() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(503).delay(Duration::from_millis(400)));
    let ep = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let worker = stack.spawn_worker(&[
        "--endpoint-concurrency",
        "16",
        "--breaker-probe",
        "60s",
        "--retry-schedule",
        "50ms,100ms,150ms",
    ]);
    publish(&stack, 40, "inflight").await;
    wait_state(&stack, &ep, BreakerState::Open).await;
    // Every delivery ends up waiting in the lane (none is dead: each spent one attempt).
    wait_until(Duration::from_secs(60), "all 40 parked", || async {
        stack.queue.breaker_status(&ep.id).await.is_ok_and(|s| s.parked == 40)
    })
    .await;
    let status = stack.queue.breaker_status(&ep.id).await.expect("status");
    let sent = receiver.requests().len();
    println!("figure: opened with {} failures counted, {sent} requests sent", status.consecutive_failures);
    assert_eq!(status.consecutive_failures, 5, "opens at N, the in-flight failures not added");
    assert!(sent <= 16, "{sent} requests: nothing started beyond the 16 in flight");
    assert_eq!(stack.stats().await.dead, 0);
    assert_attempts_honest(&receiver.requests(), 4);
    worker.stop().await;
}

/// Issue 22 (4) and issue 24 (7): a flapping receiver (5 failures, 1 success, repeat) with a
/// 1 s probe. Before: 97 openings announced in 12 s, one delivery POSTed 14 times, 5 of them as
/// attempt 1. Now: at most one opening (and its closing) announced per probe interval (2
/// allowed), no delivery POSTed more than its 4 attempts allow, each request its own attempt
/// number; everything ends delivered or dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_receiver_is_damped_and_attempts_are_counted_honestly() {
    let stack = Stack::start().await;
    let flapping = HttpReceiver::with_default(Reply::status(200));
    let mut pattern = Vec::new();
    for _ in 0..300 {
        pattern.extend(std::iter::repeat_with(|| Reply::status(503)).take(5));
        pattern.push(Reply::status(200));
    }
    flapping.push_replies(pattern);
    let news = HttpReceiver::start();
    let ep = stack
        .add_endpoint("webhook", &flapping.url(), &["finding.new", "endpoint.health_changed"], None)
        .await;
    stack.add_endpoint("webhook", &news.url(), &["endpoint.health_changed"], None).await;
    let probe = Duration::from_secs(1);
    let worker = stack.spawn_worker(&[
        "--endpoint-concurrency",
        "16",
        "--breaker-probe",
        "1s",
        "--retry-schedule",
        "50ms,100ms,150ms",
    ]);
    let t0 = Instant::now();
    // Events keep coming for 12 s, as the run did.
    while t0.elapsed() < Duration::from_secs(12) {
        publish(&stack, 5, "flap").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = t0.elapsed();
    let states: Vec<String> = news
        .requests()
        .iter()
        .map(|r| r.json()["endpoint"]["state"].as_str().unwrap_or("").to_owned())
        .collect();
    let opened = states.iter().filter(|s| *s == "open").count();
    let closed = states.iter().filter(|s| *s == "closed").count();
    let intervals = (elapsed.as_secs_f64() / probe.as_secs_f64()).ceil() as usize;
    println!(
        "figure: {opened} openings and {closed} closings announced in {elapsed:?} ({intervals} probe intervals)"
    );
    assert!(opened >= 1, "the breaker opened and said so: {states:?}");
    assert!(
        opened <= 2 * intervals && closed <= 2 * intervals,
        "{opened} openings, {closed} closings: {states:?}"
    );
    // No more than one pair in any probe interval (2 allowed): per pair of announcements.
    let times: Vec<Instant> = news
        .requests()
        .iter()
        .filter(|r| r.json()["endpoint"]["state"] == "open")
        .map(|r| r.received_at)
        .collect();
    for w in times.windows(3) {
        assert!(w[2] - w[0] >= probe, "three openings announced within one probe interval: {states:?}");
    }
    // Drain: the receiver recovers.
    flapping.clear_replies();
    stack.wait_drained(Duration::from_secs(180)).await;
    let requests = flapping.requests();
    let failed = stack.stats().await.dead;
    println!("figure: {} requests, {failed} dead-lettered", requests.len());
    assert_attempts_honest(&requests, 4);
    assert_eq!(state(&stack, &ep).await, BreakerState::Closed);
    worker.stop().await;
}

/// Issue 22 (4), in the breaker script itself: a success that began before the breaker opened
/// does not close it (before: any success closed it, so 16 deliveries in flight closed it right
/// after it opened); failures of attempts that began before it closed do not re-open it; a
/// re-opening inside the probe interval after an announced one is not announced, and the first
/// failed probe after that interval announces it, with the count of changes left unsaid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_outcomes_change_nothing_and_announcements_are_damped() {
    use entraguard_core::breaker::{AttemptFacts, BreakerSettings, Report};
    let stack = Stack::start().await;
    let ep = stack.add_endpoint("webhook", "http://127.0.0.1:9/x", &["finding.new"], None).await;
    let settings =
        BreakerSettings { failures: 2, probe: Duration::from_millis(600), ..BreakerSettings::default() };
    let q = &stack.queue;
    let name = Some(ep.name.as_str());
    let fail = Report::Failure { error: "HTTP 503", probe: false };
    let at = |generation: u64| AttemptFacts { generation: Some(generation), ..AttemptFacts::default() };
    // Generation 0: two failures open it (generation 1); a third in-flight one adds nothing.
    q.breaker_report_attempt(&ep.id, name, fail, &settings, at(0)).await.expect("report");
    let opened = q.breaker_report_attempt(&ep.id, name, fail, &settings, at(0)).await.expect("report");
    assert!(opened.changed && opened.announced && opened.state == BreakerState::Open);
    assert_eq!(opened.generation, 1);
    q.breaker_report_attempt(&ep.id, name, fail, &settings, at(0)).await.expect("report");
    assert_eq!(q.breaker_status(&ep.id).await.expect("status").consecutive_failures, 2);
    // A success that began before it opened: still open.
    let stale = Report::Success { probe: false };
    let answer = q.breaker_report_attempt(&ep.id, name, stale, &settings, at(0)).await.expect("report");
    assert_eq!((answer.state, answer.changed), (BreakerState::Open, false), "a stale success closes nothing");
    // The probe's success closes it (generation 2), announced: its opening was.
    let probe_ok = Report::Success { probe: true };
    let closed = q.breaker_report_attempt(&ep.id, name, probe_ok, &settings, at(1)).await.expect("report");
    assert!(closed.changed && closed.announced && closed.state == BreakerState::Closed);
    // Failures of attempts from before the closing do not re-open it.
    for g in [0, 1, 1] {
        let a = q.breaker_report_attempt(&ep.id, name, fail, &settings, at(g)).await.expect("report");
        assert_eq!(a.state, BreakerState::Closed, "a failure from generation {g} counts toward nothing");
    }
    let news = take_announcements(&stack).await;
    assert_eq!(
        news.iter().map(|n| n["state"].as_str().unwrap_or("").to_owned()).collect::<Vec<_>>(),
        ["open", "closed"]
    );
    assert_eq!(news[1]["last_error"], serde_json::Value::Null, "present, and null: {news:?}");
    // Two fresh failures re-open it within the probe interval: not announced.
    q.breaker_report_attempt(&ep.id, name, fail, &settings, at(2)).await.expect("report");
    let again = q.breaker_report_attempt(&ep.id, name, fail, &settings, at(2)).await.expect("report");
    assert!(again.changed && !again.announced && again.state == BreakerState::Open);
    assert!(take_announcements(&stack).await.is_empty(), "damped");
    // Re-opening right after closing continues the back-off: the next probe is later.
    assert!(again.probe_in > settings.probe, "{:?}", again.probe_in);
    // The first failed probe after the interval announces the opening, with the changes left unsaid.
    tokio::time::sleep(again.probe_in + Duration::from_millis(50)).await;
    assert_eq!(
        q.breaker_admit(&ep.id, Duration::from_secs(5), 2, 0).await.expect("admit"),
        entraguard_core::breaker::Admit::Probe { generation: 3 }
    );
    let probe_fail = Report::Failure { error: "HTTP 503", probe: true };
    let late = q.breaker_report_attempt(&ep.id, name, probe_fail, &settings, at(3)).await.expect("report");
    assert!(late.announced && late.quiet == 1, "{late:?}");
    let news = take_announcements(&stack).await;
    assert_eq!(news.len(), 1, "{news:?}");
    assert_eq!(news[0]["state"], "open");
}

/// Issue 22 (4): once a closed breaker has counted a failure, admissions are trials, let
/// through only while failures + trials + the asking worker's attempts in flight stay under the
/// threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_with_failures_admits_only_what_cannot_overshoot() {
    use entraguard_core::breaker::{Admit, AttemptFacts, BreakerSettings, Report};
    let stack = Stack::start().await;
    let ep = stack.add_endpoint("webhook", "http://127.0.0.1:9/x", &["finding.new"], None).await;
    let settings = BreakerSettings::default();
    let q = &stack.queue;
    let deadline = Duration::from_secs(5);
    assert_eq!(
        q.breaker_admit(&ep.id, deadline, 5, 15).await.expect("admit"),
        Admit::Closed { generation: 0 }
    );
    let fail = Report::Failure { error: "HTTP 503", probe: false };
    q.breaker_report(&ep.id, None, fail, &settings).await.expect("report");
    // One failure counted, 3 others in flight here: one more may go.
    assert_eq!(q.breaker_admit(&ep.id, deadline, 5, 3).await.expect("admit"), Admit::Trial { generation: 0 });
    assert_eq!(q.breaker_admit(&ep.id, deadline, 5, 3).await.expect("admit"), Admit::Wait);
    assert_eq!(q.breaker_admit(&ep.id, deadline, 5, 15).await.expect("admit"), Admit::Wait);
    // The trial's failure gives its slot back and counts.
    let trial = AttemptFacts { trial: true, ..AttemptFacts::default() };
    let a = q.breaker_report_attempt(&ep.id, None, fail, &settings, trial).await.expect("report");
    assert_eq!((a.state, a.failures), (BreakerState::Closed, 2));
    assert_eq!(q.breaker_admit(&ep.id, deadline, 5, 0).await.expect("admit"), Admit::Trial { generation: 0 });
    assert_eq!(q.breaker_admit(&ep.id, deadline, 5, 2).await.expect("admit"), Admit::Wait);
    // A trial that ends without a failure report (a permanent failure) gives its slot back.
    q.breaker_report_attempt(&ep.id, None, Report::Release, &settings, trial).await.expect("release");
    assert_eq!(q.breaker_admit(&ep.id, deadline, 5, 2).await.expect("admit"), Admit::Trial { generation: 0 });
    assert_eq!(q.breaker_status(&ep.id).await.expect("status").consecutive_failures, 2, "nothing counted");
}

/// Issue 22 (6): `NOTIFY_BREAKER_FAILURES=off` turns the breaker off (before: exit 2): a
/// failing endpoint's deliveries retry on the schedule and are dead-lettered, nothing parks and
/// the breaker never opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_can_be_turned_off() {
    let stack = Stack::start().await;
    let receiver = HttpReceiver::with_default(Reply::status(503));
    let ep = stack.add_endpoint("webhook", &receiver.url(), &["finding.new"], None).await;
    let worker = stack.spawn_worker(&["--breaker-failures", "off", "--retry-schedule", "50ms,100ms,150ms"]);
    publish(&stack, 3, "off").await;
    stack.wait_dead(3, Duration::from_secs(60)).await;
    stack.wait_drained(Duration::from_secs(60)).await;
    let status = stack.queue.breaker_status(&ep.id).await.expect("status");
    assert_eq!((status.state, status.consecutive_failures), (BreakerState::Closed, 0));
    assert_eq!(receiver.requests().len(), 12, "four attempts each, nothing parked");
    assert_attempts_honest(&receiver.requests(), 4);
    worker.stop().await;
}
