//! The bottle's git gate: the only way the agent's git reaches an upstream.
//!
//! The agent's git config maps each upstream URL to `http://127.0.0.1:9420/<name>.git` (a relay
//! forwards that to the gate's socket). The gate speaks git's smart HTTP protocol by driving real
//! git on a bare mirror per upstream:
//!
//! - **fetch / clone** refresh the mirror from the upstream over SSH first (pinned host key, the
//!   repository's own key, `BatchMode`); an unreachable or untrusted upstream fails the request —
//!   a stale mirror is never served;
//! - **push** receives into the mirror with a `pre-receive` hook ([`hook`]) that hands the push to
//!   the gate, which applies the ref policy, scans every new commit ([`scan`]) with the DLP engine,
//!   files a proposal ([`GitProposalSink`]) for findings marked with an inline allow comment, and
//!   forwards the refs upstream; the agent's push succeeds only if the upstream accepted it.
//!
//! Every push decision is one line in the bottle's audit log. Keys are never read, logged or echoed
//! by the gate (only `ssh` reads them), and no message carries a secret value.
//!
//! Decisions worth knowing:
//! - Fetches and clones always refresh first; a push refreshes only a mirror older than
//!   [`GateLimits::push_refresh_secs`]. That is safe because the upstream push decides fast-forwards
//!   (and leases guard rewrites), and the mirror already holds every upstream commit the agent can
//!   have (it only fetches through the gate), so the scan's "already upstream" set is complete.
//! - Every upstream command makes its own SSH connection. Sharing one (`ControlMaster`) would save
//!   a handshake per push, but a shared connection outlives a revoked key or a host that went down,
//!   and the gate must fail closed.
//! - One refresh or push at a time per mirror: a fetch waits for a push in progress, including
//!   one held for an operator's decision.
//! - Binary files (git's NUL test, not `.gitattributes`, which the pusher controls) and files above
//!   [`GateLimits::max_scan_file_bytes`] are not scanned; the push says so.
//! - Overlapping findings count once, under the most confident rule.
//! - Ref policy: see the `policy` module — the default branch can never be deleted or rewound;
//!   deletions need `push_refs`; rewinds go upstream with a lease on what the agent saw.

mod config;
mod git;
pub mod hook;
mod http;
mod policy;
mod proposal;
mod push;
mod repo;
pub mod scan;

use std::collections::BTreeMap;
use std::future::Future;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bottle_dlp::{DlpConfig, Engine, KnownSecret};
use bottle_egress::{AuditLog, EgressListener};

pub use config::{ConfigError, GateLimits, GitGateConfig, RepoConfig};
pub use git::{GitEnv, RunError};
pub use proposal::{BoxFuture, DenyAll, GIT_ALLOW_KIND, GitDecision, GitProposal, GitProposalSink};
pub use repo::MirrorError;
pub use scan::{Exclude, PushFinding, ScanError, ScanReport, ScanRequest, Scanner};

/// Longest a unix socket path may be (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 100;
/// How long in-flight requests may finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Everything that stops the gate from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum GitGateError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A mirror could not be prepared.
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    /// The DLP engine rejected the known secrets (e.g. one shorter than 8 bytes).
    #[error("cannot build the DLP engine for the git gate")]
    Dlp(#[from] bottle_dlp::DlpError),
    /// A directory could not be created or secured.
    #[error("cannot prepare `{path}`: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The hook program is not an absolute path.
    #[error("the git gate's hook program `{0}` must be an absolute path")]
    HookProgram(PathBuf),
    /// `mirrors_dir` is too long to hold the hook socket.
    #[error("`{0}` is too long for the gate's hook socket path\nhint: use a shorter `mirrors_dir`")]
    SocketPath(PathBuf),
    /// A listener could not be bound or used.
    #[error("cannot listen on `{addr}`: {source}")]
    Listen {
        /// The address or socket path.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// What the gate needs besides its config.
#[derive(Debug, Clone)]
pub struct GitGateDeps {
    /// Secrets the sidecar holds (route tokens): a push that contains one, in any encoding the DLP
    /// engine knows, is refused.
    pub known_secrets: Vec<KnownSecret>,
    /// Where findings marked with an inline allow comment go; [`DenyAll`] refuses them.
    pub proposals: Arc<dyn GitProposalSink>,
    /// The bottle's audit log (shared with the other services, so the chain stays one); `None`
    /// logs decisions to `tracing` only.
    pub audit: Option<Arc<AuditLog>>,
    /// The `bot-bottle` executable; the pre-receive hook runs `<hook_program> git-gate-hook
    /// --socket <path>`, which calls [`hook::run_client`].
    pub hook_program: PathBuf,
}

impl GitGateDeps {
    /// No known secrets, the deny-all proposal sink, no audit file.
    #[must_use]
    pub fn new(hook_program: PathBuf) -> Self {
        Self { known_secrets: Vec::new(), proposals: Arc::new(DenyAll), audit: None, hook_program }
    }
}

/// State shared by the HTTP handlers and the hook server.
pub(crate) struct Shared {
    pub(crate) repos: BTreeMap<String, Arc<repo::Repo>>,
    pub(crate) limits: GateLimits,
    pub(crate) scanner: Scanner,
    pub(crate) proposals: Arc<dyn GitProposalSink>,
    pub(crate) audit: Option<Arc<AuditLog>>,
    pub(crate) env: GitEnv,
    pub(crate) pushes: push::PushRegistry,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("repos", &self.repos.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

/// A git gate whose mirrors are prepared and whose hook socket is bound, ready to serve.
#[derive(Debug)]
pub struct GitGate {
    shared: Arc<Shared>,
    hook_listener: std::os::unix::net::UnixListener,
    hook_socket: PathBuf,
}

impl GitGate {
    /// Validates the config, creates `mirrors_dir` (0700) and each mirror (`git init --bare` when
    /// missing; remote, hooks path and pinned known_hosts set every time), installs the pre-receive
    /// hook and binds the gate's private hook socket. Contacts no upstream.
    ///
    /// # Errors
    /// An invalid config or hook program, a directory or mirror that cannot be prepared, known
    /// secrets the DLP engine refuses, or a hook socket that cannot be bound.
    pub fn new(config: &GitGateConfig, deps: GitGateDeps) -> Result<Self, GitGateError> {
        let checked = config::validate(config)?;
        if !deps.hook_program.is_absolute() {
            return Err(GitGateError::HookProgram(deps.hook_program));
        }
        let private_dir = config.mirrors_dir.join(".gate");
        let hooks_dir = private_dir.join("hooks");
        for dir in [&config.mirrors_dir, &private_dir, &hooks_dir] {
            private_dir_at(dir)?;
        }
        let hook_socket = private_dir.join("hook.sock");
        if hook_socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(GitGateError::SocketPath(config.mirrors_dir.clone()));
        }
        let script = hook::script(&deps.hook_program, &hook_socket);
        let pre_receive = hooks_dir.join("pre-receive");
        repo::write_private(&pre_receive, script.as_bytes())?;
        std::fs::set_permissions(&pre_receive, std::fs::Permissions::from_mode(0o700))
            .map_err(|source| GitGateError::Io { path: pre_receive.clone(), source })?;

        let env = GitEnv::clean(&private_dir);
        let mut repos = BTreeMap::new();
        let dirs = repo::Dirs { mirrors: &config.mirrors_dir, private: &private_dir, hooks: &hooks_dir };
        for (repo_config, checked) in config.repos.iter().zip(checked) {
            let repo = repo::Repo::prepare(repo_config, &checked.keys, checked.globs, &dirs, &env)?;
            if !repo.is_pinned() {
                tracing::warn!(repo = %repo_config.name, "git-gate repo has no pinned host key; every fetch and push will be refused");
            }
            repos.insert(repo_config.name.clone(), Arc::new(repo));
        }
        let engine = Engine::new(&DlpConfig { known_secrets: deps.known_secrets, ..DlpConfig::default() })?;
        let hook_listener = bind_private_socket(&hook_socket)?;
        Ok(Self {
            shared: Arc::new(Shared {
                repos,
                limits: config.limits.clone(),
                scanner: Scanner::new(engine, config.limits.max_scan_file_bytes),
                proposals: deps.proposals,
                audit: deps.audit,
                env,
                pushes: push::PushRegistry::default(),
            }),
            hook_listener,
            hook_socket,
        })
    }

    /// The gate's private hook socket (inside `mirrors_dir/.gate/`).
    #[must_use]
    pub fn hook_socket(&self) -> &Path {
        &self.hook_socket
    }

    /// Serves smart HTTP on `listener` and the hook socket until `shutdown` resolves, then gives
    /// in-flight requests a grace period.
    ///
    /// # Errors
    /// The hook socket cannot be handed to the runtime.
    pub async fn serve(self, listener: EgressListener, shutdown: impl Future<Output = ()>) -> Result<(), GitGateError> {
        let hook_err = |source| GitGateError::Listen { addr: self.hook_socket.display().to_string(), source };
        self.hook_listener.set_nonblocking(true).map_err(hook_err)?;
        let hook_listener = tokio::net::UnixListener::from_std(self.hook_listener).map_err(hook_err)?;
        http::serve(self.shared, listener, hook_listener, shutdown, SHUTDOWN_GRACE).await;
        let _ = std::fs::remove_file(&self.hook_socket);
        Ok(())
    }
}

/// Creates `dir` if needed and makes it 0700.
fn private_dir_at(dir: &Path) -> Result<(), GitGateError> {
    let io = |source| GitGateError::Io { path: dir.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

/// Binds a unix socket, replacing a stale socket file (never any other file); mode 0600.
fn bind_private_socket(path: &Path) -> Result<std::os::unix::net::UnixListener, GitGateError> {
    use std::os::unix::fs::FileTypeExt as _;
    let listen_err = |source| GitGateError::Listen { addr: path.display().to_string(), source };
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_socket()
    {
        std::fs::remove_file(path).map_err(listen_err)?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(listen_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(listen_err)?;
    Ok(listener)
}
