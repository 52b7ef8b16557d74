//! Applies the working tree the sandbox gave back onto the host's clean clone, under a policy:
//! what the agent writes is untrusted, so changes under `.github/workflows/` (in any case or
//! alias), names git takes for `.git`, and files over a size cap are refused (left as they
//! were, and reported), symlinks must stay inside the tree, and nothing is ever written
//! through a symlink. `.git` is never read from or written to.
//!
//! What copy-out held back (links that leave the tree, refused entries) is left as the clone
//! has it: a link the agent did not touch is not a deletion, and one it made or changed is
//! refused and listed. The work is bounded: at most `max_entries` entries, sizes compared
//! before contents, contents compared in chunks, so a huge overwrite of a tracked file costs
//! one `stat`, not its size in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::sandbox::{git_path, HeldBack, HoldReason};

#[derive(Debug, Clone)]
pub struct Policy {
    pub max_file_bytes: u64,
    /// Path prefixes the agent may not change, compared as a case-insensitive file system
    /// would (see [`git_path::under_folded`]).
    pub protected: Vec<String>,
    /// Most files and links the sandbox's tree may hold.
    pub max_entries: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_file_bytes: 5 * 1024 * 1024,
            protected: vec![".github/workflows/".into()],
            max_entries: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Paths written, changed or deleted in the clone.
    pub applied: Vec<String>,
    pub refused: Vec<Refusal>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    File { executable: bool, len: u64 },
    Symlink(PathBuf),
}

/// What a scan found: entries by path, and the names git refuses (not descended into).
#[derive(Default)]
struct Scan {
    entries: BTreeMap<String, Entry>,
    git_names: Vec<String>,
}

/// Every file and symlink under `root`, relative, except the top-level `.git`. Directories are
/// implied. Past `max_entries` it stops with an error.
fn scan(root: &Path, max_entries: usize) -> io::Result<Scan> {
    let mut out = Scan::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in fs::read_dir(&dir)? {
            let item = item?;
            let path = item.path();
            let rel = path.strip_prefix(root).map_err(io::Error::other)?;
            if rel.components().next() == Some(Component::Normal(".git".as_ref())) {
                continue;
            }
            let Some(rel) = rel.to_str() else {
                continue; // Not UTF-8: neither git nor GitHub shows such names well; skip it.
            };
            if git_path::refuses(rel.as_bytes(), false) {
                out.git_names.push(rel.to_owned());
                continue;
            }
            let meta = fs::symlink_metadata(&path)?;
            let ft = meta.file_type();
            if ft.is_dir() {
                stack.push(path);
                continue;
            }
            let entry = if ft.is_symlink() {
                if git_path::refuses(rel.as_bytes(), true) {
                    out.git_names.push(rel.to_owned());
                    continue;
                }
                Entry::Symlink(fs::read_link(&path)?)
            } else if ft.is_file() {
                Entry::File {
                    executable: meta.permissions().mode() & 0o111 != 0,
                    len: meta.len(),
                }
            } else {
                continue;
            };
            if out.entries.len() >= max_entries {
                return Err(io::Error::other(format!(
                    "the sandbox's tree has more than {max_entries} files and links"
                )));
            }
            out.entries.insert(rel.to_owned(), entry);
        }
    }
    Ok(out)
}

/// Whether a relative symlink at `link` pointing to `target` stays inside the tree.
fn symlink_stays_inside(link: &str, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = Path::new(link).components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// Refuses to touch a path whose parent directories in `root` include a symlink.
fn no_symlink_ancestors(root: &Path, rel: &str) -> bool {
    let mut cur = root.to_path_buf();
    let parts: Vec<_> = Path::new(rel).components().collect();
    for c in &parts[..parts.len().saturating_sub(1)] {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => return false,
            _ => {}
        }
    }
    true
}

/// Whether two files of the same length hold the same bytes, read a chunk at a time.
fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    const CHUNK: usize = 64 * 1024;
    let (mut a, mut b) = (fs::File::open(a)?, fs::File::open(b)?);
    let (mut x, mut y) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    loop {
        let n = read_full(&mut a, &mut x)?;
        let m = read_full(&mut b, &mut y)?;
        if n != m || x[..n] != y[..m] {
            return Ok(false);
        }
        if n < CHUNK {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Whether `path` is `prefix` or lies under it.
fn is_under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Makes `dest`'s working tree equal to `src`'s, within the policy.
pub fn apply_tree(src: &Path, dest: &Path, policy: &Policy) -> io::Result<Report> {
    apply_copied_tree(src, &[], dest, policy)
}

/// As [`apply_tree`], for a tree copied out of a sandbox: `held_back` (from the copy-out's
/// report) lists paths that did not come back, which are left in `dest` as they are. A link
/// that leaves the tree and is in `dest` unchanged is no change at all; any other held-back
/// path is refused and listed.
pub fn apply_copied_tree(
    src: &Path,
    held_back: &[HeldBack],
    dest: &Path,
    policy: &Policy,
) -> io::Result<Report> {
    let new = scan(src, policy.max_entries)?;
    let mut old = scan(dest, usize::MAX)?.entries;
    let mut report = Report::default();
    for name in &new.git_names {
        report.refuse(name, git_path::REFUSAL.into());
    }
    refuse_held_back(&mut report, held_back, &old);
    // Held back and git's refusals: the clone keeps what it has there.
    let kept = |path: &str| {
        held_back.iter().any(|h| is_under(path, &h.path))
            || new.git_names.iter().any(|g| is_under(path, g))
    };
    old.retain(|path, _| !kept(path));
    let new = new.entries;
    let paths: BTreeSet<&String> = new.keys().chain(old.keys()).collect();
    for path in paths {
        let (n, o) = (new.get(path), old.get(path));
        if !changed(src, dest, path, n, o)? {
            continue;
        }
        match apply_one(src, dest, path, n, o.is_some(), policy)? {
            Some(why) => report.refuse(path, why),
            None => report.applied.push(path.clone()),
        }
    }
    report.refused.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
}

impl Report {
    fn refuse(&mut self, path: &str, reason: String) {
        self.refused.push(Refusal {
            path: path.to_owned(),
            reason,
        });
    }
}

/// Lists the held-back paths that are refusals: everything but a link that leaves the tree
/// and is in the clone unchanged.
fn refuse_held_back(report: &mut Report, held_back: &[HeldBack], old: &BTreeMap<String, Entry>) {
    for h in held_back {
        match &h.reason {
            HoldReason::LinkOutside { target } => {
                if old.get(&h.path) != Some(&Entry::Symlink(target.clone())) {
                    let why = format!("symlink to {} leaves the repository", target.display());
                    report.refuse(&h.path, why);
                }
            }
            HoldReason::Refused(why) => report.refuse(&h.path, why.clone()),
        }
    }
}

/// Whether `path` differs between the copied tree (`n`) and the clone (`o`): kind, mode or
/// length first, then the bytes, a chunk at a time.
fn changed(
    src: &Path,
    dest: &Path,
    path: &str,
    n: Option<&Entry>,
    o: Option<&Entry>,
) -> io::Result<bool> {
    Ok(match (n, o) {
        (
            Some(Entry::File {
                executable: xn,
                len: ln,
            }),
            Some(Entry::File {
                executable: xo,
                len: lo,
            }),
        ) => xn != xo || ln != lo || !same_content(&src.join(path), &dest.join(path))?,
        (a, b) => a != b,
    })
}

/// Makes `path` in `dest` what `n` says (absent, a file, a link), or says why not.
fn apply_one(
    src: &Path,
    dest: &Path,
    path: &str,
    n: Option<&Entry>,
    existed: bool,
    policy: &Policy,
) -> io::Result<Option<String>> {
    if let Some(p) = policy
        .protected
        .iter()
        .find(|p| git_path::under_folded(path, p))
    {
        return Ok(Some(format!("changes under {p} are not allowed")));
    }
    if !no_symlink_ancestors(dest, path) {
        return Ok(Some("a parent directory is a symlink".into()));
    }
    let target = dest.join(path);
    match n {
        None => {
            fs::remove_file(&target)?;
            remove_empty_parents(dest, &target);
        }
        Some(Entry::File { executable, len }) => {
            if *len > policy.max_file_bytes {
                let limit = policy.max_file_bytes;
                return Ok(Some(format!(
                    "{len} bytes is over the {limit} byte limit per file"
                )));
            }
            replace_with(&target, existed, |t| fs::copy(src.join(path), t).map(drop))?;
            let mode = if *executable { 0o755 } else { 0o644 };
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))?;
        }
        Some(Entry::Symlink(to)) => {
            if !symlink_stays_inside(path, to) {
                return Ok(Some(format!(
                    "symlink to {} leaves the repository",
                    to.display()
                )));
            }
            replace_with(&target, existed, |t| std::os::unix::fs::symlink(to, t))?;
        }
    }
    Ok(None)
}

/// Writes `target` afresh with `write`: its parents made, what was there removed first.
fn replace_with(
    target: &Path,
    existed: bool,
    write: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    if existed {
        fs::remove_file(target)?;
    }
    write(target)
}

fn remove_empty_parents(root: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn new_changed_deleted_and_mode_changes_are_applied() {
        let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for root in [src.path(), dest.path()] {
            write(root, "same.txt", "same");
            write(root, "changed.txt", "old");
            write(root, "run.sh", "#!/bin/sh");
        }
        write(dest.path(), "gone/deleted.txt", "bye");
        write(dest.path(), ".git/config", "[core]");
        write(src.path(), "changed.txt", "new");
        write(src.path(), "dir/new.txt", "hello");
        write(src.path(), ".git/config", "[core]\n\thooksPath = /tmp/evil");
        fs::set_permissions(src.path().join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        let r = apply_tree(src.path(), dest.path(), &Policy::default()).unwrap();
        assert_eq!(
            r.applied,
            vec!["changed.txt", "dir/new.txt", "gone/deleted.txt", "run.sh"]
        );
        assert!(r.refused.is_empty());
        assert_eq!(
            fs::read_to_string(dest.path().join("changed.txt")).unwrap(),
            "new"
        );
        assert!(!dest.path().join("gone").exists());
        assert_eq!(
            fs::metadata(dest.path().join("run.sh"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
        // The sandbox's .git is never applied.
        assert_eq!(
            fs::read_to_string(dest.path().join(".git/config")).unwrap(),
            "[core]"
        );
    }

    #[test]
    fn workflow_changes_big_files_and_escaping_symlinks_are_refused() {
        let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(dest.path(), ".github/workflows/ci.yml", "on: push");
        write(
            src.path(),
            ".github/workflows/ci.yml",
            "on: push\njobs: {steal: {}}",
        );
        write(src.path(), ".github/workflows/new.yml", "x");
        write(src.path(), "big.bin", &"x".repeat(2000));
        std::os::unix::fs::symlink("/etc/passwd", src.path().join("abs-link")).unwrap();
        std::os::unix::fs::symlink("../../outside", src.path().join("rel-link")).unwrap();
        std::os::unix::fs::symlink("same-dir.txt", src.path().join("ok-link")).unwrap();
        let policy = Policy {
            max_file_bytes: 1000,
            ..Policy::default()
        };
        let r = apply_tree(src.path(), dest.path(), &policy).unwrap();
        let refused: Vec<_> = r.refused.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            refused,
            vec![
                ".github/workflows/ci.yml",
                ".github/workflows/new.yml",
                "abs-link",
                "big.bin",
                "rel-link"
            ]
        );
        assert_eq!(r.applied, vec!["ok-link"]);
        assert_eq!(
            fs::read_to_string(dest.path().join(".github/workflows/ci.yml")).unwrap(),
            "on: push"
        );
        assert!(!dest.path().join("big.bin").exists());
    }

    #[test]
    fn the_workflows_refusal_ignores_case_and_aliases() {
        let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(src.path(), ".GitHub/workflows/x.yml", "on: push");
        write(src.path(), ".github/WORKFLOWS/y.yml", "on: push");
        write(src.path(), ".github./workflows/z.yml", "on: push");
        write(src.path(), ".github/dependabot.yml", "version: 2");
        let r = apply_tree(src.path(), dest.path(), &Policy::default()).unwrap();
        let refused: Vec<_> = r.refused.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            refused,
            [
                ".GitHub/workflows/x.yml",
                ".github./workflows/z.yml",
                ".github/WORKFLOWS/y.yml"
            ]
        );
        assert_eq!(r.applied, [".github/dependabot.yml"]);
        assert!(!dest.path().join(".GitHub").exists());
    }

    #[test]
    fn names_git_takes_for_dot_git_are_refused_and_never_written() {
        let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(dest.path(), ".git/config", "[core]");
        write(src.path(), ".Git/config", "[core]\n\tfsmonitor = /tmp/evil");
        write(src.path(), "sub/.GIT/hooks/x", "evil");
        write(src.path(), "sub/ok.txt", "ok");
        write(src.path(), "git~1/config", "evil");
        write(src.path(), ".git\u{200c}/config", "evil");
        let r = apply_tree(src.path(), dest.path(), &Policy::default()).unwrap();
        let refused: Vec<_> = r.refused.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(refused, [".Git", ".git\u{200c}", "git~1", "sub/.GIT"]);
        assert_eq!(r.applied, ["sub/ok.txt"]);
        for name in [".Git", "sub/.GIT", "git~1", ".git\u{200c}"] {
            assert!(
                fs::symlink_metadata(dest.path().join(name)).is_err(),
                "{name}"
            );
        }
        assert_eq!(
            fs::read_to_string(dest.path().join(".git/config")).unwrap(),
            "[core]"
        );
    }

    /// A case-insensitive file system, simulated: the clone's `.git` is also reachable as
    /// `.Git`, as on macOS or Windows. What the agent wrote to `.Git/config` must not land in
    /// the clone's `.git/config`, whose filters and hooks would run on the host.
    #[test]
    fn on_a_case_insensitive_file_system_the_clones_git_config_is_untouched() {
        let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(dest.path(), ".git/config", "[core]\n\tbare = false\n");
        std::os::unix::fs::symlink(".git", dest.path().join(".Git")).unwrap();
        write(
            src.path(),
            ".Git/config",
            "[core]\n\tfsmonitor = touch /tmp/pwned\n",
        );
        let r = apply_tree(src.path(), dest.path(), &Policy::default()).unwrap();
        assert_eq!(
            fs::read_to_string(dest.path().join(".git/config")).unwrap(),
            "[core]\n\tbare = false\n"
        );
        assert!(r.refused.iter().any(|x| x.path == ".Git"), "{r:?}");
        assert!(r.applied.is_empty(), "{r:?}");
    }

    #[test]
    fn held_back_links_left_unchanged_are_neither_deleted_nor_listed() {
        let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(src.path(), "README.md", "# hi");
        write(dest.path(), "README.md", "# hi");
        std::os::unix::fs::symlink("../outside", dest.path().join("up-link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dest.path().join("abs")).unwrap();
        let held = [
            HeldBack {
                path: "up-link".into(),
                reason: HoldReason::LinkOutside {
                    target: "../outside".into(),
                },
            },
            HeldBack {
                path: "abs".into(),
                reason: HoldReason::LinkOutside {
                    target: "/etc/passwd".into(),
                },
            },
        ];
        let r = apply_copied_tree(src.path(), &held, dest.path(), &Policy::default()).unwrap();
        assert_eq!(r, Report::default(), "nothing changed, nothing refused");
        assert_eq!(
            fs::read_link(dest.path().join("up-link")).unwrap(),
            Path::new("../outside")
        );
        assert_eq!(
            fs::read_link(dest.path().join("abs")).unwrap(),
            Path::new("/etc/passwd")
        );
    }

    #[test]
    fn held_back_links_the_agent_made_or_changed_are_refused_and_the_clone_kept() {
        let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::os::unix::fs::symlink("../outside", dest.path().join("up-link")).unwrap();
        let held = [
            HeldBack {
                path: "up-link".into(),
                reason: HoldReason::LinkOutside {
                    target: "../../elsewhere".into(),
                },
            },
            HeldBack {
                path: "new-link".into(),
                reason: HoldReason::LinkOutside {
                    target: "/root".into(),
                },
            },
            HeldBack {
                path: "fifo".into(),
                reason: HoldReason::Refused("entry type Fifo not copied".into()),
            },
        ];
        let r = apply_copied_tree(src.path(), &held, dest.path(), &Policy::default()).unwrap();
        let refused: Vec<_> = r
            .refused
            .iter()
            .map(|x| (x.path.as_str(), x.reason.as_str()))
            .collect();
        assert_eq!(
            refused,
            [
                ("fifo", "entry type Fifo not copied"),
                ("new-link", "symlink to /root leaves the repository"),
                (
                    "up-link",
                    "symlink to ../../elsewhere leaves the repository"
                ),
            ]
        );
        assert!(r.applied.is_empty());
        assert_eq!(
            fs::read_link(dest.path().join("up-link")).unwrap(),
            Path::new("../outside")
        );
    }

    #[test]
    fn a_huge_overwrite_is_refused_by_its_size_without_reading_it() {
        let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(dest.path(), "data.bin", "small");
        // 900 MB that takes no disk: its size alone decides.
        let f = fs::File::create(src.path().join("data.bin")).unwrap();
        f.set_len(900 * 1024 * 1024).unwrap();
        let started = std::time::Instant::now();
        let r = apply_tree(src.path(), dest.path(), &Policy::default()).unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(r.refused.len(), 1, "{r:?}");
        assert!(r.refused[0].reason.contains("943718400 bytes"), "{r:?}");
        assert_eq!(
            fs::read_to_string(dest.path().join("data.bin")).unwrap(),
            "small"
        );
    }

    #[test]
    fn same_length_files_are_compared_chunk_by_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut other = big.clone();
        other[250_000] ^= 1;
        fs::write(dir.path().join("a"), &big).unwrap();
        fs::write(dir.path().join("b"), &big).unwrap();
        fs::write(dir.path().join("c"), &other).unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        assert!(same_content(&a, &b).unwrap());
        assert!(!same_content(&a, &c).unwrap());
    }

    #[test]
    fn a_tree_over_the_entry_limit_is_an_error() {
        let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for i in 0..20 {
            write(src.path(), &format!("f{i}"), "x");
        }
        let policy = Policy {
            max_entries: 10,
            ..Policy::default()
        };
        let err = apply_tree(src.path(), dest.path(), &policy).unwrap_err();
        assert!(err.to_string().contains("more than 10"), "{err}");
        assert_eq!(fs::read_dir(dest.path()).unwrap().count(), 0);
    }

    #[test]
    fn nothing_is_written_through_a_symlinked_directory() {
        let (src, dest, outside) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        // The clone has a directory symlink pointing outside; the sandbox writes "into" it.
        std::os::unix::fs::symlink(outside.path(), dest.path().join("link")).unwrap();
        fs::create_dir_all(src.path().join("link")).unwrap();
        write(src.path(), "link/pwned.txt", "x");
        let r = apply_tree(src.path(), dest.path(), &Policy::default()).unwrap();
        assert!(!outside.path().join("pwned.txt").exists());
        // The symlink was replaced by the real directory the sandbox had.
        assert_eq!(r.applied, vec!["link", "link/pwned.txt"]);
        assert!(fs::symlink_metadata(dest.path().join("link"))
            .unwrap()
            .is_dir());
        // Where the symlink itself may not change (protected), nothing is written through it.
        let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::create_dir_all(dest.path().join("vendor")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dest.path().join("vendor/lib")).unwrap();
        write(src.path(), "vendor/lib/pwned.txt", "x");
        let policy = Policy {
            protected: vec!["vendor/lib".into()],
            ..Policy::default()
        };
        let r = apply_tree(src.path(), dest.path(), &policy).unwrap();
        assert!(r.refused.iter().any(|x| x.path == "vendor/lib"), "{r:?}");
        assert!(
            r.refused.iter().any(|x| x.path == "vendor/lib/pwned.txt"),
            "{r:?}"
        );
        assert!(fs::read_dir(outside.path()).unwrap().next().is_none());
    }

    #[test]
    fn symlink_containment_is_computed_from_the_links_directory() {
        assert!(symlink_stays_inside("a/b/link", Path::new("../c")));
        assert!(!symlink_stays_inside("a/link", Path::new("../../c")));
        assert!(!symlink_stays_inside("link", Path::new("/etc")));
        assert!(symlink_stays_inside("link", Path::new("./x/../y")));
    }
}
