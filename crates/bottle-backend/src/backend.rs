//! What every backend offers the CLI: turn a launch plan into a running bottle, run things in it,
//! list and clean up.
//!
//! The traits are synchronous on purpose: the CLI is synchronous, the smolmachines backend drives a
//! CLI and the namespaces backend forks, so only docker needs an async client and it keeps its
//! runtime inside. Both traits are object-safe so the CLI can pick a backend at run time
//! (`Box<dyn Backend>`). Nothing here names a container, network or VM: those are each backend's
//! own resources, registered for teardown as it creates them.

use std::path::Path;
use std::time::SystemTime;

use bottle_core::plan::LaunchPlan;
use bottle_core::{BackendKind, Slug};

use crate::Error;

/// A way to run bottles: docker, smolmachines or namespaces.
pub trait Backend: Send + Sync {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// Checks that `plan` can be launched here — engine reachable, images present or buildable,
    /// runtime usable — and says how it would run. Creates, starts and writes nothing.
    fn prepare(&self, plan: &LaunchPlan) -> Result<Preflight, Error>;

    /// Creates the bottle's resources (network, sidecar, agent), recording each for reverse-order
    /// teardown; any failure removes what was already created before returning the error. The agent
    /// is provisioned by the caller through the returned handle; nothing of the agent's command runs
    /// yet.
    fn launch(&self, plan: &LaunchPlan) -> Result<Box<dyn Bottle>, Error>;

    /// Every bottle of this backend on this machine, live or left behind by a crash.
    fn list(&self) -> Result<Vec<BottleSummary>, Error>;

    /// Removes resources of bottles that have no live owner. Idempotent; best effort per resource,
    /// with every failure reported rather than stopping at the first.
    fn cleanup(&self, options: &CleanupOptions) -> Result<CleanupReport, Error>;
}

/// A launched bottle. Dropping it without [`Bottle::close`] leaves the resources for `cleanup`.
pub trait Bottle: Send {
    /// The bottle's slug, which also names its state directory.
    fn slug(&self) -> &Slug;

    /// The host command line that runs `argv` as the agent user inside the bottle, with a terminal
    /// when `tty` is set (e.g. `docker exec -it …`, `smolvm machine exec …`). For callers that hand
    /// the terminal to another process (tmux panes, the dashboard).
    fn agent_argv(&self, argv: &[String], tty: bool) -> Vec<String>;

    /// Runs `script` with `sh -c` as `user` and waits, capturing its output. For provisioning and
    /// the boundary self-test; never for the agent itself.
    fn exec(&self, script: &str, user: ExecUser) -> Result<ExecResult, Error>;

    /// Copies the host file or directory `host` to `dest` inside the bottle, owned by `owner`.
    fn cp_in(&self, host: &Path, dest: &Path, owner: ExecUser) -> Result<(), Error>;

    /// Runs `argv` as the agent user on this terminal: raw mode, the window size at start and on
    /// every `SIGWINCH`, the terminal restored afterwards. Returns the command's exit code.
    fn attach(&self, argv: &[String]) -> Result<i32, Error>;

    /// Stops and removes everything [`Backend::launch`] created, newest first.
    fn close(self: Box<Self>) -> Result<(), Error>;
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
    pub agent: String,
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupOptions {
    /// Report what would be removed and remove nothing.
    pub dry_run: bool,
}

/// What [`Backend::cleanup`] removed and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Resources removed (or that would be, in a dry run), as `kind name`.
    pub removed: Vec<String>,
    /// Resources that could not be removed, with the reason.
    pub failed: Vec<(String, String)>,
}
