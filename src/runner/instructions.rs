//! The repository's own instruction files, read from the host's clone before the sandbox
//! starts: `AGENTS.md` in the directories the request concerns (the files a review comment is
//! on, paths the request or issue names), nearest first, then the root's `AGENTS.md`,
//! `CLAUDE.md` and `.github/copilot-instructions.md`, within a size cap. Other `AGENTS.md` files
//! are only named, so the agent reads the one nearest to what it changes.
//!
//! The clone holds what anyone with write access committed: a file or a directory on the way
//! to it that is a symbolic link is never followed (it could point anywhere on the host), and
//! a file that is not UTF-8 is skipped. [`candidates`] and [`mentioned_paths`] are pure.

use std::path::{Component, Path};

use crate::agent::InstructionFile;

/// The most characters of one file given to the agent.
pub const MAX_FILE_CHARS: usize = 12_000;
/// The most characters of all files together.
pub const MAX_TOTAL_CHARS: usize = 24_000;
/// Directory entries looked at when listing the other `AGENTS.md` files.
const MAX_ENTRIES_SCANNED: usize = 20_000;
/// Other `AGENTS.md` files named at most.
const MAX_OTHERS: usize = 30;

const AGENTS: &str = "AGENTS.md";
/// Read after the `AGENTS.md` files, in this order.
const ROOT_FILES: [&str; 2] = ["CLAUDE.md", ".github/copilot-instructions.md"];

/// The instruction files of a checkout: those given to the agent, and the other `AGENTS.md`
/// files, named only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Instructions {
    pub files: Vec<InstructionFile>,
    pub others: Vec<String>,
}

/// Reads the instruction files of `checkout` for a request about `concerns` (paths in the
/// repository, files or directories).
pub fn read(checkout: &Path, concerns: &[String]) -> Instructions {
    let mut files = Vec::new();
    let mut budget = MAX_TOTAL_CHARS;
    for rel in candidates(concerns) {
        if budget == 0 {
            break;
        }
        let Some(text) = read_regular(checkout, &rel) else {
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        let room = budget.min(MAX_FILE_CHARS);
        let cut = text.chars().count() > room;
        let text: String = text.chars().take(room).collect();
        budget -= text.chars().count();
        files.push(InstructionFile {
            path: rel,
            text,
            cut,
        });
    }
    let included: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let others = all_agents_files(checkout)
        .into_iter()
        .filter(|p| !included.contains(&p.as_str()))
        .take(MAX_OTHERS)
        .collect();
    Instructions { files, others }
}

/// Pure: the files to look for, in order: each concerned path's `AGENTS.md` from its own
/// directory up (the nearest first, the root's last among them), then `CLAUDE.md` and
/// `.github/copilot-instructions.md`.
pub fn candidates(concerns: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |p: String| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    for concern in concerns {
        let Some(clean) = clean_relative(concern) else {
            continue;
        };
        // A path names a file (`src/a.rs`) or a directory (`src/`); both start from the
        // directory it is in, or is.
        let mut dirs: Vec<&str> = clean.split('/').collect();
        if !concern.ends_with('/') {
            dirs.pop();
        }
        while !dirs.is_empty() {
            push(format!("{}/{AGENTS}", dirs.join("/")));
            dirs.pop();
        }
    }
    push(AGENTS.to_owned());
    for f in ROOT_FILES {
        push(f.to_owned());
    }
    out
}

/// `a/b.rs` as it is; `./a//b/` as `a/b`; `None` for absolute paths and any `..`.
fn clean_relative(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for c in Path::new(path.trim()).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_owned()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Pure: the words of `text` that look like paths in a repository (`src/app.js`,
/// `docs/`), without the quotes and punctuation around them; which of them exist is for the
/// caller to find out.
pub fn mentioned_paths(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || "`'\"()[]<>,;".contains(c)) {
        let word = word.trim_end_matches(['.', ':', '!', '?']);
        let looks_like_path = word.contains('/')
            || word.rsplit_once('.').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && b.len() <= 5
                    && b.chars().all(|c| c.is_ascii_alphanumeric())
            });
        if looks_like_path && !word.contains("://") && word.len() <= 200 {
            if let Some(clean) = clean_relative(word) {
                let clean = if word.ends_with('/') {
                    format!("{clean}/")
                } else {
                    clean
                };
                if !out.contains(&clean) {
                    out.push(clean);
                }
            }
        }
    }
    out
}

/// The paths among `paths` that exist in `checkout` (without following links).
pub fn existing(checkout: &Path, paths: Vec<String>) -> Vec<String> {
    paths
        .into_iter()
        .filter(|p| no_links_on_the_way(checkout, p.trim_end_matches('/')).is_some())
        .collect()
}

/// Walks `rel` from `root` without following a link; the final entry's metadata.
fn no_links_on_the_way(root: &Path, rel: &str) -> Option<std::fs::Metadata> {
    let clean = clean_relative(rel)?;
    let mut at = root.to_path_buf();
    let mut meta = None;
    for part in clean.split('/') {
        at.push(part);
        let m = std::fs::symlink_metadata(&at).ok()?;
        if m.file_type().is_symlink() {
            return None;
        }
        meta = Some(m);
    }
    meta
}

/// A regular file's text at `rel`, when no part of the way to it is a link and it is UTF-8.
fn read_regular(root: &Path, rel: &str) -> Option<String> {
    let meta = no_links_on_the_way(root, rel)?;
    if !meta.is_file() {
        return None;
    }
    let bytes = std::fs::read(root.join(rel)).ok()?;
    String::from_utf8(bytes).ok()
}

/// Every `AGENTS.md` in the checkout below its root, sorted, outside `.git`, without following
/// links, within a bound on the entries looked at.
fn all_agents_files(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![String::new()];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES_SCANNED {
                found.sort();
                return found;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let rel = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            if kind.is_dir() && name != ".git" {
                stack.push(rel);
            } else if kind.is_file() && name == AGENTS && !dir.is_empty() {
                found.push(rel);
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_agents_file_comes_first_then_the_roots() {
        let c = candidates(&["web/src/signup.ts".into(), "docs/".into()]);
        assert_eq!(
            c,
            vec![
                "web/src/AGENTS.md",
                "web/AGENTS.md",
                "docs/AGENTS.md",
                "AGENTS.md",
                "CLAUDE.md",
                ".github/copilot-instructions.md"
            ]
        );
        assert_eq!(
            candidates(&["../etc/passwd".into(), "/etc/x".into()]).len(),
            3
        );
    }

    #[test]
    fn paths_are_found_in_prose() {
        assert_eq!(
            mentioned_paths("Fix `web/src/signup.ts` (and docs/), see https://x.io/a.b. Thanks."),
            vec!["web/src/signup.ts", "docs/"]
        );
        assert!(mentioned_paths("../../etc/passwd and /etc/x").is_empty());
    }

    #[test]
    fn files_are_read_nearest_first_within_the_cap_and_links_are_not_followed() {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("web/src")).expect("dirs");
        std::fs::create_dir_all(root.join("api")).expect("dirs");
        std::fs::write(root.join("AGENTS.md"), "root rules").expect("write");
        std::fs::write(root.join("web/AGENTS.md"), "x".repeat(MAX_FILE_CHARS + 5)).expect("write");
        std::fs::write(root.join("api/AGENTS.md"), "api rules").expect("write");
        let outside = tempfile::NamedTempFile::new().expect("file");
        std::fs::write(outside.path(), "host secret").expect("write");
        std::os::unix::fs::symlink(outside.path(), root.join("CLAUDE.md")).expect("link");
        let got = read(root, &["web/src/signup.ts".into()]);
        let paths: Vec<&str> = got.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, vec!["web/AGENTS.md", "AGENTS.md"]);
        assert!(got.files[0].cut && !got.files[1].cut);
        assert_eq!(got.files[0].text.chars().count(), MAX_FILE_CHARS);
        assert!(got.files.iter().all(|f| !f.text.contains("host secret")));
        assert_eq!(got.others, vec!["api/AGENTS.md"]);
        assert_eq!(
            existing(
                root,
                vec!["web/src".into(), "CLAUDE.md".into(), "nope.rs".into()]
            ),
            vec!["web/src"]
        );
    }
}
