//! Property tests of the text-safety layer (issue 24): every event kind, rendered for every
//! channel with arbitrary strings in every field, has exactly the structure of the same message
//! with plain strings — the same JSON shape and, inside each text, the same lines, list entries,
//! links, mentions, emphasis and tags as the channel's reader parses them: Slack's mrkdwn
//! control characters, CommonMark (pulldown-cmark, the grammar of the markdown-it that Adaptive
//! Cards hosts use) for Teams, HTML tags for the email's HTML, lines for its text part.

use entraguard_core::endpoint::TeamsFormat;
use entraguard_core::event::Event;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use pulldown_cmark::{Event as Md, Options, Parser, TagEnd};
use serde_json::{Map, Value, json};

use super::text::is_bidi_control;
use super::{email, samples, slack, teams, webhook};

/// Pieces of hostile text: any character at all (controls, bidi, unassigned), and the
/// fragments that make structure in some channel.
fn piece() -> impl Strategy<Value = String> {
    let fragments = vec![
        "\n",
        "\r\n",
        "\t",
        " ",
        "    ",
        "&",
        "&amp;",
        "&lt;b&gt;",
        "&#10;",
        "<",
        ">",
        "<!here>",
        "<script>",
        "<https://evil.example|x>",
        "|",
        "*",
        "**",
        "_",
        "~",
        "~~",
        "`",
        "```",
        "~~~",
        "#",
        "# ",
        "- ",
        "+ ",
        "* ",
        "1. ",
        "1) ",
        "> ",
        "[",
        "]",
        "](https://evil.example)",
        "![",
        "\\",
        "{{",
        "}}",
        "=",
        "---",
        "\u{202E}",
        "\u{2066}",
        "\u{2069}",
        "\u{200E}",
        "\u{200F}",
        "\u{061C}",
        "\u{2028}",
        "\u{2029}",
        "\u{85}",
        "\u{200B}",
        "\n• *CRITICAL* FAKE-999 ",
        "\n- CRITICAL FAKE-999 ",
        "\n  CRITICAL FAKE-999 ",
        ":x:",
        "a",
        "Z",
        "9",
        "é",
        "•",
        "\"",
        "'",
    ];
    prop_oneof![
        1 => any::<char>().prop_map(String::from),
        3 => prop::sample::select(fragments).prop_map(str::to_owned),
    ]
}

/// A hostile string: a few pieces (short enough that a 50-entry digest stays under the Teams
/// card limit, where the card would shorten itself and change its structure on purpose).
fn hostile() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..5).prop_map(|v| v.concat())
}

/// Cycles through `strings`.
fn cycling(strings: &[String]) -> impl FnMut() -> String + '_ {
    let mut i = 0;
    move || {
        let s = strings[i % strings.len()].clone();
        i += 1;
        s
    }
}

fn plain() -> impl FnMut() -> String {
    || "plain".to_owned()
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

// ---- What each channel's reader sees as structure ----

/// A JSON payload's shape: keys, array lengths, and for each string the structure `text` finds
/// in it (given its key). Numbers and booleans (`ts`, `short`) are layout, not structure.
fn shape(v: &Value, key: &str, text: &dyn Fn(&str, &str) -> Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v, k, text))).collect::<Map<_, _>>())
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| shape(v, key, text)).collect()),
        Value::String(s) => text(key, s),
        _ => Value::Null,
    }
}

/// Slack: `&` outside Slack's three entities, and the `<` `>` that open links and mentions.
fn slack_controls(s: &str) -> Value {
    let bare_amp = s.match_indices('&').filter(|(i, _)| {
        let rest = &s[*i..];
        !(rest.starts_with("&amp;") || rest.starts_with("&lt;") || rest.starts_with("&gt;"))
    });
    json!({ "lines": s.split('\n').count(), "<": s.matches('<').count(), ">": s.matches('>').count(), "&": bare_amp.count() })
}

/// Slack mrkdwn: per line, whether it reads as a digest entry (`• ` then an active bold) and
/// how many formatting characters Slack could act on (at a word boundary, not set apart by
/// zero-width spaces).
fn slack_mrkdwn(s: &str) -> Value {
    let lines: Vec<Value> = s
        .split('\n')
        .map(|l| {
            let chars: Vec<char> = l.chars().collect();
            let active: Vec<usize> = (0..chars.len())
                .filter(|&i| {
                    let c = chars[i];
                    if !matches!(c, '*' | '_' | '~' | '`') {
                        return false;
                    }
                    let prev = i.checked_sub(1).map(|j| chars[j]);
                    let next = chars.get(i + 1).copied();
                    let inert = prev == Some('\u{200B}') && next == Some('\u{200B}');
                    let mid_word = c != '`'
                        && prev.is_some_and(char::is_alphanumeric)
                        && next.is_some_and(char::is_alphanumeric);
                    !inert && !mid_word
                })
                .collect();
            json!({ "entry": l.starts_with("• *") && active.first() == Some(&2), "marks": active.len() })
        })
        .collect();
    json!({ "controls": slack_controls(s), "lines": lines })
}

fn slack_shape(v: &Value) -> Value {
    shape(v, "", &|key, s| match key {
        "text" | "value" => slack_mrkdwn(s),
        "color" | "title_link" => Value::Null,
        _ => slack_controls(s),
    })
}

/// CommonMark with the tables and strikethrough markdown-it enables: every element but
/// paragraphs and text (list items, links, images, emphasis, code, HTML, headings, quotes,
/// line breaks), plus Adaptive Cards' `{{DATE(…)}}` / `{{TIME(…)}}` functions.
fn markdown(s: &str) -> Value {
    let elements: Vec<String> = Parser::new_ext(s, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH)
        .filter_map(|e| match e {
            Md::Text(_) | Md::Start(_) | Md::End(TagEnd::Paragraph) => None,
            Md::End(t) => Some(format!("{t:?}")),
            other => Some(format!("{other:?}").split('(').next().unwrap_or_default().to_owned()),
        })
        .collect();
    json!({ "elements": elements, "functions": s.matches("{{").count() })
}

fn teams_shape(v: &Value) -> Value {
    shape(v, "", &|key, s| match key {
        "text" | "value" | "title" | "name" | "activityTitle" | "activitySubtitle" => markdown(s),
        // Plain text (the notification's summary) or ours (types, colours, URLs).
        "summary" => json!({ "lines": s.lines().count() }),
        _ => Value::Null,
    })
}

/// HTML: every tag with its attribute names, in order. Event text is escaped, so every `<` is
/// ours; an attribute value that escaped its quotes would show as an extra attribute.
fn html_tags(s: &str) -> Result<Vec<String>, String> {
    let mut tags = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let mut tag = String::new();
        let mut i = 0;
        let b = after.as_bytes();
        while i < b.len() && b[i] != b'>' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        tag.push_str(&after[..i]);
        loop {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i >= b.len() {
                return Err(format!("unclosed tag {tag}"));
            }
            if b[i] == b'>' {
                break;
            }
            let name_end = after[i..]
                .find('=')
                .map(|n| i + n)
                .ok_or_else(|| format!("attribute without value in {tag}"))?;
            tag.push(' ');
            tag.push_str(&after[i..name_end]);
            if b.get(name_end + 1) != Some(&b'"') {
                return Err(format!("unquoted attribute in {tag}"));
            }
            let close =
                after[name_end + 2..].find('"').ok_or_else(|| format!("unclosed attribute in {tag}"))?;
            i = name_end + 2 + close + 1;
        }
        tags.push(tag);
        rest = &after[i + 1..];
    }
    Ok(tags)
}

/// Plain text: its lines, each as its indentation and whether it is empty.
fn text_lines(s: &str) -> Vec<(usize, bool)> {
    s.split('\n').map(|l| (l.len() - l.trim_start().len(), l.trim().is_empty())).collect()
}

/// No line breaks or bidi controls outside `allowed` line breaks, in text a person reads.
fn no_hidden_characters(what: &str, s: &str, newlines: bool) -> Result<(), TestCaseError> {
    let bad = s.chars().find(|&c| {
        is_bidi_control(c)
            || c == '\u{2028}'
            || c == '\u{2029}'
            || (c.is_control() && !(newlines && c == '\n'))
    });
    prop_assert!(bad.is_none(), "{what} carries U+{:04X}: {s:?}", bad.map_or(0, |c| c as u32));
    Ok(())
}

/// What a CommonMark reader shows of `s`: its text, markup gone, entities and escapes decoded
/// (and, as of any paragraph, the ends trimmed: compare with [`trimmed`]).
fn markdown_shown(s: &str) -> String {
    Parser::new_ext(s, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH)
        .filter_map(|e| match e {
            Md::Text(t) | Md::Code(t) => Some(t.into_string()),
            _ => None,
        })
        .collect()
}

fn trimmed(s: &str) -> String {
    s.trim().to_owned()
}

/// What Slack shows of `s`: its three entities decoded, zero-width spaces unseen.
fn slack_shown(s: &str) -> String {
    s.replace('\u{200B}', "").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// What a browser shows of HTML text.
fn html_shown(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Each channel shows the headline and every fact's value as the summary has them (one line,
/// bidi controls visible): escaping hides nothing and adds nothing (`&lt;b&gt;` stays that text).
fn shows_the_text_as_typed(event: &Event) -> Result<(), TestCaseError> {
    let s = super::summary::summarize(event);
    let headline = s.headline();
    let values: Vec<&str> = s.facts.iter().map(|(_, v)| v.as_str()).collect();

    // Slack's zero-width spaces are unseen, the event's own too.
    let unseen = |s: &str| s.replace('\u{200B}', "");
    let sl = slack::render(event);
    prop_assert_eq!(
        slack_shown(sl["attachments"][0]["fallback"].as_str().unwrap_or_default()),
        unseen(&headline)
    );
    let shown: Vec<String> = sl["attachments"][0]["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .take(values.len())
                .map(|f| slack_shown(f["value"].as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    prop_assert_eq!(shown, values.iter().map(|v| unseen(v)).collect::<Vec<_>>(), "slack fields");

    let mc = teams::render(event, TeamsFormat::MessageCard);
    let section = &mc["sections"][0];
    prop_assert_eq!(
        markdown_shown(section["activityTitle"].as_str().unwrap_or_default()),
        trimmed(&headline)
    );
    let shown: Vec<String> = section["facts"]
        .as_array()
        .map(|f| {
            f.iter()
                .take(values.len())
                .map(|f| markdown_shown(f["value"].as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    prop_assert_eq!(shown, values.iter().map(|v| trimmed(v)).collect::<Vec<_>>(), "teams facts");
    let ac = teams::render(event, TeamsFormat::AdaptiveCard);
    let title = ac["attachments"][0]["content"]["body"][0]["text"].as_str().unwrap_or_default();
    prop_assert_eq!(markdown_shown(title), trimmed(&headline));

    let html = email::render(event).html;
    let h2 = html.split("<h2").nth(1).and_then(|h| h.split_once('>')).map(|(_, h)| h).unwrap_or_default();
    prop_assert_eq!(html_shown(h2.split("</h2>").next().unwrap_or_default()), headline);
    Ok(())
}

/// Renders `hostile` and `plain` (the same event with plain strings) for every channel and
/// compares what each channel's reader would see as structure.
fn same_structure(hostile: &Event, plain: &Event) -> Result<(), TestCaseError> {
    shows_the_text_as_typed(hostile)?;
    let (hs, ps) = (slack::render(hostile), slack::render(plain));
    prop_assert_eq!(slack_shape(&hs), slack_shape(&ps), "slack: {}", hs);
    no_hidden_characters("slack", &hs.to_string(), false)?;

    for format in [TeamsFormat::MessageCard, TeamsFormat::AdaptiveCard] {
        let (ht, pt) = (teams::render(hostile, format), teams::render(plain, format));
        let size = serde_json::to_vec(&ht).map_or(0, |b| b.len());
        prop_assume!(size <= teams::MAX_CARD_BYTES, "a card this large shortens itself");
        prop_assert_eq!(teams_shape(&ht), teams_shape(&pt), "teams {:?}: {}", format, ht);
        no_hidden_characters("teams", &ht.to_string(), false)?;
    }

    let (he, pe) = (email::render(hostile), email::render(plain));
    no_hidden_characters("email subject", &he.subject, false)?;
    prop_assert_eq!(text_lines(&he.text), text_lines(&pe.text), "email text:\n{}", he.text);
    no_hidden_characters("email text", &he.text, true)?;
    let tags =
        html_tags(&he.html).map_err(|e| TestCaseError::fail(format!("email html: {e}\n{}", he.html)))?;
    prop_assert_eq!(Ok(tags), html_tags(&pe.html), "email html:\n{}", he.html);
    no_hidden_characters("email html", &he.html, false)?;

    // The webhook carries the event as it came: the same shape, every value back exactly.
    let body: Value =
        serde_json::from_slice(&webhook::body(hostile)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let plain_body: Value =
        serde_json::from_slice(&webhook::body(plain)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let keys = |_: &str, _: &str| Value::Null;
    prop_assert_eq!(shape(&body, "", &keys), shape(&plain_body, "", &keys));
    let back: Event = serde_json::from_value(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, hostile);
    Ok(())
}

proptest! {
    #![proptest_config(config(64))]

    /// Every kind but the digest (which has its own tests below), every channel.
    #[test]
    fn any_text_in_any_field_adds_no_structure(strings in prop::collection::vec(hostile(), 1..24)) {
        for (kind, sample) in samples::all() {
            if kind == "finding.digest" {
                continue;
            }
            let hostile = samples::with_strings(&sample, &mut cycling(&strings));
            let plain = samples::with_strings(&sample, &mut plain());
            same_structure(&hostile, &plain).map_err(|e| match e {
                TestCaseError::Fail(why) => TestCaseError::fail(format!("{kind}: {why}")),
                reject => reject,
            })?;
        }
    }

    /// A digest with every listed finding's id, title, category and link hostile.
    #[test]
    fn a_digest_of_hostile_findings_lists_each_once(
        n in 1usize..=60,
        strings in prop::collection::vec(hostile(), 1..64),
    ) {
        let hostile = samples::digest_of(n, &mut cycling(&strings));
        let plain = samples::digest_of(n, &mut plain());
        same_structure(&hostile, &plain)?;
    }
}

proptest! {
    // Few cases: each builds and renders a digest of 5 000 findings (20 000 strings).
    #![proptest_config(config(6))]

    #[test]
    fn a_digest_of_five_thousand_hostile_findings_lists_fifty(strings in prop::collection::vec(hostile(), 1..200)) {
        let hostile = samples::digest_of(5_000, &mut cycling(&strings));
        let plain = samples::digest_of(5_000, &mut plain());
        same_structure(&hostile, &plain)?;
        let a = &slack::render(&hostile)["attachments"][0]["fields"];
        let list = a.as_array().and_then(|f| f.last()).and_then(|f| f["value"].as_str()).unwrap_or_default();
        prop_assert_eq!(list.lines().filter(|l| l.starts_with("• *")).count(), 50);
        prop_assert!(list.ends_with("… and 4950 more"), "{}", list);
    }
}

/// Issue 24's digest: every listed title (and id, category, link) an attacker's text — newlines
/// forging `• *CRITICAL* FAKE-999` / `- CRITICAL` / indented lines, `&lt;b&gt;`, bidi controls,
/// `<script>`, `<!here>`, markdown links. Each channel lists exactly one entry per listed
/// finding and then "… and 3 more".
#[test]
fn a_hostile_digest_lists_one_entry_per_finding_in_every_channel() {
    let (_, digest) = samples::hostile_all()
        .into_iter()
        .find(|(kind, _)| *kind == "finding.digest")
        .expect("a digest sample");
    let listed = 50;

    let slack = slack::render(&digest);
    let fields = slack["attachments"][0]["fields"].as_array().expect("fields");
    let list = fields.last().and_then(|f| f["value"].as_str()).expect("findings field");
    let entries = list.lines().filter(|l| slack_mrkdwn(l)["lines"][0]["entry"] == true).count();
    assert_eq!((entries, list.lines().count()), (listed, listed + 1), "slack:\n{list}");

    for format in [TeamsFormat::MessageCard, TeamsFormat::AdaptiveCard] {
        let card = teams::render(&digest, format);
        let text = match format {
            TeamsFormat::MessageCard => card["sections"][1]["text"].as_str(),
            TeamsFormat::AdaptiveCard => card["attachments"][0]["content"]["body"][4]["text"].as_str(),
        }
        .expect("findings text");
        let items = Parser::new(text).filter(|e| matches!(e, Md::End(TagEnd::Item))).count();
        assert_eq!(items, listed + 1, "teams {format:?}:\n{text}");
        assert!(markdown_shown(text).contains("&lt;b&gt;"), "teams shows &lt;b&gt; as typed:\n{text}");
    }

    let m = email::render(&digest);
    let block: Vec<&str> = m
        .text
        .split("\nFindings:\n")
        .nth(1)
        .and_then(|t| t.split("\n\n").next())
        .expect("findings block")
        .lines()
        .collect();
    assert_eq!(block.len(), listed + 1, "email text:\n{}", m.text);
    assert_eq!(m.html.matches("<tr>").count(), 4 + 1 + listed + 1, "facts, header, entries, more");
    for rendered in [slack.to_string(), m.subject, m.text, m.html] {
        assert!(!rendered.chars().any(is_bidi_control), "{rendered}");
    }
}
