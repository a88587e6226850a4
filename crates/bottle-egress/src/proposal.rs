//! The seam to the supervise plane: a held request becomes a [`Proposal`] that a [`ProposalSink`]
//! answers. The real sink (MCP + operator) lives in the supervise crate; egress ships the trait and a
//! deny-all default so a missing supervisor fails closed.

use std::future::Future;
use std::pin::Pin;

use crate::outbound::FindingSummary;

/// A request held for an operator decision. Holds no secret: findings carry rule ids and locations,
/// the path is scrubbed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Proposal {
    /// Proposal kind, `egress-token-allow` for a DLP hit.
    pub kind: &'static str,
    /// Target host.
    pub host: String,
    /// Target port.
    pub port: u16,
    /// Request method.
    pub method: String,
    /// Request path, scrubbed of anything the DLP engine flags.
    pub path: String,
    /// What the DLP engine found.
    pub findings: Vec<FindingSummary>,
}

/// The operator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposalDecision {
    /// Forward the request as sent.
    Approve,
    /// Forward the request as sent, and let the same flagged values through to the same host for
    /// the rest of the proxy's life without asking again. The proxy remembers salted hashes of
    /// the values, never the values.
    ApproveSession,
    /// Refuse it; the reason is shown to the agent.
    Deny {
        /// Why, in the operator's words.
        reason: String,
    },
}

/// A boxed future, so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where held requests go. The proxy applies its own timeout around [`ProposalSink::propose`] and
/// treats a timeout as a denial.
pub trait ProposalSink: Send + Sync + std::fmt::Debug {
    /// Files `proposal` and resolves when the operator has decided.
    fn propose(&self, proposal: Proposal) -> BoxFuture<'_, ProposalDecision>;
}

/// The default sink: no supervisor is attached, so every proposal is denied at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyAll;

impl ProposalSink for DenyAll {
    fn propose(&self, _proposal: Proposal) -> BoxFuture<'_, ProposalDecision> {
        Box::pin(async { ProposalDecision::Deny { reason: "no supervisor is attached to this bottle".to_owned() } })
    }
}
