//! The bottle's forward proxy: TLS interception, route policy, credential injection and DLP.
//!
//! The agent's only way out. It speaks HTTP/1.1 proxy (CONNECT and absolute-URI requests) on a TCP
//! address or a unix socket, intercepts TLS for allowed hosts with leaves from the bottle CA
//! ([`bottle_ca`]), and for every request: finds the route by exact host, checks `matches`, swaps the
//! agent's credentials for the real one, runs outbound DLP ([`bottle_dlp`]), forwards over verified
//! TLS, and scans text responses for prompt injection. Every decision can be an audit line.
//!
//! - [`policy`]: the pure decision logic (no sockets), table-tested and fuzzed.
//! - [`rawhead`]: byte-level request-head inspection in front of hyper (request smuggling).
//! - [`Egress`] / [`serve`]: the network layer; [`EgressHandle`] reloads routes atomically, grants
//!   routes at run time and reads the per-host [`HostCounts`].
//! - [`ProposalSink`]: where `supervise` holds go; [`DenyAll`] by default.
//! - [`audit`]: the hash-chained audit log and [`verify_chain`].

pub mod audit;
mod body;
pub mod config;
mod counters;
pub mod inbound;
mod outbound;
pub mod policy;
mod proposal;
pub mod rawhead;
mod server;
mod upstream;
mod ws;

use std::path::PathBuf;

pub use audit::{AuditError, AuditLog, verify_chain};
pub use body::Body;
pub use config::{
    AuthConfig, DlpSettings, EgressConfig, HeaderMatch, HeaderMatchKind, InboundDetector, LogLevel, MatchConfig,
    OnMatch, OutboundDetector, PathMatch, PathMatchKind, PlaceholderConfig, RouteConfig, Secret, Secrets,
};
pub use counters::{HostCounts, MAX_HOSTS, OTHER_HOSTS};
pub use outbound::FindingSummary;
pub use proposal::{BoxFuture, DenyAll, Proposal, ProposalDecision, ProposalSink};
pub use server::{Egress, EgressDeps, EgressHandle, EgressListener, Limits, serve};

/// Everything that can stop the proxy from starting or reloading.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// A route is invalid.
    #[error("invalid egress route")]
    Route(#[from] policy::RouteError),
    /// The DLP engine rejected its configuration (e.g. a secret shorter than its minimum length).
    #[error("cannot build the DLP engine")]
    Dlp(#[from] bottle_dlp::DlpError),
    /// The CA could not mint a certificate.
    #[error("certificate authority error")]
    Ca(#[from] bottle_ca::CaError),
    /// The extra upstream CA bundle could not be used.
    #[error("cannot use upstream CA bundle `{path}`: {reason}")]
    UpstreamCa {
        /// The bundle's path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the client configuration.
    #[error("TLS configuration error: {0}")]
    Tls(String),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Binding or accepting on the listener failed.
    #[error("cannot listen on `{addr}`")]
    Listen {
        /// The address or socket path.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
