//! What every backend offers the CLI: turn a launch plan into a running bottle, run things in it,
//! list and clean up.
//!
//! The traits are synchronous on purpose: the CLI is synchronous, the smolmachines backend drives a
//! CLI and the namespaces backend forks, so only docker needs an async client and it keeps its
//! runtime inside. Both traits are object-safe so the CLI can pick a backend at run time
//! (`Box<dyn Backend>`). Nothing here names a container, network or VM: those are each backend's
//! own resources, registered for teardown as it creates them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use bottle_core::plan::LaunchPlan;
use bottle_core::{BackendKind, Slug};

use crate::Error;

/// A way to run bottles: docker, smolmachines or namespaces.
pub trait Backend: Send + Sync {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// Where this backend's sidecar finds its files and serves its sockets, for the launcher to
    /// write the sidecar config against.
    fn sidecar_layout(&self) -> SidecarLayout;

    /// Checks that `plan` can be launched here with `agent_image` — engine reachable, image present,
    /// runtime usable — and says how it would run. Creates nothing that outlives the call.
    fn prepare(&self, plan: &LaunchPlan, agent_image: &str) -> Result<Preflight, Error>;

    /// Claims what the launch of `plan` needs before anything else is written for it, and says
    /// where the agent will reach its sidecar when that is not the plan's `ports.host` (the
    /// launcher then rebinds the plan). Most backends claim nothing; smolmachines creates the
    /// bundle's network on a free pinned subnet. [`Backend::launch`] adopts what this claimed;
    /// [`Backend::release`] gives it back when no launch follows.
    fn reserve(&self, _plan: &LaunchPlan) -> Result<Option<String>, Error> {
        Ok(None)
    }

    /// Removes what [`Backend::reserve`] claimed for `slug` and no launch adopted.
    fn release(&self, _slug: &str) {}

    /// Creates the bottle's resources (network, sidecar, agent), recording each for reverse-order
    /// teardown; any failure — or `inputs.cancel` being set — removes what was already created
    /// before returning the error. The agent is provisioned by the caller through the returned
    /// handle; nothing of the agent's command runs yet.
    fn launch(&self, plan: &LaunchPlan, inputs: LaunchInputs) -> Result<Box<dyn Bottle>, Error>;

    /// A handle on a bottle launched earlier (by this or another process), for `exec`, `attach`
    /// and `doctor --bottle`. Its [`Bottle::close`] removes the bottle.
    fn open(&self, slug: &str) -> Result<Box<dyn Bottle>, Error>;

    /// Every bottle of this backend on this machine, live or left behind by a crash.
    fn list(&self) -> Result<Vec<BottleSummary>, Error>;

    /// Removes every resource of the bottle `slug`, running or not. Idempotent.
    fn stop(&self, slug: &str) -> Result<CleanupReport, Error>;

    /// Removes resources of bottles that have no live owner. Idempotent; best effort per resource,
    /// with every failure reported rather than stopping at the first.
    fn cleanup(&self, options: &CleanupOptions) -> Result<CleanupReport, Error>;
}

/// Where the sidecar sees its files, as the sidecar config must name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarLayout {
    /// The config's `state_dir`.
    pub state_dir: PathBuf,
    /// The config's `secrets_dir`.
    pub secrets_dir: PathBuf,
    /// Where the upstream CA bundle is, when one is given.
    pub upstream_ca: PathBuf,
    /// The config's `listen.egress`.
    pub egress_listen: String,
    /// The config's `listen.socket_group`.
    pub socket_group: Option<u32>,
    /// The config's `listen.git_gate`.
    pub git_gate_listen: String,
    /// Where the sidecar sees the files of [`LaunchInputs::key_files`].
    pub keys_dir: PathBuf,
    /// The git-gate config's `mirrors_dir`.
    pub mirrors_dir: PathBuf,
    /// The config's `listen.supervise` (the MCP server the relay exposes on `127.0.0.1:9100`).
    pub supervise_listen: String,
    /// The config's `listen.control` (published to the host's loopback only).
    pub control_listen: String,
    /// Where the sidecar finds [`LaunchInputs::control_token`].
    pub control_token_file: PathBuf,
}

/// Everything a launch needs besides the plan, prepared by the launcher. Secret values travel here
/// and nowhere else; a backend hands them to the sidecar alone.
pub struct LaunchInputs {
    /// The sidecar config file (written against [`Backend::sidecar_layout`]); holds no secrets.
    pub sidecar_config: Vec<u8>,
    /// Secret values by slot, for the sidecar only.
    pub secrets: Vec<(String, Vec<u8>)>,
    /// The bottle's extra upstream CA bundle (PEM), if it names one.
    pub upstream_ca: Option<Vec<u8>>,
    /// Private files for the sidecar alone (git-gate SSH keys), by file name.
    pub key_files: Vec<(String, Vec<u8>)>,
    /// Whether the sidecar serves a git-gate the agent must reach (`127.0.0.1:9420`).
    pub git_gate: bool,
    /// The control API's bearer token; when set, the sidecar serves supervise (MCP for the agent
    /// on `127.0.0.1:9100`, the control API published to the host's loopback).
    pub control_token: Option<Vec<u8>>,
    /// The agent's environment.
    pub agent_env: Vec<(String, String)>,
    pub agent_image: String,
    pub sidecar_image: String,
    /// The sandbox runtime [`Backend::prepare`] chose, if not the default.
    pub runtime: Option<String>,
    /// The `bot-bottle` executable, for the relay inside the agent.
    pub relay_binary: PathBuf,
    /// Set (e.g. by Ctrl-C) to abandon the launch; what was created is removed.
    pub cancel: Arc<AtomicBool>,
    /// The bottle outlives this process on purpose (`start --detach`); otherwise this process
    /// owns it and `cleanup` removes it once the process is gone.
    pub detached: bool,
}

impl std::fmt::Debug for LaunchInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchInputs")
            .field("secrets", &self.secrets.iter().map(|(slot, _)| slot).collect::<Vec<_>>())
            .field("key_files", &self.key_files.iter().map(|(name, _)| name).collect::<Vec<_>>())
            .field("agent_image", &self.agent_image)
            .field("sidecar_image", &self.sidecar_image)
            .field("runtime", &self.runtime)
            .finish_non_exhaustive()
    }
}

/// A launched bottle. Dropping it without [`Bottle::close`] leaves the resources for `cleanup`.
pub trait Bottle: Send {
    /// The bottle's slug, which also names its state directory.
    fn slug(&self) -> &Slug;

    /// Where the host reaches the sidecar's control API, when the bottle has one.
    fn control_addr(&self) -> Option<std::net::SocketAddr> {
        None
    }

    /// Where the host reaches the sidecar's control API when it is a unix socket (smolmachines:
    /// in the state directory, where no address the VM may reach serves it).
    fn control_socket(&self) -> Option<PathBuf> {
        None
    }

    /// Extra arguments for the `selftest` run inside this bottle (where its proxy is, which of its
    /// addresses must not answer), beyond the defaults every bottle gets. `canary_port` is where the
    /// host listens on all its addresses while the probes run; the probes try its loopback already.
    fn selftest_args(&self, _canary_port: u16) -> Vec<String> {
        Vec::new()
    }

    /// The host command line that runs `argv` as the agent user inside the bottle, with a terminal
    /// when `tty` is set (e.g. `docker exec -it …`, `smolvm machine exec …`). For callers that hand
    /// the terminal to another process (tmux panes, the dashboard).
    fn agent_argv(&self, argv: &[String], tty: bool) -> Vec<String>;

    /// Runs `script` with `sh -c` as `user` and waits, capturing its output. For provisioning and
    /// the boundary self-test; never for the agent itself.
    fn exec(&self, script: &str, user: ExecUser) -> Result<ExecResult, Error>;

    /// Copies the host file or directory `host` to `dest` inside the bottle, owned by `owner`.
    fn cp_in(&self, host: &Path, dest: &Path, owner: ExecUser) -> Result<(), Error>;

    /// Copies the file or directory `guest` inside the bottle to `host`, which must not exist yet
    /// (its parent must). What comes out is untrusted: entries that would land outside `host`
    /// (absolute paths, `..`, symbolic links pointing out of the copied tree), devices and FIFOs
    /// are refused, special mode bits dropped, and everything is owned by the calling user.
    /// A refused copy leaves nothing at `host`. Git metadata (`.git`) is never copied out: it
    /// could run the agent's commands on the host. Returns how many entries were left out so.
    fn cp_out(&self, guest: &Path, host: &Path) -> Result<usize, Error>;

    /// Writes `contents` to the file `dest` inside the bottle with `mode`, owned by `owner`; parent
    /// directories are created as `owner`.
    fn put_file(&self, dest: &Path, contents: &[u8], mode: u32, owner: ExecUser) -> Result<(), Error>;

    /// Several [`Bottle::put_file`]s at once, for backends that can copy them in one go. Missing
    /// parent directories may be created as root: use it for files whose directories exist.
    fn put_files(&self, files: &[GuestFile<'_>]) -> Result<(), Error> {
        for f in files {
            self.put_file(f.dest, f.contents, f.mode, f.owner)?;
        }
        Ok(())
    }

    /// Runs `argv` as the agent user on this terminal: raw mode, the window size at start and on
    /// every `SIGWINCH`, the terminal restored afterwards. Returns the command's exit code.
    fn attach(&self, argv: &[String]) -> Result<i32, Error>;

    /// Stops and removes everything [`Backend::launch`] created, newest first.
    fn close(self: Box<Self>) -> Result<(), Error>;
}

/// One file for [`Bottle::put_files`].
#[derive(Debug, Clone, Copy)]
pub struct GuestFile<'a> {
    pub dest: &'a Path,
    pub contents: &'a [u8],
    pub mode: u32,
    pub owner: ExecUser,
}

/// Who a command runs as inside the bottle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecUser {
    /// root, for provisioning (CA store, ownership).
    Root,
    /// `node` (uid 1000), the user the agent runs as.
    Agent,
    /// The unprivileged user the relay runs as, which is not the agent.
    Relay,
}

/// The outcome of [`Bottle::exec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// Exit code; a command killed by a signal reports `128 + signal`.
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecResult {
    /// Whether the command exited with 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// How a launch would run, for the preflight summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preflight {
    /// Image references the launch uses (agent, sidecar), when the backend uses images.
    pub images: Vec<String>,
    /// The sandbox runtime the agent gets (`runc`, `runsc`, `smolvm`, `namespaces`).
    pub runtime: String,
    /// Things the user should see before saying yes (e.g. gVisor registered but broken: skipped).
    pub warnings: Vec<String>,
}

/// One row of `bot-bottle list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BottleSummary {
    pub backend: BackendKind,
    pub slug: String,
    /// The agent's name, when the bottle's resources say.
    pub agent: Option<String>,
    pub created: SystemTime,
    pub status: BottleStatus,
}

/// Whether a bottle's pieces are up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BottleStatus {
    /// Agent and sidecar both running.
    Running,
    /// Some resources exist but not all are running (a crash, a stop in progress).
    Degraded,
    /// Nothing runs; only resources remain for `cleanup`.
    Stopped,
}

/// What [`Backend::cleanup`] may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupOptions {
    /// Report what would be removed and remove nothing.
    pub dry_run: bool,
    /// Bottles known (from their state) to have lost their owning process: removed even when their
    /// containers still run, unless they were detached on purpose.
    pub dead_owners: std::collections::BTreeSet<String>,
    /// Images to keep even when no container uses them (the current build's sidecar image).
    pub keep_images: Vec<String>,
}

/// What [`Backend::cleanup`] removed and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Resources removed (or that would be, in a dry run), as `kind name`.
    pub removed: Vec<String>,
    /// Resources that could not be removed, with the reason.
    pub failed: Vec<(String, String)>,
}

impl CleanupReport {
    /// Adds what `other` removed and could not remove.
    pub fn absorb(&mut self, other: Self) {
        self.removed.extend(other.removed);
        self.failed.extend(other.failed);
    }
}

impl BottleSummary {
    /// The creation time an engine reports in seconds since the epoch; the epoch when unknown.
    pub fn created_at(secs: Option<i64>) -> SystemTime {
        secs.and_then(|s| u64::try_from(s).ok())
            .map_or(SystemTime::UNIX_EPOCH, |s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s))
    }
}
