//! Slack, Teams and email through Redis and the worker, against receivers that answer what the
//! real services answer.

use std::time::Duration;

use entraguard_core::endpoint::TeamsFormat;
use entraguard_producer::Event;
use entraguard_testkit::{HttpReceiver, Reply, SmtpReceiver, SmtpStage};
use mail_parser::MessageParser;

use crate::harness::{Stack, finding_event};

const ALL: &[&str] =
    &["scan.completed", "scan.failed", "finding.new", "finding.severity_changed", "compliance.report_ready"];

fn one_of_each() -> Vec<Event> {
    let env = r#""tenant_id": "8d6310d1", "tenant_name": "contoso.onmicrosoft.com", "scan_id": "scan_1""#;
    [
        format!(r#"{{"event":"scan.completed",{env},"scan":{{"run_id":"r1","kind":"full","environment":"Contoso production","score":82,"grade":"B","new_findings":{{"high":1,"medium":2}}}}}}"#),
        format!(r#"{{"event":"scan.failed",{env},"scan":{{"run_id":"r2","kind":"incremental","environment":"Contoso production","error":{{"kind":"graph_throttled","message":"429 from Graph"}}}}}}"#),
        format!(r#"{{"event":"finding.new",{env},"finding":{{"id":"PIM-002","title":"Excessive permanent privileged roles","severity":"high","category":"privileged-access","affected":["a@contoso.com"],"remediation_url":"https://entraguard.example.com/f/PIM-002"}}}}"#),
        format!(r#"{{"event":"finding.severity_changed",{env},"finding":{{"id":"CA-014","title":"Legacy auth","severity":"critical","previous_severity":"medium","category":"conditional-access","affected":[],"remediation_url":"https://entraguard.example.com/f/CA-014"}}}}"#),
        format!(r#"{{"event":"compliance.report_ready",{env},"report":{{"framework":"SOC2","id":"rpt_1","score":91,"url":"https://entraguard.example.com/r/1"}}}}"#),
    ]
    .iter()
    .map(|j| Event::from_json(j.as_bytes()).expect("valid"))
    .collect()
}

fn smtp_args(smtp: &SmtpReceiver) -> Vec<String> {
    let port = smtp.port().to_string();
    [
        "--smtp-host",
        smtp.host(),
        "--smtp-port",
        &port,
        "--smtp-tls",
        "none",
        "--smtp-user",
        "notify",
        "--smtp-password",
        "pw-123",
        "--smtp-from",
        "EntraGuard <alerts@contoso.com>",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// The new user's tour: one endpoint per channel on all five events, one event of each kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_receives_five_well_formed_messages() {
    let stack = Stack::start().await;
    let slack = HttpReceiver::start();
    let teams = HttpReceiver::with_default(Reply::status(200).body("1"));
    let workflows = HttpReceiver::with_default(Reply::status(202));
    let hook = HttpReceiver::start();
    let smtp = SmtpReceiver::with_auth("notify", "pw-123");
    stack.add_endpoint("slack", &slack.url_for("/services/T0/B0/x"), ALL, None).await;
    stack.add_endpoint("teams", &teams.url(), ALL, None).await;
    let mut flow = crate::harness::endpoint("teams", &workflows.url(), ALL, None);
    flow.teams_format = Some(TeamsFormat::AdaptiveCard);
    stack.store.put(&flow).await.expect("stored");
    stack.add_endpoint("webhook", &hook.url(), ALL, None).await;
    stack.add_endpoint("email", "oncall@contoso.com", ALL, None).await;
    let args = smtp_args(&smtp);
    let mut overrides: Vec<&str> = args.iter().map(String::as_str).collect();
    overrides.extend(["--slack-pace", "50ms"]);
    let worker = stack.spawn_worker(&overrides);

    stack.producer.publish_batch(&one_of_each()).await.expect("published");
    let deadline = Duration::from_secs(60);
    for r in slack.wait_for_requests(5, deadline).await {
        let v = r.json();
        assert!(v["text"].as_str().is_some_and(|t| t.contains("EntraGuard")), "{v}");
        assert!(v["attachments"][0]["color"].as_str().is_some_and(|c| c.starts_with('#')));
        assert!(!v["attachments"][0]["fields"].as_array().expect("fields").is_empty());
    }
    for r in teams.wait_for_requests(5, deadline).await {
        let v = r.json();
        assert_eq!(v["@type"], "MessageCard");
        assert!(v["sections"][0]["activityTitle"].is_string() && v["themeColor"].is_string());
    }
    for r in workflows.wait_for_requests(5, deadline).await {
        let v = r.json();
        assert_eq!(v["type"], "message");
        assert_eq!(v["attachments"][0]["content"]["version"], "1.4");
    }
    let kinds: Vec<String> = hook
        .wait_for_requests(5, deadline)
        .await
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap_or("").to_owned())
        .collect();
    for k in ALL {
        assert!(kinds.iter().any(|g| g == k), "webhook missing {k}: {kinds:?}");
    }
    let mails = smtp.wait_for_messages(5, deadline).await;
    let mut subjects = Vec::new();
    for m in &mails {
        assert_eq!(m.auth_user.as_deref(), Some("notify"));
        assert_eq!(m.to, vec!["oncall@contoso.com".to_owned()]);
        let parsed = MessageParser::default().parse(&m.data).expect("MIME parses");
        let subject = parsed.subject().expect("subject").to_owned();
        assert!(
            subject.starts_with("[EntraGuard]") && subject.contains("contoso.onmicrosoft.com"),
            "{subject}"
        );
        assert_eq!(
            parsed.from().and_then(|f| f.first()).and_then(|a| a.address()),
            Some("alerts@contoso.com")
        );
        assert!(parsed.message_id().is_some_and(|id| id.starts_with("dlv_")), "{:?}", parsed.message_id());
        assert!(parsed.date().is_some());
        assert!(parsed.body_text(0).is_some_and(|t| t.contains("EntraGuard")));
        assert!(parsed.body_html(0).is_some_and(|h| h.contains("<table")));
        subjects.push(subject);
    }
    assert!(
        subjects.iter().any(|s| s.contains("FAILED")) && subjects.iter().any(|s| s.contains("HIGH finding")),
        "{subjects:?}"
    );
    stack.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(stack.stats().await.dead, 0);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_errors_dead_letter_at_once_with_slacks_reason_and_429_waits() {
    let stack = Stack::start().await;
    let cases = [(404, "no_service"), (400, "invalid_payload"), (410, "channel_is_archived")];
    let mut receivers = Vec::new();
    for (status, body) in cases {
        let r = HttpReceiver::with_default(Reply::status(status).body(body));
        stack.add_endpoint("slack", &r.url(), &["finding.new"], None).await;
        receivers.push(r);
    }
    let limited = HttpReceiver::start();
    limited.push_replies([Reply::status(429).header("retry-after", "1").body("rate_limited")]);
    stack.add_endpoint("slack", &limited.url(), &["finding.new"], None).await;
    let worker = stack.spawn_worker(&[]);
    stack.producer.publish(&finding_event("slack-errors")).await.expect("published");

    stack.wait_dead(3, Duration::from_secs(30)).await;
    let dead = stack.queue.dead_letters(0, 10).await.expect("list");
    for (status, body) in cases {
        let d = dead
            .iter()
            .find(|d| d.reason.contains(body))
            .unwrap_or_else(|| panic!("no dead letter naming {body}: {dead:?}"));
        assert_eq!(d.attempts.len(), 1, "{body}: one attempt, no retries");
        assert_eq!(d.attempts[0].status, Some(status));
    }
    for r in &receivers {
        assert_eq!(r.requests().len(), 1);
    }
    let got = limited.wait_for_requests(2, Duration::from_secs(30)).await;
    let gap = got[1].received_at.duration_since(got[0].received_at);
    assert!(gap >= Duration::from_secs(1), "429 retried after {gap:?}, before Retry-After");
    stack.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(stack.stats().await.dead, 3);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_200_with_a_failure_body_is_retried_and_slack_bursts_are_paced() {
    let stack = Stack::start().await;
    let teams = HttpReceiver::start();
    teams.push_replies([Reply::status(200).body("Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 with ContextId x")]);
    stack.add_endpoint("teams", &teams.url(), &["finding.new"], None).await;
    let slack = HttpReceiver::start();
    stack.add_endpoint("slack", &slack.url(), &["scan.failed"], None).await;
    let worker = stack.spawn_worker(&["--slack-pace", "300ms"]);

    stack.producer.publish(&finding_event("teams")).await.expect("published");
    let got = teams.wait_for_requests(2, Duration::from_secs(30)).await;
    assert_eq!(got[0].header("x-coderaft-delivery"), got[1].header("x-coderaft-delivery"));

    let failed: Vec<Event> = (0..4)
        .map(|i| {
            Event::from_json(format!(r#"{{"event":"scan.failed","tenant_id":"t{i}","scan":{{"run_id":"r","kind":"full","environment":"e","error":{{"kind":"network","message":"m"}}}}}}"#).as_bytes())
                .expect("valid")
        })
        .collect();
    stack.producer.publish_batch(&failed).await.expect("published");
    let got = slack.wait_for_requests(4, Duration::from_secs(30)).await;
    // The pace is Slack's default rate limit: send slots exactly 300 ms apart on Redis's clock
    // (tests/e2e/rate_limits.rs checks the slots themselves). At the receiver each arrival adds
    // the machine's scheduling jitter, so the check here is the span: an unpaced burst of four
    // arrives within milliseconds, paced ones 900 ms apart less the jitter of the first.
    let span = got[3].received_at.duration_since(got[0].received_at);
    assert!(span >= Duration::from_millis(600), "4 slack messages within {span:?}; paced at 300ms");
    stack.wait_drained(Duration::from_secs(30)).await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_4xx_retries_5xx_and_bad_credentials_dead_letter_with_the_reply() {
    let stack = Stack::start().await;
    let smtp = SmtpReceiver::with_auth("notify", "pw-123");
    smtp.fail_next(SmtpStage::Rcpt, 451, "4.3.0 try again later", 1);
    let ep = stack.add_endpoint("email", "oncall@contoso.com", &["finding.new"], None).await;
    let args = smtp_args(&smtp);
    let overrides: Vec<&str> = args.iter().map(String::as_str).collect();
    let worker = stack.spawn_worker(&overrides);
    stack.producer.publish(&finding_event("smtp-451")).await.expect("published");
    smtp.wait_for_messages(1, Duration::from_secs(30)).await;
    stack.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(stack.stats().await.dead, 0, "451 was retried and delivered");

    smtp.fail_next(SmtpStage::Rcpt, 550, "5.1.1 mailbox unavailable", 1);
    stack.producer.publish(&finding_event("smtp-550")).await.expect("published");
    stack.wait_dead(1, Duration::from_secs(30)).await;
    let d = &stack.queue.dead_letters(0, 1).await.expect("list")[0];
    assert!(d.reason.contains("mailbox unavailable"), "{}", d.reason);
    assert_eq!(d.attempts.len(), 1);
    assert_eq!(d.attempts[0].status, Some(550));
    worker.stop().await;

    // Wrong password: 535 is permanent (retrying would lock the account).
    let mut bad = smtp_args(&smtp);
    let i = bad.iter().position(|a| a == "pw-123").expect("password arg");
    bad[i] = "wrong".into();
    let overrides: Vec<&str> = bad.iter().map(String::as_str).collect();
    let worker = stack.spawn_worker(&overrides);
    stack.producer.publish(&finding_event("smtp-535")).await.expect("published");
    stack.wait_dead(2, Duration::from_secs(30)).await;
    let d = &stack.queue.dead_letters(0, 1).await.expect("list")[0];
    assert_eq!(d.endpoint_id.as_deref(), Some(ep.id.as_str()));
    assert!(d.reason.contains("535"), "{}", d.reason);
    assert_eq!(d.attempts.len(), 1);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_email_endpoints_and_no_smtp_settings_refuses_to_start() {
    let stack = Stack::start().await;
    stack.add_endpoint("email", "oncall@contoso.com", &["finding.new"], None).await;
    let out = tokio::process::Command::new(entraguard_testkit::bin_path("entraguard-worker"))
        .args(stack.worker_args())
        .env_remove("SMTP_HOST")
        .output()
        .await
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SMTP_HOST is not set"), "{err}");
}
