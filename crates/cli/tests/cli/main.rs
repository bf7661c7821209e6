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

mod dlq;
mod endpoints;
mod publish;
mod settings;
mod shards;
mod stats;
