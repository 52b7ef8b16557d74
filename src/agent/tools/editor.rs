//! The text editor tool (`text_editor_20250728`, named `str_replace_based_edit_tool`): view (with
//! line numbers and ranges, or a directory listing), create, str_replace (exactly one match) and
//! insert, on top of the workspace's read and write. The text operations are pure functions.

use serde_json::Value;

use super::ToolResult;
use crate::agent::workspace::{Workspace, WORKSPACE_ROOT};

/// Lines of context shown around an edit.
const SNIPPET_CONTEXT: usize = 4;

pub async fn run(workspace: &dyn Workspace, input: &Value) -> ToolResult {
    let s = |k: &str| input.get(k).and_then(Value::as_str);
    let Some(command) = s("command") else {
        return ToolResult::error(
            "The editor needs a `command`: view, create, str_replace or insert.",
        );
    };
    let Some(raw_path) = s("path").filter(|p| !p.trim().is_empty()) else {
        return ToolResult::error(format!("The `{command}` command needs a `path`."));
    };
    let path = normalise(raw_path);
    match command {
        "view" => view(workspace, &path, raw_path, input.get("view_range")).await,
        "create" => {
            let Some(text) = s("file_text") else {
                return ToolResult::error("`create` needs `file_text`.");
            };
            match workspace.write_file(&path, text.as_bytes()).await {
                Ok(()) => changed(format!("File created successfully at: {raw_path}")),
                Err(e) => ToolResult::error(format!("Could not write {raw_path}: {e}")),
            }
        }
        "str_replace" => {
            let Some(old) = s("old_str") else {
                return ToolResult::error("`str_replace` needs `old_str`.");
            };
            let new = s("new_str").unwrap_or_default();
            let content = match read_text(workspace, &path, raw_path).await {
                Ok(c) => c,
                Err(e) => return e,
            };
            match replace_once(&content, old, new, raw_path) {
                Ok((updated, line)) => {
                    write_then(workspace, &path, raw_path, &updated, line, new).await
                }
                Err(msg) => ToolResult::error(msg),
            }
        }
        "insert" => {
            let Some(line) = input.get("insert_line").and_then(Value::as_u64) else {
                return ToolResult::error(
                    "`insert` needs `insert_line` (a line number, 0 for the top).",
                );
            };
            let Some(text) = s("insert_text").or_else(|| s("new_str")) else {
                return ToolResult::error("`insert` needs `insert_text`.");
            };
            let content = match read_text(workspace, &path, raw_path).await {
                Ok(c) => c,
                Err(e) => return e,
            };
            match insert_at(&content, line as usize, text) {
                Ok(updated) => {
                    write_then(
                        workspace,
                        &path,
                        raw_path,
                        &updated,
                        line as usize + 1,
                        text,
                    )
                    .await
                }
                Err(msg) => ToolResult::error(msg),
            }
        }
        "undo_edit" => ToolResult::error(
            "`undo_edit` is not available in this editor version; make a new edit instead.",
        ),
        other => ToolResult::error(format!(
            "Unknown editor command `{other}`; use view, create, str_replace or insert."
        )),
    }
}

fn changed(text: String) -> ToolResult {
    let mut r = ToolResult::ok(text);
    r.changed_file = true;
    r
}

async fn write_then(
    workspace: &dyn Workspace,
    path: &str,
    raw_path: &str,
    updated: &str,
    first_line: usize,
    inserted: &str,
) -> ToolResult {
    if let Err(e) = workspace.write_file(path, updated.as_bytes()).await {
        return ToolResult::error(format!("Could not write {raw_path}: {e}"));
    }
    let lines = inserted.lines().count().max(1);
    changed(format!(
        "The file {raw_path} has been edited. Here's the result of running `cat -n` on a snippet of it:\n{}\nReview the changes and make sure they are as expected.",
        snippet(updated, first_line, lines)
    ))
}

/// `/workspace/x` → `x`, `/workspace` → `.`; other paths unchanged.
pub fn normalise(path: &str) -> String {
    let p = path.trim();
    if p == WORKSPACE_ROOT || p == "/workspace/" {
        return ".".into();
    }
    match p.strip_prefix("/workspace/") {
        Some(rest) => rest.to_owned(),
        None => p.to_owned(),
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

async fn read_text(
    workspace: &dyn Workspace,
    path: &str,
    raw_path: &str,
) -> Result<String, ToolResult> {
    let bytes = workspace
        .read_file(path)
        .await
        .map_err(|e| ToolResult::error(format!("Could not read {raw_path}: {e}")))?;
    if bytes.contains(&0) {
        return Err(ToolResult::error(format!(
            "{raw_path} looks like a binary file; the editor only handles text."
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| ToolResult::error(format!("{raw_path} is not valid UTF-8 text.")))
}

async fn view(
    workspace: &dyn Workspace,
    path: &str,
    raw_path: &str,
    range: Option<&Value>,
) -> ToolResult {
    // A directory is listed (two levels, hidden files left out) with one command.
    let probe = format!(
        "if [ -d {p} ]; then find {p} -maxdepth 2 -not -path '*/.*' | sort | head -n 1000; else exit 3; fi",
        p = shell_quote(path)
    );
    if let Ok(out) = workspace
        .exec(&probe, std::time::Duration::from_secs(30), 256 * 1024)
        .await
    {
        if out.exit_code == 0 {
            return ToolResult::ok(format!(
                "Here are the files and directories up to 2 levels deep in {raw_path}, excluding hidden items:\n{}",
                out.stdout
            ));
        }
    }
    let range = match range {
        None | Some(Value::Null) => None,
        Some(v) => match v
            .as_array()
            .map(|a| a.iter().map(Value::as_i64).collect::<Vec<_>>())
        {
            Some(a) if a.len() == 2 && a.iter().all(Option::is_some) => {
                Some((a[0].unwrap_or(1), a[1].unwrap_or(-1)))
            }
            _ => return ToolResult::error(
                "`view_range` must be two integers [start, end]; end -1 means the end of the file.",
            ),
        },
    };
    let content = match read_text(workspace, path, raw_path).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    match view_text(&content, range) {
        Ok(numbered) => ToolResult::ok(format!(
            "Here's the result of running `cat -n` on {raw_path}:\n{numbered}"
        )),
        Err(msg) => ToolResult::error(msg),
    }
}

fn number_lines<'a>(lines: impl Iterator<Item = (usize, &'a str)>) -> String {
    lines
        .map(|(n, l)| format!("{n:6}\t{l}\n"))
        .collect::<String>()
}

/// The file with line numbers (`cat -n` style), optionally lines `start..=end` (1-based, end -1
/// for the last line).
pub fn view_text(content: &str, range: Option<(i64, i64)>) -> Result<String, String> {
    let lines: Vec<&str> = content.lines().collect();
    let n = lines.len() as i64;
    let (start, end) = match range {
        None => (1, n),
        Some((start, end)) => {
            if start < 1 || (start > n && !(n == 0 && start == 1)) {
                return Err(format!(
                    "Invalid view_range [{start}, {end}]: the start must be between 1 and {n}, the number of lines in the file."
                ));
            }
            let end = if end == -1 { n } else { end };
            if end < start {
                return Err(format!(
                    "Invalid view_range: the end ({end}) must not be before the start ({start})."
                ));
            }
            (start, end.min(n))
        }
    };
    Ok(number_lines(
        lines
            .iter()
            .enumerate()
            .skip((start - 1).max(0) as usize)
            .take((end - start + 1).max(0) as usize)
            .map(|(i, l)| (i + 1, *l)),
    ))
}

/// Replaces the one occurrence of `old`; returns the new text and the 1-based line where the
/// replacement starts. No match or several matches are errors that say so.
pub fn replace_once(
    content: &str,
    old: &str,
    new: &str,
    path: &str,
) -> Result<(String, usize), String> {
    if old.is_empty() {
        return Err("`old_str` is empty; give the exact text to replace.".into());
    }
    let count = content.matches(old).count();
    match count {
        0 => Err(format!(
            "No replacement was performed: old_str did not appear verbatim in {path}. Check whitespace and indentation (view the file first)."
        )),
        1 => {
            let at = content.find(old).unwrap_or(0);
            let line = content[..at].matches('\n').count() + 1;
            Ok((content.replacen(old, new, 1), line))
        }
        n => Err(format!(
            "No replacement was performed: old_str occurs {n} times in {path}. Include more surrounding lines so that it matches exactly once."
        )),
    }
}

/// Inserts `text` after line `after` (0 = at the top).
pub fn insert_at(content: &str, after: usize, text: &str) -> Result<String, String> {
    let mut lines: Vec<&str> = content.split_inclusive('\n').collect();
    if after > lines.len() {
        return Err(format!(
            "insert_line {after} is out of range: the file has {} lines (use 0 to {}).",
            lines.len(),
            lines.len()
        ));
    }
    let mut block = text.to_owned();
    if !block.ends_with('\n') {
        block.push('\n');
    }
    let mut owned_last = None;
    if after == lines.len() {
        if let Some(last) = lines.last() {
            if !last.ends_with('\n') {
                owned_last = Some(format!("{last}\n"));
            }
        }
    }
    if let Some(fixed) = &owned_last {
        let i = lines.len() - 1;
        lines[i] = fixed.as_str();
    }
    let mut out = String::with_capacity(content.len() + block.len() + 1);
    for l in &lines[..after] {
        out.push_str(l);
    }
    out.push_str(&block);
    for l in &lines[after..] {
        out.push_str(l);
    }
    Ok(out)
}

/// Numbered lines around an edit starting at `first_line` and `len` lines long.
pub fn snippet(content: &str, first_line: usize, len: usize) -> String {
    let start = first_line.saturating_sub(SNIPPET_CONTEXT).max(1);
    let end = first_line + len + SNIPPET_CONTEXT;
    number_lines(
        content
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(n, _)| *n >= start && *n < end),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_numbers_lines_and_honours_ranges() {
        let text = "a\nb\nc\nd\n";
        assert_eq!(
            view_text(text, None).unwrap(),
            "     1\ta\n     2\tb\n     3\tc\n     4\td\n"
        );
        assert_eq!(
            view_text(text, Some((2, 3))).unwrap(),
            "     2\tb\n     3\tc\n"
        );
        assert_eq!(
            view_text(text, Some((3, -1))).unwrap(),
            "     3\tc\n     4\td\n"
        );
        assert!(view_text(text, Some((0, 2))).is_err());
        assert!(view_text(text, Some((5, 6))).is_err());
        assert!(view_text(text, Some((3, 2))).is_err());
        assert_eq!(view_text("", None).unwrap(), "");
    }

    #[test]
    fn str_replace_needs_exactly_one_match() {
        let (out, line) = replace_once("fn a() {}\nfn b() {}\n", "fn b", "fn c", "x.rs").unwrap();
        assert_eq!(out, "fn a() {}\nfn c() {}\n");
        assert_eq!(line, 2);
        let none = replace_once("abc", "zzz", "y", "x.rs").unwrap_err();
        assert!(none.contains("did not appear verbatim"));
        let many = replace_once("x x x", "x", "y", "x.rs").unwrap_err();
        assert!(many.contains("occurs 3 times"), "{many}");
    }

    #[test]
    fn insert_goes_after_the_given_line() {
        assert_eq!(insert_at("a\nb\n", 0, "top").unwrap(), "top\na\nb\n");
        assert_eq!(insert_at("a\nb\n", 1, "mid\n").unwrap(), "a\nmid\nb\n");
        assert_eq!(insert_at("a\nb", 2, "end").unwrap(), "a\nb\nend\n");
        assert_eq!(insert_at("", 0, "x").unwrap(), "x\n");
        assert!(insert_at("a\n", 3, "x")
            .unwrap_err()
            .contains("out of range"));
    }

    #[test]
    fn workspace_paths_are_made_relative() {
        assert_eq!(normalise("/workspace/src/a.rs"), "src/a.rs");
        assert_eq!(normalise("/workspace"), ".");
        assert_eq!(normalise("src/a.rs"), "src/a.rs");
        assert_eq!(normalise("/etc/hosts"), "/etc/hosts");
        assert_eq!(shell_quote("a'b"), "'a'\\''b'");
    }

    #[test]
    fn snippets_show_context_around_the_edit() {
        let text: String = (1..=20).map(|i| format!("l{i}\n")).collect();
        let s = snippet(&text, 10, 1);
        assert!(s.starts_with("     6\tl6\n"));
        assert!(s.ends_with("    14\tl14\n"));
    }
}
