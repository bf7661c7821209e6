//! The text-safety layer every renderer uses: what a string that came from an event goes through
//! before a channel lays it out. A finding's title is data from a customer tenant (and anyone
//! who can publish an event writes one): it must never add structure to our messages — no list
//! entry, link, mention, heading or emphasis of its own — and must read as what it is.
//!
//! Two steps. [`line`], for every channel, in [`summarize`](super::summary::summarize): one line
//! of visible text (newlines and other control characters become spaces, bidi controls become
//! `�`). Then the channel's escape, where the renderer writes the value into its markup:
//! [`slack`] / [`slack_plain`], [`teams`], [`html`]. The email's text part has no markup: one
//! line is all it needs. The webhook channel sends the event's JSON as it came (a SOAR wants
//! the exact title; JSON's own escaping keeps it data).

/// Shown in place of a bidi control: the character that reorders text (`invoice\u{202E}gnp.exe`
/// reads as `invoiceexe.png`) is made visible rather than dropped, so the reader sees that the
/// text carried one.
pub const BIDI_SHOWN_AS: char = '\u{FFFD}';

/// Unicode's bidi formatting controls: embeddings and overrides (U+202A–U+202E), isolates
/// (U+2066–U+2069), the left-to-right and right-to-left marks (U+200E, U+200F) and the Arabic
/// letter mark (U+061C).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// One line of visible text: line breaks (`\n`, `\r`, U+2028, U+2029, NEL) and every other
/// control character become a space, bidi controls become [`BIDI_SHOWN_AS`], and the ends are
/// trimmed. Never longer (in characters) than `s`, so cutting before or after gives the same bound.
pub fn line(s: &str) -> String {
    let clean = |c: char| !(c.is_control() || is_bidi_control(c) || c == '\u{2028}' || c == '\u{2029}');
    let t = s.trim();
    if t.chars().all(clean) {
        return t.to_owned();
    }
    let folded: String = t
        .chars()
        .map(|c| {
            if is_bidi_control(c) {
                BIDI_SHOWN_AS
            } else if clean(c) {
                c
            } else {
                ' '
            }
        })
        .collect();
    folded.trim().to_owned()
}

/// Zero-width space: what Slack text puts around a formatting character it must not act on.
const ZWSP: char = '\u{200B}';

/// Slack mrkdwn (message `text`, attachment field values): `&`, `<`, `>` as Slack's entities
/// (so no `<!here>`, `<@U…>` or `<url|label>` can form), and `*`, `_`, `~` and backticks made
/// inert. mrkdwn has no escape for those; Slack formats them only at a word boundary, so each
/// one that is not already between two letters or digits (`svc_backup` stays as it is) gets a
/// zero-width space on both sides, which puts it mid-word: shown, never bold, italic, struck
/// or code. Copying such text from Slack copies the zero-width spaces; the webhook channel
/// carries the exact value.
pub fn slack(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '*' | '_' | '~' | '`' => {
                let word =
                    |j: Option<usize>| j.and_then(|j| chars.get(j)).is_some_and(|n| n.is_alphanumeric());
                if c != '`' && word(i.checked_sub(1)) && word(Some(i + 1)) {
                    out.push(c);
                } else {
                    out.push(ZWSP);
                    out.push(c);
                    out.push(ZWSP);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Slack's plain-text fields (`fallback`, an attachment's `title`): no formatting there, but
/// Slack still reads `&`, `<` and `>` as control characters everywhere, so those become its
/// entities. A `|` only separates a link's URL from its label inside `<…>`, which event text
/// can no longer open.
pub fn slack_plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Teams card text, which Teams (and the Adaptive Cards hosts' markdown-it) reads as markdown,
/// MessageCards with some HTML: a backslash before every character that opens inline markdown
/// (emphasis, code, strikethrough, links, tables, Adaptive Cards' `{{DATE(…)}}`), `&`, `<`, `>`
/// as entities (so `&lt;b&gt;` stays that text and no HTML or autolink forms), and the markers
/// that open a block when they start the text — a list (`-`, `+`, `1.`, `1)`), a heading (`#`,
/// escaped everywhere), a quote (`>`, an entity) — escaped there. Newlines are gone already
/// ([`line`]), so the start of the text is the only start of a line it has.
pub fn teams(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    // Still inside the digits an ordered-list marker starts with ("12." / "12)").
    let mut leading_digits = true;
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' | '`' | '*' | '_' | '~' | '[' | ']' | '|' | '#' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '-' | '+' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            '.' | ')' if leading_digits && i > 0 => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
        leading_digits = leading_digits && c.is_ascii_digit();
    }
    out
}

/// HTML text and attribute values (the email's HTML part): the five characters HTML reads.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_folds_breaks_and_controls_and_shows_bidi_controls() {
        assert_eq!(line("FAKE\n• *CRITICAL* FAKE-999"), "FAKE • *CRITICAL* FAKE-999");
        assert_eq!(line("a\r\nb\u{2028}c\u{2029}d\u{85}e\tf\u{7}g"), "a  b c d e f g");
        assert_eq!(line("invoice\u{202E}gnp.exe"), "invoice\u{FFFD}gnp.exe");
        for c in
            ['\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}']
                .into_iter()
                .chain(['\u{200E}', '\u{200F}', '\u{061C}'])
        {
            assert_eq!(line(&format!("a{c}b")), "a\u{FFFD}b", "U+{:04X}", c as u32);
        }
        assert_eq!(line("  \n padded \n "), "padded");
        assert_eq!(line("plain text"), "plain text");
    }

    #[test]
    fn slack_escapes_control_characters_and_neutralises_formatting_at_word_boundaries() {
        assert_eq!(slack("<!here> &amp; <script>"), "&lt;!here&gt; &amp;amp; &lt;script&gt;");
        assert_eq!(slack("svc_backup a*b"), "svc_backup a*b", "mid-word: Slack does not format it");
        assert_eq!(slack("*bold*"), "\u{200B}*\u{200B}bold\u{200B}*\u{200B}");
        assert_eq!(slack("`x`"), "\u{200B}`\u{200B}x\u{200B}`\u{200B}");
        assert_eq!(slack("a|b"), "a|b");
        assert_eq!(slack_plain("<script> | *x* &"), "&lt;script&gt; | *x* &amp;");
    }

    #[test]
    fn teams_escapes_inline_markdown_entities_and_block_markers_at_the_start() {
        assert_eq!(teams("&lt;b&gt;"), "&amp;lt;b&amp;gt;");
        assert_eq!(teams("[click](https://evil.example)"), r"\[click\](https://evil.example)");
        assert_eq!(teams("- item"), r"\- item");
        assert_eq!(teams("+ item"), r"\+ item");
        assert_eq!(teams("12. item 3. x"), r"12\. item 3. x");
        assert_eq!(teams("1) item"), r"1\) item");
        assert_eq!(teams("# h"), r"\# h");
        assert_eq!(teams("> quote"), "&gt; quote");
        assert_eq!(teams("a-b 1.5 {{DATE(x)}}"), r"a-b 1.5 \{\{DATE(x)\}\}");
        assert_eq!(teams(r"svc_backup \ *"), r"svc\_backup \\ \*");
    }

    #[test]
    fn html_escapes_text_and_attribute_characters() {
        assert_eq!(
            html(r#"<a href="x" title='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
    }
}
