//! The repository in and the working tree out, as tar archives for Docker's archive API.
//! Packing writes every entry as owned by the agent (uid 1000) without set-id bits. Unpacking
//! treats the archive as hostile: only plain relative paths, no name git takes for `.git`, never a
//! write through a symbolic link, no symbolic link left behind that resolves outside the tree
//! (those are reported instead, so the tree's consumer keeps its own), and limits on bytes and
//! entries.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};

use bytes::Bytes;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use tokio::sync::mpsc;

use super::git_path;

/// The uid and gid of the `agent` user inside the sandbox image.
pub const AGENT_UID: u64 = 1000;

/// Tar of the tree under `root` (paths relative to it), as the agent's files.
pub fn pack_dir(root: &Path) -> io::Result<Vec<u8>> {
    pack_into(root, Vec::new())
}

/// Tar of the tree under `root`, written to `out` as it is read.
pub fn pack_into<W: Write>(root: &Path, out: W) -> io::Result<W> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    pack_children(&mut builder, root, Path::new(""))?;
    builder.into_inner()
}

fn pack_children<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let rel_path = rel.join(entry.file_name());
        let full = root.join(&rel_path);
        let meta = fs::symlink_metadata(&full)?;
        let mut header = tar::Header::new_gnu();
        header.set_uid(AGENT_UID);
        header.set_gid(AGENT_UID);
        header.set_username("agent")?;
        header.set_groupname("agent")?;
        header.set_mtime(meta.mtime().max(0) as u64);
        header.set_mode(meta.mode() & 0o777);
        let file_type = meta.file_type();
        if file_type.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode((meta.mode() & 0o777) | 0o700);
            header.set_size(0);
            builder.append_data(&mut header, &rel_path, io::empty())?;
            pack_children(builder, root, &rel_path)?;
        } else if file_type.is_file() {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(meta.len());
            let file = fs::File::open(&full)?;
            builder.append_data(&mut header, &rel_path, file.take(meta.len()))?;
        } else if file_type.is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            let target = fs::read_link(&full)?;
            builder.append_link(&mut header, &rel_path, target)?;
        }
        // Sockets, fifos and devices are not part of a repository: left out.
    }
    Ok(())
}

/// The blocking end of a pipe from async code: what the packer writes goes out as chunks.
pub struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl ChannelWriter {
    pub fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> Self {
        ChannelWriter { tx }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The blocking end of a pipe into async code: chunks (or an error) become a `Read`.
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// What unpacking wrote, and what it held back.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    pub files: usize,
    pub dirs: usize,
    pub symlinks: usize,
    pub bytes: u64,
    /// Entries read, not counting the sandbox's own `.git`.
    pub entries: u64,
    /// What was not written, and why: links that leave the tree, and refused entries.
    pub held_back: Vec<HeldBack>,
}

impl Unpacked {
    /// The refused entries (not the links that leave the tree), as `path: reason` lines.
    pub fn refused(&self) -> Vec<String> {
        self.held_back
            .iter()
            .filter_map(|h| match &h.reason {
                HoldReason::Refused(why) => Some(format!("{}: {why}", h.path)),
                HoldReason::LinkOutside { .. } => None,
            })
            .collect()
    }
}

/// One path of the tree that unpacking did not write. Whoever applies the tree leaves the
/// path (and everything under it) as it was: held back is never the same as deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBack {
    /// Relative to the tree, `/`-separated.
    pub path: String,
    pub reason: HoldReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldReason {
    /// A symbolic link that resolves outside the tree (absolute, or `..` past the top): never
    /// created on the host, where it could be followed; its target, for comparison.
    LinkOutside { target: PathBuf },
    /// An entry refused, with the reason (an unsafe path, a name git takes for `.git`, a hard
    /// link to outside, a device, ...).
    Refused(String),
}

/// How much a tree may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of file content.
    pub bytes: u64,
    /// Entries of any kind.
    pub entries: u64,
}

impl Limits {
    pub const NONE: Limits = Limits {
        bytes: u64::MAX,
        entries: u64::MAX,
    };
}

/// The error inside the `io::Error` of a tree past its [`Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OverLimit {
    #[error("the working tree is larger than the limit of {0} bytes")]
    Bytes(u64),
    #[error("the working tree has more than the limit of {0} entries")]
    Entries(u64),
}

impl OverLimit {
    /// The limit inside `error`, if that is what it is.
    pub fn of(error: &io::Error) -> Option<OverLimit> {
        error.get_ref()?.downcast_ref::<OverLimit>().copied()
    }

    fn error(self) -> io::Error {
        io::Error::other(self)
    }
}

fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Unpacks `archive` into the empty directory `dest`, dropping the first `strip` components of
/// every path (Docker names entries after the copied directory). The top-level `.git` (the
/// sandbox's own copy) is read past; any other name git takes for `.git` is refused and listed
/// once. Stops with an [`OverLimit`] error past `limits`.
pub fn unpack_tree(
    archive: impl Read,
    dest: &Path,
    strip: usize,
    limits: Limits,
) -> io::Result<Unpacked> {
    let mut report = Unpacked::default();
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    let mut links: Vec<PathBuf> = Vec::new();
    // Refused directories: what is under them is refused with them, and listed once.
    let mut refused_dirs: Vec<PathBuf> = Vec::new();
    let mut archive = tar::Archive::new(archive);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let Some(rel) = safe_relative(&raw, strip) else {
            // The top directory itself (`workspace/`) is no entry; `..` or a root is hostile.
            let plain = raw
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
            if !plain || raw.components().count() > strip {
                report.entries += 1;
                hold(&mut report, display(&raw), "unsafe path");
            }
            continue;
        };
        if rel.components().next() == Some(Component::Normal(".git".as_ref())) {
            continue;
        }
        report.entries += 1;
        if report.entries > limits.entries {
            return Err(OverLimit::Entries(limits.entries).error());
        }
        if refused_dirs.iter().any(|d| rel.starts_with(d)) {
            continue;
        }
        let kind = entry.header().entry_type();
        let bytes = rel.as_os_str().as_bytes();
        if let Some(n) = git_path::refused_prefix(bytes) {
            let prefix: PathBuf = rel.components().take(n).collect();
            hold(&mut report, display(&prefix), git_path::REFUSAL);
            refused_dirs.push(prefix);
            continue;
        }
        if kind == tar::EntryType::Symlink && git_path::refuses(bytes, true) {
            hold(&mut report, display(&rel), git_path::REFUSAL);
            continue;
        }
        let target = dest.join(&rel);
        if let Some(parent) = rel.parent() {
            if !ensure_real_dirs(dest, parent)? {
                hold(&mut report, display(&rel), "parent is not a directory");
                continue;
            }
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&target) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        fs::remove_file(&target)?;
                        fs::create_dir(&target)?;
                    }
                    Err(_) => fs::create_dir(&target)?,
                }
                dir_modes.push((target, mode | 0o700));
                report.dirs += 1;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.header().size()?;
                if report.bytes.saturating_add(size) > limits.bytes {
                    return Err(OverLimit::Bytes(limits.bytes).error());
                }
                remove_non_dir(&target)?;
                // create_new never follows a symbolic link left at the path.
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)?;
                let written = io::copy(&mut (&mut entry).take(size), &mut file)?;
                file.set_permissions(fs::Permissions::from_mode(mode))?;
                report.bytes += written;
                report.files += 1;
            }
            tar::EntryType::Symlink => {
                let Some(link) = entry.link_name()?.map(|l| l.into_owned()) else {
                    continue;
                };
                if link.is_absolute() {
                    report.held_back.push(HeldBack {
                        path: display(&rel),
                        reason: HoldReason::LinkOutside { target: link },
                    });
                    continue;
                }
                remove_non_dir(&target)?;
                if fs::symlink_metadata(&target).is_ok() {
                    hold(&mut report, display(&rel), "a directory is in the way");
                    continue;
                }
                std::os::unix::fs::symlink(&link, &target)?;
                links.push(rel);
            }
            tar::EntryType::Link => {
                // A hard link to a file written earlier: the host gets a copy, never a link.
                let source = entry
                    .link_name()?
                    .and_then(|l| safe_relative(&l, strip))
                    .filter(|l| !git_path::refuses(l.as_os_str().as_bytes(), false))
                    .filter(|l| no_links_on_the_way(dest, l))
                    .map(|l| dest.join(l));
                let regular = source
                    .as_ref()
                    .and_then(|s| fs::symlink_metadata(s).ok())
                    .filter(|m| m.file_type().is_file());
                let (Some(source), Some(meta)) = (source, regular) else {
                    hold(&mut report, display(&rel), "hard link to outside the tree");
                    continue;
                };
                if report.bytes.saturating_add(meta.len()) > limits.bytes {
                    return Err(OverLimit::Bytes(limits.bytes).error());
                }
                remove_non_dir(&target)?;
                let mut from = fs::File::open(&source)?;
                let mut to = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)?;
                report.bytes += io::copy(&mut from, &mut to)?;
                to.set_permissions(meta.permissions())?;
                report.files += 1;
            }
            other => {
                let why = format!("entry type {other:?} not copied");
                hold(&mut report, display(&rel), &why);
            }
        }
    }
    // A link is only judged once the whole tree exists: it may point through other links.
    for rel in links {
        if resolves_inside(dest, &rel) {
            report.symlinks += 1;
        } else {
            let path = dest.join(&rel);
            let target = fs::read_link(&path)?;
            fs::remove_file(&path)?;
            report.held_back.push(HeldBack {
                path: display(&rel),
                reason: HoldReason::LinkOutside { target },
            });
        }
    }
    // Directory modes last, so a read-only directory did not block its own content.
    for (dir, mode) in dir_modes.into_iter().rev() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode))?;
    }
    Ok(report)
}

fn hold(report: &mut Unpacked, path: String, why: &str) {
    report.held_back.push(HeldBack {
        path,
        reason: HoldReason::Refused(why.to_string()),
    });
}

/// The path without its first `strip` components, if everything left is a plain name.
pub fn safe_relative(path: &Path, strip: usize) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for (i, component) in path.components().enumerate() {
        match component {
            Component::Normal(name) if i >= strip => out.push(name),
            Component::Normal(_) => {}
            Component::CurDir if i < strip || out.as_os_str().is_empty() => {}
            _ => return None,
        }
    }
    if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    }
}

/// Makes sure every directory from `root` down to `root/rel` exists and is a real directory,
/// never a symbolic link. Returns false when something else is in the way.
fn ensure_real_dirs(root: &Path, rel: &Path) -> io::Result<bool> {
    let mut current = root.to_path_buf();
    for component in rel.components() {
        let Component::Normal(name) = component else {
            return Ok(false);
        };
        current.push(name);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&current)?,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Whether every directory on the way from `root` to `root/rel` is a real directory, so
/// opening it cannot be steered out of the tree by a link.
fn no_links_on_the_way(root: &Path, rel: &Path) -> bool {
    let mut current = root.to_path_buf();
    let Some(parent) = rel.parent() else {
        return true;
    };
    for component in parent.components() {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            _ => return false,
        }
    }
    true
}

/// Removes a file or link at `path` (an entry seen twice); leaves directories alone.
fn remove_non_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_dir() => fs::remove_file(path),
        _ => Ok(()),
    }
}

/// One step of a path being resolved.
enum Step {
    Parent,
    Name(OsString),
}

/// The steps of a relative path; None for an absolute one.
fn steps(path: &Path) -> Option<Vec<Step>> {
    let mut out = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(Step::Name(name.to_os_string())),
            Component::ParentDir => out.push(Step::Parent),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether `root/rel`, with every symbolic link on the way followed as the host would follow
/// it, stays inside `root`. Absolute targets, `..` above the root and link loops count as
/// outside; a missing part is taken as written.
pub fn resolves_inside(root: &Path, rel: &Path) -> bool {
    let Some(start) = steps(rel) else {
        return false;
    };
    let mut stack: Vec<OsString> = Vec::new();
    let mut queue: VecDeque<Step> = start.into();
    let mut hops = 0;
    while let Some(step) = queue.pop_front() {
        match step {
            Step::Parent => {
                if stack.pop().is_none() {
                    return false;
                }
            }
            Step::Name(name) => {
                let mut candidate = root.to_path_buf();
                candidate.extend(&stack);
                candidate.push(&name);
                match fs::symlink_metadata(&candidate) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        hops += 1;
                        if hops > 40 {
                            return false;
                        }
                        let Some(parts) = fs::read_link(&candidate).ok().and_then(|t| steps(&t))
                        else {
                            return false;
                        };
                        for part in parts.into_iter().rev() {
                            queue.push_front(part);
                        }
                    }
                    _ => stack.push(name),
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            // Raw names, so hostile paths ("..", absolute) reach the unpacker as written.
            let name = header.as_old_mut();
            name.name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(link) = link {
                name.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            header.set_cksum();
            builder.append(&header, *data).expect("append");
        }
        builder.into_inner().expect("tar")
    }

    #[test]
    fn pack_then_unpack_round_trips_files_dirs_modes_and_inner_links() {
        let src = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(src.path().join("a/b")).expect("mkdir");
        fs::write(src.path().join("a/b/file.txt"), b"hello").expect("write");
        fs::write(src.path().join("run.sh"), b"#!/bin/sh\n").expect("write");
        fs::set_permissions(src.path().join("run.sh"), fs::Permissions::from_mode(0o755))
            .expect("chmod");
        symlink("a/b/file.txt", src.path().join("link")).expect("symlink");
        let tar = pack_dir(src.path()).expect("pack");

        let dest = tempfile::tempdir().expect("tempdir");
        let report = unpack_tree(&tar[..], dest.path(), 0, Limits::NONE).expect("unpack");
        assert_eq!(report.files, 2);
        assert_eq!(report.symlinks, 1);
        assert!(report.held_back.is_empty(), "{:?}", report.held_back);
        assert_eq!(
            fs::read(dest.path().join("a/b/file.txt")).expect("read"),
            b"hello"
        );
        let mode = fs::metadata(dest.path().join("run.sh"))
            .expect("meta")
            .mode()
            & 0o777;
        assert_eq!(mode, 0o755);
        assert_eq!(
            fs::read_link(dest.path().join("link")).expect("readlink"),
            PathBuf::from("a/b/file.txt")
        );
    }

    #[test]
    fn packed_entries_belong_to_the_agent_without_set_id_bits() {
        let src = tempfile::tempdir().expect("tempdir");
        fs::write(src.path().join("suid"), b"x").expect("write");
        fs::set_permissions(src.path().join("suid"), fs::Permissions::from_mode(0o4755))
            .expect("chmod");
        let tar = pack_dir(src.path()).expect("pack");
        let mut archive = tar::Archive::new(&tar[..]);
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            assert_eq!(entry.header().uid().expect("uid"), AGENT_UID);
            assert_eq!(entry.header().mode().expect("mode") & 0o7000, 0);
        }
    }

    #[test]
    fn git_metadata_never_comes_back() {
        let tar = tar_of(&[
            (
                "workspace/.git/config",
                tar::EntryType::Regular,
                b"[core]",
                None,
            ),
            (
                "workspace/sub/.git/hooks/pre-commit",
                tar::EntryType::Regular,
                b"x",
                None,
            ),
            ("workspace/kept.txt", tar::EntryType::Regular, b"k", None),
        ]);
        let dest = tempfile::tempdir().expect("tempdir");
        unpack_tree(&tar[..], dest.path(), 1, Limits::NONE).expect("unpack");
        assert!(!dest.path().join(".git").exists());
        assert!(!dest.path().join("sub/.git").exists());
        assert!(dest.path().join("kept.txt").exists());
    }

    #[test]
    fn dot_dot_and_absolute_paths_are_refused() {
        let outside = tempfile::tempdir().expect("tempdir");
        let dest_parent = tempfile::tempdir().expect("tempdir");
        let dest = dest_parent.path().join("dest");
        fs::create_dir(&dest).expect("mkdir");
        let abs = format!("{}/abs.txt", outside.path().display());
        let tar = tar_of(&[
            (
                "workspace/../escape.txt",
                tar::EntryType::Regular,
                b"x",
                None,
            ),
            (&abs, tar::EntryType::Regular, b"x", None),
        ]);
        let report = unpack_tree(&tar[..], &dest, 1, Limits::NONE).expect("unpack");
        assert_eq!(report.refused().len(), 2, "{:?}", report.held_back);
        assert!(!dest_parent.path().join("escape.txt").exists());
        assert!(!outside.path().join("abs.txt").exists());
    }

    #[test]
    fn a_link_to_outside_cannot_be_written_through() {
        let outside = tempfile::tempdir().expect("tempdir");
        let dest = tempfile::tempdir().expect("tempdir");
        let out = outside.path().display().to_string();
        let tar = tar_of(&[
            ("w/evil", tar::EntryType::Symlink, b"", Some(&out)),
            ("w/evil/pwned.txt", tar::EntryType::Regular, b"x", None),
            ("w/up", tar::EntryType::Symlink, b"", Some("../../..")),
            ("w/up/pwned2.txt", tar::EntryType::Regular, b"x", None),
        ]);
        let report = unpack_tree(&tar[..], dest.path(), 1, Limits::NONE).expect("unpack");
        assert!(!outside.path().join("pwned.txt").exists());
        assert_eq!(fs::read_dir(outside.path()).expect("ls").count(), 0);
        // What the archive meant to write through the links lands inside the tree, or nowhere.
        for name in ["evil", "up"] {
            if let Ok(meta) = fs::symlink_metadata(dest.path().join(name)) {
                assert!(!meta.file_type().is_symlink(), "{name} is still a link");
            }
        }
        assert!(!report.held_back.is_empty());
    }

    #[test]
    fn chained_links_that_escape_together_are_removed() {
        let dest = tempfile::tempdir().expect("tempdir");
        // Each link alone looks inside; followed one through the other, `e` leaves the tree.
        let tar = tar_of(&[
            ("w/sub", tar::EntryType::Directory, b"", None),
            ("w/d", tar::EntryType::Symlink, b"", Some("sub/..")),
            ("w/e", tar::EntryType::Symlink, b"", Some("d/../x")),
            ("w/ok", tar::EntryType::Symlink, b"", Some("sub")),
        ]);
        let report = unpack_tree(&tar[..], dest.path(), 1, Limits::NONE).expect("unpack");
        assert!(fs::symlink_metadata(dest.path().join("d")).is_ok());
        assert!(
            fs::symlink_metadata(dest.path().join("e")).is_err(),
            "{report:?}"
        );
        assert!(fs::symlink_metadata(dest.path().join("ok")).is_ok());
    }

    #[test]
    fn a_later_file_replaces_a_link_instead_of_following_it() {
        let outside = tempfile::tempdir().expect("tempdir");
        let victim = outside.path().join("victim.txt");
        fs::write(&victim, b"original").expect("write");
        let dest = tempfile::tempdir().expect("tempdir");
        let target = victim.display().to_string();
        let tar = tar_of(&[
            ("w/f", tar::EntryType::Symlink, b"", Some(&target)),
            ("w/f", tar::EntryType::Regular, b"new", None),
        ]);
        unpack_tree(&tar[..], dest.path(), 1, Limits::NONE).expect("unpack");
        assert_eq!(fs::read(&victim).expect("read"), b"original");
        assert_eq!(fs::read(dest.path().join("f")).expect("read"), b"new");
    }

    #[test]
    fn hard_links_come_back_as_copies_and_only_from_inside() {
        let outside = tempfile::tempdir().expect("tempdir");
        let secret = outside.path().join("secret");
        fs::write(&secret, b"host secret").expect("write");
        let secret = secret.display().to_string();
        let dest = tempfile::tempdir().expect("tempdir");
        let ups = dest.path().components().count();
        let outside_rel = format!("{}{}", "../".repeat(ups), outside.path().display());
        let tar = tar_of(&[
            ("w/a", tar::EntryType::Regular, b"shared", None),
            ("w/b", tar::EntryType::Link, b"", Some("w/a")),
            ("w/c", tar::EntryType::Link, b"", Some(&secret)),
            ("w/d", tar::EntryType::Link, b"", Some("w/../../etc/passwd")),
            // Through a link made earlier in the same archive, before links are judged.
            ("w/out", tar::EntryType::Symlink, b"", Some(&outside_rel)),
            ("w/e", tar::EntryType::Link, b"", Some("w/out/secret")),
        ]);
        let report = unpack_tree(&tar[..], dest.path(), 1, Limits::NONE).expect("unpack");
        assert_eq!(fs::read(dest.path().join("b")).expect("read"), b"shared");
        let a = fs::metadata(dest.path().join("a")).expect("meta");
        let b = fs::metadata(dest.path().join("b")).expect("meta");
        assert_ne!(a.ino(), b.ino(), "a copy, not a link");
        assert!(!dest.path().join("c").exists());
        assert!(!dest.path().join("d").exists());
        assert!(
            !dest.path().join("e").exists(),
            "host file read through a link"
        );
        assert!(fs::symlink_metadata(dest.path().join("out")).is_err());
        assert_eq!(report.refused().len(), 3, "{:?}", report.held_back);
        assert_eq!(
            report.held_back.len(),
            4,
            "the link to outside is held back too"
        );
    }

    #[test]
    fn a_tree_over_the_size_limit_is_an_error() {
        let tar = tar_of(&[("w/big", tar::EntryType::Regular, &[0u8; 2048], None)]);
        let dest = tempfile::tempdir().expect("tempdir");
        let limits = Limits {
            bytes: 1024,
            ..Limits::NONE
        };
        let err = unpack_tree(&tar[..], dest.path(), 1, limits).expect_err("over the limit");
        assert_eq!(OverLimit::of(&err), Some(OverLimit::Bytes(1024)));
    }

    #[test]
    fn channel_pipes_carry_a_tar_and_its_errors() {
        let src = tempfile::tempdir().expect("tempdir");
        fs::write(src.path().join("f"), vec![7u8; 300_000]).expect("write");
        let (tx, rx) = mpsc::channel(4);
        let root = src.path().to_path_buf();
        let packer = std::thread::spawn(move || {
            pack_into(&root, io::BufWriter::new(ChannelWriter::new(tx)))
                .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
                .map(|_| ())
        });
        let dest = tempfile::tempdir().expect("tempdir");
        let report =
            unpack_tree(ChannelReader::new(rx), dest.path(), 0, Limits::NONE).expect("unpack");
        packer.join().expect("join").expect("pack");
        assert_eq!(report.bytes, 300_000);

        let (tx, rx) = mpsc::channel(1);
        tx.try_send(Err(io::Error::other("download failed")))
            .expect("send");
        drop(tx);
        let dest = tempfile::tempdir().expect("tempdir");
        assert!(unpack_tree(ChannelReader::new(rx), dest.path(), 0, Limits::NONE).is_err());
    }

    #[test]
    fn names_git_takes_for_dot_git_are_refused_and_listed_once_per_directory() {
        let tar = tar_of(&[
            ("w/.git/config", tar::EntryType::Regular, b"own", None),
            ("w/.Git/config", tar::EntryType::Regular, b"[core]", None),
            ("w/.Git/hooks/x", tar::EntryType::Regular, b"x", None),
            ("w/sub/.GIT/x", tar::EntryType::Regular, b"x", None),
            ("w/sub/.git/y", tar::EntryType::Regular, b"y", None),
            ("w/git~1/x", tar::EntryType::Regular, b"x", None),
            ("w/.gitmodules", tar::EntryType::Symlink, b"", Some("x")),
            ("w/kept.txt", tar::EntryType::Regular, b"k", None),
        ]);
        let dest = tempfile::tempdir().expect("tempdir");
        let report = unpack_tree(&tar[..], dest.path(), 1, Limits::NONE).expect("unpack");
        let listed: Vec<&str> = report.held_back.iter().map(|h| h.path.as_str()).collect();
        assert_eq!(
            listed,
            [".Git", "sub/.GIT", "sub/.git", "git~1", ".gitmodules"]
        );
        assert!(report
            .held_back
            .iter()
            .all(|h| h.reason == HoldReason::Refused(git_path::REFUSAL.into())));
        let mut left: Vec<String> = fs::read_dir(dest.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["kept.txt"]);
        assert_eq!(report.entries, 7, "the sandbox's own .git is not counted");
    }

    #[test]
    fn links_that_leave_the_tree_are_held_back_with_their_targets() {
        let tar = tar_of(&[
            (
                "w/up-link",
                tar::EntryType::Symlink,
                b"",
                Some("../outside"),
            ),
            ("w/abs", tar::EntryType::Symlink, b"", Some("/etc/passwd")),
            ("w/inner", tar::EntryType::Symlink, b"", Some("kept.txt")),
            ("w/kept.txt", tar::EntryType::Regular, b"k", None),
        ]);
        let dest = tempfile::tempdir().expect("tempdir");
        let report = unpack_tree(&tar[..], dest.path(), 1, Limits::NONE).expect("unpack");
        let outside: Vec<(&str, &Path)> = report
            .held_back
            .iter()
            .filter_map(|h| match &h.reason {
                HoldReason::LinkOutside { target } => Some((h.path.as_str(), target.as_path())),
                HoldReason::Refused(_) => None,
            })
            .collect();
        assert_eq!(
            outside,
            [
                ("abs", Path::new("/etc/passwd")),
                ("up-link", Path::new("../outside"))
            ]
        );
        assert!(report.refused().is_empty());
        assert!(fs::symlink_metadata(dest.path().join("up-link")).is_err());
        assert!(fs::symlink_metadata(dest.path().join("abs")).is_err());
        assert_eq!(report.symlinks, 1);
    }

    #[test]
    fn a_tree_over_the_entry_limit_is_an_error() {
        let names: Vec<String> = (0..20).map(|i| format!("w/f{i}")).collect();
        let entries: Vec<(&str, tar::EntryType, &[u8], Option<&str>)> = names
            .iter()
            .map(|n| (n.as_str(), tar::EntryType::Regular, &b""[..], None))
            .collect();
        let tar = tar_of(&entries);
        let limits = Limits {
            entries: 10,
            ..Limits::NONE
        };
        let dest = tempfile::tempdir().expect("tempdir");
        let err = unpack_tree(&tar[..], dest.path(), 1, limits).expect_err("too many");
        assert_eq!(OverLimit::of(&err), Some(OverLimit::Entries(10)));
        let dest = tempfile::tempdir().expect("tempdir");
        let fits = Limits {
            entries: 20,
            ..Limits::NONE
        };
        assert_eq!(
            unpack_tree(&tar[..], dest.path(), 1, fits)
                .expect("fits")
                .files,
            20
        );
    }

    #[test]
    fn link_loops_count_as_outside() {
        let dest = tempfile::tempdir().expect("tempdir");
        symlink("b", dest.path().join("a")).expect("symlink");
        symlink("a", dest.path().join("b")).expect("symlink");
        assert!(!resolves_inside(dest.path(), Path::new("a")));
    }
}
