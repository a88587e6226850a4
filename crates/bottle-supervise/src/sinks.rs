//! The queue as the proxy's and the git gate's proposal sink: a held request or push becomes a
//! proposal, and the operator's verdict becomes their decision. Everything that is not an explicit
//! approval (rejection, timeout, a full queue, a lost decision) refuses.

use bottle_egress::{BoxFuture, Proposal, ProposalDecision, ProposalSink};
use bottle_gitgate::{GitDecision, GitProposal, GitProposalSink};
use serde_json::json;

use crate::queue::{NewProposal, ProposalKind, ProposalQueue, Scope, Verdict};

impl ProposalSink for ProposalQueue {
    fn propose(&self, proposal: Proposal) -> BoxFuture<'_, ProposalDecision> {
        Box::pin(async move {
            match self.submit(token_allow(&proposal)).await {
                Verdict::Approved { scope: Scope::Session, .. } => ProposalDecision::ApproveSession,
                Verdict::Approved { scope: Scope::Once, .. } => ProposalDecision::Approve,
                other => ProposalDecision::Deny { reason: refusal(&other) },
            }
        })
    }
}

impl GitProposalSink for ProposalQueue {
    fn propose(&self, proposal: GitProposal) -> BoxFuture<'_, GitDecision> {
        Box::pin(async move {
            match self.submit(git_allow(&proposal)).await {
                Verdict::Approved { .. } => GitDecision::Approve,
                other => GitDecision::Deny { reason: refusal(&other) },
            }
        })
    }
}

fn refusal(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Rejected { reason } => reason.clone(),
        Verdict::TimedOut => "the operator did not answer in time".into(),
        Verdict::Approved { .. } | Verdict::Modified { .. } => "the decision does not apply to this proposal".into(),
    }
}

/// An `egress-token-allow` proposal: rule ids, locations and the request line, never the value
/// (egress has already scrubbed the path).
fn token_allow(p: &Proposal) -> NewProposal {
    let first = p.findings.first().map(|f| format!("`{}` in {}", f.rule, f.location)).unwrap_or_default();
    let more = match p.findings.len() {
        0 | 1 => String::new(),
        n => format!(" (+{} more)", n - 1),
    };
    NewProposal {
        kind: ProposalKind::EgressTokenAllow,
        summary: format!("DLP hit {first}{more}: {} {}:{}{}", p.method, p.host, p.port, p.path),
        detail: json!({
            "host": p.host,
            "port": p.port,
            "method": p.method,
            "path": p.path,
            "findings": p.findings.iter().map(|f| json!({"rule": f.rule, "location": f.location})).collect::<Vec<_>>(),
        }),
        route: None,
    }
}

/// A `git-allow` proposal: where the marked finding is and which rule, never the line's value.
fn git_allow(p: &GitProposal) -> NewProposal {
    let short = p.commit.get(..10).unwrap_or(&p.commit);
    // The gate quotes file paths in backticks; the detail carries the bare path.
    let file = p.file.strip_prefix('`').and_then(|f| f.strip_suffix('`')).unwrap_or(&p.file);
    NewProposal {
        kind: ProposalKind::GitAllow,
        summary: format!("inline allow in `{}` {} {short}: `{}` line {}: {}", p.repo, p.refname, file, p.line, p.rule),
        detail: json!({
            "repo": p.repo,
            "ref": p.refname,
            "commit": p.commit,
            "file": file,
            "line": p.line,
            "rule": p.rule,
        }),
        route: None,
    }
}
