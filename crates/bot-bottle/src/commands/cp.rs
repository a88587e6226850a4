//! `bot-bottle cp SLUG:PATH DEST`: copy a file or directory out of a running bottle.
//!
//! What comes out is the agent's and is not trusted: the backend refuses entries that would land
//! outside the destination and drops special mode bits (`Bottle::cp_out`). An existing
//! destination is kept unless `--force`, and even then it is replaced only once the copy is
//! complete, so a refused or failed copy never costs the old file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bottle_core::Diagnostic;
use bottle_core::plan::GUEST_HOME;

use crate::cli::{CpArgs, GlobalArgs};
use crate::commands::{backend_error, context};
use crate::printer::Printer;

pub fn run(global: &GlobalArgs, args: &CpArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let (slug, guest) = parse_source(&args.source)?;
    let ctx = context(global)?;
    let workdir =
        ctx.home.state(slug).read_metadata().ok().and_then(|m| m.workdir).unwrap_or_else(|| GUEST_HOME.to_owned());
    let guest = if guest.is_absolute() { guest } else { Path::new(&workdir).join(guest) };
    let target = target_path(&guest, &args.dest)?;
    let exists = target.symlink_metadata().is_ok();
    if exists && !args.force {
        return Err(Diagnostic::new(format!("`{}` exists", target.display()))
            .hint("pass `--force` to replace it, or name another destination")
            .into());
    }
    let backends = crate::backends::Backends::connect(&ctx.home)?;
    let bottle = backends.for_slug(&ctx.home, slug)?.open(slug).map_err(backend_error)?;
    let skipped;
    if exists {
        // Copied beside the old one first: the old one goes only once the new one is complete.
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let fresh = target.with_file_name(format!(".{name}.bot-bottle-new-{}", std::process::id()));
        skipped = bottle.cp_out(&guest, &fresh).map_err(backend_error)?;
        let old = target.symlink_metadata()?;
        let removed = if old.is_dir() { std::fs::remove_dir_all(&target) } else { std::fs::remove_file(&target) };
        if let Err(e) = removed.and_then(|()| std::fs::rename(&fresh, &target)) {
            let _ = std::fs::remove_dir_all(&fresh).or_else(|_| std::fs::remove_file(&fresh));
            return Err(anyhow::anyhow!("cannot replace `{}`: {e}", target.display()));
        }
    } else {
        skipped = bottle.cp_out(&guest, &target).map_err(backend_error)?;
    }
    if skipped > 0 {
        printer.warn(&format!(
            "left out {skipped} git metadata entries (`.git`): a bottle's git config and hooks could run its commands \
             here; take commits out through the git gate (`git push` in the bottle)"
        ));
    }
    printer.step(&format!("copied `{slug}:{}` to `{}`", guest.display(), target.display()));
    Ok(ExitCode::SUCCESS)
}

/// `SLUG:PATH` split at the first colon.
fn parse_source(source: &str) -> Result<(&str, PathBuf), Diagnostic> {
    let bad = |why: &str| {
        Diagnostic::new(format!("`{source}`: {why}"))
            .hint("name the bottle and the path inside it, e.g. `review-1:/home/node/workspace/out.txt`")
    };
    let (slug, path) = source.split_once(':').ok_or_else(|| bad("no `SLUG:` before the path"))?;
    if slug.is_empty() {
        return Err(bad("the slug is empty"));
    }
    if path.is_empty() {
        return Err(bad("the path is empty"));
    }
    Ok((slug, PathBuf::from(path)))
}

/// Where the copy lands: `dest` itself, or `dest/<name>` when `dest` is a directory that exists.
fn target_path(guest: &Path, dest: &Path) -> Result<PathBuf, Diagnostic> {
    let target = if dest.is_dir() {
        let name = guest.file_name().ok_or_else(|| {
            Diagnostic::new(format!("`{}` has no file name to copy into `{}`", guest.display(), dest.display()))
                .hint("name the file or directory to copy, and the destination in full")
        })?;
        dest.join(name)
    } else {
        dest.to_path_buf()
    };
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(Diagnostic::new(format!("`{}` is not a directory", parent.display()))
            .hint("create it first, or copy to a directory that exists"));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_need_a_slug_and_a_path() {
        assert_eq!(parse_source("b:/x").unwrap(), ("b", PathBuf::from("/x")));
        assert_eq!(parse_source("b:rel/a:b").unwrap(), ("b", PathBuf::from("rel/a:b")));
        assert!(parse_source("/x").unwrap_err().message.contains("no `SLUG:`"));
        assert!(parse_source(":/x").unwrap_err().message.contains("slug is empty"));
        assert!(parse_source("b:").unwrap_err().message.contains("path is empty"));
    }

    #[test]
    fn a_directory_destination_receives_the_name() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(target_path(Path::new("/home/node/a.txt"), dir.path()).unwrap(), dir.path().join("a.txt"));
        let file = dir.path().join("b.txt");
        assert_eq!(target_path(Path::new("/home/node/a.txt"), &file).unwrap(), file);
        let err = target_path(Path::new("/x"), &dir.path().join("missing/b.txt")).unwrap_err();
        assert!(err.message.contains("missing` is not a directory"), "{}", err.message);
    }
}
