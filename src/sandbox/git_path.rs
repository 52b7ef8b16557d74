//! Pure: git's own rules for paths it will not track, so that nothing the agent writes under a
//! name some file system takes for `.git` is copied back, applied or committed.
//!
//! The same checks as git's `verify_path` (read-cache.c) with both `core.protectNTFS` and
//! `core.protectHFS` on, as git applies them on Windows and macOS checkouts:
//! - no empty, `.` or `..` component, and no `.git` in any case (`verify_dotfile`);
//! - NTFS (`is_ntfs_dotgit`, path.c): `.git` or its 8.3 short name `git~1`, in any case,
//!   followed only by dots and spaces (which NTFS drops) or by `:` (an alternate data stream
//!   such as `.git::$INDEX_ALLOCATION`); a backslash separates components there, so each piece
//!   between backslashes is checked too;
//! - HFS+ (`is_hfs_dotgit`, utf8.c): `.git` in any case once the code points HFS+ ignores
//!   (zero-width joiners, direction marks, U+FEFF, ...) are dropped;
//! - a symbolic link named `.gitmodules` or one of its NTFS and HFS aliases.
//!
//! Hand-written because git's checks live in C, not in a crate; written from git's source, and
//! tested alias by alias below.

/// Why git would refuse a path, for the refusal lists.
pub const REFUSAL: &str = "git treats this name as .git on some file systems";

/// Whether git refuses `path` (slash-separated, relative): an empty, `.` or `..` component, or a
/// component that is `.git` under any alias. `symlink`: the path is a symbolic link, for which
/// `.gitmodules` aliases are refused too.
pub fn refuses(path: &[u8], symlink: bool) -> bool {
    let parts: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
    let last = parts.len().saturating_sub(1);
    parts.iter().enumerate().any(|(i, part)| {
        part.is_empty()
            || *part == b"."
            || *part == b".."
            || is_dotgit(part)
            || (symlink && i == last && is_dotgitmodules(part))
    })
}

/// The length, in components, of the shortest prefix of `path` that git refuses; `None` when
/// git takes the whole path. Everything under a refused directory is refused with it, so a
/// caller lists the prefix once instead of each file below it.
pub fn refused_prefix(path: &[u8]) -> Option<usize> {
    path.split(|b| *b == b'/')
        .position(|part| part.is_empty() || part == b"." || part == b".." || is_dotgit(part))
        .map(|i| i + 1)
}

/// Whether one path component is `.git` to git on any file system it protects.
pub fn is_dotgit(component: &[u8]) -> bool {
    component.eq_ignore_ascii_case(b".git")
        || component.split(|b| *b == b'\\').any(is_ntfs_dotgit)
        || is_hfs_dot(component, b"git")
}

/// `.git` or `git~1`, any case, then only dots and spaces up to the end or a `:`.
fn is_ntfs_dotgit(name: &[u8]) -> bool {
    let rest = if name.len() >= 4 && name[..4].eq_ignore_ascii_case(b".git") {
        &name[4..]
    } else if name.len() >= 5 && name[..5].eq_ignore_ascii_case(b"git~1") {
        &name[5..]
    } else {
        return false;
    };
    only_dots_and_spaces_to_the_end(rest)
}

/// What NTFS drops from the end of a name, up to the end or an alternate data stream.
fn only_dots_and_spaces_to_the_end(rest: &[u8]) -> bool {
    for &c in rest {
        if c == b':' {
            return true;
        }
        if c != b'.' && c != b' ' {
            return false;
        }
    }
    true
}

/// `.gitmodules` as git's `is_ntfs_dotgitmodules` and `is_hfs_dotgitmodules` see it.
fn is_dotgitmodules(component: &[u8]) -> bool {
    is_hfs_dot(component, b"gitmodules")
        || component
            .split(|b| *b == b'\\')
            .any(|piece| is_ntfs_dot_generic(piece, b"gitmodules", b"gi7eba"))
}

/// git's `is_ntfs_dot_generic`: `.<needle>`, its short name (`<first 6>~1` to `~4`), or the
/// hashed fallback short name (`<prefix>~<digits>`), then only dots and spaces.
fn is_ntfs_dot_generic(name: &[u8], needle: &[u8], short_prefix: &[u8]) -> bool {
    let n = needle.len();
    if name.len() > n && name[0] == b'.' && name[1..=n].eq_ignore_ascii_case(needle) {
        return only_dots_and_spaces_to_the_end(&name[n + 1..]);
    }
    if name.len() >= 8
        && name[..6].eq_ignore_ascii_case(&needle[..6])
        && name[6] == b'~'
        && (b'1'..=b'4').contains(&name[7])
    {
        return only_dots_and_spaces_to_the_end(&name[8..]);
    }
    // The fallback short name: up to six characters of the prefix, `~`, a digit 1-9, digits,
    // eight characters in all.
    let mut i = 0;
    let mut saw_tilde = false;
    while i < 8 {
        let Some(&c) = name.get(i) else {
            return false;
        };
        if saw_tilde {
            if !c.is_ascii_digit() {
                return false;
            }
        } else if c == b'~' {
            i += 1;
            match name.get(i) {
                Some(d) if (b'1'..=b'9').contains(d) => {}
                _ => return false,
            }
            saw_tilde = true;
        } else if i >= 6 || c >= 0x80 || c.to_ascii_lowercase() != short_prefix[i] {
            return false;
        }
        i += 1;
    }
    only_dots_and_spaces_to_the_end(&name[8..])
}

/// Code points HFS+ ignores when it compares names (git's `next_hfs_char`).
fn hfs_ignores(c: u32) -> bool {
    matches!(c, 0x200c..=0x200f | 0x202a..=0x202e | 0x206a..=0x206f | 0xfeff)
}

/// The next code point HFS+ would compare, and the rest; `None` at the end or at bytes that
/// are not UTF-8 (git stops there too, which counts as the end of the name).
fn next_hfs_char(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let mut rest = bytes;
    loop {
        let width = match *rest.first()? {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => return None,
        };
        let text = std::str::from_utf8(rest.get(..width)?).ok()?;
        let c = text.chars().next()? as u32;
        rest = &rest[width..];
        if !hfs_ignores(c) {
            return Some((c, rest));
        }
    }
}

/// git's `is_hfs_dot_generic`: `.` then `needle` (ASCII, any case) with ignored code points
/// anywhere, then the end.
fn is_hfs_dot(component: &[u8], needle: &[u8]) -> bool {
    let Some((first, mut rest)) = next_hfs_char(component) else {
        return false;
    };
    if first != u32::from(b'.') {
        return false;
    }
    for &want in needle {
        match next_hfs_char(rest) {
            Some((c, r)) if c < 128 && (c as u8).to_ascii_lowercase() == want => rest = r,
            _ => return false,
        }
    }
    next_hfs_char(rest).is_none()
}

/// One path component folded the way a case-insensitive, NTFS- or HFS+-like file system
/// compares it: ignored code points dropped, ASCII lowercased, trailing dots and spaces
/// dropped. For prefixes such as `.github/workflows/` that must match under any such alias.
pub fn fold(component: &str) -> String {
    let kept: String = component
        .chars()
        .filter(|c| !hfs_ignores(*c as u32))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    kept.trim_end_matches(['.', ' ']).to_string()
}

/// Whether `path` lies under `prefix` (both slash-separated) when each component is compared
/// folded, as a case-insensitive file system would. A prefix that ends in `/` is a directory
/// (only what is below it matches); without, the path itself matches too.
pub fn under_folded(path: &str, prefix: &str) -> bool {
    let want: Vec<String> = prefix
        .split('/')
        .filter(|p| !p.is_empty())
        .map(fold)
        .collect();
    let have: Vec<String> = path.split('/').map(fold).collect();
    let deep_enough = if prefix.ends_with('/') {
        have.len() > want.len()
    } else {
        have.len() >= want.len()
    };
    deep_enough && have[..want.len()] == want[..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(path: &str) -> bool {
        refuses(path.as_bytes(), false)
    }

    #[test]
    fn dot_git_in_any_case_is_refused_at_any_depth() {
        for path in [
            ".git",
            ".git/config",
            ".GIT",
            ".Git/config",
            "sub/.GIT/x",
            "a/b/.gIt",
        ] {
            assert!(refused(path), "{path}");
        }
    }

    #[test]
    fn ntfs_trailing_dots_and_spaces_are_refused() {
        for path in [".git.", ".git ", ".git. .", "sub/.GIT..", ".git   /hooks/x"] {
            assert!(refused(path), "{path:?}");
        }
    }

    #[test]
    fn the_ntfs_short_name_is_refused() {
        for path in ["git~1", "GIT~1/config", "sub/Git~1", "git~1.", "git~1 "] {
            assert!(refused(path), "{path}");
        }
        // Other short names are other files.
        assert!(!refused("git~2"));
        assert!(!refused("git~10"));
    }

    #[test]
    fn ntfs_alternate_data_streams_are_refused() {
        for path in [
            ".git::$INDEX_ALLOCATION",
            ".git::$INDEX_ALLOCATION/config",
            ".git:x",
        ] {
            assert!(refused(path), "{path}");
        }
    }

    #[test]
    fn a_backslash_is_a_separator_on_ntfs() {
        assert!(refused("sub\\.git\\config"));
        assert!(refused(".git\\hooks"));
        assert!(!refused("sub\\not-git"));
    }

    #[test]
    fn hfs_ignorable_code_points_inside_dot_git_are_refused() {
        for ignorable in [
            '\u{200c}', '\u{200d}', '\u{200e}', '\u{202e}', '\u{206f}', '\u{feff}',
        ] {
            let a = format!(".g{ignorable}it");
            let b = format!("{ignorable}.GIT/config");
            let c = format!("sub/.git{ignorable}/x");
            for path in [a, b, c] {
                assert!(refused(&path), "{path:?}");
            }
        }
        // A code point HFS+ does not ignore makes another name.
        assert!(!refused(".g\u{00e9}it"));
        assert!(!refused(".git\u{00e9}"));
    }

    #[test]
    fn names_that_only_start_like_git_are_fine() {
        for path in [
            ".gitignore",
            ".github/workflows/ci.yml",
            ".gitattributes",
            "git",
            ".gitx",
            "x.git",
            "my.git/repo",
            "git~1x",
            ".git-blame-ignore-revs",
            "src/.gitkeep",
        ] {
            assert!(!refused(path), "{path}");
        }
    }

    #[test]
    fn empty_dot_and_dot_dot_components_are_refused() {
        for path in ["", "a//b", "./a", "a/.", "a/../b", "..", "a/"] {
            assert!(refused(path), "{path:?}");
        }
    }

    #[test]
    fn a_gitmodules_symlink_is_refused_but_the_file_is_not() {
        for name in [
            ".gitmodules",
            ".GITMODULES",
            ".gitmodules.",
            "gitmod~1",
            "GI7EBA~1",
            "gi7eba~9",
        ] {
            assert!(refuses(name.as_bytes(), true), "{name}");
            assert!(!refuses(name.as_bytes(), false), "{name}");
        }
        assert!(refuses(".gitmodu\u{200c}les".as_bytes(), true));
        assert!(!refuses("gitmod~5".as_bytes(), true));
        assert!(!refuses("sub/.gitmodules-not".as_bytes(), true));
    }

    #[test]
    fn bytes_that_are_not_utf8_end_the_hfs_comparison_as_git_does() {
        assert!(refuses(b".git\xff", false));
        assert!(!refuses(b"\xff.git", false));
    }

    #[test]
    fn the_refused_prefix_is_the_first_bad_component() {
        assert_eq!(refused_prefix(b"sub/.GIT/hooks/x"), Some(2));
        assert_eq!(refused_prefix(b".Git"), Some(1));
        assert_eq!(refused_prefix(b"a/b/c"), None);
    }

    #[test]
    fn protected_prefixes_match_under_any_case_or_alias() {
        let prefix = ".github/workflows/";
        for path in [
            ".github/workflows/ci.yml",
            ".GitHub/workflows/x.yml",
            ".github/WORKFLOWS/x.yml",
            ".github./workflows /x.yml",
            ".git\u{200c}hub/workflows/x.yml",
        ] {
            assert!(under_folded(path, prefix), "{path:?}");
        }
        for path in [
            ".github/workflows",
            ".github/workflow/x.yml",
            "github/workflows/x",
        ] {
            assert!(!under_folded(path, prefix), "{path:?}");
        }
    }
}
