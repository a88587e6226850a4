//! The sidecar bundle: the one process that is a bottle's only way out.
//!
//! The launcher writes a [`SidecarConfig`] file (format in `docs/sidecar.md`) and starts
//! `bot-bottle sidecar --config FILE`. Secret values never appear in that file or on the command line:
//! each token slot is read from a file in a private directory (mode 0700) or from the process
//! environment (`BOT_BOTTLE_SECRET_<SLOT>`). [`run`] binds every listener before serving anything — any
//! bind failure is an error, so a half-started sidecar never looks healthy — and serves until the
//! shutdown future resolves. `SIGHUP` (wired by the binary) re-reads the routes from the file and
//! swaps them in atomically.

mod config;
mod secrets;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use config::{Listen, ListenAddr, SidecarConfig};
pub use secrets::{SECRET_ENV_PREFIX, load_secrets};

use bottle_egress::{Egress, EgressDeps, EgressHandle, EgressListener};

/// Everything that can stop a sidecar, each naming the file, slot or address involved.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("cannot read sidecar config `{path}`: {source}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sidecar config `{path}` is invalid: {source}")]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("`{value}` is not a listen address (expected `tcp:HOST:PORT` or `unix:/path`)")]
    ListenAddr { value: String },
    #[error("secret `{slot}` is missing: no file `{}` and no `{SECRET_ENV_PREFIX}{slot}` variable", dir.as_deref().map_or_else(|| "(no secrets_dir)".to_owned(), |d| d.join(slot).display().to_string()))]
    MissingSecret { slot: String, dir: Option<PathBuf> },
    #[error("secrets directory `{path}` is {problem}; it must be a directory of mode 0700 owned by this user")]
    UnsafeSecretsDir { path: PathBuf, problem: String },
    #[error("cannot read secret file `{path}`: {source}")]
    ReadSecret {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bottle CA in `{path}`: {source}")]
    Ca {
        path: PathBuf,
        #[source]
        source: bottle_ca::CaError,
    },
    #[error("cannot give socket `{path}` to group {gid}: {source}")]
    SocketPermissions {
        path: PathBuf,
        gid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("egress: {0}")]
    Egress(#[from] bottle_egress::EgressError),
    #[error("git-gate: {0}")]
    GitGate(#[from] bottle_gitgate::GitGateError),
    #[error("the config has `git_gate` but no `listen.git_gate` address")]
    GitGateListen,
    #[error("cannot open the audit log: {0}")]
    Audit(#[from] bottle_egress::AuditError),
    #[error("cannot find this executable for the git gate's hook: {0}")]
    HookProgram(#[source] std::io::Error),
}

/// How one service's serving ended.
type Served = Result<(), SidecarError>;

/// A sidecar whose listeners are bound and whose services are built, ready to serve.
#[derive(Debug)]
pub struct Sidecar {
    egress: Egress,
    egress_listener: EgressListener,
    git_gate: Option<(bottle_gitgate::GitGate, EgressListener)>,
    config_path: PathBuf,
}

impl Sidecar {
    /// Reads the config and secrets, loads (or mints) the bottle CA, builds the proxy and binds its
    /// listener. Nothing is served yet.
    pub async fn start(config_path: &Path) -> Result<Self, SidecarError> {
        let config = SidecarConfig::read(config_path)?;
        let secrets = load_secrets(&config)?;
        let ca_dir = config.state_dir.join("ca");
        let ca = bottle_ca::Ca::load_or_create(&ca_dir).map_err(|source| SidecarError::Ca { path: ca_dir, source })?;
        tracing::info!(slug = %config.slug, ca = %ca.fingerprint_sha256(), "bottle CA ready");
        // One audit log, one hash chain, for every service of the bottle.
        let audit = Arc::new(bottle_egress::AuditLog::open(&config.state_dir.join("audit.jsonl"))?);
        let known_secrets: Vec<bottle_dlp::KnownSecret> = secrets
            .iter()
            .map(|(slot, value)| bottle_dlp::KnownSecret::new(slot.clone(), value.expose().as_bytes()))
            .collect();
        let mut deps = EgressDeps::new(Arc::new(ca), secrets);
        deps.audit = Some(audit.clone());
        let egress = Egress::new(&config.egress, deps)?;
        let git_gate = match &config.git_gate {
            None => None,
            Some(gate_config) => {
                let addr = config.listen.git_gate.as_ref().ok_or(SidecarError::GitGateListen)?;
                let hook_program = std::env::current_exe().map_err(SidecarError::HookProgram)?;
                let mut gate_deps = bottle_gitgate::GitGateDeps::new(hook_program);
                gate_deps.known_secrets = known_secrets;
                gate_deps.audit = Some(audit);
                let gate = bottle_gitgate::GitGate::new(gate_config, gate_deps)?;
                let listener = addr.bind().await?;
                if let (ListenAddr::Unix(path), Some(gid)) = (addr, config.listen.socket_group) {
                    restrict_socket(path, gid)?;
                }
                tracing::info!(repos = gate_config.repos.len(), listen = %addr, "git gate ready");
                Some((gate, listener))
            }
        };
        let egress_listener = config.listen.egress.bind().await?;
        if let (ListenAddr::Unix(path), Some(gid)) = (&config.listen.egress, config.listen.socket_group) {
            restrict_socket(path, gid)?;
        }
        Ok(Self { egress, egress_listener, git_gate, config_path: config_path.to_path_buf() })
    }

    /// The TCP address egress listens on, when it listens on TCP (tests bind port 0).
    pub fn egress_addr(&self) -> Option<std::net::SocketAddr> {
        self.egress_listener.local_addr()
    }

    /// A reloader for the running routes.
    pub fn reloader(&self) -> Reloader {
        Reloader { handle: self.egress.handle(), config_path: self.config_path.clone() }
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests. If one service fails the
    /// other is stopped too: a half-running sidecar would look healthy.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), SidecarError> {
        let Some((gate, gate_listener)) = self.git_gate else {
            self.egress.serve(self.egress_listener, shutdown).await?;
            return Ok(());
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let egress = self.egress.serve(self.egress_listener, stopped(stop_rx.clone()));
        let gate = gate.serve(gate_listener, stopped(stop_rx));
        tokio::pin!(egress, gate, shutdown);
        let (mut egress_done, mut gate_done): (Option<Served>, Option<Served>) = (None, None);
        tokio::select! {
            () = &mut shutdown => {}
            r = &mut egress => egress_done = Some(r.map_err(SidecarError::from)),
            r = &mut gate => gate_done = Some(r.map_err(SidecarError::from)),
        }
        // Whichever ended (or the shutdown) stops the other.
        let _ = stop_tx.send(true);
        let egress_result = match egress_done {
            Some(r) => r,
            None => egress.await.map_err(SidecarError::from),
        };
        let gate_result = match gate_done {
            Some(r) => r,
            None => gate.await.map_err(SidecarError::from),
        };
        egress_result.and(gate_result)
    }
}

/// Gives a unix socket to `gid` with mode 0060: connecting needs write permission, and the owner
/// bits (none) take precedence over the group's, so only members of the group who are not the owner
/// can connect.
fn restrict_socket(path: &Path, gid: u32) -> Result<(), SidecarError> {
    use std::os::unix::fs::PermissionsExt as _;
    let fail = |source| SidecarError::SocketPermissions { path: path.to_path_buf(), gid, source };
    std::os::unix::fs::chown(path, None, Some(gid)).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o060)).map_err(fail)
}

/// Re-reads routes and secrets from the config file and swaps them into the running proxy.
#[derive(Debug, Clone)]
pub struct Reloader {
    handle: EgressHandle,
    config_path: PathBuf,
}

impl Reloader {
    /// On any error the routes in force stay as they were.
    pub fn reload(&self) -> Result<usize, SidecarError> {
        let config = SidecarConfig::read(&self.config_path)?;
        let secrets = load_secrets(&config)?;
        self.handle.replace_routes_and_secrets(&config.egress.routes, secrets)?;
        Ok(config.egress.routes.len())
    }
}
