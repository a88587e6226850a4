//! npm packages for provider images, installed on the host into `<cache>/npm/<key>/node_modules`.
//!
//! Installed with `--ignore-scripts`: an agent CLI's install script never runs on the host (the
//! reason bottles exist is that its code is not trusted). Platform builds are named directly by the
//! templates instead of being picked by a postinstall step. The directory is made under a temporary
//! name and renamed, so an interrupted install never leaves a half-filled cache entry.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncBufReadExt as _;

use super::Progress;
use crate::Error;

const LOG_TAIL: usize = 25;

/// The packages of one provider image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpmSpec {
    /// Exact versions, `name@1.2.3`.
    pub packages: Vec<String>,
    /// Hash of the package list; names the cache entry.
    pub key: String,
}

/// `<cache>/npm/<key>`, holding `node_modules`, installed when missing.
pub(super) async fn ensure_packages(
    cache_dir: &Path,
    image: &str,
    spec: &NpmSpec,
    progress: &dyn Progress,
) -> Result<PathBuf, Error> {
    let dir = cache_dir.join("npm").join(&spec.key);
    if dir.join("node_modules").is_dir() {
        progress.step(image, &format!("using the cached npm packages `{}`", dir.display()));
        return Ok(dir);
    }
    let io_error = |action, path: &Path| {
        let image = image.to_owned();
        let path = path.to_owned();
        move |source| Error::Io { image, action, path, source }
    };
    let parent = cache_dir.join("npm");
    tokio::fs::create_dir_all(&parent).await.map_err(io_error("create", &parent))?;
    let partial = parent.join(format!("{}.partial-{}", spec.key, std::process::id()));
    // A leftover from an earlier interrupted run of this same process id.
    let _ = tokio::fs::remove_dir_all(&partial).await;
    tokio::fs::create_dir_all(&partial).await.map_err(io_error("create", &partial))?;
    progress.step(image, &format!("npm install {} (scripts disabled)", spec.packages.join(" ")));
    let mut command = tokio::process::Command::new("npm");
    command
        .arg("install")
        .arg("--prefix")
        .arg(&partial)
        .args(["--ignore-scripts", "--no-audit", "--no-fund", "--no-save", "--omit=dev", "--loglevel=warn"])
        .args(&spec.packages)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| Error::NpmMissing { image: image.to_owned(), source })?;
    let mut tail = VecDeque::with_capacity(LOG_TAIL);
    if let Some(stderr) = child.stderr.take() {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            progress.output(image, &line);
            if tail.len() == LOG_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
    let status = child.wait().await.map_err(io_error("wait for npm installing into", &partial))?;
    if !status.success() || !partial.join("node_modules").is_dir() {
        let _ = tokio::fs::remove_dir_all(&partial).await;
        return Err(Error::Npm {
            image: image.to_owned(),
            packages: spec.packages.join(" "),
            status: status.to_string(),
            log: Vec::from(tail).join("\n"),
        });
    }
    match tokio::fs::rename(&partial, &dir).await {
        Ok(()) => Ok(dir),
        // Another launch finished the same install first: use theirs.
        Err(_) if dir.join("node_modules").is_dir() => {
            let _ = tokio::fs::remove_dir_all(&partial).await;
            Ok(dir)
        }
        Err(e) => Err(io_error("move into place", &dir)(e)),
    }
}
