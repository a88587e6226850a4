//! `start --cwd`: the current directory, copied (never mounted) into the bottle as the agent's
//! working directory.
//!
//! The directory is measured before anything is created: too large a tree is refused, a tree
//! that holds bot-bottle's own home (other bottles' state, control tokens, CA keys) is refused,
//! and entries a copy cannot carry (sockets, FIFOs, devices) are named in a warning rather than
//! dropped in silence.

use std::path::Path;

use bottle_core::Diagnostic;
use bottle_core::plan::{GUEST_WORKSPACE, WorkspacePlan};

/// The copy is packed in memory: beyond this it is refused.
pub const MAX_BYTES: u64 = 1 << 30;
/// Beyond this the launch warns that the copy takes a while.
pub const WARN_BYTES: u64 = 200 << 20;

/// `path` with symlinks and `..` resolved, through its nearest existing ancestor (the home may
/// not exist yet).
fn resolved(path: &Path) -> std::path::PathBuf {
    for ancestor in path.ancestors() {
        if let Ok(real) = std::fs::canonicalize(ancestor) {
            return path.strip_prefix(ancestor).map_or(real.clone(), |rest| real.join(rest));
        }
    }
    path.to_path_buf()
}

/// What in the git config at `path` is a credential: an `extraheader` (CI checkouts put a token
/// there) or a URL carrying a password (`https://user:token@host`). Never the value itself.
fn git_config_credential(path: &Path) -> Option<&'static str> {
    let text = std::fs::read_to_string(path).ok()?;
    for line in text.lines().map(str::trim) {
        if line.to_ascii_lowercase().starts_with("extraheader") {
            return Some("an `extraheader`");
        }
        if let Some((_, rest)) = line.split_once("://")
            && let Some((userinfo, _)) = rest.split_once('@')
            && !userinfo.contains('/')
            && userinfo.contains(':')
        {
            return Some("a URL with a password");
        }
    }
    None
}

/// Measures `dir` for the copy; `bot_home` must not be inside it.
pub fn plan(dir: &Path, bot_home: &Path) -> anyhow::Result<(WorkspacePlan, Vec<String>)> {
    // Compared resolved as well: a symlinked home or a `..` must not hide it.
    if bot_home.starts_with(dir) || resolved(bot_home).starts_with(resolved(dir)) {
        return Err(Diagnostic::new(format!(
            "--cwd: `{}` holds bot-bottle's home `{}` (other bottles' state and keys)",
            dir.display(),
            bot_home.display()
        ))
        .hint("run `start --cwd` from the project's own directory")
        .into());
    }
    if let Some(what) = git_config_credential(&dir.join(".git/config")) {
        return Err(Diagnostic::new(format!(
            "--cwd: `{}` holds a credential ({what}); the copy would hand it to the agent",
            dir.join(".git/config").display()
        ))
        .hint("remove it from the repository's git config (use a credential helper on the host, or the git gate)")
        .into());
    }
    let mut plan = WorkspacePlan { source: dir.to_path_buf(), dest: GUEST_WORKSPACE.to_owned(), entries: 0, bytes: 0 };
    let mut skipped = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| anyhow::anyhow!("--cwd: cannot read `{}`: {e}", path.display()))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            let entries = std::fs::read_dir(&path)
                .map_err(|e| anyhow::anyhow!("--cwd: cannot list `{}`: {e}", path.display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| anyhow::anyhow!("--cwd: cannot list `{}`: {e}", path.display()))?;
                stack.push(entry.path());
            }
        } else if kind.is_file() {
            plan.bytes += meta.len();
            // Readable now, or the copy would fail half-way.
            std::fs::File::open(&path).map_err(|e| anyhow::anyhow!("--cwd: cannot read `{}`: {e}", path.display()))?;
        } else if !kind.is_symlink() {
            skipped.push(path.strip_prefix(dir).unwrap_or(&path).display().to_string());
            continue;
        }
        plan.entries += 1;
        if plan.bytes > MAX_BYTES {
            return Err(Diagnostic::new(format!("--cwd: `{}` is larger than {} MiB", dir.display(), MAX_BYTES >> 20))
                .hint("start from a smaller directory (a fresh clone without build outputs or dependencies)")
                .into());
        }
    }
    let mut warnings = Vec::new();
    if plan.bytes > WARN_BYTES {
        warnings.push(format!("--cwd: copying {} MiB into the bottle takes a while", plan.bytes >> 20));
    }
    if !skipped.is_empty() {
        skipped.sort();
        warnings.push(format!(
            "--cwd: not copied (sockets, FIFOs and devices cannot be): {}",
            skipped.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok((plan, warnings))
}

/// `argv` run from the workspace: the agent starts there whatever directory the backend opens.
pub fn in_workspace(argv: &[String]) -> Vec<String> {
    let mut out: Vec<String> =
        ["sh", "-c", &format!("cd {GUEST_WORKSPACE} && exec \"$@\""), "bot-bottle-workspace"].map(str::to_owned).into();
    out.extend(argv.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_measured_and_special_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".git/objects")).unwrap();
        std::fs::write(dir.path().join(".git/objects/ab"), [0u8; 10]).unwrap();
        std::fs::write(dir.path().join("README"), "hello").unwrap();
        std::os::unix::fs::symlink("README", dir.path().join("link")).unwrap();
        let fifo = dir.path().join("pipe");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let (plan, warnings) = plan(dir.path(), Path::new("/nonexistent/home")).unwrap();
        assert_eq!((plan.entries, plan.bytes), (6, 15), "root, .git, objects, ab, README, link");
        assert_eq!(plan.dest, "/home/node/workspace");
        assert_eq!(warnings, ["--cwd: not copied (sockets, FIFOs and devices cannot be): `pipe`"]);
    }

    #[test]
    fn credentials_in_the_git_config_are_refused_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        let config = dir.path().join(".git/config");
        std::fs::write(&config, "[remote \"origin\"]\n\turl = git@github.com:o/r.git\n\turl = https://me@h/r\n")
            .unwrap();
        assert!(plan(dir.path(), Path::new("/nonexistent/home")).is_ok());
        for bad in [
            "[remote \"o\"]\n\turl = https://me:ghp_s3cret@github.com/o/r\n",
            "[http \"https://github.com/\"]\n\textraheader = AUTHORIZATION: basic c2VjcmV0\n",
        ] {
            std::fs::write(&config, bad).unwrap();
            let err = format!("{:#}", plan(dir.path(), Path::new("/nonexistent/home")).unwrap_err());
            assert!(err.contains("credential") && !err.contains("s3cret") && !err.contains("c2VjcmV0"), "{err}");
        }
    }

    #[test]
    fn a_symlinked_home_is_seen_through() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("p");
        std::fs::create_dir_all(project.join("home")).unwrap();
        std::os::unix::fs::symlink(project.join("home"), dir.path().join("alias")).unwrap();
        assert!(plan(&project, &dir.path().join("alias/.bot-bottle")).is_err());
    }

    #[test]
    fn the_bot_home_is_never_copied() {
        let dir = tempfile::tempdir().unwrap();
        let err = plan(dir.path(), &dir.path().join(".bot-bottle")).unwrap_err();
        assert!(err.to_string().contains("holds bot-bottle's home"), "{err}");
    }

    #[test]
    fn commands_start_in_the_workspace() {
        let argv = in_workspace(&["claude".to_owned(), "a b".to_owned()]);
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output();
        // `/home/node/workspace` does not exist here: the `cd` fails, so the command never runs
        // elsewhere.
        assert!(!out.unwrap().status.success());
        assert_eq!(argv[..2], ["sh", "-c"]);
        assert_eq!(argv[4..], ["claude", "a b"]);
    }
}
