//! The sidecar bundle: the one process that is a bottle's only way out.
//!
//! It serves the egress proxy, the git gate (when the bottle has repositories) and the supervise
//! plane (when configured: the agent's MCP server and the host's control API, with the proposal
//! queue as the proxy's and the gate's proposal sink), all on one hash-chained audit log.
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
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use bottle_supervise::SuperviseConfig;
pub use config::{Listen, ListenAddr, SidecarConfig};
pub use secrets::{SECRET_ENV_PREFIX, load_secrets};

use bottle_egress::{Egress, EgressDeps, EgressHandle, EgressListener};
use bottle_supervise::{ControlToken, ProposalQueue, Supervisor};

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
    #[error("supervise: {0}")]
    Supervise(#[from] bottle_supervise::SuperviseError),
    #[error("the config has `supervise` but no `listen.{0}` address")]
    SuperviseListen(&'static str),
    #[error("the config has `listen.{0}` but no `supervise` section")]
    SuperviseMissing(&'static str),
    #[error("cannot build the DLP engine that scrubs proposals: {0}")]
    Dlp(#[from] bottle_dlp::DlpError),
    #[error("cannot make the control socket `{path}` private: {source}")]
    ControlSocket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the {0} service stopped on its own")]
    ServiceEnded(&'static str),
    #[error("a service crashed: {0}")]
    ServiceCrashed(String),
}

/// How one service's serving ended.
type Served = Result<(), SidecarError>;

/// Start-up choices that are not part of the config file.
#[derive(Debug, Clone, Default)]
pub struct SidecarOptions {
    /// The program the git gate's pre-receive hook runs as `<program> git-gate-hook --socket …`;
    /// this executable when `None` (the `bot-bottle` binary).
    pub hook_program: Option<PathBuf>,
}

/// The supervise plane, built and bound.
#[derive(Debug)]
struct SuperviseServices {
    supervisor: Arc<Supervisor>,
    token: ControlToken,
    mcp: EgressListener,
    control: EgressListener,
}

/// A sidecar whose listeners are bound and whose services are built, ready to serve.
#[derive(Debug)]
pub struct Sidecar {
    egress: Egress,
    egress_listener: EgressListener,
    git_gate: Option<(bottle_gitgate::GitGate, EgressListener)>,
    supervise: Option<SuperviseServices>,
    config_path: PathBuf,
}

impl Sidecar {
    /// Reads the config and secrets, loads (or mints) the bottle CA, builds every service and binds
    /// every listener. Nothing is served yet.
    pub async fn start(config_path: &Path) -> Result<Self, SidecarError> {
        Self::start_with(config_path, SidecarOptions::default()).await
    }

    /// [`Sidecar::start`] with explicit options.
    pub async fn start_with(config_path: &Path, options: SidecarOptions) -> Result<Self, SidecarError> {
        let config = SidecarConfig::read(config_path)?;
        // Check the supervise settings (and read the control token) before anything is built.
        let supervise = match &config.supervise {
            None => {
                for (name, set) in
                    [("supervise", config.listen.supervise.is_some()), ("control", config.listen.control.is_some())]
                {
                    if set {
                        return Err(SidecarError::SuperviseMissing(name));
                    }
                }
                None
            }
            Some(settings) => {
                settings.validate()?;
                let mcp = config.listen.supervise.clone().ok_or(SidecarError::SuperviseListen("supervise"))?;
                let control = config.listen.control.clone().ok_or(SidecarError::SuperviseListen("control"))?;
                Some((settings.clone(), settings.control_token()?, mcp, control))
            }
        };
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
        let queue = match &supervise {
            None => None,
            Some((settings, ..)) => {
                let scrubber = bottle_dlp::Engine::new(&bottle_dlp::DlpConfig {
                    known_secrets: known_secrets.clone(),
                    ..bottle_dlp::DlpConfig::default()
                })?;
                let timeout = Duration::from_secs(settings.proposal_timeout_secs);
                Some(Arc::new(ProposalQueue::new(timeout, Some(audit.clone()), scrubber)))
            }
        };
        let mut deps = EgressDeps::new(Arc::new(ca), secrets);
        deps.audit = Some(audit.clone());
        if let Some(queue) = &queue {
            deps.proposals = queue.clone();
        }
        let egress = Egress::new(&config.egress, deps)?;
        let git_gate = match &config.git_gate {
            None => None,
            Some(gate_config) => {
                let addr = config.listen.git_gate.as_ref().ok_or(SidecarError::GitGateListen)?;
                let hook_program = match &options.hook_program {
                    Some(program) => program.clone(),
                    None => std::env::current_exe().map_err(SidecarError::HookProgram)?,
                };
                let mut gate_deps = bottle_gitgate::GitGateDeps::new(hook_program);
                gate_deps.known_secrets = known_secrets;
                gate_deps.audit = Some(audit);
                if let Some(queue) = &queue {
                    gate_deps.proposals = queue.clone();
                }
                let gate = bottle_gitgate::GitGate::new(gate_config, gate_deps)?;
                let listener = addr.bind().await?;
                if let (ListenAddr::Unix(path), Some(gid)) = (addr, config.listen.socket_group) {
                    restrict_socket(path, gid)?;
                }
                tracing::info!(repos = gate_config.repos.len(), listen = %addr, "git gate ready");
                Some((gate, listener))
            }
        };
        let supervise = match (supervise, queue) {
            (Some((_, token, mcp_addr, control_addr)), Some(queue)) => {
                let supervisor = Arc::new(Supervisor::new(queue, egress.handle()));
                let mcp = mcp_addr.bind().await?;
                if let (ListenAddr::Unix(path), Some(gid)) = (&mcp_addr, config.listen.socket_group) {
                    restrict_socket(path, gid)?;
                }
                let control = control_addr.bind().await?;
                if let ListenAddr::Unix(path) = &control_addr {
                    private_socket(path)?;
                }
                tracing::info!(mcp = %mcp_addr, control = %control_addr, "supervise ready");
                Some(SuperviseServices { supervisor, token, mcp, control })
            }
            _ => None,
        };
        let egress_listener = config.listen.egress.bind().await?;
        if let (ListenAddr::Unix(path), Some(gid)) = (&config.listen.egress, config.listen.socket_group) {
            restrict_socket(path, gid)?;
        }
        Ok(Self { egress, egress_listener, git_gate, supervise, config_path: config_path.to_path_buf() })
    }

    /// The TCP address egress listens on, when it listens on TCP (tests bind port 0).
    pub fn egress_addr(&self) -> Option<SocketAddr> {
        self.egress_listener.local_addr()
    }

    /// The TCP address the git gate listens on, when it does.
    pub fn git_gate_addr(&self) -> Option<SocketAddr> {
        self.git_gate.as_ref().and_then(|(_, l)| l.local_addr())
    }

    /// The TCP address the MCP server listens on, when it does.
    pub fn supervise_addr(&self) -> Option<SocketAddr> {
        self.supervise.as_ref().and_then(|s| s.mcp.local_addr())
    }

    /// The TCP address the control API listens on, when it does.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.supervise.as_ref().and_then(|s| s.control.local_addr())
    }

    /// A reloader for the running routes.
    pub fn reloader(&self) -> Reloader {
        Reloader { handle: self.egress.handle(), config_path: self.config_path.clone() }
    }

    /// Serves every service until `shutdown` resolves, then drains in-flight requests. If one
    /// service fails or stops, every other one is stopped too and the error is returned: a
    /// half-running sidecar would look healthy.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), SidecarError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut services: Vec<(&'static str, Service)> = Vec::new();
        let egress = self.egress.serve(self.egress_listener, stopped(stop_rx.clone()));
        services.push(("egress", Box::pin(async move { egress.await.map_err(SidecarError::from) })));
        if let Some((gate, listener)) = self.git_gate {
            let gate = gate.serve(listener, stopped(stop_rx.clone()));
            services.push(("git gate", Box::pin(async move { gate.await.map_err(SidecarError::from) })));
        }
        if let Some(supervise) = self.supervise {
            let mcp =
                bottle_supervise::serve_mcp(supervise.supervisor.clone(), supervise.mcp, stopped(stop_rx.clone()));
            services.push((
                "supervise MCP",
                Box::pin(async move {
                    mcp.await;
                    Ok(())
                }),
            ));
            let control = bottle_supervise::serve_control(
                supervise.supervisor,
                supervise.token,
                supervise.control,
                stopped(stop_rx.clone()),
            );
            services.push((
                "control API",
                Box::pin(async move {
                    control.await;
                    Ok(())
                }),
            ));
        }
        let mut running = tokio::task::JoinSet::new();
        for (name, service) in services {
            running.spawn(async move { (name, service.await) });
        }
        tokio::pin!(shutdown);
        let mut first_error = None;
        tokio::select! {
            () = &mut shutdown => {}
            ended = running.join_next() => {
                first_error = ended.and_then(|ended| unexpected_end(ended, true));
            }
        }
        // Whichever ended (or the shutdown) stops the others.
        let _ = stop_tx.send(true);
        while let Some(ended) = running.join_next().await {
            if let Some(error) = unexpected_end(ended, false) {
                tracing::error!(%error, "service failed while stopping");
                first_error.get_or_insert(error);
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// One service's serving, boxed so the sidecar can run any number of them.
type Service = Pin<Box<dyn Future<Output = Served> + Send>>;

/// The error a service's end means: any error; a crash; and, before shutdown was asked for, a
/// clean return too (a service that stopped on its own leaves the sidecar half-running).
fn unexpected_end(
    ended: Result<(&'static str, Served), tokio::task::JoinError>,
    before_shutdown: bool,
) -> Option<SidecarError> {
    match ended {
        Ok((name, Ok(()))) => before_shutdown.then_some(SidecarError::ServiceEnded(name)),
        Ok((name, Err(error))) => {
            tracing::error!(service = name, %error, "service failed; stopping the sidecar");
            Some(error)
        }
        Err(error) => Some(SidecarError::ServiceCrashed(error.to_string())),
    }
}

/// Makes the control API's unix socket private to the sidecar's user (mode 0600): the agent's
/// relay group must never reach it.
fn private_socket(path: &Path) -> Result<(), SidecarError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|source| SidecarError::ControlSocket { path: path.to_path_buf(), source })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a config with `supervise` and `listen` as given; returns its path.
    fn config(dir: &Path, supervise: Option<serde_json::Value>, listen: serde_json::Value) -> PathBuf {
        let mut config = serde_json::json!({ "slug": "t", "state_dir": dir, "egress": {} });
        config["listen"] = listen;
        if let Some(supervise) = supervise {
            config["supervise"] = supervise;
        }
        let path = dir.join("sidecar.json");
        std::fs::write(&path, config.to_string()).unwrap();
        path
    }

    async fn start_error(dir: &Path, supervise: Option<serde_json::Value>, listen: serde_json::Value) -> String {
        Sidecar::start(&config(dir, supervise, listen)).await.unwrap_err().to_string()
    }

    #[tokio::test]
    async fn supervise_settings_are_checked_before_anything_is_served() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "0123456789abcdef0123").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let supervise = serde_json::json!({ "control_token_file": token });
        let tcp = "tcp:127.0.0.1:0";
        let only_egress = serde_json::json!({ "egress": tcp });
        let err = start_error(dir.path(), Some(supervise.clone()), only_egress).await;
        assert!(err.contains("`listen.supervise`"), "{err}");
        let no_control = serde_json::json!({ "egress": tcp, "supervise": tcp });
        assert!(start_error(dir.path(), Some(supervise.clone()), no_control).await.contains("`listen.control`"));
        let stray = serde_json::json!({ "egress": tcp, "control": tcp });
        assert!(start_error(dir.path(), None, stray).await.contains("no `supervise` section"));
        let all = serde_json::json!({ "egress": tcp, "supervise": tcp, "control": tcp });
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(start_error(dir.path(), Some(supervise.clone()), all.clone()).await.contains("0640"));
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let zero = serde_json::json!({ "control_token_file": token, "proposal_timeout_secs": 0 });
        assert!(start_error(dir.path(), Some(zero), all.clone()).await.contains("proposal_timeout_secs"));
        let sidecar = Sidecar::start(&config(dir.path(), Some(supervise), all)).await.unwrap();
        assert!(sidecar.supervise_addr().is_some() && sidecar.control_addr().is_some());
    }

    #[tokio::test]
    async fn a_control_socket_is_private_to_the_sidecar() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "0123456789abcdef0123").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let control = dir.path().join("control.sock");
        let listen = serde_json::json!({
            "egress": "tcp:127.0.0.1:0", "supervise": "tcp:127.0.0.1:0", "control": format!("unix:{}", control.display()),
        });
        let _sidecar =
            Sidecar::start(&config(dir.path(), Some(serde_json::json!({ "control_token_file": token })), listen))
                .await
                .unwrap();
        assert_eq!(std::fs::metadata(&control).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_service_that_ends_early_is_an_error() {
        assert!(matches!(unexpected_end(Ok(("egress", Ok(()))), true), Some(SidecarError::ServiceEnded("egress"))));
        assert!(unexpected_end(Ok(("egress", Ok(()))), false).is_none());
        let failed = Err(SidecarError::GitGateListen);
        assert!(matches!(unexpected_end(Ok(("git gate", failed)), false), Some(SidecarError::GitGateListen)));
    }
}
