//! Pure: the text of a comment → the `/backspace` commands in it.
//!
//! Grammar (one command per line, the word configurable):
//! - `/backspace <prompt>`: run the agent with the rest of the line (and the lines below it, up
//!   to the next command) as the request;
//! - `/backspace cancel`: stop the running job of this issue or PR;
//! - `/backspace help`: post the usage.
//!
//! The markdown is parsed first, so a command inside a code block, an inline code span or a block
//! quote is not a command, and neither is one in the middle of a sentence: only a paragraph line
//! that starts with `/backspace` counts. `/backspace` alone, or a lone word that looks like a typo
//! of a subcommand, is a user error answered with the usage and a "did you mean" hint.

use pulldown_cmark::{Event, Parser, Tag, TagEnd};

/// The longest prompt accepted from one comment, in characters.
pub const MAX_PROMPT_CHARS: usize = 16_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run { prompt: String },
    Cancel,
    Help,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// `/backspace` with nothing after it.
    Empty,
    /// A lone word close to a subcommand, e.g. `/backspace cancle`.
    Typo {
        word: String,
        suggestion: &'static str,
    },
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Empty => write!(f, "the command has no request after it"),
            CommandError::Typo { word, suggestion } => {
                write!(
                    f,
                    "unknown subcommand `{word}`; did you mean `{suggestion}`?"
                )
            }
        }
    }
}

pub type Parsed = Result<Command, CommandError>;

const SUBCOMMANDS: [&str; 2] = ["cancel", "help"];

/// Every command in `body`, in order.
pub fn parse_commands(body: &str, word: &str) -> Vec<Parsed> {
    let prefix = format!("/{word}");
    command_lines(body, &prefix)
        .into_iter()
        .map(|rest| parse_rest(&rest))
        .collect()
}

/// The commands of an edited comment that its old body did not have: editing a comment must not
/// run again what already ran.
pub fn new_commands(old_body: &str, new_body: &str, word: &str) -> Vec<Parsed> {
    let old = parse_commands(old_body, word);
    parse_commands(new_body, word)
        .into_iter()
        .filter(|c| !old.contains(c))
        .collect()
}

/// The text after the command word on each command line, with the continuation lines that follow
/// it in the same paragraph (a long request may wrap over several lines).
fn command_lines(body: &str, prefix: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    // `Some(i)` while inside a paragraph whose current command is `found[i]`.
    let mut open: Option<usize> = None;
    let mut quote_depth = 0usize;
    let mut in_paragraph = false;
    let mut at_line_start = true;

    for event in Parser::new(body) {
        match event {
            Event::Start(Tag::BlockQuote(_)) => quote_depth += 1,
            Event::End(TagEnd::BlockQuote(_)) => quote_depth = quote_depth.saturating_sub(1),
            Event::Start(Tag::Paragraph) => {
                in_paragraph = true;
                at_line_start = true;
                open = None;
            }
            Event::End(TagEnd::Paragraph) => {
                in_paragraph = false;
                open = None;
            }
            Event::SoftBreak | Event::HardBreak => {
                at_line_start = true;
                if let Some(i) = open {
                    found[i].push('\n');
                }
            }
            Event::Text(text) if in_paragraph && quote_depth == 0 => {
                if at_line_start {
                    if let Some(rest) = strip_command(&text, prefix) {
                        found.push(rest.to_owned());
                        open = Some(found.len() - 1);
                    } else if let Some(i) = open {
                        found[i].push_str(&text);
                    }
                } else if let Some(i) = open {
                    found[i].push_str(&text);
                }
                at_line_start = false;
            }
            // Inline code, emphasis and links inside a request keep their text.
            Event::Code(code) if in_paragraph && quote_depth == 0 => {
                if let Some(i) = open {
                    found[i].push('`');
                    found[i].push_str(&code);
                    found[i].push('`');
                }
                at_line_start = false;
            }
            Event::Text(_) | Event::Code(_) | Event::Html(_) | Event::InlineHtml(_) => {
                at_line_start = false;
            }
            _ => {}
        }
    }
    found
}

/// `"/backspace fix it"` → `Some(" fix it")`; `"/backspacer"` → `None`.
fn strip_command<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let trimmed = line.trim_start();
    let head = trimmed.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = &trimmed[prefix.len()..];
    match rest.chars().next() {
        None => Some(rest),
        Some(c) if c.is_whitespace() => Some(rest),
        // `/backspace:` is a common way of writing it too.
        Some(':') => Some(&rest[1..]),
        Some(_) => None,
    }
}

fn parse_rest(rest: &str) -> Parsed {
    let text = rest.trim();
    if text.is_empty() {
        return Err(CommandError::Empty);
    }
    let single_word = !text.contains(char::is_whitespace);
    let lower = text.to_ascii_lowercase();
    match lower.as_str() {
        "cancel" | "stop" => return Ok(Command::Cancel),
        "help" | "--help" | "-h" | "?" => return Ok(Command::Help),
        _ => {}
    }
    if single_word {
        if let Some(suggestion) = SUBCOMMANDS
            .iter()
            .copied()
            .find(|s| lower.len() >= 3 && edit_distance(&lower, s) <= 2)
        {
            return Err(CommandError::Typo {
                word: text.to_owned(),
                suggestion,
            });
        }
    }
    let prompt: String = text.chars().take(MAX_PROMPT_CHARS).collect();
    Ok(Command::Run { prompt })
}

/// Levenshtein distance over chars; the words compared are a few letters long.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The usage text posted for `/backspace help` and for user errors, with the server's
/// command word and the repository's trigger label.
pub fn usage(word: &str, label: &str) -> String {
    let label = label.replace('`', "'");
    format!(
        "**Backspace** turns a request into a pull request.\n\n\
         | command | what it does |\n|---|---|\n\
         | `/{word} <request>` on an issue | runs the agent and opens a pull request |\n\
         | `/{word} <request>` on a pull request Backspace opened, or in a review of it | adds commits to it |\n\
         | `/{word} cancel` | stops the running job |\n\
         | `/{word} help` | shows this |\n\n\
         Adding the label `{label}` to an issue runs it with the issue's title and body. \
         Only people with write access can start a run."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usage_names_the_configured_command_and_label() {
        let text = usage("bs", "ai-help");
        assert!(text.contains("`/bs <request>` on an issue"), "{text}");
        assert!(text.contains("`/bs cancel`"), "{text}");
        assert!(text.contains("the label `ai-help`"), "{text}");
        assert!(!text.contains("backspace"), "{text}");
    }

    fn run(p: &str) -> Parsed {
        Ok(Command::Run { prompt: p.into() })
    }

    #[test]
    fn commands_in_comments_table() {
        let cases: Vec<(&str, &str, Vec<Parsed>)> = vec![
            (
                "plain run",
                "/backspace add input validation",
                vec![run("add input validation")],
            ),
            (
                "leading blank",
                "   /backspace fix the bug",
                vec![run("fix the bug")],
            ),
            ("case-insensitive word", "/Backspace fix", vec![run("fix")]),
            ("colon form", "/backspace: fix", vec![run("fix")]),
            ("cancel", "/backspace cancel", vec![Ok(Command::Cancel)]),
            (
                "cancel any case",
                "/backspace CANCEL ",
                vec![Ok(Command::Cancel)],
            ),
            ("help", "/backspace help", vec![Ok(Command::Help)]),
            ("empty", "/backspace", vec![Err(CommandError::Empty)]),
            (
                "empty with spaces",
                "/backspace   ",
                vec![Err(CommandError::Empty)],
            ),
            (
                "typo of cancel",
                "/backspace cancle",
                vec![Err(CommandError::Typo {
                    word: "cancle".into(),
                    suggestion: "cancel",
                })],
            ),
            (
                "typo of help",
                "/backspace hepl",
                vec![Err(CommandError::Typo {
                    word: "hepl".into(),
                    suggestion: "help",
                })],
            ),
            (
                "one-word prompt is not a typo",
                "/backspace refactor",
                vec![run("refactor")],
            ),
            (
                "help as part of a request",
                "/backspace help me add tests",
                vec![run("help me add tests")],
            ),
            (
                "longer word is another command",
                "/backspacer do it",
                vec![],
            ),
            ("mid-sentence", "please /backspace fix this", vec![]),
            ("in inline code", "`/backspace fix this`", vec![]),
            ("in a fenced block", "```\n/backspace fix this\n```", vec![]),
            (
                "in an indented block",
                "text\n\n    /backspace fix this",
                vec![],
            ),
            ("in a block quote", "> /backspace fix this", vec![]),
            ("in a nested quote", "> > /backspace fix this", vec![]),
            ("after a quote", "> old\n\n/backspace new", vec![run("new")]),
            (
                "second line of a paragraph",
                "Thanks!\n/backspace add tests",
                vec![run("add tests")],
            ),
            (
                "request continues on the next lines",
                "/backspace add validation\nto the signup form",
                vec![run("add validation\nto the signup form")],
            ),
            (
                "two commands",
                "/backspace fix a\n\n/backspace cancel",
                vec![run("fix a"), Ok(Command::Cancel)],
            ),
            (
                "inline code kept in a request",
                "/backspace rename `foo` to `bar`",
                vec![run("rename `foo` to `bar`")],
            ),
            ("other word", "/deploy now", vec![]),
            ("no command", "LGTM", vec![]),
        ];
        for (name, body, want) in cases {
            assert_eq!(parse_commands(body, "backspace"), want, "case: {name}");
        }
    }

    #[test]
    fn the_command_word_is_configurable() {
        assert_eq!(parse_commands("/bs fix", "bs"), vec![run("fix")]);
        assert_eq!(parse_commands("/backspace fix", "bs"), vec![]);
    }

    #[test]
    fn an_edited_comment_runs_only_new_commands() {
        let word = "backspace";
        assert_eq!(
            new_commands("/backspace fix a", "/backspace fix a\n\ntypo fixed", word),
            vec![]
        );
        assert_eq!(
            new_commands("looks good", "looks good\n\n/backspace fix a", word),
            vec![run("fix a")]
        );
        assert_eq!(
            new_commands(
                "/backspace fix a",
                "/backspace fix a\n\n/backspace cancel",
                word
            ),
            vec![Ok(Command::Cancel)]
        );
        assert_eq!(
            new_commands("/backspace fix a", "/backspace fix b", word),
            vec![run("fix b")]
        );
    }

    #[test]
    fn a_prompt_is_capped() {
        let body = format!("/backspace {}", "x".repeat(MAX_PROMPT_CHARS + 10));
        match &parse_commands(&body, "backspace")[0] {
            Ok(Command::Run { prompt }) => assert_eq!(prompt.chars().count(), MAX_PROMPT_CHARS),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("cancel", "cancel"), 0);
        assert_eq!(edit_distance("cancle", "cancel"), 2);
        assert_eq!(edit_distance("halp", "help"), 1);
        assert_eq!(edit_distance("", "help"), 4);
    }
}
