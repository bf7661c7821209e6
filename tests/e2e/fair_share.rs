//! Fair share (queue layout versions 2 and 3): fresh events wait per tenant and fresh
//! deliveries per endpoint, and workers take them in turn, so one tenant's flood never holds up
//! another tenant's alert. Urgent work still goes first, and with version 3 it is taken in turn
//! too; `layout lower` puts everything back in the ready list.

use std::time::{Duration, Instant};

use entraguard_core::job::{DeliveryJob, Job};
use entraguard_core::queue::{FairShare, Shards, WorkerId};
use entraguard_producer::Event;
use entraguard_testkit::{HttpReceiver, Reply, wait_until};

use crate::harness::{PREFIX, Stack, finding, scan_completed};

fn low_finding(tenant: &str, id: &str) -> Event {
    finding(tenant, id, "low")
}

fn critical_finding(tenant: &str, id: &str) -> Event {
    finding(tenant, id, "critical")
}

async fn set(stack: &Stack, to: FairShare) {
    let done = Shards::single(stack.queue.clone()).relayout(to).await.expect("relayout");
    assert!(done.iter().all(|d| d.set), "{done:?}");
}

/// What a fetch took: tenant and finding id (or the event kind) of each event job.
fn taken(jobs: &[entraguard_core::queue::Claimed]) -> Vec<String> {
    jobs.iter()
        .map(|c| match c.decode() {
            Ok(Job::Event(e)) => {
                let what =
                    e.event.finding().map(|f| f.id.clone()).unwrap_or_else(|| e.event.kind().to_string());
                format!("{}/{what}", e.event.tenant_id)
            }
            Ok(Job::Delivery(d)) => format!("delivery/{}", d.endpoint_id),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Everything a fresh worker takes, `batch` jobs a fetch, until nothing is left: what
/// [`taken`] says of each. The jobs stay on its processing list (this only reads the order).
async fn take_all(stack: &Stack, batch: usize) -> Vec<String> {
    let worker = WorkerId::generate();
    stack.queue.heartbeat(&worker, Duration::from_secs(30)).await.expect("lease");
    let mut fetcher = stack.queue.fetcher(&worker, Duration::from_millis(100)).await.expect("fetcher");
    let mut order = Vec::new();
    loop {
        let jobs = fetcher.try_fetch_many(batch).await.expect("a take never fails").jobs;
        if jobs.is_empty() {
            return order;
        }
        order.extend(taken(&jobs));
        std::mem::forget(jobs);
    }
}

/// The queue alone, on a real Redis: tenant A's 40 events, then B's one, then A's critical
/// one. Version 1 takes them in publish order (B's last, behind A's flood: the fault), the
/// critical one first; fair share takes A's first (it went to the ready list to wake a worker),
/// the critical one, then A's next and B's in turn, and counts the flows' work as ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_event_is_taken_in_turn_not_behind_another_tenants_flood() {
    for (fair, crit_at, b_at) in [(FairShare::Off, 0, 41), (FairShare::On, 1, 3)] {
        let stack = Stack::start().await;
        set(&stack, fair).await;
        let flood: Vec<Event> = (0..40).map(|i| low_finding("tenant-a", &format!("A{i}"))).collect();
        stack.producer.publish_batch(&flood).await.expect("published");
        stack.producer.publish(&scan_completed("tenant-b")).await.expect("published");
        let s = stack.stats().await;
        assert_eq!(s.ready, 41, "{fair:?}: every event counts as ready: {s:?}");
        assert_eq!(s.flows, if fair == FairShare::On { 2 } else { 0 }, "{fair:?}: {s:?}");
        stack.producer.publish(&critical_finding("tenant-a", "CRIT")).await.expect("published");

        let order = take_all(&stack, 1).await;
        assert_eq!(order.len(), 42, "{fair:?}: {order:?}");
        // Urgent first: with fair share, after the one job already on the ready list (the
        // flows' wake-up for a blocked worker, `seed` in prelude.lua).
        assert_eq!(order[crit_at], "tenant-a/CRIT", "{fair:?}: urgent first: {order:?}");
        let b = order.iter().position(|o| o == "tenant-b/scan.completed").expect("B taken");
        assert_eq!(b, b_at, "{fair:?}: where B's event was taken: {order:?}");
        let a: Vec<&String> = order.iter().filter(|o| o.starts_with("tenant-a/A")).collect();
        let want: Vec<String> = (0..40).map(|i| format!("tenant-a/A{i}")).collect();
        assert_eq!(a, want.iter().collect::<Vec<_>>(), "{fair:?}: one tenant's events stay in order");
        let s = stack.stats().await;
        assert_eq!((s.ready, s.flows), (0, 0), "{fair:?}: {s:?}");
    }
}

/// Urgent share (layout version 3), at the queue on a real Redis: tenant A floods critical
/// findings, B's critical finding and C's low one come in the middle of it. Version 2 keeps
/// urgent work at the front of the ready list, last in first out, so B's waits behind every
/// critical finding A published after it (the fault: 21st). Version 3 takes it in turn (3rd,
/// after A's first two); each tenant's urgent events stay in order, and urgent work still goes
/// before the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_critical_finding_is_taken_in_turn_not_behind_another_tenants_critical_flood() {
    use redis::AsyncCommands;
    for (version, b_at) in [("2", 20), ("3", 2)] {
        let stack = Stack::start().await;
        let mut conn = stack.queue.connection();
        let _: () = conn.hset(format!("{{{PREFIX}}}:layout"), "version", version).await.expect("hset");
        let flood = |from: usize| -> Vec<Event> {
            (from..from + 20).map(|i| critical_finding("tenant-a", &format!("A{i}"))).collect()
        };
        stack.producer.publish_batch(&flood(0)).await.expect("published");
        stack.producer.publish(&low_finding("tenant-c", "LOW")).await.expect("published");
        stack.producer.publish(&critical_finding("tenant-b", "B")).await.expect("published");
        stack.producer.publish_batch(&flood(20)).await.expect("published");
        assert_eq!(stack.stats().await.ready, 42, "version {version}: every event counts as ready");

        let order = take_all(&stack, 1).await;
        assert_eq!(order.len(), 42, "version {version}: {order:?}");
        let b = order.iter().position(|o| o == "tenant-b/B").expect("B taken");
        assert_eq!(b, b_at, "version {version}: where B's critical finding was taken: {order:?}");
        assert_eq!(order[41], "tenant-c/LOW", "version {version}: urgent work before the rest: {order:?}");
        if version == "3" {
            let a: Vec<&String> = order.iter().filter(|o| o.starts_with("tenant-a/")).collect();
            let want: Vec<String> = (0..40).map(|i| format!("tenant-a/A{i}")).collect();
            assert_eq!(a, want.iter().collect::<Vec<_>>(), "one tenant's urgent events stay in order");
        }
        let s = stack.stats().await;
        assert_eq!((s.ready, s.flows), (0, 0), "version {version}: {s:?}");
    }
}

/// Workers end to end: a slow endpoint A (20 ms a request, eight in flight) with 400 findings
/// of tenant A waiting, then tenant B's `scan.completed` for endpoint B. With version 1 B's
/// message waits behind A's deliveries (the fault: A has had nearly all of them first); with
/// fair share it arrives while most of A's are still waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_for_a_slow_endpoint_does_not_hold_up_another_tenants_message() {
    const FLOOD: usize = 400;
    for fair in [FairShare::Off, FairShare::On] {
        let stack = Stack::start().await;
        set(&stack, fair).await;
        let a = HttpReceiver::with_default(Reply::status(200).delay(Duration::from_millis(20)));
        let b = HttpReceiver::start();
        stack.add_endpoint("webhook", &a.url(), &["finding.new"], None).await;
        stack.add_endpoint("webhook", &b.url(), &["scan.completed"], None).await;
        let flood: Vec<Event> = (0..FLOOD).map(|i| low_finding("tenant-a", &format!("A{i}"))).collect();
        for chunk in flood.chunks(100) {
            stack.producer.publish_batch(chunk).await.expect("published");
        }
        stack.producer.publish(&scan_completed("tenant-b")).await.expect("published");
        let started = Instant::now();
        let worker = stack.spawn_worker(&["--concurrency", "8", "--endpoint-concurrency", "64"]);
        wait_until(Duration::from_secs(60), "B's message", || async { !b.requests().is_empty() }).await;
        let b_at = b.requests()[0].received_at;
        let a_before = a.requests().iter().filter(|r| r.received_at < b_at).count();
        eprintln!(
            "{fair:?}: B's message after {:?}, when A had {a_before} of its {FLOOD}",
            b_at.duration_since(started)
        );
        if fair == FairShare::On {
            assert!(a_before < FLOOD / 2, "fair share: B's message came when A had {a_before} of {FLOOD}");
        } else {
            assert!(
                a_before > FLOOD * 3 / 4,
                "version 1: B's message waits behind A's ({a_before} of {FLOOD})"
            );
        }
        stack.wait_drained(Duration::from_secs(120)).await;
        assert_eq!(a.requests().len(), FLOOD, "{fair:?}: A got each of its deliveries once");
        assert_eq!(b.requests().len(), 1);
        worker.stop().await;
    }
}

/// Workers end to end, urgent work: tenant A's 400 critical findings for a 20 ms endpoint
/// (eight slots), with tenant B's failed scan (urgent too) for endpoint B published after the
/// first 200. Version 2 keeps urgent work at the front of the ready list, last in first out: B's
/// alert waits behind A's later findings and their deliveries (the fault). Version 3 takes it
/// in turn (urgent events per tenant, urgent deliveries per endpoint, route.lua): it arrives
/// while A's are still coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_critical_findings_does_not_hold_up_another_tenants_failed_scan() {
    use redis::AsyncCommands;
    const FLOOD: usize = 400;
    for version in ["2", "3"] {
        let stack = Stack::start().await;
        let mut conn = stack.queue.connection();
        let _: () = conn.hset(format!("{{{PREFIX}}}:layout"), "version", version).await.expect("hset");
        let a = HttpReceiver::with_default(Reply::status(200).delay(Duration::from_millis(20)));
        let b = HttpReceiver::start();
        stack.add_endpoint("webhook", &a.url(), &["finding.new"], None).await;
        stack.add_endpoint("webhook", &b.url(), &["scan.failed"], None).await;
        let flood: Vec<Event> = (0..FLOOD).map(|i| critical_finding("tenant-a", &format!("A{i}"))).collect();
        let failed = Event::from_json(
            br#"{"event":"scan.failed","tenant_id":"tenant-b","scan":{"run_id":"r","kind":"full","environment":"prod","error":{"kind":"network","message":"m"}}}"#,
        )
        .expect("valid scan event");
        stack.producer.publish_batch(&flood[..FLOOD / 2]).await.expect("published");
        stack.producer.publish(&failed).await.expect("published");
        stack.producer.publish_batch(&flood[FLOOD / 2..]).await.expect("published");
        let worker = stack.spawn_worker(&["--concurrency", "8", "--endpoint-concurrency", "64"]);
        wait_until(Duration::from_secs(60), "B's alert", || async { !b.requests().is_empty() }).await;
        let b_at = b.requests()[0].received_at;
        let a_before = a.requests().iter().filter(|r| r.received_at < b_at).count();
        eprintln!("version {version}: B's alert when A had {a_before} of its {FLOOD}");
        if version == "3" {
            assert!(a_before < FLOOD / 8, "version 3: B's alert came when A had {a_before} of {FLOOD}");
        } else {
            assert!(a_before > FLOOD / 4, "version 2: B's alert waits behind A's ({a_before} of {FLOOD})");
        }
        stack.wait_drained(Duration::from_secs(120)).await;
        let ids: std::collections::HashSet<String> =
            a.requests().iter().map(|r| r.json()["id"].as_str().unwrap_or_default().to_owned()).collect();
        assert_eq!((a.requests().len(), ids.len()), (FLOOD, FLOOD), "version {version}: A got each once");
        assert_eq!(b.requests().len(), 1);
        worker.stop().await;
    }
}

/// `layout lower` (a rollback's first step) moves what waits in flows to the ready list, in
/// each flow's order, urgent flows to its front, and later publishes go to the ready list;
/// `layout raise` turns it back on.
/// The CLI does it, as an operator would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_lower_moves_the_flows_to_the_ready_list_and_raise_turns_fair_share_on() {
    use redis::AsyncCommands;
    let stack = Stack::start().await;
    let cli = |args: &[&str]| {
        let mut all = vec!["--redis-url".to_owned(), stack.redis.url(), "--json".to_owned()];
        all.extend(args.iter().map(|s| (*s).to_owned()));
        let out = std::process::Command::new(entraguard_testkit::bin_path("entraguard-notify"))
            .args(&all)
            .output()
            .expect("cli runs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    let shown = cli(&["layout"]);
    assert_eq!(shown[0]["version"], serde_json::Value::Null, "a new deployment records nothing: {shown}");
    let raised = cli(&["layout", "raise"]);
    assert_eq!(raised[0]["set"], true, "{raised}");
    for i in 0..3 {
        stack.producer.publish(&low_finding("tenant-a", &format!("A{i}"))).await.expect("published");
        stack.producer.publish(&low_finding("tenant-b", &format!("B{i}"))).await.expect("published");
    }
    // Urgent ones wait in urgent flows (version 3), one per tenant.
    stack.producer.publish(&crate::harness::finding("tenant-a", "U0", "critical")).await.expect("published");
    stack.producer.publish(&crate::harness::finding("tenant-b", "U1", "high")).await.expect("published");
    let shown = cli(&["layout"]);
    assert_eq!(
        (&shown[0]["version"], &shown[0]["fair_share"], &shown[0]["flows"], &shown[0]["waiting_in_flows"]),
        (&serde_json::json!("3"), &serde_json::json!(true), &serde_json::json!(4), &serde_json::json!(7)),
        "A's first went to the ready list to wake a worker: {shown}"
    );
    let lowered = cli(&["layout", "lower"]);
    assert_eq!((&lowered[0]["was"], &lowered[0]["moved"]), (&serde_json::json!("3"), &serde_json::json!(7)));
    stack.producer.publish(&low_finding("tenant-a", "A3")).await.expect("published");
    let mut conn = stack.queue.connection();
    let ready: Vec<String> = conn.lrange(format!("{{{PREFIX}}}:ready"), 0, -1).await.expect("ready");
    let ids: Vec<String> = ready
        .iter()
        .map(|j| match Job::decode(j.as_bytes()) {
            Ok(Job::Event(e)) => e.event.finding().map(|f| f.id.clone()).unwrap_or_default(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ids,
        ["U0", "U1", "A0", "B0", "B1", "B2", "A1", "A2", "A3"],
        "the urgent flows in front (where a release before version 3 looks), the seed, each flow in order, then the new one"
    );
    for pattern in ["flow*", "uflow*"] {
        let flows: Vec<String> = conn.keys(format!("{{{PREFIX}}}:{pattern}")).await.expect("keys");
        assert!(flows.is_empty(), "no flow left: {flows:?}");
    }
    assert_eq!(stack.stats().await.ready, 9);

    // A version this release does not set (a later release's, or edited by hand) is left alone,
    // and the CLI says so with exit 1.
    let _: () = conn.hset(format!("{{{PREFIX}}}:layout"), "version", "two").await.expect("hset");
    let out = std::process::Command::new(entraguard_testkit::bin_path("entraguard-notify"))
        .args(["--redis-url", &stack.redis.url(), "layout", "raise"])
        .output()
        .expect("cli runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("\"two\"") && stderr.contains("left alone"), "{stderr}");
    let v: String = conn.hget(format!("{{{PREFIX}}}:layout"), "version").await.expect("hget");
    assert_eq!(v, "two");
}

/// Idle workers blocked on the ready list (`BLMOVE`) all wake to work that waits in flows, with
/// no polling: each push or take that leaves the ready list empty puts the flows' next job on it
/// (`seed` in prelude.lua), which wakes one blocked worker, whose own take wakes the next. Three
/// workers of four slots (blocking 30 s), 60 deliveries for a 300 ms endpoint waiting in its
/// flow: all three hold deliveries at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_all_wake_to_work_waiting_in_flows() {
    use redis::AsyncCommands;
    let stack = Stack::start().await;
    let slow = HttpReceiver::with_default(Reply::status(200).delay(Duration::from_millis(300)));
    let ep = stack.add_endpoint("webhook", &slow.url(), &["finding.new"], None).await;
    let args = ["--concurrency", "4", "--endpoint-concurrency", "64", "--fetch-block", "30s"];
    let workers = [stack.spawn_worker(&args), stack.spawn_worker(&args), stack.spawn_worker(&args)];
    wait_until(Duration::from_secs(30), "three live workers on version 2", || async {
        let s = stack.queue.fair_share().await.expect("layout");
        s.fair_share && stack.stats().await.workers == 3
    })
    .await;
    // 60 deliveries as a fan-out leaves them: in the endpoint's flow, named in the ring, the
    // first on the ready list (the fan-out's own wake-up, which one worker takes). Only the
    // takes' wake-ups can reach the other two.
    let jobs: Vec<String> = (0..60)
        .map(|i| {
            Job::Delivery(DeliveryJob::new(low_finding("tenant-a", &format!("A{i}")), ep.id.clone())).encode()
        })
        .collect();
    let keys = stack.queue.keys().clone();
    let flow = keys.endpoint_flow(ep.id.as_str());
    let conn = stack.queue.connection();
    let _: () = redis::pipe()
        .atomic()
        .rpush(&flow, &jobs[1..])
        .rpush(keys.flows(), &flow)
        .rpush(keys.ready(), &jobs[0])
        .query_async(&mut conn.clone())
        .await
        .expect("flow written");
    wait_until(Duration::from_secs(30), "all three workers holding deliveries at once", || async {
        let mut conn = conn.clone();
        let lists: Vec<String> = conn.keys(format!("{{{PREFIX}}}:processing:*")).await.unwrap_or_default();
        let mut busy = 0;
        for l in &lists {
            if conn.clone().llen::<_, usize>(l).await.unwrap_or(0) > 0 {
                busy += 1;
            }
        }
        busy == 3
    })
    .await;
    stack.wait_drained(Duration::from_secs(120)).await;
    assert_eq!(slow.requests().len(), 60);
    for w in workers {
        w.stop().await;
    }
}

/// Corrupt records written by hand: a name in each ring (flows and urgent flows) whose key is not a list, and one whose
/// list is gone. Taking drops both names (Redis's log says so for the first) and goes on with
/// the other flows; the stray string is left alone; nothing is lost and no take fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_flow_name_in_the_ring_is_dropped_and_the_other_flows_go_on() {
    use redis::AsyncCommands;
    let stack = Stack::start().await;
    set(&stack, FairShare::On).await;
    let keys = stack.queue.keys().clone();
    let mut conn = stack.queue.connection();
    let stray = format!("{{{PREFIX}}}:flow:t:not-a-list");
    let gone = format!("{{{PREFIX}}}:flow:t:gone");
    let _: () = conn.set(&stray, "written by hand").await.expect("set");
    // Both rings: the other flows' and the urgent flows' (layout version 3).
    for ring in [keys.flows(), keys.urgent_flows()] {
        let _: () = conn.rpush(ring, &[&stray, &gone]).await.expect("ring");
    }
    for i in 0..3 {
        stack.producer.publish(&low_finding("tenant-a", &format!("A{i}"))).await.expect("published");
    }
    stack.producer.publish(&critical_finding("tenant-b", "U0")).await.expect("published");
    let order = take_all(&stack, 2).await;
    assert_eq!(order, ["tenant-a/A0", "tenant-b/U0", "tenant-a/A1", "tenant-a/A2"]);
    for ring in [keys.flows(), keys.urgent_flows()] {
        let left: Vec<String> = conn.lrange(&ring, 0, -1).await.expect("ring");
        assert!(left.is_empty(), "both names dropped from {ring}: {left:?}");
    }
    let left: String = conn.get(&stray).await.expect("get");
    assert_eq!(left, "written by hand", "not ours to delete");
}

/// Transitions with work waiting in flows: 300 findings of three tenants for a 10 ms endpoint,
/// one in five critical (in the urgent flows); the worker serving them is SIGKILLed mid-backlog (its taken jobs go back through its lease),
/// a second one takes over, and an operator runs `layout lower` while it serves (the flows'
/// jobs move to the ready list under its feet). Every finding arrives; nothing is stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_and_a_layout_lowered_mid_backlog_lose_nothing_in_flows() {
    const N: usize = 300;
    let stack = Stack::start().await;
    set(&stack, FairShare::On).await;
    let rx = HttpReceiver::with_default(Reply::status(200).delay(Duration::from_millis(10)));
    stack.add_endpoint("webhook", &rx.url(), &["finding.new"], None).await;
    let severity = |i: usize| if i.is_multiple_of(5) { "critical" } else { "low" };
    let flood: Vec<Event> =
        (0..N).map(|i| finding(&format!("tenant-{}", i % 3), &format!("F{i}"), severity(i))).collect();
    stack.producer.publish_batch(&flood).await.expect("published");
    assert!(stack.stats().await.flows >= 5, "the tenants' events wait in flows, urgent ones in theirs");

    let mut first = stack.spawn_worker_process(&["--concurrency", "4", "--lease", "1s"]);
    wait_until(Duration::from_secs(60), "the first worker delivering", || async {
        rx.requests().len() >= 30
    })
    .await;
    first.kill().await.expect("SIGKILL");
    let second = stack.spawn_worker(&["--concurrency", "4", "--lease", "1s"]);
    wait_until(Duration::from_secs(60), "the second worker delivering", || async {
        rx.requests().len() >= 100
    })
    .await;
    let lowered = Shards::single(stack.queue.clone()).relayout(FairShare::Off).await.expect("lower");
    assert!(lowered[0].set, "{lowered:?}");

    let want: std::collections::HashSet<String> = flood.iter().map(|e| e.id.to_string()).collect();
    wait_until(Duration::from_secs(120), "every finding delivered", || async {
        let got: std::collections::HashSet<String> =
            rx.requests().iter().filter_map(|r| r.json()["id"].as_str().map(str::to_owned)).collect();
        want.is_subset(&got)
    })
    .await;
    stack.wait_drained(Duration::from_secs(60)).await;
    let s = stack.stats().await;
    assert_eq!((s.flows, s.dead), (0, 0), "{s:?}");
    eprintln!(
        "{} requests for {N} findings (duplicates: the killed worker's in flight)",
        rx.requests().len()
    );
    second.stop().await;
}
