//! Debian root filesystems made with `mmdebstrap`, cached as tarballs under
//! `<cache>/rootfs/<key>.tar`, and the mirror they come from.
//!
//! The mirror is the one this host's apt already uses (so a machine that can `apt-get install` can
//! build images), read from `/etc/apt/sources.list` and `sources.list.d/*.{list,sources}`;
//! `BOT_BOTTLE_DEBIAN_MIRROR` overrides it.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncBufReadExt as _;

use super::{ImageKind, Progress, RootfsSpec, SUITE};
use crate::Error;

/// The mmdebstrap variant: essential packages + apt, nothing else.
pub const VARIANT: &str = "minbase";

/// Used when apt's sources name no bookworm mirror.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// How many of mmdebstrap's last output lines an error shows.
const LOG_TAIL: usize = 25;

/// The Debian archive (and security archive) a rootfs is fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// e.g. `http://deb.debian.org/debian`.
    pub debian: String,
    /// e.g. `http://deb.debian.org/debian-security`; left out when apt uses none.
    pub security: Option<String>,
}

impl Mirror {
    /// `BOT_BOTTLE_DEBIAN_MIRROR` if set, else what apt's sources use for bookworm, else the
    /// Debian CDN.
    pub fn detect() -> Self {
        if let Some(url) = std::env::var("BOT_BOTTLE_DEBIAN_MIRROR").ok().filter(|u| !u.is_empty()) {
            return Self { debian: url, security: None };
        }
        let mut entries = Vec::new();
        let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
        if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
            let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
            more.sort();
            files.extend(more);
        }
        for path in files {
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            match path.extension().and_then(|e| e.to_str()) {
                Some("sources") => entries.extend(parse_deb822(&text)),
                Some("list") => entries.extend(parse_one_line(&text)),
                _ => {}
            }
        }
        Self::from_entries(&entries)
    }

    /// Picks the bookworm archive and its security archive from `(uri, suite)` pairs.
    fn from_entries(entries: &[(String, String)]) -> Self {
        let find = |wanted: &[&str]| {
            entries.iter().find(|(_, suite)| wanted.contains(&suite.as_str())).map(|(uri, _)| uri.clone())
        };
        let security = find(&["bookworm-security", "bookworm/updates"]);
        match find(&[SUITE, "bookworm-updates"]) {
            Some(debian) => Self { debian, security },
            None => Self { debian: DEFAULT_MIRROR.to_owned(), security: None },
        }
    }

    /// The sources lines mmdebstrap gets, one argument each.
    pub fn source_lines(&self) -> Vec<String> {
        let mut lines =
            vec![format!("deb {} {SUITE} main", self.debian), format!("deb {} {SUITE}-updates main", self.debian)];
        if let Some(security) = &self.security {
            lines.push(format!("deb {security} {SUITE}-security main"));
        }
        lines
    }
}

/// `(uri, suite)` of each `deb` line of a one-line-style sources.list.
fn parse_one_line(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split('#').next()?.split_whitespace();
            if words.next()? != "deb" {
                return None;
            }
            let mut uri = words.next()?;
            if uri.starts_with('[') {
                // `[arch=amd64 signed-by=…]` options may span several words.
                while !uri.ends_with(']') {
                    uri = words.next()?;
                }
                uri = words.next()?;
            }
            Some((uri.trim_end_matches('/').to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

/// `(uri, suite)` of every enabled `deb` stanza of a deb822 `.sources` file.
fn parse_deb822(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        let types = field("Types").unwrap_or_default();
        if !types.split_whitespace().any(|t| t == "deb") || field("Enabled").is_some_and(|e| e == "no") {
            continue;
        }
        let uris = field("URIs").unwrap_or_default();
        let suites = field("Suites").unwrap_or_default();
        for uri in uris.split_whitespace() {
            for suite in suites.split_whitespace() {
                out.push((uri.trim_end_matches('/').to_owned(), suite.to_owned()));
            }
        }
    }
    out
}

/// The cached rootfs tarball of `spec`, made with mmdebstrap when missing. The tarball is written
/// under a temporary name and renamed, so an interrupted run never leaves a truncated cache entry.
pub(super) async fn ensure_tarball(
    cache_dir: &Path,
    kind: ImageKind,
    spec: &RootfsSpec,
    mirror: &Mirror,
    progress: &dyn Progress,
) -> Result<PathBuf, Error> {
    let name = kind.name();
    let dir = cache_dir.join("rootfs");
    let tarball = dir.join(format!("{}.tar", spec.key));
    if tarball.is_file() {
        progress.step(name, &format!("using the cached rootfs `{}`", tarball.display()));
        return Ok(tarball);
    }
    let io_error = |action, path: &Path| {
        let image = spec.tag.clone();
        let path = path.to_owned();
        move |source| Error::Io { image, action, path, source }
    };
    tokio::fs::create_dir_all(&dir).await.map_err(io_error("create", &dir))?;
    let partial = dir.join(format!("{}.tar.partial-{}", spec.key, std::process::id()));
    progress.step(
        name,
        &format!(
            "mmdebstrap {SUITE} with {} from {} (a few minutes the first time)",
            spec.packages.join(", "),
            mirror.debian
        ),
    );
    let mut command = tokio::process::Command::new("mmdebstrap");
    command
        .arg(format!("--variant={VARIANT}"))
        .arg(format!("--include={}", spec.packages.join(",")))
        .arg("--format=tar")
        .arg("--aptopt=Acquire::Retries \"3\"")
        .arg(SUITE)
        .arg(&partial)
        .args(mirror.source_lines())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| Error::MmdebstrapMissing { image: spec.tag.clone(), source })?;
    let mut tail = VecDeque::with_capacity(LOG_TAIL);
    if let Some(stderr) = child.stderr.take() {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            progress.output(name, &line);
            if tail.len() == LOG_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
    let status = child.wait().await.map_err(io_error("wait for mmdebstrap writing", &partial))?;
    if !status.success() {
        // Best effort: a leftover partial file is harmless, only disk space.
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(Error::Mmdebstrap {
            image: spec.tag.clone(),
            status: status.to_string(),
            mirror: mirror.debian.clone(),
            log: Vec::from(tail).join("\n"),
        });
    }
    tokio::fs::rename(&partial, &tarball).await.map_err(io_error("move into place", &tarball))?;
    Ok(tarball)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bookworm_mirrors_from_deb822_and_skips_others() {
        let text = "Types: deb\n# comment\nURIs: http://deb.debian.org/debian/\nSuites: bookworm bookworm-updates\n\
                    Components: main\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\n\
                    Suites: bookworm-security\nComponents: main\n\nTypes: deb-src\nURIs: http://src.invalid\n\
                    Suites: bookworm\n";
        let mirror = Mirror::from_entries(&parse_deb822(text));
        assert_eq!(
            mirror,
            Mirror {
                debian: "http://deb.debian.org/debian".into(),
                security: Some("http://deb.debian.org/debian-security".into())
            }
        );
    }

    #[test]
    fn reads_one_line_sources_with_options() {
        let text = "# x\ndeb [arch=amd64 signed-by=/k.gpg] https://packages.example.invalid/apt cloud-sdk main\n\
                    deb http://mirror.example.invalid/debian bookworm main contrib\n";
        let entries = parse_one_line(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(Mirror::from_entries(&entries).debian, "http://mirror.example.invalid/debian");
    }

    #[test]
    fn falls_back_to_the_debian_cdn() {
        let mirror = Mirror::from_entries(&[("http://archive.ubuntu.invalid/ubuntu".into(), "noble".into())]);
        assert_eq!(mirror.debian, DEFAULT_MIRROR);
        assert_eq!(mirror.source_lines().len(), 2);
    }
}
