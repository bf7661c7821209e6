//! The `entraguard-admin` binary: its `--help` lists exactly the settings it reads, booleans and
//! bad values as the shared settings layer reads them, and plain (uncoloured) log lines when its
//! stderr is not a terminal.

use std::process::Stdio;
use std::time::Duration;

use entraguard_testkit::RedisServer;
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_entraguard-admin");

fn admin(dir: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear().current_dir(dir).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn help_lists_the_admin_settings_and_none_of_the_workers_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = admin(dir.path()).arg("--help").output().await.expect("runs");
    let help = String::from_utf8_lossy(&out.stdout);
    for read in [
        "--listen",
        "--token",
        "--secure-cookie",
        "--insecure-local-only",
        "--redis-url",
        "--redis-ca-cert",
        "--key-prefix",
        "--redis-timeout",
        "--encryption-key",
        "--encryption-old-keys",
        "--allow-http",
        "--allow-private-targets",
        "--delivery-timeout",
        "--smtp-host",
        "--log-format",
    ] {
        assert!(help.contains(read), "--help lists {read}:\n{help}");
    }
    for unused in [
        "--concurrency",
        "--endpoint-concurrency",
        "--slack-pace",
        "--breaker-failures",
        "--breaker-probe",
        "--endpoint-disable-after",
        "--retry-schedule",
        "--max-retry-after",
        "--lease",
        "--shutdown-grace",
        "--fetch-block",
        "--health-addr",
    ] {
        assert!(
            !help.contains(unused),
            "--help lists {unused}, a worker setting the admin server ignores:\n{help}"
        );
    }
}

#[tokio::test]
async fn a_bad_boolean_names_the_environment_variable_and_1_is_true() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = admin(dir.path()).env("NOTIFY_ADMIN_SECURE_COOKIE", "maybe").output().await.expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("NOTIFY_ADMIN_SECURE_COOKIE") && stderr.contains("--secure-cookie"),
        "the error names the variable and the flag: {stderr}"
    );
}

#[tokio::test]
async fn text_logs_to_a_pipe_carry_no_colour_codes() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = admin(dir.path())
        .args(["--insecure-local-only", "--allow-http=1"])
        .env("REDIS_URL", redis.url())
        .env("NOTIFY_ADMIN_ADDR", "127.0.0.1:0")
        .env("NOTIFY_ADMIN_SECURE_COOKIE", "YES")
        .spawn()
        .expect("starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = Vec::new();
    let listening = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let done = line.contains("admin server listening");
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    let _ = child.kill().await;
    assert_eq!(listening, Ok(true), "the server started (booleans 1 and YES read): {seen:#?}");
    let text = seen.join("\n");
    assert!(!text.contains('\u{1b}'), "no ANSI escape codes in piped logs: {text:?}");
}
