//! The repository in and the working tree out, as tar archives for Docker's archive API.
//! Packing writes every entry as owned by the agent (uid 1000) without set-id bits. Unpacking
//! treats the archive as hostile: only plain relative paths, nothing under `.git`, never a write
//! through a symbolic link, and no symbolic link left behind that resolves outside the tree.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};

use bytes::Bytes;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use tokio::sync::mpsc;

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

/// What unpacking wrote and what it refused.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    pub files: usize,
    pub dirs: usize,
    pub symlinks: usize,
    pub bytes: u64,
    /// Entries refused, with the reason (unsafe path, escaping link, hard link, ...).
    pub refused: Vec<String>,
}

/// Whether a path component is one we never bring back: git metadata at any depth.
fn is_excluded(name: &std::ffi::OsStr) -> bool {
    name == ".git"
}

/// Unpacks `archive` into the empty directory `dest`, dropping the first `strip` components of
/// every path (Docker names entries after the copied directory). Stops with an error past
/// `max_bytes` of file content.
pub fn unpack_tree(
    archive: impl Read,
    dest: &Path,
    strip: usize,
    max_bytes: u64,
) -> io::Result<Unpacked> {
    let mut report = Unpacked::default();
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    let mut links: Vec<PathBuf> = Vec::new();
    let mut archive = tar::Archive::new(archive);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let Some(rel) = safe_relative(&raw, strip) else {
            if raw.components().count() > strip {
                report
                    .refused
                    .push(format!("{}: unsafe path", raw.display()));
            }
            continue;
        };
        if rel.iter().any(is_excluded) {
            continue;
        }
        let target = dest.join(&rel);
        if let Some(parent) = rel.parent() {
            if !ensure_real_dirs(dest, parent)? {
                report
                    .refused
                    .push(format!("{}: parent is not a directory", rel.display()));
                continue;
            }
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        match entry.header().entry_type() {
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
                if report.bytes + size > max_bytes {
                    return Err(io::Error::new(
                        io::ErrorKind::FileTooLarge,
                        format!("the working tree is larger than the limit of {max_bytes} bytes"),
                    ));
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
                    report.refused.push(format!(
                        "{} -> {}: link outside the tree",
                        rel.display(),
                        link.display()
                    ));
                    continue;
                }
                remove_non_dir(&target)?;
                if fs::symlink_metadata(&target).is_ok() {
                    report
                        .refused
                        .push(format!("{}: a directory is in the way", rel.display()));
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
                    .filter(|l| !l.iter().any(is_excluded))
                    .filter(|l| no_links_on_the_way(dest, l))
                    .map(|l| dest.join(l));
                let regular = source
                    .as_ref()
                    .and_then(|s| fs::symlink_metadata(s).ok())
                    .filter(|m| m.file_type().is_file());
                let (Some(source), Some(meta)) = (source, regular) else {
                    report
                        .refused
                        .push(format!("{}: hard link to outside the tree", rel.display()));
                    continue;
                };
                if report.bytes + meta.len() > max_bytes {
                    return Err(io::Error::new(
                        io::ErrorKind::FileTooLarge,
                        format!("the working tree is larger than the limit of {max_bytes} bytes"),
                    ));
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
                report.refused.push(format!(
                    "{}: entry type {other:?} not copied",
                    rel.display()
                ));
            }
        }
    }
    // A link is only judged once the whole tree exists: it may point through other links.
    for rel in links {
        if resolves_inside(dest, &rel) {
            report.symlinks += 1;
        } else {
            fs::remove_file(dest.join(&rel))?;
            report
                .refused
                .push(format!("{}: link resolves outside the tree", rel.display()));
        }
    }
    // Directory modes last, so a read-only directory did not block its own content.
    for (dir, mode) in dir_modes.into_iter().rev() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode))?;
    }
    Ok(report)
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
        let report = unpack_tree(&tar[..], dest.path(), 0, u64::MAX).expect("unpack");
        assert_eq!(report.files, 2);
        assert_eq!(report.symlinks, 1);
        assert!(report.refused.is_empty(), "{:?}", report.refused);
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
        unpack_tree(&tar[..], dest.path(), 1, u64::MAX).expect("unpack");
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
        let report = unpack_tree(&tar[..], &dest, 1, u64::MAX).expect("unpack");
        assert_eq!(report.refused.len(), 2, "{:?}", report.refused);
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
        let report = unpack_tree(&tar[..], dest.path(), 1, u64::MAX).expect("unpack");
        assert!(!outside.path().join("pwned.txt").exists());
        assert_eq!(fs::read_dir(outside.path()).expect("ls").count(), 0);
        // What the archive meant to write through the links lands inside the tree, or nowhere.
        for name in ["evil", "up"] {
            if let Ok(meta) = fs::symlink_metadata(dest.path().join(name)) {
                assert!(!meta.file_type().is_symlink(), "{name} is still a link");
            }
        }
        assert!(!report.refused.is_empty());
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
        let report = unpack_tree(&tar[..], dest.path(), 1, u64::MAX).expect("unpack");
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
        unpack_tree(&tar[..], dest.path(), 1, u64::MAX).expect("unpack");
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
        let report = unpack_tree(&tar[..], dest.path(), 1, u64::MAX).expect("unpack");
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
        assert_eq!(report.refused.len(), 4, "{:?}", report.refused);
    }

    #[test]
    fn a_tree_over_the_size_limit_is_an_error() {
        let tar = tar_of(&[("w/big", tar::EntryType::Regular, &[0u8; 2048], None)]);
        let dest = tempfile::tempdir().expect("tempdir");
        let err = unpack_tree(&tar[..], dest.path(), 1, 1024).expect_err("over the limit");
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
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
        let report = unpack_tree(ChannelReader::new(rx), dest.path(), 0, u64::MAX).expect("unpack");
        packer.join().expect("join").expect("pack");
        assert_eq!(report.bytes, 300_000);

        let (tx, rx) = mpsc::channel(1);
        tx.try_send(Err(io::Error::other("download failed")))
            .expect("send");
        drop(tx);
        let dest = tempfile::tempdir().expect("tempdir");
        assert!(unpack_tree(ChannelReader::new(rx), dest.path(), 0, u64::MAX).is_err());
    }

    #[test]
    fn link_loops_count_as_outside() {
        let dest = tempfile::tempdir().expect("tempdir");
        symlink("b", dest.path().join("a")).expect("symlink");
        symlink("a", dest.path().join("b")).expect("symlink");
        assert!(!resolves_inside(dest.path(), Path::new("a")));
    }
}
