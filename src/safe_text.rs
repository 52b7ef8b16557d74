//! Pure: text written by others (the agent, the requester's prompt echoed back) made safe to
//! post from the bot's account, and bodies kept under GitHub's size limit.
//!
//! GitHub renders a comment as markdown and then links `@user` and `@org/team` in its text, so
//! an agent that writes `cc @octo/reviewers` would ping a whole team from the bot. Outside code
//! (inline code spans, fenced and indented blocks, where GitHub links nothing) [`neutralize`]
//! puts a zero-width space after such an `@` (written `&#8203;`, as Renovate does: it reads the
//! same and links nobody), and escapes `&` and `<`, so no raw HTML, entity (`&#64;` is an `@`)
//! or hidden `<!-- marker -->` gets through. Code is left byte for byte.
//!
//! [`fit`] cuts a body to a size, closing what the cut left open (a code fence, a
//! `<details>`), and says so visibly where the rest can be read.

use std::ops::Range;

use pulldown_cmark::{Event, Parser, Tag};

/// GitHub refuses comment, review and pull request bodies longer than this (in characters).
pub const GITHUB_BODY_LIMIT: usize = 65_536;

/// What follows an `@` that would mention someone: an invisible space that stops the link.
const MENTION_BREAK: &str = "&#8203;";

/// `text` with mentions, raw HTML and entities outside code made inert.
pub fn neutralize(text: &str) -> String {
    let code = code_ranges(text);
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    let mut at = 0;
    for range in code {
        if range.start > at {
            escape_prose(&text[at..range.start], prev_char(text, at), &mut out);
        }
        let start = range.start.max(at);
        if range.end > start {
            out.push_str(&text[start..range.end]);
        }
        at = at.max(range.end);
    }
    if at < text.len() {
        escape_prose(&text[at..], prev_char(text, at), &mut out);
    }
    out
}

/// The byte ranges of code (spans and blocks) in `text`, in order, not overlapping.
fn code_ranges(text: &str) -> Vec<Range<usize>> {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    for (event, range) in Parser::new(text).into_offset_iter() {
        let is_code = matches!(event, Event::Code(_) | Event::Start(Tag::CodeBlock(_)));
        if !is_code {
            continue;
        }
        match ranges.last_mut() {
            Some(last) if range.start < last.end => last.end = last.end.max(range.end),
            _ => ranges.push(range),
        }
    }
    ranges
}

fn prev_char(text: &str, at: usize) -> Option<char> {
    text[..at].chars().next_back()
}

/// Escapes one stretch of prose; `before` is the character just before it.
fn escape_prose(prose: &str, mut before: Option<char>, out: &mut String) {
    let mut chars = prose.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '@' => {
                out.push('@');
                let starts_word = before.is_none_or(|b| !(b.is_alphanumeric() || b == '_'));
                let names_someone = chars.peek().is_some_and(|n| n.is_ascii_alphanumeric());
                if starts_word && names_someone {
                    out.push_str(MENTION_BREAK);
                }
            }
            other => out.push(other),
        }
        before = Some(c);
    }
}

/// `body` cut to at most `max_chars` characters, ending with `note` when it had to be cut.
/// The cut falls at a line end where one is near, and closes a code fence or `<details>` the
/// kept part left open, so the note is not swallowed by them.
pub fn fit(body: &str, max_chars: usize, note: &str) -> String {
    if body.chars().count() <= max_chars {
        return body.to_owned();
    }
    // Room for the note, the closing tags and the blank lines around them.
    let reserve = note.chars().count() + 64;
    let keep_chars = max_chars.saturating_sub(reserve);
    let mut end = body
        .char_indices()
        .nth(keep_chars)
        .map(|(i, _)| i)
        .unwrap_or(body.len());
    // Back to the last line end, unless that throws away too much.
    if let Some(nl) = body[..end].rfind('\n') {
        if end - nl < 2_000 {
            end = nl;
        }
    }
    let kept = &body[..end];
    let mut out = kept.trim_end().to_owned();
    out.push('\n');
    if open_fence(kept) {
        out.push_str("```\n");
    }
    let open_details = kept.matches("<details").count();
    let closed_details = kept.matches("</details>").count();
    for _ in closed_details..open_details {
        out.push_str("</details>\n");
    }
    out.push('\n');
    out.push_str(note);
    out.push('\n');
    out
}

/// Whether `text` ends inside a fenced code block (an odd number of fence lines).
fn open_fence(text: &str) -> bool {
    let fences = text
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            t.starts_with("```") || t.starts_with("~~~")
        })
        .count();
    fences % 2 == 1
}

/// The note a cut body ends with: where to read the rest.
pub fn truncated_note(log_url: Option<&str>) -> String {
    match log_url {
        Some(url) => format!("✂️ **Truncated** to fit GitHub's limit; see the [live log]({url})."),
        None => "✂️ **Truncated** to fit GitHub's limit; see the live log.".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_of_users_and_teams_outside_code_do_not_ping() {
        let out = neutralize("cc @alice and @octo/reviewers, (@bob)");
        assert_eq!(
            out,
            "cc @&#8203;alice and @&#8203;octo/reviewers, (@&#8203;bob)"
        );
        assert!(!out.contains("@alice") && !out.contains("@octo/"));
    }

    #[test]
    fn code_is_left_as_it_is() {
        let text = "run `npm i @types/node` then\n\n```sh\necho @alice <b>&amp;\n```\n\n    @indented <x>\n";
        assert_eq!(neutralize(text), text);
    }

    #[test]
    fn e_mail_addresses_and_lone_at_signs_stay() {
        assert_eq!(
            neutralize("mail a@b.example or pay @ 5"),
            "mail a@b.example or pay @ 5"
        );
    }

    #[test]
    fn raw_html_entities_and_hidden_markers_are_escaped() {
        assert_eq!(
            neutralize("<img src=x onerror=alert(1)> &#64;alice <!-- backspace:run:x -->"),
            "&lt;img src=x onerror=alert(1)> &amp;#64;alice &lt;!-- backspace:run:x -->"
        );
    }

    #[test]
    fn prose_between_code_spans_is_escaped_and_the_spans_kept() {
        assert_eq!(
            neutralize("`a@b` @c `<d>` <e>"),
            "`a@b` @&#8203;c `<d>` &lt;e>"
        );
    }

    #[test]
    fn a_short_body_is_unchanged() {
        assert_eq!(fit("hello", 10, "cut"), "hello");
    }

    #[test]
    fn a_long_body_is_cut_under_the_limit_with_a_visible_note() {
        let body = format!(
            "intro\n<details><summary>x</summary>\n\n```text\n{}",
            "line of output\n".repeat(10_000)
        );
        let note = truncated_note(Some("https://bs.example/runs/1"));
        let cut = fit(&body, GITHUB_BODY_LIMIT, &note);
        assert!(cut.chars().count() <= GITHUB_BODY_LIMIT, "{}", cut.len());
        assert!(
            cut.ends_with(&format!("```\n</details>\n\n{note}\n")),
            "{}",
            &cut[cut.len() - 200..]
        );
        assert!(cut.contains("[live log](https://bs.example/runs/1)"));
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let body = "é".repeat(100);
        let cut = fit(&body, 80, "cut");
        assert!(cut.chars().count() <= 80);
        assert!(cut.ends_with("cut\n"));
    }
}
