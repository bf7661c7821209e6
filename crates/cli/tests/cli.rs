//! The real `entraguard-notify` binary against a real redis-server started by the testkit.

use std::process::Output;

use entraguard_testkit::{RedisServer, bin_path};
use redis::AsyncCommands;

const SLACK: &str = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/SECRETTOKENxyz123";

async fn cli(redis: &RedisServer, args: &[&str], stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(bin_path("entraguard-notify"));
    cmd.arg("--redis-url")
        .arg(redis.url())
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("NOTIFY_ALLOW_HTTP");
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("cli starts");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    child.wait_with_output().await.expect("cli runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn endpoint_round_trip_never_prints_the_url_token() {
    let redis = RedisServer::start();
    let add = cli(
        &redis,
        &[
            "endpoint",
            "add",
            "--name",
            "SOC",
            "--channel",
            "slack",
            "--target",
            SLACK,
            "--events",
            "all",
        ],
        None,
    )
    .await;
    assert!(add.status.success(), "{}", text(&add));
    let out = String::from_utf8_lossy(&add.stdout).to_string();
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .expect("id line")
        .trim()
        .to_owned();
    assert!(id.starts_with("ep_"));

    let mut all = text(&add);
    for args in [
        vec!["endpoint", "list"],
        vec!["endpoint", "show", &id],
        vec!["--json", "endpoint", "list"],
        vec!["endpoint", "disable", &id],
    ] {
        let o = cli(&redis, &args, None).await;
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        all.push_str(&text(&o));
    }
    assert!(
        all.contains("https://hooks.slack.com/services/T0…/B0…/****"),
        "{all}"
    );
    assert!(!all.contains("SECRETTOKEN"), "the token leaked: {all}");

    let show = cli(&redis, &["--json", "endpoint", "show", &id], None).await;
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).expect("json");
    assert_eq!(v["enabled"], false);
    assert_eq!(v["events"].as_array().map(Vec::len), Some(5));

    let rm = cli(&redis, &["endpoint", "remove", &id], None).await;
    assert!(rm.status.success());
    let again = cli(&redis, &["endpoint", "show", &id], None).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("not found"));
}

#[tokio::test]
async fn bad_endpoint_input_is_refused_with_the_field() {
    let redis = RedisServer::start();
    let http = cli(
        &redis,
        &[
            "endpoint",
            "add",
            "--name",
            "x",
            "--channel",
            "webhook",
            "--target",
            "http://127.0.0.1:9/x",
            "--events",
            "finding.new",
        ],
        None,
    )
    .await;
    assert_eq!(http.status.code(), Some(2));
    assert!(text(&http).contains("https"), "{}", text(&http));
    let ok = cli(
        &redis,
        &[
            "--allow-http",
            "endpoint",
            "add",
            "--name",
            "x",
            "--channel",
            "webhook",
            "--target",
            "http://127.0.0.1:9/x",
            "--events",
            "finding.new",
        ],
        None,
    )
    .await;
    assert!(ok.status.success(), "{}", text(&ok));
    let kind = cli(
        &redis,
        &[
            "endpoint",
            "add",
            "--name",
            "x",
            "--channel",
            "webhook",
            "--target",
            "https://a.example/x",
            "--events",
            "scan.exploded",
        ],
        None,
    )
    .await;
    assert_eq!(kind.status.code(), Some(2));
    assert!(text(&kind).contains("scan.exploded"));
    let email = cli(
        &redis,
        &[
            "endpoint",
            "add",
            "--name",
            "x",
            "--channel",
            "email",
            "--target",
            "not-an-address",
            "--events",
            "all",
        ],
        None,
    )
    .await;
    assert_eq!(email.status.code(), Some(2));
}

#[tokio::test]
async fn publish_enqueues_valid_events_and_refuses_bad_ones_whole() {
    let redis = RedisServer::start();
    let good = r#"{"event":"scan.failed","tenant_id":"t1","scan":{"run_id":"r","kind":"full","environment":"prod","error":{"kind":"token_expired","message":"expired"}}}"#;
    let o = cli(&redis, &["publish"], Some(good)).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .starts_with("evt_")
    );
    let mut conn = redis.connection().await;
    let n: u64 = conn.llen("{entraguard}:ready").await.expect("llen");
    assert_eq!(n, 1);

    for (input, must_name) in [
        ("{not json", "invalid event JSON"),
        (
            r#"{"event":"finding.exploded","tenant_id":"t"}"#,
            "finding.exploded",
        ),
        (r#"{"event":"scan.failed","tenant_id":"t"}"#, "scan"),
        (
            &format!("[{good}, {{\"event\":\"scan.failed\"}}]"),
            "event #1",
        ),
        ("", "no input"),
    ] {
        let o = cli(&redis, &["publish"], Some(input)).await;
        assert_eq!(o.status.code(), Some(2), "{input}: {}", text(&o));
        assert!(
            text(&o).contains(must_name),
            "{input}: expected {must_name:?} in {}",
            text(&o)
        );
    }
    let n: u64 = conn.llen("{entraguard}:ready").await.expect("llen");
    assert_eq!(n, 1, "nothing more enqueued");

    let batch = format!("[{good}, {good}]");
    let o = cli(&redis, &["publish", "-"], Some(&batch)).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
}

#[tokio::test]
async fn dlq_list_show_replay_and_purge_on_the_documented_layout() {
    let redis = RedisServer::start();
    let mut conn = redis.connection().await;
    // Entries written with plain commands, exactly as the README's key table describes them.
    let replay_job = r#"{"type":"delivery.v1","delivery_id":"dlv_01TEST","endpoint_id":"ep_01TEST","event":{"event":"scan.failed","id":"evt_01TEST","timestamp":"2026-04-28T07:00:00Z","tenant_id":"t","scan":{"run_id":"r","kind":"full","environment":"prod","error":{"kind":"network","message":"x"}}},"attempts":[],"replays":1}"#;
    let attempts = r#"[{"attempt":1,"at":"2026-04-28T07:00:00Z","duration_ms":12,"status":500,"error":"HTTP 500"}]"#;
    let _: () = conn
        .hset_multiple(
            "{entraguard}:dlq:dlv_01TEST",
            &[
                ("id", "dlv_01TEST"),
                ("reason", "gave up after 4 attempts: HTTP 500"),
                ("failed_at", "2026-04-28T07:06:00Z"),
                ("delivery_id", "dlv_01TEST"),
                ("event_kind", "scan.failed"),
                ("endpoint_id", "ep_01TEST"),
                ("attempts", attempts),
                ("job", replay_job),
                ("replay_job", replay_job),
            ],
        )
        .await
        .expect("hset");
    let _: () = conn
        .hset_multiple(
            "{entraguard}:dlq:job_01POISON",
            &[
                ("id", "job_01POISON"),
                ("reason", "undecodable job: EOF"),
                ("job", "{garbage"),
            ],
        )
        .await
        .expect("hset");
    let _: () = conn
        .lpush("{entraguard}:dlq", &["dlv_01TEST", "job_01POISON"])
        .await
        .expect("lpush");

    let list = cli(&redis, &["dlq", "list"], None).await;
    assert!(list.status.success());
    let t = text(&list);
    assert!(
        t.contains("dlv_01TEST")
            && t.contains("job_01POISON")
            && t.contains("gave up after 4 attempts"),
        "{t}"
    );
    let show = cli(&redis, &["dlq", "show", "dlv_01TEST"], None).await;
    assert!(
        text(&show).contains("HTTP 500") && text(&show).contains("#1"),
        "{}",
        text(&show)
    );

    let poison = cli(&redis, &["dlq", "replay", "job_01POISON"], None).await;
    assert_eq!(poison.status.code(), Some(2));
    let all = cli(&redis, &["dlq", "replay", "--all"], None).await;
    assert!(
        text(&all).contains("replayed 1; 1 not replayable"),
        "{}",
        text(&all)
    );
    let ready: Vec<String> = conn
        .lrange("{entraguard}:ready", 0, -1)
        .await
        .expect("lrange");
    assert_eq!(ready, vec![replay_job.to_owned()]);

    let refuse = cli(&redis, &["dlq", "purge", "--all"], None).await;
    assert_eq!(refuse.status.code(), Some(2));
    let purge = cli(&redis, &["dlq", "purge", "--all", "--yes"], None).await;
    assert!(text(&purge).contains("purged 1"), "{}", text(&purge));
    let stats = cli(&redis, &["--json", "stats"], None).await;
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("json");
    assert_eq!(v["dead"], 0);
    assert_eq!(v["ready"], 1);
}

#[tokio::test]
async fn unreachable_redis_is_a_clear_runtime_error() {
    let port = entraguard_testkit::free_port();
    let o = tokio::process::Command::new(bin_path("entraguard-notify"))
        .args([
            "--redis-url",
            &format!("redis://:pw@127.0.0.1:{port}"),
            "stats",
        ])
        .output()
        .await
        .expect("runs");
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("cannot reach Redis at redis://****@127.0.0.1"),
        "{t}"
    );
    assert!(!t.contains(":pw@"));
}
