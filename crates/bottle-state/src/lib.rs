//! The on-disk home of bot-bottle: `$BOT_BOTTLE_HOME` (default `~/.bot-bottle`).
//!
//! ```text
//! bottles/  agents/  contrib/      manifests and provider plugins (read by bottle-manifest)
//! state/<slug>/                    one directory per bottle: metadata.json, ca/ (0700), audit.jsonl,
//!                                  bringup.log, transcript/, .preserve
//! logs/                            host-side logs
//! bot-bottle.db                    host-side index (written only by host commands)
//! ```
//!
//! This crate owns the layout so no other crate spells a path by hand. It creates directories only
//! when asked to: resolving a plan (`start --dry-run`) writes nothing.

mod history;
pub use history::{DecisionRecord, History};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Errors from state handling; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot determine the home directory: neither `--home`, `BOT_BOTTLE_HOME` nor `HOME` is set")]
    NoHome,
    #[error("`{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{path}` is not valid metadata: {source}")]
    Metadata {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("decision history `{path}`: {message}")]
    Db { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.to_path_buf(), source }
}

/// The home directory and every path under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// Picks the home: an explicit path (`--home` or `BOT_BOTTLE_HOME`, resolved by the caller),
    /// else `$HOME/.bot-bottle`.
    pub fn resolve(explicit: Option<PathBuf>, user_home: Option<PathBuf>) -> Result<Self, StateError> {
        match (explicit, user_home) {
            (Some(root), _) => Ok(Self { root }),
            (None, Some(home)) => Ok(Self { root: home.join(".bot-bottle") }),
            (None, None) => Err(StateError::NoHome),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn bottles_dir(&self) -> PathBuf {
        self.root.join("bottles")
    }

    pub fn agents_dir(&self) -> PathBuf {
        self.root.join("agents")
    }

    pub fn contrib_dir(&self) -> PathBuf {
        self.root.join("contrib")
    }

    pub fn states_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    pub fn db_path(&self) -> PathBuf {
        self.root.join("bot-bottle.db")
    }

    /// The state directory of one bottle (not created).
    pub fn state(&self, slug: &str) -> BottleState {
        BottleState { dir: self.states_dir().join(slug) }
    }

    /// Names of provider plugins: `contrib/<name>/provider.toml` files that exist.
    pub fn plugin_templates(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.contrib_dir()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join("provider.toml").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    /// Whether the home (or, if it does not exist yet, its nearest existing ancestor) accepts a new
    /// file. Probes by creating and removing a file, because permission bits lie under root, ACLs
    /// and read-only mounts.
    pub fn check_writable(&self) -> Result<WritableStatus, StateError> {
        let mut dir = self.root.clone();
        let exists = dir.is_dir();
        while !dir.is_dir() {
            if !dir.pop() {
                return Err(StateError::Io {
                    path: self.root.clone(),
                    source: io::Error::new(io::ErrorKind::NotFound, "no existing ancestor directory"),
                });
            }
        }
        let probe = dir.join(format!(".bot-bottle-write-probe-{}", std::process::id()));
        fs::write(&probe, b"").map_err(io_err(&dir))?;
        fs::remove_file(&probe).map_err(io_err(&probe))?;
        Ok(if exists { WritableStatus::Writable } else { WritableStatus::CanCreate(dir) })
    }
}

/// Result of [`Home::check_writable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WritableStatus {
    Writable,
    /// The home does not exist yet; this ancestor is writable, so it can be created.
    CanCreate(PathBuf),
}

/// One bottle's state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BottleState {
    dir: PathBuf,
}

impl BottleState {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn metadata_path(&self) -> PathBuf {
        self.dir.join("metadata.json")
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.dir.join("ca")
    }

    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    pub fn bringup_log(&self) -> PathBuf {
        self.dir.join("bringup.log")
    }

    pub fn transcript_dir(&self) -> PathBuf {
        self.dir.join("transcript")
    }

    pub fn preserve_marker(&self) -> PathBuf {
        self.dir.join(".preserve")
    }

    pub fn is_preserved(&self) -> bool {
        self.preserve_marker().exists()
    }

    pub fn read_metadata(&self) -> Result<Metadata, StateError> {
        let path = self.metadata_path();
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&bytes).map_err(|source| StateError::Metadata { path, source })
    }
}

/// What `resume` needs to relaunch a bottle, and what `list` and `cleanup` need to know about it;
/// written at launch and updated as the bottle's life goes on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Metadata {
    pub slug: String,
    pub agent: String,
    pub bottles: Vec<String>,
    pub backend: String,
    pub label: Option<String>,
    pub color: Option<String>,
    pub cwd: PathBuf,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    /// The provider template the agent runs with.
    #[serde(default)]
    pub template: String,
    /// The process that owns the bottle (a foreground `start`); `None` for a detached bottle.
    #[serde(default)]
    pub owner_pid: Option<u32>,
    /// `starting`, `running`, `exited` or `stopped`.
    #[serde(default)]
    pub status: String,
    /// The agent's exit code, once it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The sandbox runtime the agent runs under (`runc`, `runsc`, …).
    #[serde(default)]
    pub runtime: String,
    /// The agent's interactive command line in the bottle, as the provider template rendered it at
    /// launch (what `attach` runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// The provider's resume form of it, when it has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resume_command: Vec<String>,
    /// The agent's working directory in the bottle when it is not its home (`start --cwd`'s
    /// workspace); relative paths of `cp` start there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
}

impl BottleState {
    /// Creates the state directory (mode 0700, parents as needed). An existing directory is an
    /// error: a slug names one bottle.
    pub fn create(&self) -> Result<(), StateError> {
        use std::os::unix::fs::DirBuilderExt as _;
        if let Some(parent) = self.dir.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        fs::DirBuilder::new().mode(0o700).create(&self.dir).map_err(io_err(&self.dir))
    }

    /// Writes `metadata.json` atomically (a temporary file renamed over it).
    pub fn write_metadata(&self, metadata: &Metadata) -> Result<(), StateError> {
        let path = self.metadata_path();
        let tmp = self.dir.join(".metadata.json.tmp");
        let bytes = serde_json::to_vec_pretty(metadata)
            .map_err(|source| StateError::Metadata { path: path.clone(), source })?;
        fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// Appends one timestamped line to `bringup.log`.
    pub fn log_bringup(&self, line: &str) {
        use std::io::Write as _;
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let path = self.bringup_log();
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(&path) {
            let _ = writeln!(f, "{secs} {line}");
        }
    }
}

impl Home {
    /// Every state directory under `state/`, by slug.
    pub fn states(&self) -> Vec<(String, BottleState)> {
        let Ok(entries) = fs::read_dir(self.states_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<(String, BottleState)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|slug| {
                let state = self.state(&slug);
                (slug, state)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_paths() {
        let h = Home::resolve(None, Some("/home/u".into())).unwrap();
        assert_eq!(h.root(), Path::new("/home/u/.bot-bottle"));
        assert_eq!(h.state("a-b").audit_log(), Path::new("/home/u/.bot-bottle/state/a-b/audit.jsonl"));
        let explicit = Home::resolve(Some("/x".into()), Some("/home/u".into())).unwrap();
        assert_eq!(explicit.bottles_dir(), Path::new("/x/bottles"));
        assert!(matches!(Home::resolve(None, None), Err(StateError::NoHome)));
    }

    #[test]
    fn writable_probe_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::resolve(Some(tmp.path().join("not-yet")), None).unwrap();
        assert_eq!(home.check_writable().unwrap(), WritableStatus::CanCreate(tmp.path().to_path_buf()));
        assert!(!tmp.path().join("not-yet").exists());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn plugins_need_provider_toml() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::resolve(Some(tmp.path().into()), None).unwrap();
        fs::create_dir_all(home.contrib_dir().join("mine")).unwrap();
        fs::create_dir_all(home.contrib_dir().join("empty")).unwrap();
        fs::write(home.contrib_dir().join("mine/provider.toml"), "").unwrap();
        assert_eq!(home.plugin_templates(), vec!["mine".to_owned()]);
    }
}
