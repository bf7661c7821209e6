//! Settings from the environment, `.env` and flags; help, version, errors, a closed pipe.

use super::*;

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
