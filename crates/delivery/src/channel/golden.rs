//! Golden tests: every (channel × event kind) payload, pinned in `golden/`. Reviewed by eye once;
//! a change to a message shows as a diff here. `UPDATE_GOLDEN=1 cargo test -p entraguard-worker
//! golden` rewrites the files after an intended change.

use std::path::PathBuf;

use entraguard_core::endpoint::TeamsFormat;

use super::{email, samples, slack, teams, webhook};

fn check(rel: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/channel/golden").join(rel);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!("missing golden file {}: run with UPDATE_GOLDEN=1 once and review it", path.display())
    });
    assert_eq!(
        actual,
        expected,
        "{} changed (UPDATE_GOLDEN=1 rewrites it after an intended change)",
        path.display()
    );
}

/// Pretty JSON; bidi controls (only the webhook's raw event carries them) written as `\uXXXX`
/// escapes, the same JSON, so no golden file reorders itself in an editor or a diff.
fn pretty(v: &serde_json::Value) -> String {
    let mut s = String::new();
    for c in serde_json::to_string_pretty(v).expect("json").chars() {
        if super::text::is_bidi_control(c) {
            s.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            s.push(c);
        }
    }
    s.push('\n');
    s
}

/// The plain samples as `<kind>.<ext>`, the hostile ones (every string field an attacker's
/// text: newlines forging list entries, `&amp;`, bidi controls, `<script>`, `|`, `*`, `_`, `~`,
/// backticks, `<!here>`, markdown links; see `samples::HOSTILE`) as `<kind>.hostile.<ext>`.
#[test]
fn every_channel_and_event_kind_matches_its_golden_file() {
    let plain = samples::all().into_iter().map(|(kind, e)| (kind.to_owned(), e));
    let hostile = samples::hostile_all().into_iter().map(|(kind, e)| (format!("{kind}.hostile"), e));
    for (kind, event) in plain.chain(hostile) {
        check(&format!("slack/{kind}.json"), &pretty(&slack::render(&event)));
        check(
            &format!("teams-messagecard/{kind}.json"),
            &pretty(&teams::render(&event, TeamsFormat::MessageCard)),
        );
        check(
            &format!("teams-adaptive/{kind}.json"),
            &pretty(&teams::render(&event, TeamsFormat::AdaptiveCard)),
        );
        let body: serde_json::Value =
            serde_json::from_slice(&webhook::body(&event)).expect("webhook body is JSON");
        check(&format!("webhook/{kind}.json"), &pretty(&body));
        let m = email::render(&event);
        check(&format!("email/{kind}.txt"), &format!("Subject: {}\n\n{}", m.subject, m.text));
        check(&format!("email/{kind}.html"), &format!("{}\n", m.html));
    }
}
