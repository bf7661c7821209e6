//! Endpoint commands: add, show, update, delete, rules, signatures, sealing keys and Recent Deliveries.

use super::*;

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

/// Issue 28: `--rate-limit` on add and update, refused with the form it expects, shown by
/// `endpoint show` with the deliveries waiting their turn, removed with `none`.
#[tokio::test]
async fn a_rate_limit_is_set_shown_refused_and_removed() {
    let redis = RedisServer::start();
    let cli = Cli::new(&redis);
    let base =
        ["endpoint", "add", "--name", "ITSM", "--channel", "webhook", "--target", HOOK, "--events", "all"];
    let bad = cli.run(&[&base[..], &["--rate-limit", "10/hour"]].concat()).await;
    bad.fails(2, "rate limit \"10/hour\": the period must be s (per second) or min (per minute)");
    let add = cli.run(&[&base[..], &["--rate-limit", "600/min"]].concat()).await;
    let id = line_value(add.ok(), "id");
    let show = cli.run(&["endpoint", "show", &id]).await;
    let out = show.ok();
    assert!(out.contains("rate limit: 600/min (one every 100ms)"), "{out}");
    assert!(out.contains("waiting:   0 for their turn"), "{out}");
    let json = cli.run(&["--json", "endpoint", "show", &id]).await;
    let v: serde_json::Value = serde_json::from_str(json.ok()).expect("json");
    assert_eq!((v["rate_limit"].as_str(), v["waiting"].as_u64()), (Some("600/min"), Some(0)), "{v}");
    let update = cli.run(&["endpoint", "update", &id, "--rate-limit", "none"]).await;
    assert!(update.ok().contains("rate limit: none"), "{}", update.ok());
}
