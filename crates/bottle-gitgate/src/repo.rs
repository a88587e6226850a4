//! One upstream and its bare mirror: creating the mirror, refreshing it from the upstream over SSH
//! (fail closed, serialized and coalesced), and pushing accepted refs to the upstream.
//!
//! Every SSH connection uses the repository's key only (`IdentitiesOnly`, no agent), no user or
//! system ssh configuration, `BatchMode`, and `StrictHostKeyChecking` against a known_hosts file that
//! holds exactly the pinned key under an alias — so neither a global known_hosts file nor the host
//! name in the URL can widen what is trusted.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};

use crate::config::{HostKey, RefGlob, RepoConfig};
use crate::git::{GitEnv, RunError, run_async, run_ok, shell_quote};

/// `ConnectTimeout` for the upstream, in seconds.
const CONNECT_TIMEOUT_SECS: u64 = 10;

/// A refresh's outcome, shared by everyone who waited for it. The message is ready to show.
pub(crate) type RefreshResult = Result<(), Arc<str>>;

/// Where the gate keeps mirrors, its private files and the shared hooks.
#[derive(Debug)]
pub(crate) struct Dirs<'a> {
    pub(crate) mirrors: &'a Path,
    pub(crate) private: &'a Path,
    pub(crate) hooks: &'a Path,
}

/// One configured repository.
pub(crate) struct Repo {
    pub(crate) name: String,
    pub(crate) git_dir: PathBuf,
    pub(crate) push_refs: Vec<RefGlob>,
    identity: PathBuf,
    known_hosts: PathBuf,
    pinned: bool,
    /// Held by a refresh and by a whole receive-pack, so the mirror's refs change one way at a time.
    pub(crate) op_lock: Arc<tokio::sync::Mutex<()>>,
    refresh: Mutex<RefreshSlot>,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo").field("name", &self.name).field("pinned", &self.pinned).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct RefreshSlot {
    inflight: Option<Shared<BoxFuture<'static, RefreshResult>>>,
    last_ok: Option<Instant>,
}

/// Setting up a mirror failed.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// A file or directory could not be created or written.
    #[error("cannot prepare `{path}`: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A git command failed.
    #[error("cannot prepare the mirror of `{name}`: {source}")]
    Git {
        /// The repository.
        name: String,
        /// The failure.
        #[source]
        source: RunError,
    },
}

/// Mirror-local configuration the gate enforces on every start.
const MIRROR_CONFIG: &[(&str, &str)] = &[
    ("core.logAllRefUpdates", "false"),
    ("receive.fsckObjects", "true"),
    ("receive.denyDeleteCurrent", "false"),
    ("receive.autogc", "false"),
    ("gc.autoDetach", "false"),
    ("uploadpack.allowReachableSHA1InWant", "true"),
    ("http.receivepack", "true"),
];

impl Repo {
    /// Creates (if needed) and configures the mirror; writes the pinned known_hosts file. No network.
    pub(crate) fn prepare(
        config: &RepoConfig,
        keys: &[HostKey],
        push_refs: Vec<RefGlob>,
        dirs: &Dirs<'_>,
        env: &GitEnv,
    ) -> Result<Self, MirrorError> {
        let git_dir = dirs.mirrors.join(format!("{}.git", config.name));
        let known_hosts = dirs.private.join(format!("{}.known_hosts", config.name));
        let alias = host_alias(&config.name);
        let text: String = keys.iter().map(|k| format!("{alias} {} {}\n", k.key_type, k.blob)).collect();
        write_private(&known_hosts, text.as_bytes())?;
        let git_err = |source| MirrorError::Git { name: config.name.clone(), source };
        if !git_dir.join("HEAD").exists() {
            let out = env.std_git().args(["init", "--bare", "--quiet"]).arg(&git_dir).output();
            check(out, "init").map_err(git_err)?;
        }
        let set = |key: &str, value: &std::ffi::OsStr| {
            let out = env.std_git().arg("--git-dir").arg(&git_dir).args(["config", key]).arg(value).output();
            check(out, "config").map_err(git_err)
        };
        set("remote.origin.url", config.url.as_ref())?;
        set("core.hooksPath", dirs.hooks.as_os_str())?;
        for (key, value) in MIRROR_CONFIG {
            set(key, value.as_ref())?;
        }
        // No fetch refspec: refreshes name theirs, and a push from the quarantine must not try to
        // update a remote-tracking ref.
        let _ = env
            .std_git()
            .arg("--git-dir")
            .arg(&git_dir)
            .args(["config", "--unset-all", "remote.origin.fetch"])
            .output();
        Ok(Self {
            name: config.name.clone(),
            git_dir,
            push_refs,
            identity: config.identity_file.clone(),
            known_hosts,
            pinned: !keys.is_empty(),
            op_lock: Arc::new(tokio::sync::Mutex::new(())),
            refresh: Mutex::new(RefreshSlot::default()),
        })
    }

    /// Whether the upstream has a pinned host key. Without one, nothing is fetched or pushed.
    pub(crate) fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// The message for a repository without a pinned key.
    pub(crate) fn unpinned_message(&self) -> String {
        format!(
            "git-gate: `{}` has no pinned upstream host key, so the gate refuses to contact the upstream\nhint: the operator must set `host_key` for this repo in the bottle (trust on first use is not supported)",
            self.name
        )
    }

    /// `GIT_SSH_COMMAND` for this upstream. Every command makes its own connection (no
    /// `ControlMaster`): each one proves, then and there, that the upstream is reachable, presents
    /// the pinned host key and still accepts the key — a shared connection would outlive a revoked
    /// key or a host going down.
    pub(crate) fn ssh_command(&self) -> String {
        format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes \
             -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null \
             -o HostKeyAlias={} -o CheckHostIP=no -o UpdateHostKeys=no -o ConnectTimeout={CONNECT_TIMEOUT_SECS} \
             -o ServerAliveInterval=15 -o ServerAliveCountMax=4 -o ControlMaster=no -o LogLevel=ERROR",
            shell_quote(self.identity.as_os_str()),
            shell_quote(self.known_hosts.as_os_str()),
            host_alias(&self.name),
        )
    }

    /// `env` plus `GIT_DIR` and `GIT_SSH_COMMAND` for this repository.
    pub(crate) fn upstream_env(&self, env: &GitEnv) -> GitEnv {
        env.clone()
            .with("GIT_DIR", &self.git_dir)
            .with("GIT_SSH_COMMAND", self.ssh_command())
            .with("GIT_SSH_VARIANT", "ssh")
    }

    /// Removes the identity path from text shown to the agent (ssh names the key file in errors).
    pub(crate) fn scrub(&self, text: &str) -> String {
        let identity = self.identity.to_string_lossy();
        let known_hosts = self.known_hosts.to_string_lossy();
        let mut out = text.to_owned();
        if !identity.is_empty() {
            out = out.replace(&*identity, "«identity»");
        }
        if !known_hosts.is_empty() {
            out = out.replace(&*known_hosts, "«pinned known_hosts»");
        }
        out
    }

    /// True if a refresh succeeded less than `window` ago.
    pub(crate) fn fresh_within(&self, window: Duration) -> bool {
        let slot = self.refresh.lock().unwrap_or_else(PoisonError::into_inner);
        slot.last_ok.is_some_and(|at| at.elapsed() < window)
    }

    /// Brings the mirror up to date with the upstream. Concurrent callers share one refresh; the
    /// refresh waits for a push in progress. On failure nothing stale is served: the caller fails.
    pub(crate) async fn refresh(self: &Arc<Self>, env: &GitEnv, timeout: Duration) -> RefreshResult {
        let shared = {
            let mut slot = self.refresh.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(inflight) = &slot.inflight {
                inflight.clone()
            } else {
                let repo = Arc::clone(self);
                let env = env.clone();
                let task = tokio::spawn(async move {
                    let result = {
                        let _guard = repo.op_lock.lock().await;
                        repo.fetch_upstream(&env, timeout).await
                    };
                    let mut slot = repo.refresh.lock().unwrap_or_else(PoisonError::into_inner);
                    slot.inflight = None;
                    if result.is_ok() {
                        slot.last_ok = Some(Instant::now());
                    }
                    result
                });
                let future: BoxFuture<'static, RefreshResult> =
                    async move { task.await.unwrap_or_else(|_| Err(Arc::from("git-gate: the refresh task failed"))) }
                        .boxed();
                let shared = future.shared();
                slot.inflight = Some(shared.clone());
                shared
            }
        };
        shared.await
    }

    /// The refresh itself: `ls-remote` for the upstream's refs and default branch, then a fetch only
    /// if something differs from the mirror.
    async fn fetch_upstream(&self, env: &GitEnv, timeout: Duration) -> RefreshResult {
        if !self.pinned {
            return Err(self.unpinned_message().into());
        }
        let started = Instant::now();
        let upstream_env = self.upstream_env(env);
        let fail = |error: RunError| -> Arc<str> {
            let detail = match error {
                RunError::Failed { stderr, .. } => stderr,
                other => other.to_string(),
            };
            let detail = self.scrub(&detail);
            format!(
                "git-gate: cannot refresh `{}` from upstream: {}\nhint: the gate never serves a stale mirror; try again when the upstream is reachable, or ask the operator",
                self.name,
                detail.trim()
            )
            .into()
        };
        let mut remote_cmd = upstream_env.tokio_git();
        remote_cmd.args(["ls-remote", "--symref", "origin"]);
        let mut local_cmd = env.clone().with("GIT_DIR", &self.git_dir).tokio_git();
        local_cmd.args(["for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags"]);
        let mut head_cmd = env.clone().with("GIT_DIR", &self.git_dir).tokio_git();
        head_cmd.args(["symbolic-ref", "HEAD"]);
        let (listing, local, current_head) = tokio::join!(
            run_ok(remote_cmd, "ls-remote", timeout),
            run_ok(local_cmd, "for-each-ref", timeout),
            run_async(head_cmd, "symbolic-ref", timeout),
        );
        let remote = RemoteRefs::parse(&listing.map_err(fail)?);
        let local = local.map_err(fail)?;
        let current_head = current_head.map_err(fail)?;
        let mut local: Vec<(String, String)> = String::from_utf8_lossy(&local)
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(o, r)| (r.to_owned(), o.to_owned())))
            .collect();
        local.sort();
        let fetched = if local == remote.refs {
            false
        } else {
            let mut cmd = upstream_env.tokio_git();
            cmd.args([
                "fetch",
                "--prune",
                "--no-tags",
                "--no-write-fetch-head",
                "--quiet",
                "origin",
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ]);
            run_ok(cmd, "fetch", timeout).await.map_err(fail)?;
            true
        };
        if let Some(head) = remote.head
            && String::from_utf8_lossy(&current_head.stdout).trim() != head
        {
            let mut cmd = env.clone().with("GIT_DIR", &self.git_dir).tokio_git();
            cmd.args(["symbolic-ref", "HEAD", &head]);
            run_ok(cmd, "symbolic-ref", timeout).await.map_err(fail)?;
        }
        tracing::info!(repo = %self.name, fetched, elapsed_ms = started.elapsed().as_millis(), "mirror refreshed");
        Ok(())
    }

    /// The upstream's default branch as the mirror knows it (its `HEAD`), if set.
    pub(crate) async fn default_branch(&self, env: &GitEnv, timeout: Duration) -> Option<String> {
        let mut cmd = env.clone().with("GIT_DIR", &self.git_dir).tokio_git();
        cmd.args(["symbolic-ref", "--quiet", "HEAD"]);
        let out = run_async(cmd, "symbolic-ref", timeout).await.ok()?;
        let head = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.success && head.starts_with("refs/")).then_some(head)
    }
}

/// The known_hosts alias the pinned key is stored under.
fn host_alias(name: &str) -> String {
    format!("bot-bottle-gitgate-{name}")
}

/// What `ls-remote --symref` says.
#[derive(Debug, Default, PartialEq, Eq)]
struct RemoteRefs {
    /// `refs/heads/*` and `refs/tags/*` (not peeled), sorted by name.
    refs: Vec<(String, String)>,
    /// The ref `HEAD` points at.
    head: Option<String>,
}

impl RemoteRefs {
    fn parse(listing: &[u8]) -> Self {
        let mut out = Self::default();
        for line in String::from_utf8_lossy(listing).lines() {
            if let Some(rest) = line.strip_prefix("ref: ") {
                if let Some((target, "HEAD")) = rest.split_once('\t') {
                    out.head = Some(target.to_owned());
                }
                continue;
            }
            let Some((oid, name)) = line.split_once('\t') else { continue };
            if (name.starts_with("refs/heads/") || name.starts_with("refs/tags/")) && !name.ends_with("^{}") {
                out.refs.push((name.to_owned(), oid.to_owned()));
            }
        }
        out.refs.sort();
        out
    }
}

fn check(out: std::io::Result<std::process::Output>, what: &str) -> Result<(), RunError> {
    let out = out.map_err(|source| RunError::Spawn { what: what.to_owned(), source })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RunError::Failed { what: what.to_owned(), stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
    }
}

/// Writes a file readable by this user only.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), MirrorError> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let io = |source| MirrorError::Io { path: path.to_path_buf(), source };
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(io)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    file.write_all(contents).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ls_remote() {
        let listing = b"ref: refs/heads/main\tHEAD\n1111111111111111111111111111111111111111\tHEAD\n\
1111111111111111111111111111111111111111\trefs/heads/main\n\
2222222222222222222222222222222222222222\trefs/tags/v1\n\
3333333333333333333333333333333333333333\trefs/tags/v1^{}\n\
4444444444444444444444444444444444444444\trefs/pull/1/head\n";
        let refs = RemoteRefs::parse(listing);
        assert_eq!(refs.head.as_deref(), Some("refs/heads/main"));
        assert_eq!(refs.refs.len(), 2);
        assert_eq!(refs.refs[0].0, "refs/heads/main");
    }
}
