//! The seam to the supervise plane for pushes: a finding on a line the agent marked with an inline
//! allow comment becomes a [`GitProposal`] that a [`GitProposalSink`] answers. The default sink,
//! [`DenyAll`], refuses at once, so a missing supervisor fails closed.

pub use bottle_egress::BoxFuture;

/// Proposal kind for a push finding marked with an inline allow comment.
pub const GIT_ALLOW_KIND: &str = "git-allow";

/// One marked finding, held for an operator. Holds no secret: the rule, where, and which commit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GitProposal {
    /// Always [`GIT_ALLOW_KIND`].
    pub kind: &'static str,
    /// The gate's repository name.
    pub repo: String,
    /// The ref being pushed that contains the commit (the first one, when several do).
    #[serde(rename = "ref")]
    pub refname: String,
    /// Full id of the commit that adds the line.
    pub commit: String,
    /// Where: a file's path (bare, redacted if it holds a secret), or `commit message`,
    /// ``file name `…` ``, `commit author/committer`, `tag message`.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// The rule's label (`aws-access-key-id`, `known-secret:NAME`, …).
    pub rule: String,
}

/// The operator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitDecision {
    /// Accept this finding; the push continues if nothing else stops it.
    Approve,
    /// Refuse; the reason is shown to the agent.
    Deny {
        /// Why, in the operator's words.
        reason: String,
    },
}

/// Where marked findings go. The gate applies its own timeout (`limits.proposal_timeout_secs`)
/// around [`GitProposalSink::propose`] and treats a timeout as a denial.
pub trait GitProposalSink: Send + Sync + std::fmt::Debug {
    /// Files `proposal` and resolves when the operator has decided.
    fn propose(&self, proposal: GitProposal) -> BoxFuture<'_, GitDecision>;
}

/// The default sink: no supervisor is attached, so every proposal is denied at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyAll;

impl GitProposalSink for DenyAll {
    fn propose(&self, _proposal: GitProposal) -> BoxFuture<'_, GitDecision> {
        Box::pin(async { GitDecision::Deny { reason: "no supervisor is attached to this bottle".to_owned() } })
    }
}
