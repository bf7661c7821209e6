use std::process::Stdio;

use std::time::Duration;
use tokio::process::{Child, Command};

use entraguard_core::endpoint::{Endpoint, EndpointDraft, TargetPolicy};
use entraguard_core::keys::KeySpace;
use entraguard_core::queue::{Queue, QueueStats};
use entraguard_core::redis_conn::{RedisConfig, RedisUrl};
use entraguard_core::secret::Secret;
use entraguard_core::store::EndpointStore;
use entraguard_producer::{Event, Producer, ProducerConfig};
use entraguard_testkit::{RedisServer, bin_path, test_log_filter, wait_until};
use entraguard_worker::config::WorkerConfig;
use entraguard_worker::shutdown::ShutdownTrigger;
use entraguard_worker::{Shutdown, run};

pub const PREFIX: &str = "entraguard";

/// One test's world: its own Redis and handles on it.
pub struct Stack {
    pub redis: RedisServer,
    pub producer: Producer,
    pub queue: Queue,
    pub store: EndpointStore,
}

impl Stack {
    pub async fn start() -> Stack {
        Self::on(RedisServer::start()).await
    }

    pub async fn on(redis: RedisServer) -> Stack {
        init_test_tracing();
        let producer = Producer::connect(&ProducerConfig::from_url(&redis.url()).expect("url"))
            .await
            .expect("producer connects");
        let queue = Queue::connect(&RedisConfig::new(RedisUrl::parse(&redis.url()).expect("url")), keys())
            .await
            .expect("queue connects");
        let store = EndpointStore::new(queue.connection(), keys());
        Stack { redis, producer, queue, store }
    }

    /// Worker settings for tests: retries in milliseconds, plain HTTP and loopback allowed.
    pub fn worker_args(&self) -> Vec<String> {
        Self::worker_args_for(&self.redis.url())
    }

    pub fn worker_args_for(redis_url: &str) -> Vec<String> {
        [
            "--redis-url",
            redis_url,
            "--retry-schedule",
            "50ms,100ms,150ms",
            "--allow-http=true",
            "--allow-private-targets",
            "127.0.0.1/32",
            "--lease",
            "1s",
            "--fetch-block",
            "1s",
            "--delivery-timeout",
            "5s",
            "--shutdown-grace",
            "5s",
            // A breaker tripped by a busy machine's timeouts probes again within milliseconds.
            "--breaker-probe",
            "200ms",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    pub fn worker_config(&self, overrides: &[&str]) -> WorkerConfig {
        let mut args = vec!["entraguard-worker".to_owned()];
        args.extend(merge_args(self.worker_args(), overrides));
        WorkerConfig::from_args(args).expect("test worker config parses")
    }

    /// Runs a worker inside this test process.
    pub fn spawn_worker(&self, overrides: &[&str]) -> InProcessWorker {
        let config = self.worker_config(overrides);
        let (trigger, shutdown) = Shutdown::new();
        let task = tokio::spawn(async move { run(config, shutdown).await });
        InProcessWorker { trigger, task }
    }

    /// Runs the real `entraguard-worker` binary. It logs at `ENTRAGUARD_TEST_LOG` (default
    /// `warn`) to the test's stderr, so a failing test shows what its workers said.
    pub fn spawn_worker_process(&self, overrides: &[&str]) -> Child {
        spawn_worker_binary(&self.redis.url(), overrides)
    }

    pub async fn add_endpoint(
        &self,
        channel: &str,
        target: &str,
        events: &[&str],
        secret: Option<&str>,
    ) -> Endpoint {
        let ep = endpoint(channel, target, events, secret);
        self.store.put(&ep).await.expect("endpoint stored");
        ep
    }

    pub async fn stats(&self) -> QueueStats {
        self.queue.stats().await.expect("stats")
    }

    /// Waits until nothing is ready, in flight or scheduled.
    pub async fn wait_drained(&self, deadline: Duration) {
        // A failed read (the test's own connection reconnecting after a Redis restart) is "not yet".
        wait_until(
            deadline,
            "queue drained (ready, retrying, parked, processing and scheduled all 0)",
            || async {
                self.queue.stats().await.is_ok_and(|s| {
                    s.ready == 0 && s.retrying == 0 && s.parked == 0 && s.processing == 0 && s.scheduled == 0
                })
            },
        )
        .await;
    }

    pub async fn wait_dead(&self, n: u64, deadline: Duration) {
        wait_until(deadline, &format!("{n} dead letters"), || async {
            self.queue.stats().await.is_ok_and(|s| s.dead >= n)
        })
        .await;
    }
}

/// Logs of in-process workers (`spawn_worker`): at `ENTRAGUARD_TEST_LOG` (default `warn`), like
/// the spawned worker processes, through libtest's capture, so a test's log shows when it fails
/// (or with `--nocapture`). Installed once per test binary.
fn init_test_tracing() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_new(test_log_filter())
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    });
}

/// The defaults with `overrides` applied: a flag given in `overrides` replaces the default's
/// value (list flags would otherwise add to it).
/// Runs the real `entraguard-worker` binary against `redis_url` with the test settings plus
/// `overrides`. It logs at `ENTRAGUARD_TEST_LOG` (default `warn`) to the test's stderr, so a
/// failing test shows what its workers said.
pub fn spawn_worker_binary(redis_url: &str, overrides: &[&str]) -> Child {
    spawn_worker_binary_at(&bin_path("entraguard-worker"), redis_url, overrides)
}

/// [`spawn_worker_binary`] of the worker binary at `bin` (today's, or an earlier release's).
pub fn spawn_worker_binary_at(bin: &std::path::Path, redis_url: &str, overrides: &[&str]) -> Child {
    worker_command_at(bin, redis_url, overrides).spawn().expect("worker binary starts")
}

/// The command [`spawn_worker_binary_at`] runs, for a test that sets more of its environment.
pub fn worker_command_at(bin: &std::path::Path, redis_url: &str, overrides: &[&str]) -> Command {
    let mut command = Command::new(bin);
    command
        .args(merge_args(Stack::worker_args_for(redis_url), overrides))
        .env_remove("REDIS_URL")
        .env("RUST_LOG", test_log_filter())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

/// Starts today's worker binary with `overrides` (and no shard settings from the environment)
/// where it must refuse to start; waits (at most a minute) for it to exit and returns its exit
/// code and stderr. `what` says what it must not do instead of exiting.
pub async fn refused_worker_binary(redis_url: &str, overrides: &[&str], what: &str) -> (Option<i32>, String) {
    let child = Command::new(bin_path("entraguard-worker"))
        .args(merge_args(Stack::worker_args_for(redis_url), overrides))
        .env_remove("REDIS_URL")
        .env_remove("NOTIFY_QUEUE_SHARDS")
        .env_remove("NOTIFY_DRAIN_SHARDS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("worker binary starts");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the worker exits instead of {what}"))
        .expect("worker output");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

pub fn merge_args(defaults: Vec<String>, overrides: &[&str]) -> Vec<String> {
    let flag_of = |a: &str| a.split('=').next().unwrap_or(a).to_owned();
    let overridden: Vec<String> =
        overrides.iter().filter(|a| a.starts_with("--")).map(|a| flag_of(a)).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < defaults.len() {
        let a = &defaults[i];
        let takes_value = !a.contains('=') && defaults.get(i + 1).is_some_and(|v| !v.starts_with("--"));
        if overridden.contains(&flag_of(a)) {
            i += if takes_value { 2 } else { 1 };
            continue;
        }
        out.push(a.clone());
        if takes_value {
            out.push(defaults[i + 1].clone());
            i += 1;
        }
        i += 1;
    }
    out.extend(overrides.iter().map(|s| (*s).to_owned()));
    out
}

/// A validated endpoint (plain http allowed), not stored: for tests that store it their own way.
pub fn endpoint(channel: &str, target: &str, events: &[&str], secret: Option<&str>) -> Endpoint {
    EndpointDraft {
        name: format!("{channel} test"),
        channel: channel.into(),
        target: target.into(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        enabled: true,
        secret: secret.map(Secret::new),
        ed25519: None,
        teams_format: None,
        rate_limit: None,
        rules: Default::default(),
    }
    .validate(TargetPolicy { allow_http: true })
    .expect("valid endpoint")
}

pub fn keys() -> KeySpace {
    KeySpace::new(PREFIX).expect("prefix")
}

pub struct InProcessWorker {
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<Result<(), entraguard_worker::runner::RunError>>,
}

impl InProcessWorker {
    /// Asks for shutdown and waits for the worker to return.
    pub async fn stop(self) {
        self.trigger.trigger();
        let res =
            tokio::time::timeout(Duration::from_secs(15), self.task).await.expect("worker stops within 15 s");
        res.expect("worker task did not panic").expect("worker returned Ok");
    }
}

/// A `scan.completed` event of `tenant` (scan `s1`).
pub fn scan_completed(tenant: &str) -> Event {
    Event::from_json(
        format!(
            r#"{{"event":"scan.completed","tenant_id":"{tenant}","scan_id":"s1","scan":{{"run_id":"r1",
            "kind":"full","environment":"prod","score":80,"grade":"B"}}}}"#
        )
        .as_bytes(),
    )
    .expect("valid scan event")
}

/// A `finding.new` event of `tenant` for finding `id` at `severity` (scan `s1`).
pub fn finding(tenant: &str, id: &str, severity: &str) -> Event {
    Event::from_json(
        format!(
            r#"{{"event":"finding.new","tenant_id":"{tenant}","scan_id":"s1","finding":{{"id":"{id}",
            "title":"Finding {id}","severity":"{severity}","category":"privileged-access",
            "remediation_url":"https://eg.example.com/api/entraguard/findings/{id}"}}}}"#
        )
        .as_bytes(),
    )
    .expect("valid finding")
}

/// [`finding_event`] at severity low: not urgent, so with fair share it waits in its tenant's
/// flow and its deliveries in their endpoints' flows.
pub fn low_finding_event(tenant: &str) -> Event {
    let json = serde_json::to_string(&finding_event(tenant)).expect("json").replace(r#""high""#, r#""low""#);
    Event::from_json(json.as_bytes()).expect("a low finding")
}

/// A sample `finding.new` event for `tenant`.
pub fn finding_event(tenant: &str) -> Event {
    Event::from_json(
        format!(
            r#"{{
            "event": "finding.new",
            "tenant_id": "{tenant}",
            "tenant_name": "contoso.onmicrosoft.com",
            "scan_id": "scan_2026-04-28T07:00Z",
            "finding": {{
                "id": "PIM-002",
                "title": "Excessive permanent privileged roles",
                "severity": "high",
                "category": "privileged-access",
                "affected": ["admin@contoso.com", "ops@contoso.com"],
                "remediation_url": "https://entraguard.example.com/api/entraguard/findings/PIM-002"
            }}
        }}"#
        )
        .as_bytes(),
    )
    .expect("sample event is valid")
}
