//! The bottle's supervise plane: one queue of proposals that wait for a human.
//!
//! Three sources file proposals, and each holds its caller open until the operator decides or the
//! timeout (default 300 s) rejects it:
//!
//! - the agent, through the MCP server ([`serve_mcp`], streamable HTTP at `/mcp`): the tools
//!   `list-egress-routes`, `request-egress` (kind `egress-route`) and `ask-supervisor` (kind
//!   `question`);
//! - the egress proxy, for a request a `supervise` route's DLP flagged (kind `egress-token-allow`;
//!   [`ProposalQueue`] is its [`bottle_egress::ProposalSink`]);
//! - the git gate, for a pushed line marked with an inline allow comment (kind `git-allow`; the
//!   queue is its [`bottle_gitgate::GitProposalSink`]).
//!
//! The host decides through the control API ([`serve_control`]: plain HTTP/1.1 JSON behind a
//! bearer token, see `docs/sidecar.md`). An approved route goes into the running proxy atomically
//! for the bottle's lifetime. Proposals and decisions are lines of the bottle's hash-chained audit
//! log; no proposal, response or log line carries a secret value: findings are rule ids and
//! locations, and every piece of free text is scrubbed with the DLP engine first.
//!
//! Pending proposals live in memory only. A sidecar restart fails them closed: their callers'
//! connections die with the process.

mod control;
mod decision;
mod httpd;
mod mcp;
mod queue;
mod route;
mod sinks;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bottle_egress::{EgressHandle, EgressListener};
use serde::{Deserialize, Serialize};

pub use control::ControlToken;
pub use decision::{Action, DecideError, DecisionRequest};
pub use queue::{
    ClaimError, DEFAULT_TIMEOUT_SECS, MAX_PENDING, NewProposal, ProposalKind, ProposalQueue, ProposalView, Scope,
    Verdict, one_line,
};
pub use route::{FieldError, RouteRequest, public_route};

/// The sidecar config's `supervise` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuperviseConfig {
    /// The file holding the control API's bearer token (mode 0600, owned by the sidecar's user).
    pub control_token_file: PathBuf,
    /// How long a proposal waits for the operator before it is rejected, in seconds.
    #[serde(default = "default_timeout")]
    pub proposal_timeout_secs: u64,
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

/// Everything that stops the supervise plane from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// The control token file is missing, unreadable, too permissive or too short.
    #[error("control token file `{path}`: {problem}")]
    ControlToken {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// `proposal_timeout_secs` is out of range.
    #[error("`supervise.proposal_timeout_secs` must be between 1 and 86400, not {0}")]
    Timeout(u64),
}

/// The queue plus the running proxy it changes: what the MCP server and the control API share.
#[derive(Debug)]
pub struct Supervisor {
    queue: Arc<ProposalQueue>,
    egress: EgressHandle,
}

impl Supervisor {
    /// A supervisor over `queue` that grants approved routes through `egress`.
    #[must_use]
    pub fn new(queue: Arc<ProposalQueue>, egress: EgressHandle) -> Self {
        Self { queue, egress }
    }

    /// The queue.
    #[must_use]
    pub fn queue(&self) -> &Arc<ProposalQueue> {
        &self.queue
    }

    /// The routes in force as the agent and the operator may see them (no secrets).
    #[must_use]
    pub fn public_routes(&self) -> Vec<serde_json::Value> {
        self.egress.routes().iter().map(public_route).collect()
    }
}

impl SuperviseConfig {
    /// Checks the settings that do not need I/O.
    pub fn validate(&self) -> Result<(), SuperviseError> {
        if !(1..=86_400).contains(&self.proposal_timeout_secs) {
            return Err(SuperviseError::Timeout(self.proposal_timeout_secs));
        }
        Ok(())
    }

    /// Reads the control token (see [`ControlToken::read`]).
    pub fn control_token(&self) -> Result<ControlToken, SuperviseError> {
        ControlToken::read(Path::new(&self.control_token_file))
    }
}

/// Serves the agent's MCP server (streamable HTTP at `/mcp`) on `listener` until `shutdown`
/// resolves; tool calls still waiting then are withdrawn, which rejects them.
pub async fn serve_mcp(supervisor: Arc<Supervisor>, listener: EgressListener, shutdown: impl Future<Output = ()>) {
    mcp::serve(supervisor, listener, shutdown).await;
}

/// Serves the host's control API on `listener` until `shutdown` resolves.
pub async fn serve_control(
    supervisor: Arc<Supervisor>,
    token: ControlToken,
    listener: EgressListener,
    shutdown: impl Future<Output = ()>,
) {
    control::serve(supervisor, token, listener, shutdown).await;
}
