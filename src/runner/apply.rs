//! Applies the working tree the sandbox gave back onto the host's clean clone, under a policy:
//! what the agent writes is untrusted, so changes under `.github/workflows/` and files over a
//! size cap are refused (left as they were, and reported), symlinks must stay inside the tree,
//! and nothing is ever written through a symlink. `.git` is never read from or written to.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Policy {
    pub max_file_bytes: u64,
    /// Path prefixes the agent may not change.
    pub protected: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_file_bytes: 5 * 1024 * 1024,
            protected: vec![".github/workflows/".into()],
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

/// Every file and symlink under `root`, relative, except `.git`. Directories are implied.
fn scan(root: &Path) -> io::Result<Vec<(String, Entry)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in fs::read_dir(&dir)? {
            let item = item?;
            let path = item.path();
            let rel = path.strip_prefix(root).map_err(io::Error::other)?;
            if rel.components().next() == Some(Component::Normal(".git".as_ref())) {
                continue;
            }
            let meta = fs::symlink_metadata(&path)?;
            let ft = meta.file_type();
            let Some(rel) = rel.to_str() else {
                continue; // Not UTF-8: neither git nor GitHub shows such names well; skip it.
            };
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_symlink() {
                out.push((rel.to_owned(), Entry::Symlink(fs::read_link(&path)?)));
            } else if ft.is_file() {
                out.push((
                    rel.to_owned(),
                    Entry::File {
                        executable: meta.permissions().mode() & 0o111 != 0,
                        len: meta.len(),
                    },
                ));
            }
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

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    Ok(fs::read(a)? == fs::read(b)?)
}

/// Makes `dest`'s working tree equal to `src`'s, within the policy.
pub fn apply_tree(src: &Path, dest: &Path, policy: &Policy) -> io::Result<Report> {
    let new: std::collections::BTreeMap<_, _> = scan(src)?.into_iter().collect();
    let old: std::collections::BTreeMap<_, _> = scan(dest)?.into_iter().collect();
    let paths: BTreeSet<&String> = new.keys().chain(old.keys()).collect();
    let mut report = Report::default();
    for path in paths {
        let (n, o) = (new.get(path), old.get(path));
        let changed = match (n, o) {
            (
                Some(Entry::File { executable: xn, .. }),
                Some(Entry::File { executable: xo, .. }),
            ) => xn != xo || !same_content(&src.join(path), &dest.join(path))?,
            (a, b) => a != b,
        };
        if !changed {
            continue;
        }
        let refuse = |reason: String| Refusal {
            path: path.clone(),
            reason,
        };
        if let Some(p) = policy
            .protected
            .iter()
            .find(|p| path.starts_with(p.as_str()))
        {
            report
                .refused
                .push(refuse(format!("changes under {p} are not allowed")));
            continue;
        }
        if !no_symlink_ancestors(dest, path) {
            report
                .refused
                .push(refuse("a parent directory is a symlink".into()));
            continue;
        }
        let target = dest.join(path);
        match n {
            None => {
                fs::remove_file(&target)?;
                remove_empty_parents(dest, &target);
            }
            Some(Entry::File { executable, len }) => {
                if *len > policy.max_file_bytes {
                    report.refused.push(refuse(format!(
                        "{len} bytes is over the {} byte limit per file",
                        policy.max_file_bytes
                    )));
                    continue;
                }
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent)?;
                }
                if o.is_some() {
                    fs::remove_file(&target)?;
                }
                fs::copy(src.join(path), &target)?;
                let mode = if *executable { 0o755 } else { 0o644 };
                fs::set_permissions(&target, fs::Permissions::from_mode(mode))?;
            }
            Some(Entry::Symlink(to)) => {
                if !symlink_stays_inside(path, to) {
                    report.refused.push(refuse(format!(
                        "symlink to {} leaves the repository",
                        to.display()
                    )));
                    continue;
                }
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent)?;
                }
                if o.is_some() {
                    fs::remove_file(&target)?;
                }
                std::os::unix::fs::symlink(to, &target)?;
            }
        }
        report.applied.push(path.clone());
    }
    Ok(report)
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
