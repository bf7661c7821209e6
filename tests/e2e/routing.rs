use std::time::{Duration, Instant};

use entraguard_core::endpoint::{Endpoint, EndpointDraft, TargetPolicy};
use entraguard_core::rules::RulesDraft;
use entraguard_producer::Event;
use entraguard_testkit::{HttpReceiver, Recorded, wait_until};
use redis::AsyncCommands;

use crate::harness::{PREFIX, Stack};

const LONG: Duration = Duration::from_secs(60);

async fn add(stack: &Stack, channel: &str, target: &str, events: &[&str], rules: &str) -> Endpoint {
    let ep = EndpointDraft {
        name: format!("{channel} with rules"),
        channel: channel.into(),
        target: target.into(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        enabled: true,
        secret: None,
        ed25519: None,
        teams_format: None,
        rate_limit: None,
        rules: serde_json::from_str::<RulesDraft>(rules).expect("rules draft"),
    }
    .validate(TargetPolicy { allow_http: true })
    .expect("valid endpoint");
    stack.store.put(&ep).await.expect("stored");
    ep
}

fn finding(kind: &str, tenant: &str, id: &str, severity: &str, previous: Option<&str>, scan: &str) -> Event {
    let prev = previous.map(|p| format!(r#""previous_severity":"{p}","#)).unwrap_or_default();
    Event::from_json(
        format!(
            r#"{{"event":"{kind}","tenant_id":"{tenant}","scan_id":"{scan}","finding":{{"id":"{id}",
            "title":"Finding {id}","severity":"{severity}",{prev}"category":"c",
            "remediation_url":"https://eg.example.com/api/entraguard/findings/{id}"}}}}"#
        )
        .as_bytes(),
    )
    .expect("valid finding")
}

fn scan_completed(tenant: &str, scan: &str) -> Event {
    Event::from_json(
        format!(
            r#"{{"event":"scan.completed","tenant_id":"{tenant}","scan_id":"{scan}","scan":{{"run_id":"r1",
            "kind":"full","environment":"prod","score":80,"grade":"B"}}}}"#
        )
        .as_bytes(),
    )
    .expect("valid scan event")
}

fn scan_failed(tenant: &str, scan: &str) -> Event {
    Event::from_json(
        format!(
            r#"{{"event":"scan.failed","tenant_id":"{tenant}","scan_id":"{scan}","scan":{{"run_id":"r1",
            "kind":"full","environment":"prod","error":{{"kind":"network","message":"down"}}}}}}"#
        )
        .as_bytes(),
    )
    .expect("valid scan event")
}

fn seen(reqs: &[Recorded]) -> Vec<String> {
    let mut v: Vec<String> = reqs
        .iter()
        .map(|r| {
            let b = r.json();
            format!(
                "{} {} {}",
                b["event"].as_str().unwrap_or(""),
                b["tenant_id"].as_str().unwrap_or(""),
                b["finding"]["id"].as_str().unwrap_or("-")
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_floors_route_events_and_a_severity_change_passes_the_floor_both_ways() {
    let stack = Stack::start().await;
    let a = HttpReceiver::start();
    let b = HttpReceiver::start();
    let all = ["finding.new", "finding.severity_changed", "scan.failed"];
    add(&stack, "webhook", &a.url(), &all, r#"{"tenants":["tenant-a"]}"#).await;
    add(&stack, "webhook", &b.url(), &all, r#"{"min_severity":"high"}"#).await;
    let worker = stack.spawn_worker(&[]);
    let events = vec![
        finding("finding.new", "tenant-a", "A-LOW", "low", None, "s1"),
        finding("finding.new", "tenant-b", "B-HIGH", "high", None, "s1"),
        finding("finding.new", "tenant-b", "B-MED", "medium", None, "s1"),
        finding("finding.severity_changed", "tenant-b", "B-UP", "high", Some("low"), "s1"),
        finding("finding.severity_changed", "tenant-b", "B-DOWN", "low", Some("critical"), "s1"),
        finding("finding.severity_changed", "tenant-b", "B-LOWS", "low", Some("medium"), "s1"),
        scan_failed("tenant-a", "s1"),
    ];
    stack.producer.publish_batch(&events).await.expect("published");
    stack.wait_drained(LONG).await;
    assert_eq!(
        seen(&a.wait_for_requests(2, LONG).await),
        vec!["finding.new tenant-a A-LOW", "scan.failed tenant-a -"],
        "tenant A's endpoint hears only of tenant A"
    );
    assert_eq!(
        seen(&b.wait_for_requests(4, LONG).await),
        vec![
            "finding.new tenant-b B-HIGH",
            "finding.severity_changed tenant-b B-DOWN",
            "finding.severity_changed tenant-b B-UP",
            "scan.failed tenant-a -",
        ],
        "the floor keeps medium and below out, but a change into or out of it is sent"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_skips_a_repeat_inside_the_window_and_sends_it_after() {
    let stack = Stack::start().await;
    let rx = HttpReceiver::start();
    let ep = add(&stack, "webhook", &rx.url(), &["finding.new"], r#"{"dedupe_window":"2s"}"#).await;
    let worker = stack.spawn_worker(&[]);
    // The same finding twice (two event ids), and once at another severity.
    for e in [
        finding("finding.new", "t", "F-1", "low", None, "s1"),
        finding("finding.new", "t", "F-1", "low", None, "s2"),
        finding("finding.new", "t", "F-1", "high", None, "s2"),
    ] {
        stack.producer.publish(&e).await.expect("published");
    }
    stack.wait_drained(LONG).await;
    let mut conn = stack.queue.connection();
    let suppressed: Option<u64> =
        conn.hget(format!("{{{PREFIX}}}:suppressed"), ep.id.as_str()).await.expect("readable");
    assert_eq!(suppressed, Some(1), "the repeat is counted as suppressed");
    assert_eq!(stack.queue.suppressed_count(&ep.id).await.expect("readable"), 1);
    assert_eq!(rx.requests().len(), 2, "the repeat is not sent; the other severity is");
    // The window's key expires a window after its last entry: then the finding is new again.
    let key = format!("{{{PREFIX}}}:dedupe:{}", ep.id);
    wait_until(LONG, "the dedupe window passed", || {
        let mut c = stack.queue.connection();
        let key = key.clone();
        async move { c.exists::<_, bool>(&key).await.is_ok_and(|e| !e) }
    })
    .await;
    stack.producer.publish(&finding("finding.new", "t", "F-1", "low", None, "s3")).await.expect("published");
    rx.wait_for_requests(3, LONG).await;
    stack.wait_drained(LONG).await;
    assert_eq!(rx.requests().len(), 3);
    worker.stop().await;
}

fn digest_of(reqs: &[Recorded]) -> Vec<serde_json::Value> {
    reqs.iter()
        .map(Recorded::json)
        .filter(|b| {
            b["text"].as_str().is_some_and(|t| t.contains("digest")) || b["event"] == "finding.digest"
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_of_500_low_and_3_high_to_slack_is_3_messages_and_1_digest_in_seconds() {
    let stack = Stack::start().await;
    let slack = HttpReceiver::start();
    add(
        &stack,
        "slack",
        &slack.url_for("/services/T0/B0/x"),
        &["finding.new"],
        r#"{"digest":{"severities":["low","medium"]}}"#,
    )
    .await;
    let worker = stack.spawn_worker(&["--concurrency", "8"]);
    let started = Instant::now();
    let mut events: Vec<Event> =
        (0..500).map(|i| finding("finding.new", "t", &format!("L-{i:03}"), "low", None, "scan-1")).collect();
    for i in 0..3 {
        events.insert(100 * i + 50, finding("finding.new", "t", &format!("H-{i}"), "high", None, "scan-1"));
    }
    stack.producer.publish_batch(&events).await.expect("published");
    stack.producer.publish(&scan_completed("t", "scan-1")).await.expect("published");
    let got = slack.wait_for_requests(4, LONG).await;
    stack.wait_drained(LONG).await;
    let elapsed = started.elapsed();
    let got = if got.len() < 4 { slack.requests() } else { got };
    assert_eq!(slack.requests().len(), 4, "3 single messages and 1 digest");
    let digests = digest_of(&got);
    assert_eq!(digests.len(), 1, "{digests:?}");
    let fields = digests[0]["attachments"][0]["fields"].as_array().expect("fields").clone();
    assert_eq!(fields[0]["value"], "500 (500 low)");
    let list = fields.iter().find(|f| f["title"] == "Findings" && f["short"] == false).expect("the list");
    let list = list["value"].as_str().expect("text");
    assert_eq!(list.lines().count(), 51, "50 listed and the rest counted");
    assert!(list.ends_with("… and 450 more"), "{list}");
    assert!(elapsed < Duration::from_secs(45), "pacing took {elapsed:?}");
    let mut conn = stack.queue.connection();
    let open: u64 = conn.zcard(format!("{{{PREFIX}}}:digests")).await.expect("readable");
    assert_eq!(open, 0, "no digest left open");
    worker.stop().await;
}

/// A stack with one webhook endpoint digesting tenant `t`'s low findings, sent after `max_wait`
/// at the latest, and its receiver.
async fn low_digest_webhook(max_wait: &str) -> (Stack, HttpReceiver) {
    let stack = Stack::start().await;
    let rx = HttpReceiver::start();
    let rules = format!(r#"{{"digest":{{"severities":["low"],"max_wait":"{max_wait}"}}}}"#);
    add(&stack, "webhook", &rx.url(), &["finding.new"], &rules).await;
    (stack, rx)
}

/// Publishes `n` low findings of tenant `t`'s scan `scan`, one by one (`<prefix>-<i>`).
async fn publish_low(stack: &Stack, prefix: &str, n: usize, scan: &str) {
    for i in 0..n {
        let event = finding("finding.new", "t", &format!("{prefix}-{i}"), "low", None, scan);
        stack.producer.publish(&event).await.expect("published");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_whose_scan_never_ends_is_sent_after_its_longest_wait_and_a_failed_scan_flushes() {
    let (stack, rx) = low_digest_webhook("3s").await;
    let worker = stack.spawn_worker(&[]);
    publish_low(&stack, "L", 5, "scan-x").await;
    let got = rx.wait_for_requests(1, LONG).await;
    let body = got[0].json();
    assert_eq!(body["event"], "finding.digest");
    assert_eq!(body["digest"]["reason"], "max_wait");
    assert_eq!(body["digest"]["total"], 5);
    // A failed scan flushes too.
    publish_low(&stack, "M", 2, "scan-y").await;
    // Both collected before the failed scan is published: urgent work goes first, so a failed
    // scan published while they still wait may flush before them (they then go out with the
    // digest's next flush: found by `./dev stress`).
    wait_until(LONG, "both findings collected in scan-y's digest", || async {
        stack.queue.stats().await.is_ok_and(|s| s.ready == 0 && s.processing == 0 && s.digests == 1)
    })
    .await;
    stack.producer.publish(&scan_failed("t", "scan-y")).await.expect("p");
    let got = rx.wait_for_requests(2, LONG).await;
    let body = got[1].json();
    assert_eq!(
        (body["digest"]["reason"].as_str(), body["digest"]["total"].as_u64()),
        (Some("scan.failed"), Some(2))
    );
    stack.wait_drained(LONG).await;
    assert_eq!(rx.requests().len(), 2);
    worker.stop().await;
}

/// A failed scan is urgent, so under a backlog its event can be fanned out before findings of
/// the same scan that were published earlier (they wait in the tenant's flow). Its flush then
/// finds no digest; the findings that arrive after it are sent together `LATE_FINDINGS_WAIT` (10 s)
/// later (not after the rule's longest wait, 10 minutes here), with the scan's end as reason.
/// Here the failed scan is simply published first, which is the order fan-out sees then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_fanned_out_after_their_scan_ended_are_sent_together_soon_after() {
    let (stack, rx) = low_digest_webhook("10m").await;
    let worker = stack.spawn_worker(&[]);
    stack.producer.publish(&scan_failed("t", "scan-late")).await.expect("p");
    wait_until(LONG, "the failed scan fanned out", || async {
        stack.queue.stats().await.is_ok_and(|s| s.ready == 0 && s.processing == 0)
    })
    .await;
    let published = Instant::now();
    publish_low(&stack, "LATE", 3, "scan-late").await;
    // Well under the 10 minutes of the rule's longest wait.
    let got = rx.wait_for_requests(1, LONG).await;
    let body = got[0].json();
    assert_eq!(
        (body["event"].as_str(), body["digest"]["reason"].as_str(), body["digest"]["total"].as_u64()),
        (Some("finding.digest"), Some("scan.failed"), Some(3)),
        "{body}"
    );
    assert!(published.elapsed() < Duration::from_secs(45), "took {:?}", published.elapsed());
    stack.wait_drained(LONG).await;
    assert_eq!(rx.requests().len(), 1);
    worker.stop().await;
}

/// `{entraguard}:scans_ended` overwritten with a string (a corrupt record, e.g. by hand with
/// redis-cli): fan-out goes on as if no scan's end were remembered. A failed scan still flushes,
/// and its findings fanned out after it go out after the rule's longest wait (3 s here). Fan-out
/// neither stalls on the wrong type nor dead-letters the events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_scans_ended_record_costs_only_the_late_findings_wait() {
    let (stack, rx) = low_digest_webhook("3s").await;
    let mut conn = stack.queue.connection();
    let _: () = conn.set(format!("{{{PREFIX}}}:scans_ended"), "not a zset").await.expect("set");
    let worker = stack.spawn_worker(&[]);
    stack.producer.publish(&scan_failed("t", "scan-corrupt")).await.expect("p");
    publish_low(&stack, "C", 2, "scan-corrupt").await;
    let got = rx.wait_for_requests(1, LONG).await;
    let body = got[0].json();
    assert_eq!(
        (body["digest"]["reason"].as_str(), body["digest"]["total"].as_u64()),
        (Some("max_wait"), Some(2)),
        "{body}"
    );
    stack.wait_drained(LONG).await;
    assert_eq!(stack.stats().await.dead, 0, "no event dead-lettered");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collected_findings_survive_a_sigkilled_worker_and_the_digest_is_sent_once() {
    let stack = Stack::start().await;
    let rx = HttpReceiver::start();
    let ep =
        add(&stack, "webhook", &rx.url(), &["finding.new"], r#"{"digest":{"severities":["low"]}}"#).await;
    let mut victim = stack.spawn_worker_process(&[]);
    let events: Vec<Event> =
        (0..200).map(|i| finding("finding.new", "t", &format!("L-{i}"), "low", None, "scan-k")).collect();
    stack.producer.publish_batch(&events).await.expect("published");
    stack.producer.publish(&scan_completed("t", "scan-k")).await.expect("published");
    // Kill it as soon as the scan's end is being handled (or has been): mid-digest.
    let digest_key =
        format!("{{{PREFIX}}}:digest:{}", entraguard_core::digest::digest_id(&ep.id, "t", "scan-k"));
    wait_until(LONG, "findings collected", || {
        let mut c = stack.queue.connection();
        let key = digest_key.clone();
        async move { c.llen::<_, u64>(&key).await.is_ok_and(|n| n >= 100) }
    })
    .await;
    victim.kill().await.expect("SIGKILL");
    let worker = stack.spawn_worker(&[]);
    let got = rx.wait_for_requests(1, LONG).await;
    stack.wait_drained(LONG).await;
    let body = got[0].json();
    assert_eq!(body["event"], "finding.digest");
    assert_eq!(body["digest"]["total"], 200, "no collected finding lost");
    assert_eq!(rx.requests().len(), 1, "the digest is sent once");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_hold_a_delivery_until_the_window_ends_and_critical_goes_at_once() {
    let stack = Stack::start().await;
    let rx = HttpReceiver::start();
    // A window around Redis's now, in UTC: from an hour ago to an hour from now.
    let now = stack.queue.redis_time_ms().await.expect("redis time");
    let hhmm = |ms: i64| {
        let m = (ms / 60_000).rem_euclid(24 * 60);
        format!("{:02}:{:02}", m / 60, m % 60)
    };
    let rules = format!(
        r#"{{"quiet_hours":{{"time_zone":"UTC","from":"{}","to":"{}","at_once":"critical"}}}}"#,
        hhmm(now - 3_600_000),
        hhmm(now + 3_600_000)
    );
    add(&stack, "webhook", &rx.url(), &["finding.new"], &rules).await;
    let worker = stack.spawn_worker(&[]);
    stack.producer.publish(&finding("finding.new", "t", "LOW-1", "low", None, "s")).await.expect("p");
    stack.producer.publish(&finding("finding.new", "t", "CRIT-1", "critical", None, "s")).await.expect("p");
    let got = rx.wait_for_requests(1, LONG).await;
    assert_eq!(got[0].json()["finding"]["id"], "CRIT-1");
    wait_until(LONG, "the low finding held in the delayed set", || async {
        stack.queue.stats().await.is_ok_and(|s| s.scheduled == 1 && s.ready == 0 && s.processing == 0)
    })
    .await;
    let mut conn = stack.queue.connection();
    let held: Vec<(String, f64)> =
        conn.zrange_withscores(format!("{{{PREFIX}}}:delayed"), 0, -1).await.expect("readable");
    let due = held[0].1 as i64;
    let end = (now + 3_600_000) / 60_000 * 60_000;
    assert!((due - end).abs() <= 60_000, "held until the window's end {end}, got {due}");
    assert!(held[0].0.contains("LOW-1"));
    assert_eq!(rx.requests().len(), 1);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_across_midnight_hold_until_the_next_morning_by_redis_time() {
    let stack = Stack::start().await;
    let rx = HttpReceiver::start();
    // A zone where Redis's now is 23:xx local (fixed offsets: Etc/GMT-N is UTC+N), and a window
    // 22:00-02:00 there: the delivery is held past midnight until 02:00 local.
    let now = stack.queue.redis_time_ms().await.expect("redis time");
    let utc_hour = (now / 3_600_000).rem_euclid(24);
    let mut offset = (23 - utc_hour).rem_euclid(24);
    if offset > 14 {
        offset -= 24;
    }
    let zone = match offset {
        0 => "Etc/GMT".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    };
    let rules = format!(r#"{{"quiet_hours":{{"time_zone":"{zone}","from":"22:00","to":"02:00"}}}}"#);
    add(&stack, "webhook", &rx.url(), &["finding.new"], &rules).await;
    let worker = stack.spawn_worker(&[]);
    stack.producer.publish(&finding("finding.new", "t", "LOW-1", "low", None, "s")).await.expect("p");
    wait_until(LONG, "the finding held in the delayed set", || async {
        stack.queue.stats().await.is_ok_and(|s| s.scheduled == 1 && s.ready == 0 && s.processing == 0)
    })
    .await;
    let mut conn = stack.queue.connection();
    let held: Vec<(String, f64)> =
        conn.zrange_withscores(format!("{{{PREFIX}}}:delayed"), 0, -1).await.expect("readable");
    // 02:00 local is the start of the UTC hour 3 hours after the local 23:00 hour began.
    let local_23_start = now / 3_600_000 * 3_600_000;
    assert_eq!(held[0].1 as i64, local_23_start + 3 * 3_600_000, "held until 02:00 local ({zone})");
    assert!(rx.requests().is_empty());
    worker.stop().await;
}

/// One batched fan-out step (`route.lua` with many events): each event's acknowledgement and
/// steps stay its own (an event whose lease is gone does nothing, the others go on), a repeat
/// of a finding in the same batch is suppressed like one in Redis already, each dedupe window
/// is read and written once for the batch, and urgent deliveries go to the front in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_fan_outs_keeps_each_event_apart_and_dedupes_within_the_batch() {
    use entraguard_core::job::Job;
    use entraguard_core::queue::WorkerId;

    let stack = Stack::start().await;
    let rx = HttpReceiver::start();
    add(&stack, "webhook", &rx.url(), &["finding.new"], r#"{"dedupe_window":"1h"}"#).await;
    let events = [
        finding("finding.new", "t", "A", "low", None, "s"),
        finding("finding.new", "t", "A", "low", None, "s"),
        finding("finding.new", "t", "B", "high", None, "s"),
        finding("finding.new", "t", "C", "critical", None, "s"),
        finding("finding.new", "t", "D", "low", None, "s"),
    ];
    stack.producer.publish_batch(&events).await.expect("published");
    let worker = WorkerId::generate();
    stack.queue.heartbeat(&worker, Duration::from_secs(30)).await.expect("lease");
    let mut fetcher = stack.queue.fetcher(&worker, Duration::from_millis(100)).await.expect("fetcher");
    let routes = stack.store.routes().await.expect("routes");
    let mut fetched = Vec::new();
    while let Some(raw) = fetcher.try_fetch().await.expect("fetch") {
        let Ok(Job::Event(job)) = raw.decode() else { panic!("an event job") };
        let steps = entraguard_worker::fanout::plan(&job.event, &routes, None);
        let id = job.event.finding().map(|f| f.id.clone()).unwrap_or_default();
        fetched.push((id, raw, steps));
    }
    assert_eq!(fetched.len(), 5);
    // D's lease is gone: its job is no longer on this worker's processing list.
    let mut conn = stack.queue.connection();
    let d = fetched.iter().find(|(id, _, _)| id == "D").expect("D fetched");
    let _: i64 = conn.lrem(format!("{{{PREFIX}}}:processing:{worker}"), 1, d.1.bytes()).await.expect("lrem");
    // The script loaded (the first call loads it: SCRIPT LOAD and a second EVALSHA); a batch of
    // one job that is not on the list does nothing.
    let (warm, _) = stack.queue.route_many(&[(&d.1, &[])], 0, None).await.expect("routed");
    assert_eq!(warm, [None]);
    // What counting costs by itself (its INFO, its connection's handshake).
    let idle = stack.redis.command_count().await;
    let before = stack.redis.command_count().await;
    let counting = before - idle;
    let batch: Vec<(&entraguard_core::queue::Claim, &[entraguard_core::queue::RouteStep])> =
        fetched.iter().map(|(_, raw, steps)| (&**raw, steps.as_slice())).collect();
    let (answers, _) = stack.queue.route_many(&batch, 0, None).await.expect("routed");
    let spent = stack.redis.command_count().await - before - counting;
    // In the order fetched: urgent events were published to the front (B, C, A, A, D).
    let mut counts: Vec<(&str, Option<(u64, u64)>)> = fetched
        .iter()
        .zip(&answers)
        .map(|((id, _, _), a)| (id.as_str(), a.map(|r| (r.sent, r.suppressed))))
        .collect();
    let first_a = counts.iter().position(|(id, _)| *id == "A").expect("A");
    assert_eq!(counts[first_a].1, Some((1, 0)), "the first A of the batch is sent");
    counts.sort();
    assert_eq!(
        counts,
        [("A", Some((0, 1))), ("A", Some((1, 0))), ("B", Some((1, 0))), ("C", Some((1, 0))), ("D", None)],
        "A sent, its repeat suppressed, B and C sent, D's lease lost"
    );
    // EVALSHA, 5 LREM, HGET (the layout's version: none recorded, no worker started, so no
    // fair share), TIME, ZMSCORE, HINCRBY, ZADD, ZREMRANGEBYSCORE, PEXPIRE, LPUSH, RPUSH.
    assert_eq!(spent, 15, "commands for the batch");
    let ready: Vec<String> = conn.lrange(format!("{{{PREFIX}}}:ready"), 0, -1).await.expect("ready");
    let ids: Vec<String> = ready
        .iter()
        .filter_map(|j| match Job::decode(j.as_bytes()) {
            Ok(Job::Delivery(d)) => d.event.finding().map(|f| f.id.clone()),
            _ => None,
        })
        .collect();
    let urgent: Vec<&str> =
        fetched.iter().map(|(id, _, _)| id.as_str()).filter(|id| ["B", "C"].contains(id)).collect();
    assert_eq!(ids, [urgent[0], urgent[1], "A"], "urgent first, in the batch's order, then the rest");
    let ep_key = format!("{{{PREFIX}}}:dedupe:{}", routes[0].id());
    let recorded: u64 = conn.zcard(&ep_key).await.expect("zcard");
    assert_eq!(recorded, 3, "A, B and C recorded once each");
    let suppressed: u64 = stack.queue.suppressed_count(routes[0].id()).await.expect("count");
    assert_eq!(suppressed, 1);
}

/// Quiet hours on a daylight-saving day, on a real Redis whose clock is set to that day
/// (`RedisServer::fake_clock`, Redis's clock being what quiet hours are decided by): a `low`
/// finding published at `redis_at` (Unix s) into a window of `zone` that ends at `to` (local)
/// is held until `end` (Unix ms: `to` converted with the offset in force *then*, not the
/// window's start's) and delivered when Redis's clock reaches it, not before.
async fn held_across_a_dst_change(zone: &str, from: &str, to: &str, redis_at: i64, end: i64) {
    let stack = Stack::on(entraguard_testkit::RedisServer::builder().fake_clock(redis_at).start()).await;
    let rx = HttpReceiver::start();
    let rules = format!(r#"{{"quiet_hours":{{"time_zone":"{zone}","from":"{from}","to":"{to}"}}}}"#);
    add(&stack, "webhook", &rx.url(), &["finding.new"], &rules).await;
    let worker = stack.spawn_worker(&[]);
    stack.producer.publish(&finding("finding.new", "t", "LOW-1", "low", None, "s")).await.expect("p");
    wait_until(LONG, "the finding held in the delayed set", || async {
        stack.queue.stats().await.is_ok_and(|s| s.scheduled == 1 && s.processing == 0)
    })
    .await;
    let mut conn = stack.queue.connection();
    let held: Vec<(String, f64)> =
        conn.zrange_withscores(format!("{{{PREFIX}}}:delayed"), 0, -1).await.expect("readable");
    let now = stack.queue.redis_time_ms().await.expect("redis time");
    assert!(now < end, "the set-up took until {now}, past the window's end {end}: nothing was tested");
    assert_eq!(held[0].1 as i64, end, "held until {to} {zone} on the DST day");
    let got = rx.wait_for_requests(1, LONG + Duration::from_secs(60)).await;
    let arrived = stack.queue.redis_time_ms().await.expect("redis time");
    assert!(arrived >= end, "delivered at {arrived} by Redis's clock, before the window's end {end}");
    assert!(arrived < end + 30_000, "delivered at {arrived}, long after the window's end {end}");
    assert_eq!(got[0].json()["finding"]["id"], "LOW-1");
    worker.stop().await;
}

/// Europe/Berlin springs forward on 2026-03-29 at 02:00 CET (01:00 UTC) to 03:00 CEST. A window
/// 22:00-03:00 that began at 22:00 CET ends at 03:00 CEST = 01:00 UTC; read at the window's
/// start offset (+1) it would be 02:00 UTC, an hour late. Redis's clock starts at 01:59:15 CET.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_spanning_the_spring_forward_end_at_local_time_after_the_change() {
    let at = 1_774_745_955; // 2026-03-29T00:59:15Z, 01:59:15 CET
    held_across_a_dst_change("Europe/Berlin", "22:00", "03:00", at, 1_774_746_000_000).await;
}

/// America/New_York falls back on 2026-11-01 at 02:00 EDT (06:00 UTC) to 01:00 EST. A window
/// 22:00-02:00 that began at 22:00 EDT ends at 02:00 EST = 07:00 UTC (02:00 comes once, after
/// the repeated hour); read at the window's start offset (-4) it would have ended at 06:00 UTC,
/// and a finding at 01:59:15 EST would go at once. Redis's clock starts at 01:59:15 EST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_spanning_the_fall_back_end_at_local_time_after_the_repeated_hour() {
    let at = 1_793_516_355; // 2026-11-01T06:59:15Z, 01:59:15 EST
    held_across_a_dst_change("America/New_York", "22:00", "02:00", at, 1_793_516_400_000).await;
}

/// A worker that dies holding a flushed digest's job (after reading its findings, before making
/// the delivery) leaves it on its processing list: the others hand it back when its lease runs
/// out, and the digest is made once, with every finding. The dying worker is played step by
/// step through the queue's own operations (the same the worker runs), so the crash lands
/// exactly mid-digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dying_mid_digest_loses_no_finding_and_the_digest_is_sent_once() {
    use entraguard_core::job::{DigestJob, Job};
    use entraguard_core::queue::WorkerId;

    let stack = Stack::start().await;
    let rx = HttpReceiver::start();
    add(&stack, "webhook", &rx.url(), &["finding.new"], r#"{"digest":{"severities":["low"]}}"#).await;
    let mut events: Vec<Event> =
        (0..30).map(|i| finding("finding.new", "t", &format!("L-{i}"), "low", None, "scan-m")).collect();
    events.push(scan_completed("t", "scan-m"));
    stack.producer.publish_batch(&events).await.expect("published");

    // The doomed worker fans every event out, as fan-out does.
    let doomed = WorkerId::generate();
    stack.queue.heartbeat(&doomed, Duration::from_secs(1)).await.expect("lease");
    let mut fetcher = stack.queue.fetcher(&doomed, Duration::from_millis(100)).await.expect("fetcher");
    let routes = stack.store.routes().await.expect("routes");
    while let Some(raw) = fetcher.try_fetch().await.expect("fetch") {
        let Ok(Job::Event(job)) = raw.decode() else { panic!("an event job") };
        let steps = entraguard_worker::fanout::plan(&job.event, &routes, None);
        stack.queue.route(&raw, &steps).await.expect("route").expect("lease held");
    }
    // The scan's end is due after its grace: the timer flushes the digest.
    stack.queue.heartbeat(&doomed, Duration::from_secs(1)).await.expect("lease");
    wait_until(LONG, "the scan-end timer promoted", || async {
        stack.queue.promote_due().await.is_ok_and(|p| p.moved > 0)
    })
    .await;
    stack.queue.heartbeat(&doomed, Duration::from_secs(1)).await.expect("lease");
    let raw = fetcher.try_fetch().await.expect("fetch").expect("the timer job");
    let Ok(Job::DigestDue(due)) = raw.decode() else { panic!("a digest timer") };
    let build = Job::Digest(DigestJob { digest: due.digest.clone(), reason: due.reason }).encode();
    assert_eq!(stack.queue.digest_due(&raw, &due.digest, &build).await.expect("flush"), Some(true));
    // It takes the flushed digest, reads its findings ... and dies.
    let raw = fetcher.try_fetch().await.expect("fetch").expect("the digest job");
    let Ok(Job::Digest(digest)) = raw.decode() else { panic!("a digest job") };
    assert_eq!(stack.queue.digest_items(&digest.digest).await.expect("read").len(), 30);
    drop(fetcher);
    assert!(rx.requests().is_empty());

    let worker = stack.spawn_worker(&[]);
    let got = rx.wait_for_requests(1, LONG).await;
    stack.wait_drained(LONG).await;
    let body = got[0].json();
    assert_eq!(body["event"], "finding.digest");
    assert_eq!(
        (body["digest"]["total"].as_u64(), body["digest"]["reason"].as_str()),
        (Some(30), Some("scan.completed"))
    );
    assert_eq!(rx.requests().len(), 1, "the digest is sent once");
    let mut conn = stack.queue.connection();
    let left: Vec<String> = conn.keys(format!("{{{PREFIX}}}:digest*")).await.expect("keys");
    assert!(left.is_empty(), "nothing of the digest left in Redis: {left:?}");
    worker.stop().await;
}
