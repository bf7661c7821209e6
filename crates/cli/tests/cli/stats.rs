//! `stats`: the queue depths, table and JSON.

use super::*;

#[tokio::test]
async fn stats_match_the_queue() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let queue = queue(&redis).await;

    for name in ["a", "b"] {
        cli.run(&[
            "endpoint",
            "add",
            "--name",
            name,
            "--channel",
            "email",
            "--target",
            "soc@contoso.com",
            "--events",
            "all",
        ])
        .await
        .ok();
    }
    deliver_and_die(&queue, &failed_delivery(&[500]), "gave up").await;
    let batch = format!("[{SCAN_FAILED}, {SCAN_FAILED}, {SCAN_FAILED}, {SCAN_FAILED}]");
    cli.run_with(&["publish"], Some(&batch), &[]).await.ok();
    // A live worker holds one job and has scheduled another for later.
    let worker = WorkerId::generate();
    queue.heartbeat(&worker, Duration::from_secs(60)).await.expect("heartbeat");
    let mut fetcher = queue.fetcher(&worker, Duration::from_millis(100)).await.expect("fetcher");
    let _held = fetcher.try_fetch().await.expect("fetch").expect("job");
    let later = fetcher.try_fetch().await.expect("fetch").expect("job");
    assert!(queue.retry_later(&later, later.bytes(), Duration::from_secs(600)).await.expect("retry"));

    let expected = serde_json::json!({
        "ready": 2, "flows": 0, "retrying": 0, "parked": 0, "processing": 1, "scheduled": 1, "dead": 1, "lane_full": 0,
        "workers": 1, "endpoints": 2, "digests": 0, "forwarding": 0, "event_bodies": 1,
    });
    let stats = cli.run(&["--json", "stats"]).await.json();
    assert_eq!(stats, expected);
    assert_eq!(serde_json::to_value(queue.stats().await.expect("stats")).expect("json"), expected);
    let table = cli.run(&["stats"]).await;
    let lines: Vec<Vec<&str>> = table.ok().lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines,
        vec![
            vec![
                "ready",
                "flows",
                "retrying",
                "parked",
                "processing",
                "scheduled",
                "dead",
                "lane_full",
                "workers",
                "endpoints",
                "digests",
                "event_bodies"
            ],
            vec!["2", "0", "0", "0", "1", "1", "1", "0", "1", "2", "0", "1"],
        ]
    );
    // One name per figure: every column of the table is a key of the JSON (and of the API's).
    for column in &lines[0] {
        assert!(stats.get(*column).is_some(), "table column {column} is not a JSON field: {stats}");
    }
}
