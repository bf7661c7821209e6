use super::*;

const NOW: i64 = 1_780_000_000_000;

fn finding(tenant: &str, severity: &str) -> Event {
    Event::from_json(
        format!(
            r#"{{"event":"finding.new","tenant_id":"{tenant}","scan_id":"s1","finding":{{"id":"PIM-002","title":"t",
            "severity":"{severity}","category":"privileged-access","remediation_url":"https://x.example/f"}}}}"#
        )
        .as_bytes(),
    )
    .expect("valid event")
}

fn scan_failed(tenant: &str) -> Event {
    Event::from_json(
        format!(
            r#"{{"event":"scan.failed","tenant_id":"{tenant}","scan":{{"run_id":"r","kind":"full","environment":"prod","error":{{"kind":"network","message":"boom"}}}}}}"#
        )
        .as_bytes(),
    )
    .expect("valid event")
}

fn draft(matchers: &[&str]) -> SilenceDraft {
    SilenceDraft {
        matchers: matchers.iter().map(|s| (*s).to_owned()).collect(),
        duration: Some("3s".into()),
        author: "alice".into(),
        comment: "tenant B is being migrated".into(),
        ..SilenceDraft::default()
    }
}

fn silence(matchers: &[&str]) -> Silence {
    draft(matchers).validate(NOW).expect("valid silence")
}

fn reason(e: SilenceError) -> (&'static str, String) {
    let SilenceError::Field { field, reason } = e;
    (field, reason)
}

#[test]
fn a_severity_ceiling_matches_that_severity_and_every_lesser_one() {
    let s = silence(&["tenant=B", "severity<=medium"]);
    for (sev, muted) in
        [("critical", false), ("high", false), ("medium", true), ("low", true), ("info", true)]
    {
        assert_eq!(s.matches(&finding("B", sev), "ep_x"), muted, "B {sev}");
    }
    assert!(!s.matches(&finding("A", "low"), "ep_x"), "another tenant");
    assert_eq!(s.matchers.expressions(), ["tenant=B", "severity<=medium"]);
}

#[test]
fn one_of_matches_any_listed_value_and_every_matcher_must_match() {
    let s = silence(&["tenant=A,B", "severity=low,info", "category=privileged-access", "finding=PIM-002"]);
    assert!(s.matches(&finding("A", "low"), "ep_x"));
    assert!(s.matches(&finding("B", "info"), "ep_x"));
    assert!(!s.matches(&finding("C", "low"), "ep_x"));
    assert!(!s.matches(&finding("A", "medium"), "ep_x"));
    let other_category = silence(&["category=mfa"]);
    assert!(!other_category.matches(&finding("A", "low"), "ep_x"));
    let kinds = silence(&["kind=finding.severity_changed"]);
    assert!(!kinds.matches(&finding("A", "low"), "ep_x"));
}

#[test]
fn finding_matchers_never_match_an_event_without_a_finding() {
    let s = silence(&["severity<=critical", "kind=scan.failed,finding.new"]);
    assert!(!s.matches(&scan_failed("A"), "ep_x"));
    assert!(s.matches(&finding("A", "critical"), "ep_x"));
}

#[test]
fn scan_failed_is_muted_only_by_a_silence_naming_its_kind() {
    let tenant = silence(&["tenant=B"]);
    assert!(tenant.matches(&finding("B", "high"), "ep_x"));
    assert!(!tenant.matches(&scan_failed("B"), "ep_x"), "a tenant-wide silence leaves failed scans");
    let mut all = draft(&[]);
    all.match_all = true;
    assert!(!all.validate(NOW).expect("valid").matches(&scan_failed("B"), "ep_x"));
    let named = silence(&["tenant=B", "kind=scan.failed"]);
    assert!(named.matches(&scan_failed("B"), "ep_x"));
}

#[test]
fn an_endpoint_silence_mutes_only_that_endpoint() {
    let mut d = draft(&["tenant=B"]);
    d.endpoint_id = Some("ep_01JSAMPLE".into());
    let s = d.validate(NOW).expect("valid");
    assert!(s.matches(&finding("B", "low"), "ep_01JSAMPLE"));
    assert!(!s.matches(&finding("B", "low"), "ep_other"));
}

#[test]
fn a_silence_is_active_from_its_start_until_its_end_by_the_clock_given() {
    let set = SilenceSet::new(vec![silence(&["tenant=B"])]);
    let low = finding("B", "low");
    assert_eq!(set.silencing(&low, "ep_x", NOW).count(), 1);
    assert_eq!(set.silencing(&low, "ep_x", NOW + 2_999).count(), 1);
    assert_eq!(set.silencing(&low, "ep_x", NOW + 3_000).count(), 0, "over at its end");
    assert_eq!(set.silencing(&low, "ep_x", NOW - 1).count(), 0, "not yet");
    let s = silence(&["tenant=B"]);
    assert_eq!(s.state(NOW - 1), SilenceState::Pending);
    assert_eq!(s.state(NOW), SilenceState::Active);
    assert_eq!(s.state(NOW + 3_000), SilenceState::Expired);
}

#[test]
fn the_clock_estimate_is_enough_unless_an_edge_is_within_the_margin() {
    let mut d = draft(&["tenant=B"]);
    d.duration = Some("1h".into());
    let set = SilenceSet::new(vec![d.validate(NOW).expect("valid")]);
    let margin = Duration::from_secs(5);
    let low = finding("B", "low");
    assert!(set.may_match(&low));
    assert!(!set.may_match(&finding("A", "low")));
    assert!(set.settled(&low, NOW + 60_000, margin));
    assert!(!set.settled(&low, NOW + 2_000, margin), "2 s after its start");
    assert!(!set.settled(&low, NOW + 3_600_000 - 1_000, margin), "1 s before its end");
    assert!(set.settled(&finding("A", "low"), NOW + 1, margin), "it cannot match that event");
}

#[test]
fn input_errors_name_the_field_and_say_why() {
    let cases: [(SilenceDraft, &str, &str); 10] = [
        (draft(&["team=B"]), "matchers", "unknown field \"team\""),
        (draft(&["severity=urgent"]), "matchers", "not a severity"),
        (draft(&["severity<=low,info"]), "matchers", "one severity"),
        (draft(&["tenant<=B"]), "matchers", "only severity takes <="),
        (draft(&["tenant!=B"]), "matchers", "only = and severity<="),
        (draft(&["tenant=B", "tenant=C"]), "matchers", "given twice"),
        (draft(&["kind=finding.old"]), "matchers", "not an event kind"),
        (draft(&["tenant"]), "matchers", "not a matcher"),
        (draft(&["tenant=B,"]), "matchers", "empty"),
        (draft(&[]), "matchers", "match_all"),
    ];
    for (d, field, expected) in cases {
        let (f, r) = reason(d.validate(NOW).expect_err("refused"));
        assert_eq!(f, field, "{d:?}: {r}");
        assert!(r.contains(expected), "{d:?}: expected {expected:?} in {r:?}");
    }
    let mut d = draft(&["tenant=B"]);
    d.starts_at = Some("2026-07-01T00:00:00Z".into());
    d.duration = None;
    d.ends_at = Some("2026-06-30T00:00:00Z".into());
    let (f, r) = reason(d.validate(NOW).expect_err("end before start"));
    assert_eq!(f, "ends_at");
    assert!(r.contains("not after the start"), "{r}");
    d.ends_at = Some("2026-07-01T00:00:00Z".into());
    d.duration = Some("1h".into());
    assert_eq!(reason(d.validate(NOW).expect_err("both")).0, "duration");
    let mut d = draft(&["tenant=B"]);
    d.duration = Some("soon".into());
    assert_eq!(reason(d.validate(NOW).expect_err("bad duration")).0, "duration");
    d.duration = Some("400d".into());
    assert!(reason(d.validate(NOW).expect_err("too long")).1.contains("366 days"));
    let mut d = draft(&["tenant=B"]);
    d.author = " ".into();
    assert_eq!(reason(d.validate(NOW).expect_err("no author")).0, "author");
    let mut d = draft(&["tenant=B"]);
    d.match_all = true;
    assert_eq!(reason(d.validate(NOW).expect_err("both")).0, "match_all");
    let mut d = draft(&["tenant=B"]);
    d.ends_at = Some("2020-01-01T00:00:00Z".into());
    d.duration = None;
    d.starts_at = Some("2019-01-01T00:00:00Z".into());
    assert!(reason(d.validate(NOW).expect_err("past")).1.contains("already past"));
}

#[test]
fn the_api_body_refuses_unknown_fields() {
    let e = serde_json::from_str::<SilenceDraft>(r#"{"matchers":["tenant=B"],"duraton":"3s"}"#)
        .expect_err("unknown field");
    assert!(e.to_string().contains("duraton"), "{e}");
}

#[test]
fn expressions_read_back_to_the_same_matchers_and_stored_json_round_trips() {
    let s = silence(&[" severity = low , medium ", "kind=finding.new", "tenant=B"]);
    let again = Matchers::parse(s.matchers.expressions().iter().map(String::as_str)).expect("parses");
    assert_eq!(again, s.matchers);
    let json = serde_json::to_string(&s).expect("json");
    assert_eq!(serde_json::from_str::<Silence>(&json).expect("reads"), s);
    assert_eq!(rfc3339_ms(1_780_000_000_250), "2026-05-28T20:26:40.25Z");
    assert_eq!(rfc3339_ms(1_780_000_000_000), "2026-05-28T20:26:40Z");
}
