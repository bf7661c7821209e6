//! What ships in deploy/monitoring works: promtool checks the alert rules and runs their unit
//! tests, and a real Prometheus scraping a real worker answers every query of the Grafana
//! dashboard with data and evaluates every alert rule without error.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use entraguard_testkit::{HttpReceiver, PrometheusServer, Reply, free_port, wait_until};

use crate::harness::{Stack, finding_event};

/// The scrape job the alert rules and the dashboard expect (`job="entraguard-worker"`).
const JOB: &str = "entraguard-worker";
/// What the dashboard's Grafana variables stand for in a query sent straight to Prometheus.
const GRAFANA_INTERVALS: &[&str] =
    &["${__rate_interval}", "$__rate_interval", "${__interval}", "$__interval", "$__range"];

fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent: the repository root")
        .join("deploy/monitoring")
}

/// Runs `promtool` with `args` in deploy/monitoring; panics with its output unless it succeeds.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(monitoring_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}); it must be on PATH (Debian: apt-get install prometheus; ./dev test installs it)")
        });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {} failed ({}):\n{text}", args.join(" "), out.status);
    text
}

/// The names of the alerts in alerts.yaml (`- alert: Name` lines).
fn alert_names() -> Vec<String> {
    let rules = std::fs::read_to_string(monitoring_dir().join("alerts.yaml")).expect("read alerts.yaml");
    rules.lines().filter_map(|l| l.trim().strip_prefix("- alert:")).map(|n| n.trim().to_owned()).collect()
}

#[test]
fn promtool_checks_and_unit_tests_the_alert_rules() {
    let names = alert_names();
    let checked = promtool(&["check", "rules", "alerts.yaml"]);
    assert!(checked.contains(&format!("SUCCESS: {} rules found", names.len())), "{checked}");
    let tested = promtool(&["test", "rules", "alerts_test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert has at least one unit test that expects it to fire.
    let tests =
        std::fs::read_to_string(monitoring_dir().join("alerts_test.yaml")).expect("read alerts_test.yaml");
    let fires = |name: &str| {
        let mut lines = tests.lines().map(str::trim);
        while lines.any(|l| l == format!("alertname: {name}")) {
            if lines.next().is_some_and(|l| l == "exp_alerts:") {
                return true;
            }
        }
        false
    };
    let untested: Vec<&String> = names.iter().filter(|n| !fires(n)).collect();
    assert!(untested.is_empty(), "alerts without a unit test in which they fire: {untested:?}");
}

/// Every panel's target expressions in dashboard.json, after checking what makes it importable:
/// schema version, a `datasource` variable of Prometheus type, every panel and target on it.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(monitoring_dir().join("dashboard.json")).expect("read dashboard.json");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard.json is JSON");
    assert!(
        dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion {}",
        dash["schemaVersion"]
    );
    let vars = dash["templating"]["list"].as_array().expect("templating.list");
    assert!(
        vars.iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"),
        "no `datasource` variable of type prometheus: {vars:?}"
    );
    let on_variable = |ds: &serde_json::Value| ds["uid"] == "${datasource}" && ds["type"] == "prometheus";
    let mut queries = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for panel in dash["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("every panel has a title").to_owned();
        assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "duplicate panel id in {title:?}");
        assert!(on_variable(&panel["datasource"]), "panel {title:?} is not on ${{datasource}}");
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("panel {title:?} has no targets"));
        assert!(!targets.is_empty(), "panel {title:?} has no targets");
        for t in targets {
            assert!(on_variable(&t["datasource"]), "a target of {title:?} is not on ${{datasource}}");
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("a target of {title:?} has no expr"));
            queries.push((title.clone(), expr.to_owned()));
        }
    }
    queries
}

/// `expr` as Prometheus takes it: Grafana's interval variables as `1m` (with 1 s scrapes, 60
/// samples); any other variable is an error.
fn for_prometheus(expr: &str) -> String {
    let mut out = expr.to_owned();
    for var in GRAFANA_INTERVALS {
        out = out.replace(var, "1m");
    }
    assert!(!out.contains('$'), "a dashboard query uses a variable this test does not know: {expr}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scraping_a_worker_answers_every_dashboard_query_and_evaluates_every_alert() {
    let started = std::time::Instant::now();
    let queries = dashboard_queries();
    let stack = Stack::start().await;
    let ok = HttpReceiver::start();
    let broken = HttpReceiver::with_default(Reply::status(500));
    stack.add_endpoint("webhook", &ok.url(), &["finding.new"], None).await;
    stack.add_endpoint("slack", &broken.url(), &["finding.new"], None).await;
    let addr = format!("127.0.0.1:{}", free_port());
    // The broken endpoint's deliveries dead-letter on the schedule (its breaker kept closed).
    let _worker = stack.spawn_worker_process(&[
        "--breaker-failures",
        "10000",
        "--health-addr",
        &addr,
        "--retry-schedule",
        "100ms",
        "--slack-pace",
        "0s",
    ]);
    let prom = PrometheusServer::builder()
        .interval(Duration::from_secs(1))
        .scrape(JOB, &addr)
        .rule_file(monitoring_dir().join("alerts.yaml"))
        .start();

    for i in 0..3 {
        stack.producer.publish(&finding_event(&format!("monitoring-{i}"))).await.expect("published");
    }
    ok.wait_for_requests(3, Duration::from_secs(60)).await;
    stack.wait_dead(3, Duration::from_secs(60)).await;

    // Scraped twice or more since the last delivery counter appeared: every rate() has two
    // samples in its window. (Failed queries are "not yet": the server may be busy.)
    let scraped_twice = |expr: &'static str| {
        let prom = &prom;
        move || async move { prom.query(expr).is_ok_and(|r| !r.is_empty()) }
    };
    wait_until(
        Duration::from_secs(60),
        "prometheus to scrape the worker's final delivery counters twice",
        scraped_twice(
            "count_over_time(entraguard_deliveries_total{outcome=\"dead\"}[1m]) >= 2 \
             and on() count_over_time(entraguard_deliveries_total{outcome=\"delivered\"}[1m]) >= 2",
        ),
    )
    .await;
    let ups = prom.query(&format!("up{{job=\"{JOB}\"}}")).expect("query up");
    assert_eq!(ups.len(), 1, "one worker target: {ups:?}");
    assert_eq!(ups[0]["value"][1], "1", "the worker is up: {ups:?}");

    let mut empty = Vec::new();
    for (panel, expr) in &queries {
        match prom.query(&for_prometheus(expr)) {
            Ok(result) if !result.is_empty() => {}
            Ok(_) => empty.push(format!("{panel}: {expr} (no data)")),
            Err(e) => empty.push(format!("{panel}: {expr} ({e})")),
        }
    }
    assert!(
        empty.is_empty(),
        "{} of {} dashboard queries returned nothing:\n  {}\nprometheus log:\n{}",
        empty.len(),
        queries.len(),
        empty.join("\n  "),
        prom.log_tail()
    );

    // The alert rules as loaded by the real server: each evaluated against real series without
    // an error (a promtool test only covers the series it was given), none firing on a healthy
    // system.
    let rules = || {
        let (_, body) = prom.get("/api/v1/rules?type=alert").expect("GET /api/v1/rules");
        let json: serde_json::Value = serde_json::from_str(&body).expect("rules JSON");
        json["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    wait_until(Duration::from_secs(60), "every alert rule evaluated once", || async {
        let r = rules();
        !r.is_empty() && r.iter().all(|r| r["health"] != "unknown")
    })
    .await;
    let loaded = rules();
    let names: Vec<&str> = loaded.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, alert_names(), "the server loaded other rules than alerts.yaml names");
    let unhealthy: Vec<String> = loaded
        .iter()
        .filter(|r| r["health"] != "ok")
        .map(|r| format!("{}: {} {}", r["name"], r["health"], r["lastError"]))
        .collect();
    assert!(unhealthy.is_empty(), "alert rules failing to evaluate:\n{}", unhealthy.join("\n"));
    let firing = prom.query("ALERTS{alertstate=\"firing\"}").expect("query ALERTS");
    assert!(firing.is_empty(), "alerts firing on a healthy system: {firing:?}");
    eprintln!(
        "monitoring: {} dashboard queries and {} alert rules checked against a real prometheus in {:?}",
        queries.len(),
        loaded.len(),
        started.elapsed()
    );
}
