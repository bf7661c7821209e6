//! The real `entraguard-notify` binary against a real redis-server started by the testkit. Each
//! test has its own server and runs the binary in an empty directory with the settings it reads
//! cleared, so neither a `.env` nor the developer's shell can change a result.
//!
//! The binary is cargo's `CARGO_BIN_EXE_entraguard-notify`: built from the same sources before
//! these tests run, without building (or depending on) the rest of the workspace.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use entraguard_core::job::{AttemptRecord, DeliveryJob, Job};
use entraguard_core::queue::{DeadLetterDraft, Queue, Shards, WorkerId};
use entraguard_core::redis_conn::{RedisConfig, RedisUrl};
use entraguard_core::shards::ShardLayout;
use entraguard_core::{EndpointId, Event, KeySpace, Timestamp};
use entraguard_testkit::RedisServer;
use redis::AsyncCommands;

const BIN: &str = env!("CARGO_BIN_EXE_entraguard-notify");

/// Settings the binary reads from the environment; removed from every run unless a test sets them.
const SETTINGS: [&str; 10] = [
    "REDIS_URL",
    "REDIS_CA_CERT",
    "NOTIFY_REDIS_TIMEOUT",
    "NOTIFY_KEY_PREFIX",
    "NOTIFY_ALLOW_HTTP",
    "NOTIFY_JSON",
    "NOTIFY_ENCRYPTION_KEY",
    "NOTIFY_ENCRYPTION_OLD_KEYS",
    "NOTIFY_QUEUE_SHARDS",
    "NOTIFY_DRAIN_SHARDS",
];

const SLACK: &str = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/SECRETTOKENxyz123";
const SLACK_MASKED: &str = "https://hooks.slack.com/services/****/****/****";
const HOOK: &str = "https://soar.example.com/hooks/entraguard?token=QUERYTOKEN";
const HOOK_SECRET: &str = "whsec-0123456789abcdef-SIGNINGSECRET";

const SCAN_FAILED: &str = r#"{"event":"scan.failed","tenant_id":"t1","scan":{"run_id":"r","kind":"full","environment":"prod","error":{"kind":"token_expired","message":"expired"}}}"#;

/// What one run of the binary did.
struct Run {
    args: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Asserts exit code 0 and returns stdout.
    #[track_caller]
    fn ok(&self) -> &str {
        assert_eq!(
            self.code,
            Some(0),
            "`{}` should succeed; stdout:\n{}\nstderr:\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    /// Asserts exit code `code` and that the output names `what`.
    #[track_caller]
    fn fails(&self, code: i32, what: &str) {
        assert_eq!(
            self.code,
            Some(code),
            "`{}` should exit with {code}; stdout:\n{}\nstderr:\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        assert!(
            self.stderr.contains(what),
            "`{}`: expected {what:?} in stderr, got:\n{}",
            self.args,
            self.stderr
        );
    }

    /// The stdout parsed as JSON.
    #[track_caller]
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("`{}`: stdout is not JSON ({e}):\n{}", self.args, self.stdout))
    }
}

/// Runs the binary in `dir` with `args`, `stdin` and extra environment `env`.
async fn exec(dir: &Path, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for var in SETTINGS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("the binary starts");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or("").as_bytes()).await.expect("write stdin");
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`{}` did not finish within 30 s", args.join(" ")))
        .expect("the binary runs");
    Run {
        args: args.join(" "),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The binary pointed at one test's Redis, run in an empty directory.
struct Cli {
    url: String,
    dir: tempfile::TempDir,
}

impl Cli {
    fn new(redis: &RedisServer) -> Self {
        Self { url: redis.url(), dir: tempfile::tempdir().expect("temp dir") }
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, None, &[]).await
    }

    async fn run_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
        let mut all = vec!["--redis-url", &self.url];
        all.extend_from_slice(args);
        exec(self.dir.path(), &all, stdin, env).await
    }
}

/// The value of a `name:   value` line.
#[track_caller]
fn line_value(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name:?} line in:\n{out}"))
        .trim()
        .to_owned()
}

async fn queue(redis: &RedisServer) -> Queue {
    let url = RedisUrl::parse(&redis.url()).expect("redis url");
    Queue::connect(&RedisConfig::new(url), KeySpace::default()).await.expect("queue connects")
}

/// Dead-letters `raw` the way a worker does: push it, take it into a worker's processing list,
/// give up on it. The ready list must be empty, so the job taken is this one.
async fn dead_letter(queue: &Queue, raw: &str, draft: DeadLetterDraft) {
    let worker = WorkerId::generate();
    queue.push(&[raw.to_owned()]).await.expect("push");
    let mut fetcher = queue.fetcher(&worker, Duration::from_millis(100)).await.expect("fetcher");
    let taken = fetcher.try_fetch().await.expect("fetch").expect("a ready job");
    assert_eq!(taken.bytes(), raw.as_bytes(), "the test's job is the only one ready");
    assert!(queue.dead_letter(&taken, &draft).await.expect("dead letter"), "dead-lettered");
}

/// A delivery that failed `statuses.len()` times.
fn failed_delivery(statuses: &[u16]) -> DeliveryJob {
    let event = Event::from_json(SCAN_FAILED.as_bytes()).expect("valid event");
    let endpoint: EndpointId = "ep_01JTESTTESTTESTTESTTESTTES".parse().expect("endpoint id");
    let mut job = DeliveryJob::new(event, endpoint);
    job.attempts = statuses
        .iter()
        .zip(1..)
        .map(|(s, n)| AttemptRecord {
            attempt: n,
            at: Timestamp::now(),
            duration_ms: 40 + u64::from(n),
            status: Some(*s),
            error: Some(format!("HTTP {s} from the receiver")),
        })
        .collect();
    job
}

async fn deliver_and_die(queue: &Queue, job: &DeliveryJob, reason: &str) -> String {
    let raw = Job::Delivery(job.clone()).encode();
    let id = job.delivery_id.to_string();
    dead_letter(
        queue,
        &raw,
        DeadLetterDraft { id: id.clone(), reason: reason.to_owned(), delivery: Some(job.clone()) },
    )
    .await;
    id
}

#[tokio::test]
async fn endpoint_round_trip_masks_targets_and_never_prints_secrets() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let mut seen = String::new();

    let add = cli
        .run(&[
            "endpoint",
            "add",
            "--name",
            "SOC Slack",
            "--channel",
            "slack",
            "--target",
            SLACK,
            "--events",
            "all",
        ])
        .await;
    let slack = line_value(add.ok(), "id");
    assert!(slack.starts_with("ep_"), "{slack}");
    seen += &add.all();

    let add = cli
        .run_with(
            &[
                "endpoint",
                "add",
                "--name",
                "SOAR",
                "--channel",
                "webhook",
                "--target",
                HOOK,
                "--events",
                "finding.new, finding.severity_changed",
                "--secret-env",
                "HOOK_SECRET",
            ],
            None,
            &[("HOOK_SECRET", HOOK_SECRET)],
        )
        .await;
    let hook = line_value(add.ok(), "id");
    seen += &add.all();

    let list = cli.run(&["endpoint", "list"]).await;
    let table = list.ok();
    assert!(table.starts_with("ID"), "a table with a header:\n{table}");
    for want in
        [&slack, &hook, "SOC Slack", "slack", "webhook", SLACK_MASKED, "finding.new,finding.severity_changed"]
    {
        assert!(table.contains(want), "expected {want:?} in the list:\n{table}");
    }
    seen += &list.all();

    let show = cli.run(&["endpoint", "show", &slack]).await;
    assert_eq!(line_value(show.ok(), "target"), SLACK_MASKED);
    assert_eq!(line_value(show.ok(), "secret"), "none");
    seen += &show.all();
    let show = cli.run(&["endpoint", "show", &hook]).await;
    assert_eq!(line_value(show.ok(), "secret"), "set");
    assert_eq!(line_value(show.ok(), "enabled"), "yes");
    assert_eq!(line_value(show.ok(), "breaker"), "closed (0 consecutive failures)");
    assert_eq!(line_value(show.ok(), "parked"), "0");
    seen += &show.all();
    let reset = cli.run(&["endpoint", "reset", &hook]).await;
    assert!(
        reset.ok().contains(&format!("{hook}: breaker was already closed; nothing was waiting in its lane")),
        "{}",
        reset.all()
    );
    let shown = cli.run(&["--json", "endpoint", "show", &hook]).await.json();
    assert_eq!(shown["breaker"]["state"], "closed");

    let before = cli.run(&["--json", "endpoint", "show", &hook]).await.json();
    assert_eq!(before["has_secret"], true);
    assert_eq!(before["events"], serde_json::json!(["finding.new", "finding.severity_changed"]));
    let listed = cli.run(&["endpoint", "list", "--json"]).await;
    assert_eq!(listed.json().as_array().map(Vec::len), Some(2));
    seen += &listed.all();

    // Disable and enable.
    let off = cli.run(&["endpoint", "disable", &slack]).await;
    assert!(off.ok().contains(&format!("disabled {slack}")), "{}", off.all());
    assert_eq!(cli.run(&["--json", "endpoint", "show", &slack]).await.json()["enabled"], false);
    assert_eq!(line_value(cli.run(&["endpoint", "show", &slack]).await.ok(), "enabled"), "no");
    let on = cli.run(&["endpoint", "enable", &slack]).await;
    assert!(on.ok().contains(&format!("enabled {slack}")), "{}", on.all());
    assert_eq!(cli.run(&["--json", "endpoint", "show", &slack]).await.json()["enabled"], true);

    // Update: validated whole, id and created_at kept, the secret kept when not given.
    let update = cli.run(&["endpoint", "update", &hook, "--name", "SOAR prod", "--events", "all"]).await;
    update.ok();
    seen += &update.all();
    let after = cli.run(&["--json", "endpoint", "show", &hook]).await.json();
    assert_eq!(after["id"], before["id"]);
    assert_eq!(after["created_at"], before["created_at"]);
    assert_eq!(after["name"], "SOAR prod");
    assert_eq!(after["events"].as_array().map(Vec::len), Some(6), "all kinds, endpoint.health_changed too");
    assert_eq!(after["has_secret"], true, "the secret survives an update that does not name it");
    cli.run(&["endpoint", "update", &hook, "--target", "http://soar.example.com/x"]).await.fails(2, "target");
    cli.run(&["endpoint", "update", &hook, "--secret", "short"]).await.fails(2, "secret");
    let unchanged = cli.run(&["--json", "endpoint", "show", &hook]).await.json();
    assert_eq!(unchanged["target"], after["target"], "a refused update changes nothing");

    // Remove, and the not-found paths.
    let rm = cli.run(&["endpoint", "remove", &slack]).await;
    assert!(rm.ok().contains(&format!("removed {slack}")));
    let not_found = format!("endpoint {slack} not found");
    for cmd in ["show", "enable", "disable", "remove", "update"] {
        cli.run(&["endpoint", cmd, &slack]).await.fails(1, &not_found);
    }
    cli.run(&["endpoint", "show", "not-an-id"]).await.fails(2, "not-an-id");
    let mut conn = redis.connection().await;
    let stored: u64 = conn.hlen("{entraguard}:endpoints").await.expect("hlen");
    assert_eq!(stored, 1);

    for leak in ["SECRETTOKEN", "QUERYTOKEN", HOOK_SECRET] {
        assert!(!seen.contains(leak), "{leak:?} was printed:\n{seen}");
    }
}

#[tokio::test]
async fn endpoint_input_is_validated_before_anything_is_stored() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let add = |target: &'static str, channel: &'static str, events: &'static str| {
        ["endpoint", "add", "--name", "x", "--channel", channel, "--target", target, "--events", events]
    };
    let local = "http://127.0.0.1:9/x";

    cli.run(&add(local, "webhook", "finding.new")).await.fails(2, "must use https");
    cli.run(&add("https://a.example/x", "webhook", "scan.exploded")).await.fails(2, "scan.exploded");
    cli.run(&add("https://a.example/x", "webhook", "")).await.fails(2, "events");
    cli.run(&add("https://a.example/x", "pager", "all")).await.fails(2, "channel");
    cli.run(&add("not-an-address", "email", "all")).await.fails(2, "not-an-address");
    let mut unset_secret = add("https://a.example/x", "webhook", "all").to_vec();
    unset_secret.extend(["--secret-env", "NO_SUCH_SECRET_VAR"]);
    cli.run(&unset_secret).await.fails(2, "NO_SUCH_SECRET_VAR");
    let mut both = unset_secret.clone();
    both.extend(["--secret", "0123456789abcdef0123"]);
    cli.run(&both).await.fails(2, "cannot be used with");
    let mut conn = redis.connection().await;
    let stored: u64 = conn.hlen("{entraguard}:endpoints").await.expect("hlen");
    assert_eq!(stored, 0, "nothing stored after refusals");

    // Plain http is accepted when allowed, by flag or by environment.
    let mut allowed = vec!["--allow-http"];
    allowed.extend(add(local, "webhook", "finding.new"));
    cli.run(&allowed).await.ok();
    cli.run_with(&add(local, "webhook", "finding.new"), None, &[("NOTIFY_ALLOW_HTTP", "true")]).await.ok();
    let mut flag_wins = vec!["--allow-http=false"];
    flag_wins.extend(add(local, "webhook", "finding.new"));
    cli.run_with(&flag_wins, None, &[("NOTIFY_ALLOW_HTTP", "true")]).await.fails(2, "https");

    // A Slack endpoint off Slack's host is stored, with a warning on stderr.
    let proxy = cli.run(&add("https://proxy.example/slack", "slack", "all")).await;
    proxy.ok();
    assert!(proxy.stderr.contains("warning:"), "{}", proxy.all());
    let stored: u64 = conn.hlen("{entraguard}:endpoints").await.expect("hlen");
    assert_eq!(stored, 3);
}

/// Two sealing keys (32 bytes, base64) and their key ids (the first 8 hex digits of the SHA-256).
const KEY_A: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const KEY_A_ID: &str = "72cd6e84";
const KEY_B: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
const KEY_B_ID: &str = "75877bb4";

/// The deployment records which key seals its endpoints; a CLI without that key (or a rotation
/// that names it as old) refuses to write instead of storing secrets in clear or under a key the
/// workers cannot open.
#[tokio::test]
async fn endpoint_writes_refuse_a_sealing_key_other_than_the_deployments() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let mut conn = redis.connection().await;
    let add = |name: &'static str| {
        [
            "endpoint",
            "add",
            "--name",
            name,
            "--channel",
            "webhook",
            "--target",
            HOOK,
            "--events",
            "all",
            "--secret-env",
            "HOOK_SECRET",
        ]
    };
    let with = |key: &'static str| [("HOOK_SECRET", HOOK_SECRET), ("NOTIFY_ENCRYPTION_KEY", key)];

    let first = cli.run_with(&add("first"), None, &with(KEY_A)).await;
    let first = line_value(first.ok(), "id");

    // No key: refused, nothing stored, the secret not printed.
    let no_key = cli.run_with(&add("clear"), None, &[("HOOK_SECRET", HOOK_SECRET)]).await;
    assert_ne!(no_key.code, Some(0), "{}", no_key.all());
    for want in ["NOTIFY_ENCRYPTION_KEY is not set", KEY_A_ID, "in clear"] {
        assert!(no_key.stderr.contains(want), "expected {want:?} in:\n{}", no_key.stderr);
    }
    assert!(!no_key.all().contains(HOOK_SECRET) && !no_key.all().contains("QUERYTOKEN"));
    cli.run(&["endpoint", "disable", &first]).await.fails(1, "NOTIFY_ENCRYPTION_KEY is not set");

    // Another key: refused, naming both.
    let other = cli.run_with(&add("other"), None, &with(KEY_B)).await;
    assert_ne!(other.code, Some(0), "{}", other.all());
    for want in [KEY_A_ID, KEY_B_ID, "NOTIFY_ENCRYPTION_KEY"] {
        assert!(other.stderr.contains(want), "expected {want:?} in:\n{}", other.stderr);
    }
    let stored: u64 = conn.hlen("{entraguard}:endpoints").await.expect("hlen");
    assert_eq!(stored, 1, "refused writes store nothing");
    let recorded: Option<String> = conn.get("{entraguard}:sealing").await.expect("get");
    assert_eq!(recorded.as_deref(), Some(KEY_A_ID), "the first write recorded its key");
    let json: String = conn.hget("{entraguard}:endpoints", &first).await.expect("hget");
    assert!(json.contains(&format!("enc:v1:{KEY_A_ID}:")) && !json.contains("QUERYTOKEN"), "{json}");

    // A rotation: key B with A as an old key writes, and reseal moves the record to B.
    let rotating = [
        ("HOOK_SECRET", HOOK_SECRET),
        ("NOTIFY_ENCRYPTION_KEY", KEY_B),
        ("NOTIFY_ENCRYPTION_OLD_KEYS", KEY_A),
    ];
    cli.run_with(&add("during rotation"), None, &rotating).await.ok();
    cli.run_with(&["endpoint", "disable", &first], None, &rotating).await.ok();
    let recorded: Option<String> = conn.get("{entraguard}:sealing").await.expect("get");
    assert_eq!(recorded.as_deref(), Some(KEY_A_ID), "unchanged until the reseal");
    let reseal = cli.run_with(&["endpoint", "reseal"], None, &rotating).await;
    assert!(reseal.ok().contains("resealed"), "{}", reseal.all());
    let recorded: Option<String> = conn.get("{entraguard}:sealing").await.expect("get");
    assert_eq!(recorded.as_deref(), Some(KEY_B_ID), "the reseal records the new key");
    let all: Vec<(String, String)> = conn.hgetall("{entraguard}:endpoints").await.expect("hgetall");
    assert_eq!(all.len(), 2);
    for (_, json) in &all {
        assert!(json.contains(&format!("enc:v1:{KEY_B_ID}:")) && !json.contains(KEY_A_ID), "{json}");
    }
    cli.run_with(&add("new key"), None, &with(KEY_B)).await.ok();
    let old = cli.run_with(&add("old key"), None, &with(KEY_A)).await;
    assert!(old.code != Some(0) && old.stderr.contains(KEY_B_ID), "{}", old.all());

    // A deployment that chose clear text records `none`; a key is taken up by a reseal.
    let clear = ["--key-prefix", "clear"];
    let mut add_clear = clear.to_vec();
    add_clear.extend(add("clear"));
    cli.run_with(&add_clear, None, &[("HOOK_SECRET", HOOK_SECRET)]).await.ok();
    let recorded: Option<String> = conn.get("{clear}:sealing").await.expect("get");
    assert_eq!(recorded.as_deref(), Some("none"));
    let sealed = cli.run_with(&add_clear, None, &with(KEY_A)).await;
    assert!(sealed.code != Some(0) && sealed.stderr.contains("in clear"), "{}", sealed.all());
    let mut reseal = clear.to_vec();
    reseal.extend(["endpoint", "reseal"]);
    cli.run_with(&reseal, None, &with(KEY_A)).await.ok();
    let recorded: Option<String> = conn.get("{clear}:sealing").await.expect("get");
    assert_eq!(recorded.as_deref(), Some(KEY_A_ID));
    cli.run_with(&add_clear, None, &with(KEY_A)).await.ok();
}

#[tokio::test]
async fn publish_enqueues_valid_events_and_refuses_bad_input_whole() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let mut conn = redis.connection().await;

    let out = cli.run_with(&["publish"], Some(SCAN_FAILED), &[]).await;
    let id = out.ok().trim().to_owned();
    assert!(id.starts_with("evt_") && !id.contains('\n'), "one event id: {id:?}");
    let ready: Vec<String> = conn.lrange("{entraguard}:ready", 0, -1).await.expect("lrange");
    assert_eq!(ready.len(), 1);
    match Job::decode(ready[0].as_bytes()).expect("the job decodes") {
        Job::Event(job) => assert_eq!(job.event.id.to_string(), id),
        other => panic!("expected an event job, got {other:?}"),
    }

    let batch = format!("[{SCAN_FAILED}, {SCAN_FAILED}]");
    for (input, must_name) in [
        ("{not json", "invalid event JSON"),
        (r#"{"event":"finding.exploded","tenant_id":"t"}"#, "finding.exploded"),
        (r#"{"event":"scan.failed","tenant_id":"t"}"#, "scan"),
        (&format!("[{SCAN_FAILED}, {{\"event\":\"scan.failed\"}}]"), "event #1"),
        ("[1, 2", "invalid event JSON array"),
        ("", "no input"),
        ("   \n", "no input"),
    ] {
        cli.run_with(&["publish"], Some(input), &[]).await.fails(2, must_name);
    }
    let n: u64 = conn.llen("{entraguard}:ready").await.expect("llen");
    assert_eq!(n, 1, "nothing enqueued by a refused publish");

    // A batch from a file, with --json; `-` reads stdin.
    let file = cli.dir.path().join("events.json");
    std::fs::write(&file, &batch).expect("write events");
    let ids = cli.run(&["publish", "--json", "events.json"]).await.json();
    assert_eq!(ids.as_array().map(Vec::len), Some(2), "{ids}");
    assert!(ids[0].as_str().is_some_and(|s| s.starts_with("evt_")));
    let out = cli.run_with(&["publish", "-"], Some(SCAN_FAILED), &[]).await;
    assert_eq!(out.ok().lines().count(), 1);
    let n: u64 = conn.llen("{entraguard}:ready").await.expect("llen");
    assert_eq!(n, 4);

    cli.run(&["publish", "missing.json"]).await.fails(2, "missing.json");
}

/// Issue 24: kinds only the notifier makes are refused with the producer's one message, and a
/// batch over the limit is bad input: both exit 2, as the help says, and nothing is enqueued.
#[tokio::test]
async fn publish_refuses_notifier_only_kinds_and_oversized_batches_as_bad_input() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let mut conn = redis.connection().await;
    let health = r#"{"event":"endpoint.health_changed","tenant_id":"8d6310d1-0000","endpoint":{"id":"ep_01JSAMPLE","name":"SOAR","state":"disabled","parked":999,"since":"2026-04-28T07:12:43Z"}}"#;
    let digest = r#"{"event":"finding.digest","tenant_id":"t","digest":{}}"#;
    let out = cli.run_with(&["publish"], Some(health), &[]).await;
    out.fails(2, "`endpoint.health_changed` is made only by the notifier and cannot be published");
    assert!(!out.stderr.contains("finding.digest"), "{}", out.stderr);
    let in_batch = format!("[{SCAN_FAILED}, {health}]");
    cli.run_with(&["publish"], Some(&in_batch), &[]).await.fails(2, "event #1 of the array");
    // A digest body that does not even parse still names the kind's refusal or the body.
    let out = cli.run_with(&["publish"], Some(digest), &[]).await;
    assert_eq!(out.code, Some(2), "{}", out.all());
    let out = cli.run_with(&["publish"], Some(r#"{"event":"finding.exploded","tenant_id":"t"}"#), &[]).await;
    out.fails(2, "expected one of scan.completed");
    assert!(
        !out.stderr.contains("finding.digest") && !out.stderr.contains("health_changed"),
        "{}",
        out.stderr
    );

    let many = format!("[{}]", vec![SCAN_FAILED; 10_001].join(","));
    cli.run_with(&["publish"], Some(&many), &[]).await.fails(2, "at most 10000 events; this one has 10001");
    let n: u64 = conn.llen("{entraguard}:ready").await.expect("llen");
    assert_eq!(n, 0, "nothing enqueued by a refused publish");
}

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
        "ready": 2, "retrying": 0, "parked": 0, "processing": 1, "scheduled": 1, "dead": 1, "lane_full": 0,
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
            vec!["2", "0", "0", "1", "1", "1", "0", "1", "2", "0", "1"],
        ]
    );
    // One name per figure: every column of the table is a key of the JSON (and of the API's).
    for column in &lines[0] {
        assert!(stats.get(*column).is_some(), "table column {column} is not a JSON field: {stats}");
    }
}

#[tokio::test]
async fn settings_come_from_env_and_dotenv_and_flags_win() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = redis.connection().await;
    let add = [
        "endpoint",
        "add",
        "--name",
        "x",
        "--channel",
        "email",
        "--target",
        "a@b.example",
        "--events",
        "all",
    ];

    // .env gives the Redis URL and the key prefix.
    std::fs::write(
        dir.path().join(".env"),
        format!("REDIS_URL={}\nNOTIFY_KEY_PREFIX=fromdotenv\n", redis.url()),
    )
    .expect("write .env");
    exec(dir.path(), &add, None, &[]).await.ok();
    let n: u64 = conn.hlen("{fromdotenv}:endpoints").await.expect("hlen");
    assert_eq!(n, 1, "the .env prefix was used");
    // The environment beats .env, a flag beats both.
    exec(dir.path(), &add, None, &[("NOTIFY_KEY_PREFIX", "fromenv")]).await.ok();
    let mut flagged = vec!["--key-prefix", "fromflag"];
    flagged.extend(add);
    exec(dir.path(), &flagged, None, &[("NOTIFY_KEY_PREFIX", "fromenv")]).await.ok();
    for key in ["{fromdotenv}:endpoints", "{fromenv}:endpoints", "{fromflag}:endpoints"] {
        let n: u64 = conn.hlen(key).await.expect("hlen");
        assert_eq!(n, 1, "{key}");
    }
    let stats = exec(dir.path(), &["stats"], None, &[("NOTIFY_JSON", "true")]).await.json();
    assert_eq!(stats["endpoints"], 1, "NOTIFY_JSON selects JSON output");

    // A malformed .env is a usage error naming the file, without echoing its values.
    std::fs::write(
        dir.path().join(".env"),
        "REDIS_URL=redis://:hunter2@127.0.0.1:1\nhunter2 is the password\n",
    )
    .expect("write .env");
    let bad = exec(dir.path(), &["stats"], None, &[]).await;
    bad.fails(2, ".env");
    assert!(!bad.all().contains("hunter2"), "{}", bad.all());

    // Bad settings name themselves.
    let clean = tempfile::tempdir().expect("temp dir");
    exec(clean.path(), &["--redis-url", "http://x", "stats"], None, &[]).await.fails(2, "--redis-url");
    exec(clean.path(), &["stats"], None, &[("NOTIFY_KEY_PREFIX", "a b")]).await.fails(2, "--key-prefix");
}

#[tokio::test]
async fn unreachable_redis_is_a_runtime_error_with_the_masked_url() {
    let port = entraguard_testkit::free_port();
    let url = format!("redis://user:pw-s3cret@127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [vec!["stats"], vec!["endpoint", "list"], vec!["dlq", "list"], vec!["publish"]] {
        let mut all = vec!["--redis-url", url.as_str()];
        all.extend(args);
        let stdin = Some(SCAN_FAILED);
        let run = exec(dir.path(), &all, stdin, &[]).await;
        run.fails(1, &format!("cannot reach Redis at redis://****@127.0.0.1:{port}"));
        assert!(!run.all().contains("pw-s3cret"), "{}", run.all());
    }
}

#[tokio::test]
async fn help_and_version_are_enough_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [("REDIS_URL", "redis://:hunter2@redis.internal:6379")];
    let help = exec(dir.path(), &["--help"], None, &env).await;
    for want in
        ["publish", "endpoint", "dlq", "stats", "Quick start", "[env: REDIS_URL]", "[env: NOTIFY_KEY_PREFIX="]
    {
        assert!(help.ok().contains(want), "expected {want:?} in --help:\n{}", help.stdout);
    }
    assert!(!help.stdout.contains("hunter2"), "the Redis URL from the environment is hidden");
    let publish = exec(dir.path(), &["publish", "--help"], None, &[]).await;
    assert!(publish.ok().contains("Example:\n  entraguard-notify publish"), "{}", publish.stdout);
    let add = exec(dir.path(), &["endpoint", "add", "--help"], None, &[]).await;
    assert!(add.ok().contains("Examples:\n  entraguard-notify endpoint add"), "{}", add.stdout);
    let version = exec(dir.path(), &["--version"], None, &[]).await;
    assert_eq!(version.ok().trim(), format!("entraguard-notify {}", env!("CARGO_PKG_VERSION")));
    exec(dir.path(), &["endpoint", "add", "--channel", "slack"], None, &[]).await.fails(2, "--name");
    exec(dir.path(), &["frobnicate"], None, &[]).await.fails(2, "frobnicate");
    // Exactly the settings the CLI reads: none of the workers' delivery or run-loop settings.
    for unused in [
        "--smtp-host",
        "--delivery-timeout",
        "--allow-private-targets",
        "--lease",
        "--concurrency",
        "--log-format",
    ] {
        assert!(
            !help.stdout.contains(unused),
            "--help lists {unused}, which the CLI ignores:\n{}",
            help.stdout
        );
    }
}

#[tokio::test]
async fn booleans_read_1_0_yes_no_and_a_bad_one_names_the_variable() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let add = |name: &'static str| {
        [
            "endpoint",
            "add",
            "--name",
            name,
            "--channel",
            "webhook",
            "--target",
            "http://127.0.0.1:9/hook",
            "--events",
            "all",
        ]
    };
    cli.run_with(&add("one"), None, &[("NOTIFY_ALLOW_HTTP", "1")]).await.ok();
    cli.run_with(&add("yes"), None, &[("NOTIFY_ALLOW_HTTP", "YES")]).await.ok();
    cli.run_with(&add("zero"), None, &[("NOTIFY_ALLOW_HTTP", "0")]).await.fails(2, "https");
    let bad = cli.run_with(&["endpoint", "list"], None, &[("NOTIFY_ALLOW_HTTP", "maybe")]).await;
    bad.fails(2, "NOTIFY_ALLOW_HTTP");
    assert!(bad.stderr.contains("--allow-http"), "the flag is named too: {}", bad.stderr);
}

#[tokio::test]
async fn endpoint_deliveries_lists_recent_attempts_newest_first_with_signatures_masked() {
    use entraguard_core::history::{AttemptResult, DeliveryRecord};
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let queue = queue(&redis).await;
    let add = cli
        .run(&[
            "--json",
            "endpoint",
            "add",
            "--name",
            "SOAR",
            "--channel",
            "webhook",
            "--target",
            HOOK,
            "--events",
            "all",
        ])
        .await
        .json();
    let id: EndpointId = add["id"].as_str().expect("id").parse().expect("endpoint id");
    let job = DeliveryJob::new(Event::from_json(SCAN_FAILED.as_bytes()).expect("event"), id.clone());
    let attempt = |n: u32, status: u16| AttemptRecord {
        attempt: n,
        at: Timestamp::now(),
        duration_ms: 40,
        status: Some(status),
        error: (status >= 300).then(|| format!("HTTP {status}")),
    };
    let sig = [("x-coderaft-signature", "sha256=SIGNATUREVALUE")];
    queue
        .record_history(
            &id,
            &[
                DeliveryRecord::new(&job, &attempt(1, 503), AttemptResult::Retry, sig, Some("busy")),
                DeliveryRecord::new(&job, &attempt(2, 200), AttemptResult::Delivered, sig, Some("ok")),
            ],
        )
        .await
        .expect("record");

    let table = cli.run(&["endpoint", "deliveries", id.as_str()]).await;
    let rows: Vec<&str> = table.ok().lines().collect();
    assert!(rows[0].starts_with("AT") && rows[0].contains("RESULT"), "{}", table.stdout);
    assert!(rows[1].contains("delivered") && rows[1].contains(" 200 "), "newest first: {}", table.stdout);
    assert!(rows[2].contains("retry") && rows[2].contains("HTTP 503"), "{}", table.stdout);
    let json = cli.run(&["--json", "endpoint", "deliveries", id.as_str(), "--limit", "1"]).await.json();
    assert_eq!(json.as_array().map(Vec::len), Some(1));
    assert_eq!(json[0]["delivery_id"], job.delivery_id.as_str());
    assert_eq!(json[0]["request_headers"][0], serde_json::json!(["x-coderaft-signature", "****"]));
    assert!(!json.to_string().contains("SIGNATUREVALUE"));
    cli.run(&["endpoint", "deliveries", "ep_01JNOPENOPENOPENOPENOPENOP"]).await.fails(1, "not found");
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

/// Rules from the command line: set on add, changed one flag at a time on update (the others
/// kept), shown, and refused with the field named.
#[tokio::test]
async fn endpoint_rules_from_flags_are_kept_across_updates_and_validated() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let add = [
        "endpoint",
        "add",
        "--name",
        "A",
        "--channel",
        "webhook",
        "--target",
        "https://a.example/x",
        "--events",
        "all",
        "--tenants",
        "tenant-a",
        "--digest",
        "low,medium",
        "--quiet-hours",
        "20:00-07:00",
        "--quiet-tz",
        "Europe/Berlin",
        "--json",
    ];
    let ep = cli.run(&add).await.json();
    assert_eq!(ep["rules"]["tenants"], serde_json::json!(["tenant-a"]));
    assert_eq!(ep["rules"]["quiet_hours"]["from"], "20:00");
    let id = ep["id"].as_str().expect("id").to_owned();
    let updated = cli.run(&["endpoint", "update", &id, "--min-severity", "high", "--json"]).await.json();
    assert_eq!(updated["rules"]["min_severity"], "high");
    assert_eq!(updated["rules"]["digest"]["severities"], serde_json::json!(["medium", "low"]), "kept");
    let cleared = cli
        .run(&["endpoint", "update", &id, "--quiet-hours", "off", "--digest", "off", "--json"])
        .await
        .json();
    assert!(
        cleared["rules"].get("quiet_hours").is_none() && cleared["rules"].get("digest").is_none(),
        "{cleared}"
    );
    let shown = cli.run(&["endpoint", "show", &id]).await;
    assert!(shown.ok().contains("floor:     high and above"), "{}", shown.all());
    cli.run(&["endpoint", "update", &id, "--quiet-hours", "20:00-07:00", "--quiet-tz", "Nowhere/Land"])
        .await
        .fails(2, "rules.quiet_hours.time_zone");
    cli.run(&["endpoint", "update", &id, "--quiet-tz", "UTC"]).await.fails(2, "--quiet-hours");
}

/// Issue 28: `--ed25519` gives a webhook endpoint a key shown as `whpk_…`; updates keep it,
/// `--clear-ed25519` removes it; `rotate-signing-key` replaces it and names the previous key;
/// other channels are refused, naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_keys_are_added_kept_rotated_and_cleared_from_flags() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let base = ["endpoint", "add", "--name", "A", "--events", "all", "--ed25519"];
    cli.run(
        &[&base[..], &["--channel", "slack", "--target", "https://hooks.slack.com/services/T/B/x"]].concat(),
    )
    .await
    .fails(2, "ed25519");
    let added =
        cli.run(&[&base[..], &["--channel", "webhook", "--target", "https://a.example/x"]].concat()).await;
    let key = line_value(added.ok(), "ed25519");
    assert!(key.starts_with("whpk_") && key.len() == "whpk_".len() + 44, "{key}");
    let id = line_value(added.ok(), "id");
    let updated = cli.run(&["endpoint", "update", &id, "--name", "B", "--json"]).await.json();
    assert_eq!(updated["public_key"], key.as_str(), "an update keeps the key");
    let rotated = cli.run(&["endpoint", "rotate-signing-key", &id, "--grace", "2h", "--json"]).await.json();
    assert!(rotated["public_key"].as_str().is_some_and(|k| k.starts_with("whpk_") && k != key), "{rotated}");
    assert_eq!(rotated["previous_public_key"], key.as_str());
    assert!(rotated["previous_public_key_until"].is_string(), "{rotated}");
    let cleared = cli.run(&["endpoint", "update", &id, "--clear-ed25519", "--json"]).await.json();
    assert!(cleared.get("public_key").is_none() && cleared.get("previous_public_key").is_none(), "{cleared}");
    let slack = cli
        .run(&[
            "endpoint",
            "add",
            "--name",
            "S",
            "--channel",
            "slack",
            "--target",
            "https://hooks.slack.com/services/T/B/x",
            "--events",
            "all",
            "--json",
        ])
        .await
        .json();
    let slack_id = slack["id"].as_str().expect("id");
    cli.run(&["endpoint", "rotate-signing-key", slack_id]).await.fails(2, "webhook endpoints");
}

/// Queue shards (`NOTIFY_QUEUE_SHARDS`) on one redis-server: shards are key tags, which one
/// server holds as well as a cluster.
const SHARDS: u16 = 3;

/// The shards the CLI uses with `NOTIFY_QUEUE_SHARDS=3`, on the test's connection.
async fn sharded(redis: &RedisServer) -> Shards {
    let layout = ShardLayout::new(&KeySpace::default(), SHARDS, None).expect("layout");
    Shards::on(&queue(redis).await, layout)
}

/// An endpoint id whose deliveries and state live in shard `k`.
fn endpoint_in(shards: &Shards, k: usize) -> EndpointId {
    shards.layout().endpoint_id_in(k)
}

/// A dead letter of a delivery to `endpoint`, made in the endpoint's shard as a worker does.
async fn dead_in_shard(shards: &Shards, endpoint: &EndpointId, reason: &str) -> (String, DeliveryJob) {
    let mut job = failed_delivery(&[500]);
    job.endpoint_id = endpoint.clone();
    let id = deliver_and_die(shards.for_endpoint(endpoint), &job, reason).await;
    (id, job)
}

/// The deliveries waiting in one shard (ready, then retry list), by delivery id; events (a
/// breaker's announcement) are left out.
async fn waiting_in(shards: &Shards, k: usize) -> Vec<String> {
    let q = &shards.served()[k];
    let mut conn = q.connection();
    let mut raw: Vec<String> = conn.lrange(q.keys().ready(), 0, -1).await.expect("lrange");
    let retry: Vec<String> = conn.lrange(q.keys().retry(), 0, -1).await.expect("lrange");
    raw.extend(retry);
    raw.iter()
        .filter_map(|r| match Job::decode(r.as_bytes()).expect("job decodes") {
            Job::Delivery(d) => Some(d.delivery_id.to_string()),
            _ => None,
        })
        .collect()
}

/// Empties one shard's ready and retry lists.
async fn clear_waiting(shards: &Shards, k: usize) {
    let q = &shards.served()[k];
    let mut conn = q.connection();
    let _: () = conn.del(&[q.keys().ready(), q.keys().retry()]).await.expect("del");
}

/// Dead letters of endpoints in shards 1 and 2 are listed together, shown, replayed into the
/// shard they died in, and purged, one or all; with one shard the CLI sees only shard 0's.
#[tokio::test]
async fn dlq_commands_see_every_queue_shard() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let shards = sharded(&redis).await;
    let env = [("NOTIFY_QUEUE_SHARDS", "3")];
    let (e1, e2) = (endpoint_in(&shards, 1), endpoint_in(&shards, 2));
    let (d1, _) = dead_in_shard(&shards, &e1, "gave up in shard 1").await;
    let (d2, job2) = dead_in_shard(&shards, &e2, "gave up in shard 2").await;

    let ids = |v: serde_json::Value| -> Vec<String> {
        let mut ids: Vec<String> =
            v.as_array().expect("array").iter().filter_map(|e| e["id"].as_str().map(str::to_owned)).collect();
        ids.sort();
        ids
    };
    let mut both = vec![d1.clone(), d2.clone()];
    both.sort();
    let list = cli.run_with(&["--json", "dlq", "list"], None, &env).await.json();
    assert_eq!(ids(list), both, "every shard's dead letters are listed");
    // The flag works like the variable; one shard (the default) sees shard 0 only.
    let flag = cli.run(&["--json", "--queue-shards", "3", "dlq", "list"]).await.json();
    assert_eq!(ids(flag), both);
    assert_eq!(cli.run(&["--json", "dlq", "list"]).await.json(), serde_json::json!([]));
    // Paging walks the merged list.
    let first = cli.run_with(&["--json", "dlq", "list", "--limit", "1"], None, &env).await.json();
    let second =
        cli.run_with(&["--json", "dlq", "list", "--limit", "1", "--offset", "1"], None, &env).await.json();
    let mut paged = [ids(first), ids(second)].concat();
    paged.sort();
    assert_eq!(paged, both, "two pages of one hold both");
    let mine = cli.run_with(&["--json", "dlq", "list", "--endpoint", e2.as_str()], None, &env).await.json();
    assert_eq!(ids(mine), vec![d2.clone()]);
    let table = cli.run_with(&["dlq", "list"], None, &env).await;
    assert!(table.ok().contains(&d1) && table.stdout.contains(&d2), "{}", table.stdout);

    // Show finds it in its shard.
    let shown = cli.run_with(&["dlq", "show", &d2], None, &env).await;
    assert_eq!(line_value(shown.ok(), "reason"), "gave up in shard 2");
    cli.run(&["dlq", "show", &d2]).await.fails(1, "not found");

    // Replay one: back in shard 2's lists, not shard 0's.
    cli.run(&["dlq", "replay", &d2]).await.fails(1, "not found");
    let replayed = cli.run_with(&["dlq", "replay", &d2], None, &env).await;
    assert_eq!(replayed.ok().trim(), format!("replayed {d2}"));
    assert_eq!(waiting_in(&shards, 2).await, vec![job2.delivery_id.to_string()]);
    assert!(waiting_in(&shards, 0).await.is_empty() && waiting_in(&shards, 1).await.is_empty());
    let left = cli.run_with(&["--json", "dlq", "list"], None, &env).await.json();
    assert_eq!(ids(left), vec![d1.clone()]);

    // Purge one finds it in shard 1.
    cli.run(&["dlq", "purge", &d1]).await.fails(1, "not found");
    assert_eq!(cli.run_with(&["dlq", "purge", &d1], None, &env).await.ok().trim(), format!("purged {d1}"));
    assert_eq!(shards.served()[1].stats().await.expect("stats").dead, 0);

    // Replay all and purge all go through every shard.
    clear_waiting(&shards, 2).await;
    let e0 = endpoint_in(&shards, 0);
    for e in [&e0, &e1, &e2] {
        dead_in_shard(&shards, e, "gave up").await;
    }
    let all =
        cli.run_with(&["--json", "dlq", "replay", "--all", "--endpoint", e1.as_str()], None, &env).await;
    assert_eq!(all.json(), serde_json::json!({ "replayed": 1, "not_replayable": 0 }));
    assert_eq!(waiting_in(&shards, 1).await.len(), 1, "replayed in shard 1");
    let purged = cli.run_with(&["dlq", "purge", "--all", "--yes"], None, &env).await;
    assert_eq!(purged.ok().trim(), "purged 2");
    assert_eq!(shards.stats().await.expect("stats").dead, 0);
}

/// `stats` sums the shards and, with more than one, prints each (its tag and depths) and the
/// events forwarding between them; one shard prints the one-row table.
#[tokio::test]
async fn stats_sum_queue_shards_and_show_each() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let shards = sharded(&redis).await;
    let env = [("NOTIFY_QUEUE_SHARDS", "3")];
    let tags: Vec<String> = shards.served().iter().map(|q| q.keys().tag().to_owned()).collect();
    // Shard 0: one ready job; shard 1: two ready jobs and one forwarded event waiting in its
    // outbox for shard 2; shard 2: a dead letter.
    shards.served()[0].push(&["{\"x\":0}".to_owned()]).await.expect("push");
    shards.served()[1].push(&["{\"x\":1}".to_owned(), "{\"x\":2}".to_owned()]).await.expect("push");
    let mut conn = redis.connection().await;
    let _: () = conn.zadd(shards.served()[1].keys().outbox(2), "{\"x\":3}", 1).await.expect("zadd");
    dead_in_shard(&shards, &endpoint_in(&shards, 2), "gave up").await;

    let stats = cli.run_with(&["--json", "stats"], None, &env).await.json();
    assert_eq!(
        (stats["ready"].clone(), stats["dead"].clone(), stats["forwarding"].clone()),
        (3.into(), 1.into(), 1.into()),
        "summed: {stats}"
    );
    let rows = stats["shards"].as_array().expect("one row per shard");
    let row = |tag: &str, ready: u64, dead: u64, forwarding: u64| {
        serde_json::json!({
            "shard": tag, "draining": false, "ready": ready, "retrying": 0, "parked": 0, "processing": 0,
            "scheduled": 0, "dead": dead, "forwarding": forwarding,
        })
    };
    assert_eq!(
        rows,
        &vec![row(&tags[0], 1, 0, 0), row(&tags[1], 2, 0, 1), row(&tags[2], 0, 1, 0)],
        "{stats}"
    );

    let table = cli.run_with(&["stats"], None, &env).await;
    let lines: Vec<Vec<&str>> = table.ok().lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0].last(), Some(&"forwarding"), "{}", table.stdout);
    // The dead letter's event body is kept once (`event_bodies` 1).
    assert_eq!(
        lines[1],
        vec!["3", "0", "0", "0", "0", "1", "0", "0", "0", "0", "1", "1"],
        "{}",
        table.stdout
    );
    assert!(lines[2].is_empty(), "{}", table.stdout);
    assert_eq!(
        lines[3],
        vec!["shard", "ready", "retrying", "parked", "processing", "scheduled", "dead", "forwarding"]
    );
    assert_eq!(lines[4], vec![tags[0].as_str(), "1", "0", "0", "0", "0", "0", "0"]);
    assert_eq!(lines[5], vec![tags[1].as_str(), "2", "0", "0", "0", "0", "0", "1"]);
    assert_eq!(lines[6], vec![tags[2].as_str(), "0", "0", "0", "0", "0", "1", "0"]);
    assert_eq!(lines.len(), 7, "{}", table.stdout);

    // One shard: shard 0's figures, no per-shard rows.
    let one = cli.run(&["--json", "stats"]).await.json();
    assert_eq!((one["ready"].clone(), one["dead"].clone()), (1.into(), 0.into()), "{one}");
    assert!(one.get("shards").is_none(), "{one}");
    assert_eq!(cli.run(&["stats"]).await.ok().lines().count(), 2);

    // Shards of an earlier count still drained are counted, and marked.
    let drain = cli
        .run_with(&["--json", "stats"], None, &[("NOTIFY_QUEUE_SHARDS", "2"), ("NOTIFY_DRAIN_SHARDS", "3")])
        .await
        .json();
    let layout = ShardLayout::new(&KeySpace::default(), 2, Some(3)).expect("layout");
    let rows = drain["shards"].as_array().expect("rows");
    assert_eq!(rows.len(), layout.served().count(), "{drain}");
    let draining: Vec<bool> = rows.iter().map(|r| r["draining"] == true).collect();
    assert_eq!(draining, (0..rows.len()).map(|i| i >= 2).collect::<Vec<_>>(), "{drain}");
}

/// An endpoint homed in a shard other than 0: `endpoint show`, `deliveries`, `redeliver`,
/// `reset` and `enable` read and write its breaker, lane and history in that shard, while its
/// record stays in shard 0.
#[tokio::test]
async fn endpoint_state_is_read_and_written_in_its_shard() {
    use entraguard_core::breaker::{BreakerSettings, BreakerState, Report};
    use entraguard_core::history::{AttemptResult, DeliveryRecord};
    use entraguard_core::store::EndpointStore;

    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let shards = sharded(&redis).await;
    let env = [("NOTIFY_QUEUE_SHARDS", "3")];
    let id = endpoint_in(&shards, 2);
    let draft: entraguard_core::EndpointDraft = serde_json::from_value(serde_json::json!({
        "name": "Shard two", "channel": "webhook", "target": HOOK, "events": ["all"]
    }))
    .expect("draft");
    let ep = draft
        .validate_as(id.clone(), Timestamp::now(), entraguard_core::TargetPolicy { allow_http: false })
        .expect("valid");
    EndpointStore::new(shards.home().connection(), KeySpace::default()).put(&ep).await.expect("stored");

    // Its state, written where the workers write it: shard 2.
    let q = &shards.served()[2];
    let settings = BreakerSettings { failures: 1, ..BreakerSettings::default() };
    let failure = Report::Failure { error: "HTTP 503 from the receiver", probe: false };
    q.breaker_report(&id, None, failure, &settings).await.expect("breaker opens");
    let worker = WorkerId::generate();
    let job = DeliveryJob::new(Event::from_json(SCAN_FAILED.as_bytes()).expect("event"), id.clone());
    let raw = Job::Delivery(job.clone()).encode();
    q.push(std::slice::from_ref(&raw)).await.expect("push");
    let mut fetcher = q.fetcher(&worker, Duration::from_millis(100)).await.expect("fetcher");
    let taken = fetcher.try_fetch().await.expect("fetch").expect("the job");
    assert!(q.park(&taken, &job, Duration::from_secs(600)).await.expect("park"), "parked");
    let attempt =
        AttemptRecord { attempt: 1, at: Timestamp::now(), duration_ms: 40, status: Some(503), error: None };
    q.record_history(&id, &[DeliveryRecord::new(&job, &attempt, AttemptResult::Retry, [], None)])
        .await
        .expect("history");
    let mut conn = redis.connection().await;
    let _: () = conn.hset(q.keys().suppressed(), id.as_str(), 4).await.expect("hset");

    // Show: the breaker, the parked delivery and the suppressed count of shard 2.
    let shown = cli.run_with(&["--json", "endpoint", "show", id.as_str()], None, &env).await.json();
    assert_eq!(shown["name"], "Shard two", "the record is read from shard 0: {shown}");
    assert_eq!(
        (shown["breaker"]["state"].clone(), shown["breaker"]["parked"].clone(), shown["suppressed"].clone()),
        ("open".into(), 1.into(), 4.into()),
        "{shown}"
    );
    let unsharded = cli.run(&["--json", "endpoint", "show", id.as_str()]).await.json();
    assert_eq!(unsharded["breaker"]["state"], "closed", "shard 0 knows nothing of it: {unsharded}");
    let text = cli.run_with(&["endpoint", "show", id.as_str()], None, &env).await;
    assert!(line_value(text.ok(), "breaker").starts_with("open"), "{}", text.stdout);

    // Recent Deliveries from shard 2; Redeliver into shard 2.
    let history = cli.run_with(&["--json", "endpoint", "deliveries", id.as_str()], None, &env).await.json();
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
    assert_eq!(history[0]["delivery_id"], job.delivery_id.as_str());
    let none = cli.run(&["--json", "endpoint", "deliveries", id.as_str()]).await.json();
    assert_eq!(none, serde_json::json!([]));
    let dlv = job.delivery_id.to_string();
    let again = cli.run_with(&["endpoint", "redeliver", id.as_str(), &dlv], None, &env).await;
    assert_eq!(again.ok().trim(), format!("redelivering {dlv}"));
    assert_eq!(waiting_in(&shards, 2).await, vec![dlv.clone()]);
    assert!(waiting_in(&shards, 0).await.is_empty(), "nothing in shard 0");

    // Reset closes shard 2's breaker and releases its lane there.
    let reset = cli.run_with(&["endpoint", "reset", id.as_str()], None, &env).await;
    assert!(reset.ok().contains("breaker closed; 1 waiting delivery resumes"), "{}", reset.stdout);
    let status = q.breaker_status(&id).await.expect("status");
    assert_eq!((status.state, status.parked), (BreakerState::Closed, 0));
    assert_eq!(waiting_in(&shards, 2).await, vec![dlv.clone(), dlv.clone()], "released into shard 2");
    assert!(waiting_in(&shards, 0).await.is_empty(), "nothing in shard 0");

    // Enable (after disable) resets the breaker in shard 2 too.
    q.breaker_report(&id, None, failure, &settings).await.expect("breaker opens again");
    cli.run_with(&["endpoint", "disable", id.as_str()], None, &env).await.ok();
    let enabled = cli.run_with(&["endpoint", "enable", id.as_str()], None, &env).await;
    assert!(enabled.ok().contains(&format!("enabled {id}")), "{}", enabled.stdout);
    assert_eq!(q.breaker_status(&id).await.expect("status").state, BreakerState::Closed);
}

/// `shards` names each shard's tag, slot and lists without reaching Redis (none runs here): the
/// lists a KEDA trigger watches. Three shards land in three thirds of the slot range.
#[tokio::test]
async fn shards_are_named_without_redis() {
    let out = tokio::process::Command::new(BIN)
        .args(["--redis-url", "redis://127.0.0.1:1", "--queue-shards", "3", "--json", "shards"])
        .env_remove("REDIS_URL")
        .env_remove("NOTIFY_QUEUE_SHARDS")
        .env_remove("NOTIFY_DRAIN_SHARDS")
        .output()
        .await
        .expect("cli runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["ready"], "{entraguard}:ready");
    let mut thirds: Vec<u64> = rows.iter().map(|r| r["slot"].as_u64().expect("slot") * 3 / 16384).collect();
    thirds.sort_unstable();
    assert_eq!(thirds, vec![0, 1, 2], "{rows:?}");
    for r in rows {
        let tag = r["tag"].as_str().expect("tag");
        assert_eq!(r["retry"], format!("{tag}:retry"));
    }
}

/// Runs the binary with stdout a pipe whose reader is gone before anything is written (what
/// `| head -1` comes to once head has its line): the command must end quietly, exit 0, without
/// the "failed printing to stdout: Broken pipe" panic (exit 101).
async fn run_into_closed_pipe(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = tokio::process::Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cli runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().await.expect("cli ends");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `entraguard-notify dlq show <id> | head -1` and every other printing command end quietly on
/// a closed pipe (it panicked with exit 101 in 3 of 6 tries, depending on when head closed).
#[tokio::test]
async fn printing_into_a_closed_pipe_ends_quietly() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let queue = queue(&redis).await;
    let id = deliver_and_die(&queue, &failed_delivery(&[500, 502, 503]), "gave up after 3 attempts").await;
    let url = redis.url();
    let commands: [&[&str]; 6] = [
        &["dlq", "show", &id],
        &["--json", "dlq", "show", &id],
        &["dlq", "list"],
        &["stats"],
        &["--queue-shards", "64", "shards"],
        &["endpoint", "list"],
    ];
    for args in commands {
        let mut all = vec!["--redis-url", url.as_str()];
        all.extend_from_slice(args);
        for _ in 0..3 {
            let (code, stderr) = run_into_closed_pipe(cli.dir.path(), &all).await;
            assert_eq!(code, Some(0), "{args:?} ends quietly: {stderr}");
            assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        }
    }
}
