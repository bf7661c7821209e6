//! Endpoints: create, read, update, delete, validation, masking, Send test, rules, sealing keys.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_crud_validation_masking_and_send_test() {
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let api = Api { http: reqwest::Client::new(), base: admin.base.clone() };
    use reqwest::Method as M;

    // No token, wrong token: 401.
    let anon = reqwest::get(format!("{}/api/endpoints", admin.base)).await.expect("get");
    assert_eq!(anon.status().as_u16(), 401);
    let wrong = reqwest::Client::new()
        .get(format!("{}/api/endpoints", admin.base))
        .bearer_auth("nope")
        .send()
        .await
        .expect("get");
    assert_eq!(wrong.status().as_u16(), 401);

    // Validation: 422 naming the field; nothing stored.
    for (body, field) in [
        (
            json!({"name":"x","channel":"webhook","target":"ftp://x.example/","events":["finding.new"]}),
            "target",
        ),
        (
            json!({"name":"x","channel":"webhook","target":"https://x.example/","events":["finding.exploded"]}),
            "events",
        ),
        (json!({"name":"x","channel":"email","target":"not-an-address","events":["finding.new"]}), "target"),
        (
            json!({"name":"","channel":"slack","target":"https://hooks.slack.com/services/T/B/x","events":["finding.new"]}),
            "name",
        ),
        (json!({"name":"x"}), "body"),
        // What delivery would refuse anyway is refused here, naming the rule.
        (
            json!({"name":"x","channel":"webhook","target":"https://169.254.169.254/x","events":["finding.new"]}),
            "target",
        ),
        (
            json!({"name":"x","channel":"webhook","target":"https://10.1.2.3/x","events":["finding.new"]}),
            "target",
        ),
        (
            json!({"name":"x","channel":"teams","target":"https://contoso.webhook.office.com/\u{2026}","events":["finding.new"]}),
            "target",
        ),
    ] {
        let (status, v) = api.call(M::POST, "/api/endpoints", Some(body)).await;
        assert_eq!(status, 422, "{v}");
        assert_eq!(v["field"], field, "{v}");
    }
    assert_eq!(api.call(M::GET, "/api/endpoints", None).await.1, json!([]));

    // Create a signed webhook endpoint at a real receiver.
    let receiver = HttpReceiver::start();
    let (status, created) = api
        .call(M::POST, "/api/endpoints", Some(json!({
            "name": "SOAR", "channel": "webhook", "target": format!("{}/hook/SECRETPATHTOKEN", receiver.url()),
            "events": ["finding.new", "scan.failed"], "secret": "SIGNINGSECRET-0123456789"
        })))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["has_secret"], true);
    let shown = created.to_string();
    assert!(!shown.contains("SECRETPATHTOKEN") && !shown.contains("SIGNINGSECRET"), "{shown}");

    // A Slack endpoint on a foreign host is accepted with a warning.
    let (status, slack) = api
        .call(M::POST, "/api/endpoints", Some(json!({"name":"Slack","channel":"slack","target":"https://proxy.example.com/slack","events":["finding.new"]})))
        .await;
    assert_eq!(status, 201);
    assert!(slack["warnings"][0].as_str().is_some_and(|w| w.contains("not Slack")), "{slack}");

    // Send test: the production path, signed, and the outcome reported.
    let (status, report) = api.call(M::POST, &format!("/api/endpoints/{id}/test"), None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["delivered"], true, "{report}");
    assert_eq!(report["status"], 200);
    let got = receiver.wait_for_requests(1, Duration::from_secs(30)).await;
    assert!(got[0].header("x-coderaft-signature").is_some_and(|s| s.starts_with("sha256=")));
    assert_eq!(got[0].json()["finding"]["id"], "TEST-001");

    receiver.set_default(Reply::status(503).body("maintenance window"));
    let (_, report) = api.call(M::POST, &format!("/api/endpoints/{id}/test"), None).await;
    assert_eq!(report["delivered"], false);
    assert_eq!(report["status"], 503);
    assert!(report["error"].as_str().is_some_and(|e| e.contains("maintenance window")), "{report}");
    assert_eq!(receiver.requests().len(), 2, "Send test does not retry");

    // Update (secret kept when omitted), disable, enable.
    let (status, updated) = api
        .call(M::PUT, &format!("/api/endpoints/{id}"), Some(json!({
            "name": "SOAR renamed", "channel": "webhook", "target": receiver.url(), "events": ["finding.new"]
        })))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["name"], "SOAR renamed");
    assert_eq!(updated["has_secret"], true);
    assert_eq!(api.call(M::POST, &format!("/api/endpoints/{id}/disable"), None).await.1["enabled"], false);
    let (_, shown) = api.call(M::GET, &format!("/api/endpoints/{id}"), None).await;
    assert_eq!(shown["enabled"], false);
    assert_eq!(shown["breaker"]["state"], "closed", "the view carries the circuit breaker: {shown}");
    assert_eq!(shown["breaker"]["parked"], 0);
    assert_eq!(api.call(M::POST, &format!("/api/endpoints/{id}/enable"), None).await.1["enabled"], true);

    // Delete; unknown ids are 404.
    assert_eq!(api.call(M::DELETE, &format!("/api/endpoints/{id}"), None).await.0, 204);
    assert_eq!(api.call(M::GET, &format!("/api/endpoints/{id}"), None).await.0, 404);
    assert_eq!(api.call(M::POST, "/api/endpoints/ep_nope/test", None).await.0, 404);
    assert_eq!(api.call(M::GET, "/api/endpoints/garbage", None).await.0, 404);

    // The OpenAPI document is behind the token and names the paths.
    let anon = reqwest::get(format!("{}/api/openapi.json", admin.base)).await.expect("get");
    assert_eq!(anon.status().as_u16(), 401);
    let (status, doc) = api.call(M::GET, "/api/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/endpoints/{id}/test"]["post"].is_object());
}

/// An admin server without the deployment's sealing key refuses endpoint writes with a 409 that
/// names the setting, and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_writes_without_the_deployments_sealing_key_are_409() {
    use reqwest::Method as M;
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let api = Api { http: reqwest::Client::new(), base: admin.base.clone() };
    let mut conn = redis.connection().await;
    redis::cmd("SET").arg("{entraguard}:sealing").arg("1a2b3c4d").exec_async(&mut conn).await.expect("set");
    let (status, v) = api
        .call(M::POST, "/api/endpoints", Some(json!({
            "name": "SOAR", "channel": "webhook", "target": "https://soar.example.com/hook?token=QUERYTOKEN",
            "events": ["finding.new"], "secret": "SIGNINGSECRET-0123456789"
        })))
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"], "sealing_key_mismatch");
    let reason = v["reason"].as_str().expect("reason");
    assert!(reason.contains("1a2b3c4d") && reason.contains("NOTIFY_ENCRYPTION_KEY is not set"), "{reason}");
    assert!(!v.to_string().contains("QUERYTOKEN") && !v.to_string().contains("SIGNINGSECRET"));
    assert_eq!(api.call(M::GET, "/api/endpoints", None).await.1, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_rules_are_set_shown_replaced_and_validated() {
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let api = Api { http: reqwest::Client::new(), base: admin.base.clone() };
    use reqwest::Method as M;
    let base = json!({
        "name": "Tenant A Teams", "channel": "teams", "target": "https://contoso.webhook.office.com/webhookb2/x",
        "events": ["finding.new"],
    });
    let with = |rules: Value| {
        let mut b = base.clone();
        b["rules"] = rules;
        b
    };
    for (rules, field) in [
        (json!({"min_severity": "urgent"}), "rules.min_severity"),
        (json!({"digest": {"severities": ["low"], "max_wait": "soon"}}), "rules.digest.max_wait"),
        (json!({"digest": ["low"], "digest_max_wait": "1h"}), "rules.digest"),
        (
            json!({"quiet_hours": {"time_zone": "Mars/Olympus", "from": "20:00", "to": "07:00"}}),
            "rules.quiet_hours.time_zone",
        ),
    ] {
        let (status, v) = api.call(M::POST, "/api/endpoints", Some(with(rules))).await;
        assert_eq!((status, v["field"].clone()), (422, json!(field)), "{v}");
    }
    let (status, ep) = api
        .call(
            M::POST,
            "/api/endpoints",
            Some(with(json!({
                "tenants": ["tenant-a"], "min_severity": "medium", "dedupe_window": "24h", "digest": {"severities": ["low", "medium"]},
                "quiet_hours": {"time_zone": "Europe/Berlin", "from": "20:00", "to": "07:00", "days": ["mon", "fri"]},
            }))),
        )
        .await;
    assert_eq!(status, 201, "{ep}");
    let rules = &ep["rules"];
    assert_eq!(rules["tenants"], json!(["tenant-a"]));
    assert_eq!(rules["min_severity"], "medium");
    assert_eq!(rules["dedupe_window"], "1day");
    assert_eq!(rules["digest"], json!({"severities": ["medium", "low"], "max_wait": "1h"}));
    assert_eq!(rules["quiet_hours"]["days"], json!(["mon", "fri"]));
    assert_eq!(rules["quiet_hours"]["at_once"], "critical");
    let id = ep["id"].as_str().expect("id").to_owned();
    let (_, shown) = api.call(M::GET, &format!("/api/endpoints/{id}"), None).await;
    assert_eq!(shown["rules"], *rules);
    // PUT replaces: without rules, none are left.
    let (status, replaced) = api.call(M::PUT, &format!("/api/endpoints/{id}"), Some(base.clone())).await;
    assert_eq!(status, 200, "{replaced}");
    assert!(replaced.get("rules").is_none(), "{replaced}");
}

/// Issue 24: limits said in characters are counted in characters: 60 emoji (240 bytes) are a
/// valid name; 201 characters are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_name_limit_counts_characters_not_bytes() {
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let api = Api { http: reqwest::Client::new(), base: admin.base.clone() };
    let named = |name: String| json!({"name": name, "channel": "webhook", "target": "https://soar.example.com/hook", "events": ["finding.new"]});
    let (status, v) = api.call(reqwest::Method::POST, "/api/endpoints", Some(named("🔥".repeat(60)))).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["name"], "🔥".repeat(60));
    let (status, v) = api.call(reqwest::Method::POST, "/api/endpoints", Some(named("é".repeat(200)))).await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = api.call(reqwest::Method::POST, "/api/endpoints", Some(named("é".repeat(201)))).await;
    assert_eq!((status, v["field"].clone()), (422, json!("name")), "{v}");
    assert!(v["reason"].as_str().is_some_and(|r| r.contains("at most 200 printable characters")), "{v}");
}

/// Issue 28: a rate limit is validated by the shared rule (422 naming the field and the form),
/// shown by `GET`, and removed by `"none"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_validated_shown_and_removed() {
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let api = Api { http: reqwest::Client::new(), base: admin.base.clone() };
    use reqwest::Method as M;
    let body = |limit: &str| {
        json!({"name": "ITSM", "channel": "webhook", "target": "https://itsm.example.com/hook",
               "events": ["finding.new"], "rate_limit": limit})
    };
    let (status, err) = api.call(M::POST, "/api/endpoints", Some(body("10 per second"))).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["field"], "rate_limit", "{err}");
    assert!(err["reason"].as_str().is_some_and(|r| r.contains("e.g. 10/s or 600/min")), "{err}");
    let (status, ep) = api.call(M::POST, "/api/endpoints", Some(body("10/s"))).await;
    assert_eq!(status, 201, "{ep}");
    let path = format!("/api/endpoints/{}", ep["id"].as_str().expect("id"));
    let (_, shown) = api.call(M::GET, &path, None).await;
    assert_eq!(shown["rate_limit"], "10/s", "{shown}");
    assert_eq!(shown["waiting"], 0, "{shown}");
    let (status, put) = api.call(M::PUT, &path, Some(body("none"))).await;
    assert_eq!(status, 200, "{put}");
    assert!(put.get("rate_limit").is_none(), "removed: {put}");
}

/// Issue 23: an endpoint as `GET` shows it is accepted back by `PUT` as it is, and comes back
/// the same, for every field: name, channel, the (masked) target, events, enabled, the secret
/// (kept: never shown), teams_format, and every rule (tenants, floor, dedupe window, the digest
/// `{"severities","max_wait"}`, quiet hours with days and at_once). The URL itself is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetched_endpoint_sent_back_with_put_round_trips_every_field() {
    let redis = RedisServer::start();
    let admin = start(&redis).await;
    let api = Api { http: reqwest::Client::new(), base: admin.base.clone() };
    use reqwest::Method as M;
    let url = "https://soar.example.com/hooks/SOARPATHTOKEN1?token=QUERYTOKEN";
    let (status, ep) = api
        .call(
            M::POST,
            "/api/endpoints",
            Some(json!({
                "name": "SOAR ✓", "channel": "webhook", "target": url,
                "events": ["finding.new", "scan.failed", "endpoint.health_changed"], "enabled": false,
                "secret": "whsec-0123456789abcdef-SIGNING", "teams_format": "adaptive_card",
                "rate_limit": "600/min",
                "rules": {
                    "tenants": ["tenant-a", "tenant-b"], "min_severity": "low", "dedupe_window": "90m",
                    "digest": {"severities": ["low", "info"], "max_wait": "2h"},
                    "quiet_hours": {"time_zone": "Europe/Berlin", "from": "20:00", "to": "07:00",
                        "days": ["mon", "sat"], "at_once": "high"},
                },
            })),
        )
        .await;
    assert_eq!(status, 201, "{ep}");
    let id = ep["id"].as_str().expect("id").to_owned();
    let path = format!("/api/endpoints/{id}");
    let (_, first) = api.call(M::GET, &path, None).await;
    for field in [
        "name",
        "channel",
        "target",
        "events",
        "enabled",
        "has_secret",
        "teams_format",
        "rate_limit",
        "rules",
        "waiting",
    ] {
        assert!(!first[field].is_null(), "{field} shown: {first}");
    }
    for rule in ["tenants", "min_severity", "dedupe_window", "digest", "quiet_hours"] {
        assert!(!first["rules"][rule].is_null(), "rules.{rule} shown: {first}");
    }
    let (status, put) = api.call(M::PUT, &path, Some(first.clone())).await;
    assert_eq!(status, 200, "the fetched endpoint is accepted back: {put}");
    let (_, second) = api.call(M::GET, &path, None).await;
    let without_time = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().expect("object").remove("updated_at");
        v
    };
    assert_eq!(without_time(&second), without_time(&first));
    let stored = admin.shards.home().clone();
    let stored =
        entraguard_core::store::EndpointStore::new(stored.connection(), entraguard_core::KeySpace::default())
            .get(&id.parse().expect("id"))
            .await
            .expect("read")
            .expect("stored");
    assert_eq!(stored.target.url().map(|u| u.as_str()), Some(url), "the real URL is kept");
    assert_eq!(
        stored.secret.as_ref().map(|s| s.expose().to_owned()).as_deref(),
        Some("whsec-0123456789abcdef-SIGNING")
    );

    // Another endpoint's id, or a masked target that is not this endpoint's, is refused.
    let mut other = first.clone();
    other["id"] = json!("ep_01JOTHER000000000000000000");
    let (status, v) = api.call(M::PUT, &path, Some(other)).await;
    assert_eq!((status, v["field"].clone()), (422, json!("id")), "{v}");
    let mut masked = first.clone();
    masked["target"] = json!("https://other.example.com/****");
    let (status, v) = api.call(M::PUT, &path, Some(masked.clone())).await;
    assert_eq!((status, v["field"].clone()), (422, json!("target")), "{v}");
    let (status, v) = api.call(M::POST, "/api/endpoints", Some(first.clone())).await;
    assert_eq!((status, v["field"].clone()), (422, json!("target")), "a masked URL is not stored: {v}");
}
