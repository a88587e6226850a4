//! Unpacking a tar that came out of a bottle onto the host, where nothing in it is trusted.
//!
//! The archive is whatever the bottle (and so, possibly, a compromised agent) put at a path: every
//! entry must stay under the one top-level name the archive starts with — no absolute paths, no
//! `..`, no symbolic link that points outside the copied tree, no device or FIFO, and no writing
//! through a link planted by an earlier entry. Set-user-id, set-group-id and sticky bits are
//! dropped and ownership is not restored, so everything belongs to the user running the copy.
//! Git metadata (any `.git` entry) is left out: a `.git/config` or hook the agent wrote would run
//! its commands on the host the first time anyone runs git there. Commits leave through the git gate.
//! Entries are unpacked into a private staging directory next to the destination, and only a
//! complete tree is renamed into place: a refused archive leaves nothing behind.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Unpacks `archive` so that its top-level entry becomes `dest`, which must not exist yet; its
/// parent must. Returns how many entries were left out as git metadata, or the refusal as an error
/// naming the offending entry.
pub fn unpack_to(archive: impl Read, dest: &Path) -> io::Result<usize> {
    let name = dest
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the destination has no file name"))?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if dest.symlink_metadata().is_ok() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "the destination exists"));
    }
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let staging = Staging::create(parent.join(format!(
        ".{}.bot-bottle-cp-{}-{nanos}",
        name.to_string_lossy(),
        std::process::id()
    )))?;
    let (root, skipped) = unpack_into(archive, &staging.0)?;
    // The rename cannot replace a directory that exists, but it would replace a file: check once
    // more right before it.
    if dest.symlink_metadata().is_ok() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "the destination exists"));
    }
    fs::rename(staging.0.join(root), dest)?;
    Ok(skipped)
}

/// A directory (0700) removed with everything in it when dropped.
struct Staging(PathBuf);

impl Staging {
    fn create(path: PathBuf) -> io::Result<Self> {
        fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Self(path))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Read-only directories from the archive would stop the removal.
        make_writable(&self.0);
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn make_writable(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&entry.path());
            }
        }
    }
}

/// Unpacks every entry of `archive` under `into` (an empty directory this process just made) and
/// returns the archive's top-level name.
fn unpack_into(archive: impl Read, into: &Path) -> io::Result<(PathBuf, usize)> {
    let mut archive = tar::Archive::new(archive);
    let mut root: Option<PathBuf> = None;
    let mut skipped = 0;
    // Directory modes are applied last, deepest first, so a read-only directory does not stop
    // its own entries from being written.
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let raw = entry.path()?.into_owned();
        let rel = relative(&raw).ok_or_else(|| refused(&raw, "leaves the destination"))?;
        let top =
            rel.components().next().map(|c| PathBuf::from(c.as_os_str())).ok_or_else(|| refused(&raw, "is empty"))?;
        match &root {
            None => root = Some(top),
            Some(r) if *r == top => {}
            Some(_) => return Err(refused(&raw, "is outside the copied path")),
        }
        if rel.components().any(|c| c.as_os_str().eq_ignore_ascii_case(".git")) {
            skipped += 1;
            continue;
        }
        let target = into.join(&rel);
        ensure_parents(into, &rel).map_err(|e| refused(&raw, &e.to_string()))?;
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        if kind.is_dir() {
            match target.symlink_metadata() {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(refused(&raw, "appears twice")),
                Err(_) => fs::DirBuilder::new().mode(0o700).create(&target)?,
            }
            dir_modes.push((target, mode | 0o700));
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let mut file = new_file(&target).map_err(|e| refused(&raw, &e.to_string()))?;
            io::copy(&mut entry, &mut file)?;
            file.set_permissions(fs::Permissions::from_mode(mode | 0o600))?;
            if let Ok(mtime) = entry.header().mtime() {
                let _ = file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime));
            }
        } else if kind.is_symlink() {
            let link = entry.link_name()?.ok_or_else(|| refused(&raw, "is a link without a target"))?.into_owned();
            if !symlink_stays_inside(&rel, &link) {
                return Err(refused(
                    &raw,
                    &format!("is a symbolic link to `{}`, outside the copied path", link.display()),
                ));
            }
            std::os::unix::fs::symlink(&link, &target).map_err(|e| refused(&raw, &e.to_string()))?;
        } else if kind.is_hard_link() {
            let link = entry.link_name()?.ok_or_else(|| refused(&raw, "is a link without a target"))?.into_owned();
            let source =
                relative(&link).filter(|l| root.as_ref().is_some_and(|r| l.starts_with(r))).ok_or_else(|| {
                    refused(&raw, &format!("is a hard link to `{}`, outside the copied path", link.display()))
                })?;
            ensure_parents(into, &source).map_err(|e| refused(&raw, &e.to_string()))?;
            let source = into.join(source);
            if !source.symlink_metadata().is_ok_and(|m| m.is_file()) {
                return Err(refused(&raw, &format!("is a hard link to `{}`, which is not a file", link.display())));
            }
            // A copy, not a link: the two stay independent on the host.
            let mut from = fs::File::open(&source)?;
            let mut file = new_file(&target).map_err(|e| refused(&raw, &e.to_string()))?;
            io::copy(&mut from, &mut file)?;
            file.set_permissions(from.metadata()?.permissions())?;
        } else {
            return Err(refused(&raw, &format!("is a {kind:?} entry, which is not copied")));
        }
    }
    dir_modes.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (dir, mode) in dir_modes {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode))?;
    }
    let root = root.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "the archive is empty"))?;
    if !into.join(&root).exists() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "the copied path is git metadata only"));
    }
    Ok((root, skipped))
}

/// A file that did not exist (never through a planted link), private until its mode is set.
fn new_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

fn refused(entry: &Path, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("archive entry `{}` {why}", entry.display()))
}

/// `path` with `.` removed, when it is relative and has no `..`.
fn relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Every directory above `rel` under `into` is a real directory (made here when missing), never a
/// symbolic link an earlier entry planted.
fn ensure_parents(into: &Path, rel: &Path) -> io::Result<()> {
    let mut dir = into.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        dir.push(part.as_os_str());
        match dir.symlink_metadata() {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "passes through `{}`, which is not a directory",
                    part.as_os_str().display()
                )));
            }
            Err(_) => fs::DirBuilder::new().mode(0o700).create(&dir)?,
        }
    }
    Ok(())
}

/// Whether a symbolic link at `rel` (inside the copied tree, whose top is its first component)
/// pointing at `target` resolves inside that tree. Judged by the path alone, which holds only when
/// every `..` comes first: the link's own directory is a real one (parents are checked), while a
/// `..` after a name could climb out of a link planted by an earlier entry (`up -> ..`,
/// then `x -> up/../..`).
fn symlink_stays_inside(rel: &Path, target: &Path) -> bool {
    // The tree's top itself being a link: whatever it points at is outside what was copied.
    if target.is_absolute() || rel.components().count() < 2 {
        return false;
    }
    // Depth below the tree's top of the directory holding the link.
    let mut depth = rel.components().count().saturating_sub(2);
    let mut named = false;
    for c in target.components() {
        match c {
            Component::Normal(_) => {
                depth += 1;
                named = true;
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 || named {
                    return false;
                }
                depth -= 1;
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    enum E<'a> {
        Dir(&'a str, u32),
        File(&'a str, u32, &'a [u8]),
        Link(&'a str, &'a str),
        Hard(&'a str, &'a str),
        Fifo(&'a str),
    }

    fn archive(entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            match *e {
                E::Dir(p, m) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(m);
                    h.set_size(0);
                    set_raw_path(&mut h, p);
                    h.set_cksum();
                    b.append(&h, io::empty()).unwrap();
                }
                E::File(p, m, data) => {
                    h.set_mode(m);
                    h.set_size(data.len() as u64);
                    set_raw_path(&mut h, p);
                    h.set_cksum();
                    b.append(&h, data).unwrap();
                }
                E::Link(p, t) | E::Hard(p, t) => {
                    h.set_entry_type(if matches!(e, E::Link(..)) {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    });
                    h.set_mode(0o777);
                    h.set_size(0);
                    set_raw_path(&mut h, p);
                    h.as_old_mut().linkname[..t.len()].copy_from_slice(t.as_bytes());
                    h.set_cksum();
                    b.append(&h, io::empty()).unwrap();
                }
                E::Fifo(p) => {
                    h.set_entry_type(tar::EntryType::Fifo);
                    h.set_mode(0o644);
                    h.set_size(0);
                    set_raw_path(&mut h, p);
                    h.set_cksum();
                    b.append(&h, io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    /// Writes the name bytes as given: the builder's own setters refuse `..` and absolute paths,
    /// which is exactly what a hostile archive would carry.
    fn set_raw_path(h: &mut tar::Header, p: &str) {
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..p.len()].copy_from_slice(p.as_bytes());
    }

    fn tree(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(p) = stack.pop() {
            for e in fs::read_dir(&p).unwrap() {
                let e = e.unwrap();
                out.push(e.path().strip_prefix(root).unwrap().display().to_string());
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_tree_arrives_with_modes_but_no_special_bits() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = archive(&[
            E::Dir("work/", 0o755),
            E::Dir("work/ro/", 0o555),
            E::File("work/ro/a.txt", 0o4755, b"hello"),
            E::Link("work/link", "ro/a.txt"),
            E::Hard("work/copy", "work/ro/a.txt"),
        ]);
        let dest = dir.path().join("out");
        unpack_to(bytes.as_slice(), &dest).unwrap();
        assert_eq!(tree(dir.path()), ["out", "out/copy", "out/link", "out/ro", "out/ro/a.txt"]);
        let meta = fs::metadata(dest.join("ro/a.txt")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755, "setuid dropped");
        assert_eq!(fs::read(dest.join("link")).unwrap(), b"hello");
        assert_eq!(fs::read(dest.join("copy")).unwrap(), b"hello");
        assert_eq!(fs::metadata(dest.join("ro")).unwrap().permissions().mode() & 0o777, 0o755);
    }

    #[test]
    fn a_single_file_becomes_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("renamed.txt");
        unpack_to(archive(&[E::File("notes.txt", 0o644, b"x")]).as_slice(), &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"x");
        assert_eq!(tree(dir.path()), ["renamed.txt"]);
    }

    #[test]
    fn hostile_entries_are_refused_and_leave_nothing() {
        let cases: Vec<(Vec<E<'_>>, &str)> = vec![
            (vec![E::Dir("w/", 0o755), E::File("w/../evil", 0o644, b"x")], "`w/../evil` leaves the destination"),
            (vec![E::File("/etc/evil", 0o644, b"x")], "`/etc/evil` leaves the destination"),
            (vec![E::Dir("w/", 0o755), E::File("other/x", 0o644, b"x")], "`other/x` is outside the copied path"),
            (vec![E::Dir("w/", 0o755), E::Link("w/l", "../../etc")], "symbolic link to `../../etc`"),
            (vec![E::Dir("w/", 0o755), E::Link("w/l", "/etc/passwd")], "symbolic link to `/etc/passwd`"),
            (vec![E::Dir("w/", 0o755), E::Hard("w/h", "/etc/passwd")], "hard link to `/etc/passwd`"),
            (vec![E::Dir("w/", 0o755), E::Fifo("w/f")], "`w/f` is a Fifo entry"),
            // A link inside the tree, then a write through it: refused rather than followed.
            (
                vec![E::Dir("w/", 0o755), E::Dir("w/d/", 0o755), E::Link("w/l", "d"), E::File("w/l/x", 0o644, b"x")],
                "`w/l/x` passes through `l`, which is not a directory",
            ),
        ];
        for (entries, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let err = unpack_to(archive(&entries).as_slice(), &dir.path().join("out")).unwrap_err();
            assert!(err.to_string().contains(want), "{err} should contain {want}");
            assert!(tree(dir.path()).is_empty(), "left behind: {:?}", tree(dir.path()));
        }
    }

    #[test]
    fn an_existing_destination_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("keep.txt");
        fs::write(&dest, "mine").unwrap();
        let err = unpack_to(archive(&[E::File("f", 0o644, b"theirs")]).as_slice(), &dest).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&dest).unwrap(), b"mine");
    }

    #[test]
    fn symlinks_are_judged_from_where_they_sit() {
        assert!(symlink_stays_inside(Path::new("w/a/l"), Path::new("../b")));
        assert!(!symlink_stays_inside(Path::new("w/a/l"), Path::new("../../b")));
        assert!(!symlink_stays_inside(Path::new("w/l"), Path::new("..")));
        assert!(!symlink_stays_inside(Path::new("w/l"), Path::new("./x/../y")), "no `..` after a name");
        assert!(symlink_stays_inside(Path::new("w/a/b/l"), Path::new("../../c/d")));
        // A lone file that is a link can point nowhere inside.
        assert!(!symlink_stays_inside(Path::new("l"), Path::new("..")));
        assert!(!symlink_stays_inside(Path::new("l"), Path::new("x")));
    }

    #[test]
    fn a_chain_of_links_cannot_climb_out() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        // `up` points at the tree's top; `x` would then reach the destination's grandparent.
        let tar = archive(&[
            E::Dir("w/", 0o755),
            E::Dir("w/d/", 0o755),
            E::Link("w/d/up", ".."),
            E::Link("w/d/x", "up/../.."),
        ]);
        let err = unpack_to(tar.as_slice(), &dest).unwrap_err();
        assert!(err.to_string().contains("w/d/x"), "{err}");
        assert!(!dest.exists());
    }

    #[test]
    fn git_metadata_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let tar = archive(&[
            E::Dir("w/", 0o755),
            E::File("w/a.txt", 0o644, b"work"),
            E::Dir("w/.git/", 0o755),
            E::File("w/.git/config", 0o644, b"[core]\n\tfsmonitor = touch /tmp/pwned\n"),
            E::Dir("w/sub/", 0o755),
            E::File("w/sub/.GIT", 0o644, b"gitdir: /elsewhere"),
        ]);
        assert_eq!(unpack_to(tar.as_slice(), &dest).unwrap(), 3);
        assert_eq!(fs::read(dest.join("a.txt")).unwrap(), b"work");
        assert!(!dest.join(".git").exists() && !dest.join("sub/.GIT").exists());
        let only = archive(&[E::Dir(".git/", 0o755), E::File(".git/HEAD", 0o644, b"ref")]);
        assert!(unpack_to(only.as_slice(), &dir.path().join("g")).is_err());
    }
}
