//! `dlq`: list, show, replay and purge, bounded and filtered.

use super::*;

#[tokio::test]
async fn dlq_list_show_replay_and_purge_entries_made_by_the_queue() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let queue = queue(&redis).await;
    let mut conn = redis.connection().await;

    // Oldest first: a, b, a poison job, d. The list shows them newest first.
    let job_a = failed_delivery(&[500, 502, 503, 500]);
    let a = deliver_and_die(&queue, &job_a, "gave up after 4 attempts: HTTP 500").await;
    let b = deliver_and_die(&queue, &failed_delivery(&[410]), "permanent: HTTP 410 Gone").await;
    let poison = "job_01JPOISONPOISONPOISONPOIS".to_owned();
    let draft = DeadLetterDraft {
        id: poison.clone(),
        reason: "undecodable job: expected value at line 1 column 2".into(),
        delivery: None,
    };
    dead_letter(&queue, "{garbage", draft).await;
    let long_reason = format!("gave up: {}", "x".repeat(300));
    let d = deliver_and_die(&queue, &failed_delivery(&[500]), &long_reason).await;

    let list = cli.run(&["dlq", "list"]).await;
    let rows: Vec<&str> = list.ok().lines().collect();
    assert!(rows[0].starts_with("ID"), "{}", list.stdout);
    let order: Vec<&str> = rows[1..].iter().filter_map(|r| r.split_whitespace().next()).collect();
    assert_eq!(order, vec![d.as_str(), &poison, &b, &a], "newest first");
    let row_a = rows.iter().find(|r| r.starts_with(&a)).expect("row a");
    for want in ["scan.failed", "ep_01JTESTTESTTESTTESTTESTTES", " 4 ", "gave up after 4 attempts"] {
        assert!(row_a.contains(want), "expected {want:?} in {row_a:?}");
    }
    assert!(!list.stdout.contains(&long_reason), "long reasons are cut:\n{}", list.stdout);
    let page = cli.run(&["--json", "dlq", "list", "--limit", "2", "--offset", "1"]).await.json();
    let ids: Vec<&str> = page.as_array().expect("array").iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids, vec![poison.as_str(), &b]);

    // Show: the reason, every attempt, the job pretty-printed.
    let show = cli.run(&["dlq", "show", &a]).await;
    let text = show.ok();
    assert_eq!(line_value(text, "reason"), "gave up after 4 attempts: HTTP 500");
    for (n, status) in [(1, 500), (2, 502), (3, 503), (4, 500)] {
        let attempt = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("#{n} ")))
            .unwrap_or_else(|| panic!("attempt #{n} in:\n{text}"));
        for want in [status.to_string(), format!("{} ms", 40 + n), format!("HTTP {status} from the receiver")]
        {
            assert!(attempt.contains(&want), "expected {want:?} in {attempt:?}");
        }
    }
    assert!(text.contains(&format!("  \"delivery_id\": \"{a}\"")), "pretty job JSON:\n{text}");
    let shown = cli.run(&["--json", "dlq", "show", &a]).await.json();
    assert_eq!(shown["attempts"].as_array().map(Vec::len), Some(4));
    assert_eq!(shown["replayable"], true);
    let poison_shown = cli.run(&["dlq", "show", &poison]).await;
    assert!(poison_shown.ok().contains("{garbage"), "{}", poison_shown.stdout);
    cli.run(&["dlq", "show", "dlv_nope"]).await.fails(1, "dead letter dlv_nope not found");

    // Replay one: back on ready with the same delivery id and no attempts.
    assert_eq!(cli.run(&["dlq", "replay", &a]).await.ok().trim(), format!("replayed {a}"));
    let ready: Vec<String> = conn.lrange("{entraguard}:ready", 0, -1).await.expect("lrange");
    assert_eq!(ready.len(), 1);
    match Job::decode(ready[0].as_bytes()).expect("the replayed job decodes") {
        Job::Delivery(job) => {
            assert_eq!(job.delivery_id, job_a.delivery_id);
            assert!(job.attempts.is_empty(), "fresh attempt count: {:?}", job.attempts);
            assert_eq!(job.replays, 1);
            assert_eq!(job.event, job_a.event);
        }
        other => panic!("expected a delivery job, got {other:?}"),
    }
    cli.run(&["dlq", "replay", &a]).await.fails(1, "not found");
    cli.run(&["dlq", "replay", &poison]).await.fails(2, "cannot be replayed");

    // Purge one.
    assert_eq!(cli.run(&["dlq", "purge", &d]).await.ok().trim(), format!("purged {d}"));
    cli.run(&["dlq", "purge", &d]).await.fails(1, "not found");

    // Replay all of another endpoint, or since a time to come: nothing matches.
    let other = cli.run(&["dlq", "replay", "--all", "--endpoint", "ep_01JOTHER"]).await;
    assert!(other.ok().contains("replayed 0; 0 not replayable"), "{}", other.all());
    let later = cli.run(&["--json", "dlq", "replay", "--all", "--since", "2999-01-01T00:00:00Z"]).await;
    assert_eq!(later.json(), serde_json::json!({ "replayed": 0, "not_replayable": 0 }));
    cli.run(&["dlq", "replay", "--all", "--since", "yesterday"]).await.fails(2, "yesterday");
    cli.run(&["dlq", "replay", &b, "--endpoint", "ep_01JOTHER"]).await.fails(2, "cannot be used with");
    cli.run(&["dlq", "replay", "--since", "2020-01-01T00:00:00Z"]).await.fails(2, "--all");

    // Replay all: b goes back, the poison job stays.
    let all = cli.run(&["dlq", "replay", "--all"]).await;
    assert!(all.ok().contains("replayed 1; 1 not replayable"), "{}", all.all());
    let stats = cli.run(&["--json", "stats"]).await.json();
    // The replay waits behind the first attempt already ready, in the retry list.
    assert_eq!(
        (stats["ready"].as_u64(), stats["retrying"].as_u64(), stats["dead"].as_u64()),
        (Some(1), Some(1), Some(1)),
        "{stats}"
    );

    // Purge all needs --yes.
    cli.run(&["dlq", "purge", "--all"]).await.fails(2, "--yes");
    assert_eq!(cli.run(&["--json", "stats"]).await.json()["dead"], 1, "a refused purge deletes nothing");
    cli.run(&["dlq", "purge"]).await.fails(2, "--all");
    cli.run(&["dlq", "replay", &a, "--all"]).await.fails(2, "cannot be used with");
    assert_eq!(cli.run(&["dlq", "purge", "--all", "--yes"]).await.ok().trim(), "purged 1");
    let keys: Vec<String> = conn.keys("{entraguard}:dlq*").await.expect("keys");
    assert!(keys.is_empty(), "nothing left of the dead-letter queue: {keys:?}");
    let empty = cli.run(&["--json", "dlq", "list"]).await.json();
    assert_eq!(empty, serde_json::json!([]));
}

/// A poison job of 50 MB was dead-lettered whole (before workers kept only a prefix): `dlq list`
/// prints bounded summaries, `dlq show` the job cut to 64 KiB and says so.
#[tokio::test]
async fn a_huge_dead_letter_is_listed_and_shown_bounded() {
    const HUGE: usize = 50 * 1024 * 1024;
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let id = "job_01JHUGEHUGEHUGEHUGEHUGEHU";
    let mut conn = redis.connection().await;
    // Writing 50 MB takes longer than the default 500 ms on a busy machine.
    conn.set_response_timeout(Duration::from_secs(30));
    let fields = [
        ("id", id.to_owned()),
        ("reason", format!("undecodable job: {}", "r".repeat(20_000))),
        ("failed_at", "2025-06-01T00:00:11Z".to_owned()),
        ("job", "x".repeat(HUGE)),
    ];
    let _: () = conn.hset_multiple(format!("{{entraguard}}:dlq:{id}"), &fields).await.expect("hset");
    let _: () = conn.lpush("{entraguard}:dlq", id).await.expect("lpush");

    let list = cli.run(&["--json", "dlq", "list"]).await;
    assert!(list.stdout.len() < 64 * 1024, "`dlq list --json` printed {} bytes", list.stdout.len());
    let listed = list.json();
    assert_eq!(listed[0]["id"], id);
    assert!(listed[0].get("job").is_none(), "no job in a summary");
    assert!(listed[0]["reason"].as_str().is_some_and(|r| r.len() <= 1024), "reason cut");
    let table = cli.run(&["dlq", "list"]).await;
    assert!(table.ok().contains(id) && table.stdout.len() < 4096, "{} bytes", table.stdout.len());

    let show = cli.run(&["--json", "dlq", "show", id]).await;
    assert!(show.stdout.len() < 200 * 1024, "`dlq show --json` printed {} bytes", show.stdout.len());
    let shown = show.json();
    assert_eq!((shown["job_truncated"].clone(), shown["job_bytes"].clone()), (true.into(), HUGE.into()));
    assert_eq!(shown["job"].as_str().map(str::len), Some(64 * 1024));
    let text = cli.run(&["dlq", "show", id]).await;
    assert!(text.stdout.len() < 200 * 1024, "`dlq show` printed {} bytes", text.stdout.len());
    assert!(
        text.ok().contains(&format!("first 65536 of {HUGE} bytes")),
        "says the job is cut: {}",
        &text.stdout[..text.stdout.len().min(2000)]
    );
}

#[tokio::test]
async fn dlq_list_narrows_by_endpoint_and_since_like_replay() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let queue = queue(&redis).await;
    let mine = deliver_and_die(&queue, &failed_delivery(&[500]), "gave up").await;
    let mut other = failed_delivery(&[500]);
    other.endpoint_id = "ep_01JOTHEROTHEROTHEROTHEROT".parse().expect("id");
    deliver_and_die(&queue, &other, "gave up").await;
    let list =
        cli.run(&["--json", "dlq", "list", "--endpoint", "ep_01JTESTTESTTESTTESTTESTTES"]).await.json();
    let ids: Vec<&str> = list.as_array().expect("array").iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids, vec![mine.as_str()]);
    let none = cli.run(&["--json", "dlq", "list", "--since", "2999-01-01T00:00:00Z"]).await.json();
    assert_eq!(none, serde_json::json!([]));
    cli.run(&["dlq", "list", "--since", "yesterday"]).await.fails(2, "since");
}
