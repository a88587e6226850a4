//! The per-bottle queue of pending proposals.
//!
//! Each proposal holds its caller (an MCP tool call, a held egress request, a push) until the
//! operator decides it through the control API or the timeout passes, which rejects it. Pending
//! proposals live in memory only: a sidecar restart drops them, and the callers' connections die
//! with the process, so they fail closed. Filing, deciding, expiring and withdrawing a proposal are
//! each one line in the bottle's hash-chained audit log.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bottle_dlp::{Engine, Location};
use bottle_egress::AuditLog;
use bottle_egress::audit::{AuditEvent, Decision};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::route::RouteRequest;

/// How long a proposal waits for the operator unless configured otherwise.
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;
/// Most proposals pending at once; past it new ones are refused at once (an agent cannot flood
/// the operator or the sidecar's memory).
pub const MAX_PENDING: usize = 100;
/// How many decided proposals are remembered, so deciding one twice answers 409, not 404.
const MAX_FINISHED: usize = 1024;

/// What a proposal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProposalKind {
    /// A new or changed egress route (the agent's `request-egress`).
    EgressRoute,
    /// A request held because outbound DLP found something on a `supervise` route.
    EgressTokenAllow,
    /// A pushed line with an inline allow marker that the git gate flagged.
    GitAllow,
    /// A free-form question or notice (the agent's `ask-supervisor`).
    Question,
}

impl ProposalKind {
    /// The kind's wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EgressRoute => "egress-route",
            Self::EgressTokenAllow => "egress-token-allow",
            Self::GitAllow => "git-allow",
            Self::Question => "question",
        }
    }
}

/// How long an approval holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// This request only.
    #[default]
    Once,
    /// This request, and (for `egress-token-allow`) the same values to the same host for the rest
    /// of the sidecar's life.
    Session,
}

impl Scope {
    /// The scope's wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Once => "once",
            Self::Session => "session",
        }
    }
}

/// What the waiting caller is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Approved as proposed.
    Approved {
        /// How long the approval holds.
        scope: Scope,
        /// The operator's note, if any (scrubbed).
        reason: Option<String>,
        /// The operator's answer to a question (scrubbed).
        reply: Option<String>,
    },
    /// Approved with the operator's changes (egress routes only).
    Modified {
        /// The route as the operator edited it, now in force.
        route: RouteRequest,
        /// The operator's note, if any (scrubbed).
        reason: Option<String>,
    },
    /// Refused.
    Rejected {
        /// Why, in the operator's words (scrubbed).
        reason: String,
    },
    /// Nobody decided in time; treated as a rejection.
    TimedOut,
}

impl Verdict {
    /// The status word the control API and the MCP tools report.
    #[must_use]
    pub fn status(&self) -> &'static str {
        match self {
            Self::Approved { .. } => "approved",
            Self::Modified { .. } => "modified",
            Self::Rejected { .. } => "rejected",
            Self::TimedOut => "timeout",
        }
    }
}

/// A proposal to file.
#[derive(Debug, Clone)]
pub struct NewProposal {
    /// What it asks for.
    pub kind: ProposalKind,
    /// One line for the operator's list.
    pub summary: String,
    /// Kind-specific details (a JSON object).
    pub detail: Value,
    /// For `egress-route`: the route as requested.
    pub route: Option<RouteRequest>,
}

/// A pending proposal as the control API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProposalView {
    /// Short random hex id.
    pub id: String,
    /// What it asks for.
    pub kind: ProposalKind,
    /// When it was filed, in Unix seconds.
    pub created_at: u64,
    /// How long it has been waiting, in seconds.
    pub age_secs: u64,
    /// One line for the operator's list.
    pub summary: String,
    /// Kind-specific details.
    pub detail: Value,
    /// Always `pending`: decided proposals leave the queue.
    pub status: &'static str,
}

/// Why a proposal cannot be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// Unknown, expired, or withdrawn by its caller.
    #[error("no pending proposal `{0}` (unknown, expired, or its caller is gone)")]
    NotFound(String),
    /// Already decided.
    #[error("proposal `{id}` was already decided ({status})")]
    AlreadyDecided {
        /// The proposal.
        id: String,
        /// What it was decided as.
        status: &'static str,
    },
}

struct Entry {
    id: String,
    kind: ProposalKind,
    created_at: u64,
    filed: Instant,
    summary: String,
    detail: Value,
    route: Option<RouteRequest>,
    answer: oneshot::Sender<Verdict>,
}

impl Entry {
    fn view(&self) -> ProposalView {
        ProposalView {
            id: self.id.clone(),
            kind: self.kind,
            created_at: self.created_at,
            age_secs: self.filed.elapsed().as_secs(),
            summary: self.summary.clone(),
            detail: self.detail.clone(),
            status: "pending",
        }
    }
}

#[derive(Default)]
struct State {
    /// Pending proposals, oldest first.
    pending: Vec<Entry>,
    /// Recently decided proposals and what they were decided as.
    decided: VecDeque<(String, &'static str)>,
    /// Recently expired or withdrawn ids (never reused while remembered).
    gone: VecDeque<String>,
}

impl State {
    fn remember<T>(list: &mut VecDeque<T>, item: T) {
        if list.len() >= MAX_FINISHED {
            list.pop_front();
        }
        list.push_back(item);
    }

    fn id_in_use(&self, id: &str) -> bool {
        self.pending.iter().any(|e| e.id == id)
            || self.decided.iter().any(|(d, _)| d == id)
            || self.gone.iter().any(|g| g == id)
    }

    fn take(&mut self, id: &str) -> Option<Entry> {
        let index = self.pending.iter().position(|e| e.id == id)?;
        Some(self.pending.remove(index))
    }
}

/// The bottle's proposal queue. Cheap to share behind an `Arc`; every method is safe to call from
/// any task.
pub struct ProposalQueue {
    state: Mutex<State>,
    timeout: Duration,
    audit: Option<Arc<AuditLog>>,
    scrubber: Engine,
}

impl std::fmt::Debug for ProposalQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pending = self.state.lock().unwrap_or_else(PoisonError::into_inner).pending.len();
        f.debug_struct("ProposalQueue").field("pending", &pending).field("timeout", &self.timeout).finish()
    }
}

impl ProposalQueue {
    /// A queue whose proposals wait `timeout` for a decision and are logged to `audit`. Every
    /// piece of text a proposal or decision carries is scrubbed with `scrubber` (token patterns and
    /// the bottle's known secrets) before it is stored, shown or logged.
    #[must_use]
    pub fn new(timeout: Duration, audit: Option<Arc<AuditLog>>, scrubber: Engine) -> Self {
        Self { state: Mutex::new(State::default()), timeout, audit, scrubber }
    }

    /// How long a proposal waits.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The engine that scrubs text (shared with route validation).
    pub(crate) fn scrubber(&self) -> &Engine {
        &self.scrubber
    }

    /// Replaces every secret-looking span of `text` with a `«REDACTED:rule»` marker.
    #[must_use]
    pub fn scrub(&self, text: &str) -> String {
        let redaction = self.scrubber.redact(text.as_bytes(), &Location::Other("supervise".into()));
        String::from_utf8_lossy(&redaction.output).into_owned()
    }

    fn scrub_value(&self, value: Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.scrub(&s)),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.scrub_value(v)).collect()),
            Value::Object(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (self.scrub(&k), self.scrub_value(v))).collect())
            }
            other => other,
        }
    }

    /// Files `proposal` and waits for the operator's verdict, the timeout, or the caller giving up
    /// (dropping the future withdraws the proposal).
    pub async fn submit(&self, proposal: NewProposal) -> Verdict {
        let (tx, mut rx) = oneshot::channel();
        let Some(id) = self.file(proposal, tx) else {
            return Verdict::Rejected {
                reason: "too many proposals are waiting for the operator; try again later".into(),
            };
        };
        let mut guard = Withdraw { queue: self, id: Some(id.clone()) };
        let verdict = tokio::select! {
            answer = &mut rx => answer.ok(),
            () = tokio::time::sleep(self.timeout) => {
                if self.expire(&id) {
                    Some(Verdict::TimedOut)
                } else {
                    // Claimed at the last moment: the decision is on its way.
                    rx.await.ok()
                }
            }
        };
        guard.id = None;
        // A claimed proposal whose decider vanished before answering is a rejection.
        verdict.unwrap_or_else(|| Verdict::Rejected { reason: "the decision was lost".into() })
    }

    /// Files a proposal without anyone waiting on it, for notices: it stays in the queue until the
    /// operator acknowledges it or it expires. Returns its id.
    pub fn notify(self: &Arc<Self>, proposal: NewProposal) -> Option<String> {
        let (tx, rx) = oneshot::channel();
        let id = self.file(proposal, tx)?;
        let queue = self.clone();
        let expiring = id.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(queue.timeout, rx).await.is_err() {
                queue.expire(&expiring);
            }
        });
        Some(id)
    }

    fn file(&self, proposal: NewProposal, answer: oneshot::Sender<Verdict>) -> Option<String> {
        let summary = one_line(&self.scrub(&proposal.summary), 200);
        let detail = self.scrub_value(proposal.detail);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.pending.len() >= MAX_PENDING {
            drop(state);
            self.audit(AuditEvent {
                kind: Some(proposal.kind.as_str().into()),
                action: Some("refused".into()),
                summary: Some(summary),
                reason: Some("the queue is full".into()),
                ..AuditEvent::new("proposal", Decision::Deny)
            });
            return None;
        }
        let id = loop {
            let candidate = format!("{:08x}", rand::random::<u32>());
            if !state.id_in_use(&candidate) {
                break candidate;
            }
        };
        let created_at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        state.pending.push(Entry {
            id: id.clone(),
            kind: proposal.kind,
            created_at,
            filed: Instant::now(),
            summary: summary.clone(),
            detail: detail.clone(),
            route: proposal.route,
            answer,
        });
        drop(state);
        tracing::info!(proposal = %id, kind = proposal.kind.as_str(), "proposal filed");
        self.audit(AuditEvent {
            proposal: Some(id.clone()),
            kind: Some(proposal.kind.as_str().into()),
            summary: Some(summary),
            detail: Some(detail),
            ..AuditEvent::new("proposal", Decision::Warn)
        });
        Some(id)
    }

    /// Removes a proposal nobody decided in time; `false` when it was claimed meanwhile.
    fn expire(&self, id: &str) -> bool {
        self.drop_pending(id, "timeout", "nobody decided in time")
    }

    fn drop_pending(&self, id: &str, action: &'static str, reason: &str) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = state.take(id) else { return false };
        State::remember(&mut state.gone, entry.id.clone());
        drop(state);
        tracing::info!(proposal = %id, action, "proposal closed without a decision");
        self.audit(AuditEvent {
            proposal: Some(entry.id),
            kind: Some(entry.kind.as_str().into()),
            action: Some(action.into()),
            reason: Some(reason.into()),
            ..AuditEvent::new("proposal-decision", Decision::Deny)
        });
        true
    }

    /// Pending proposals, oldest first.
    #[must_use]
    pub fn list(&self) -> Vec<ProposalView> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).pending.iter().map(Entry::view).collect()
    }

    /// One pending proposal.
    pub fn get(&self, id: &str) -> Result<ProposalView, ClaimError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.pending.iter().find(|e| e.id == id) {
            Some(entry) => Ok(entry.view()),
            None => Err(Self::missing(&state, id)),
        }
    }

    fn missing(state: &State, id: &str) -> ClaimError {
        match state.decided.iter().find(|(d, _)| d == id) {
            Some((_, status)) => ClaimError::AlreadyDecided { id: id.to_owned(), status },
            None => ClaimError::NotFound(id.to_owned()),
        }
    }

    /// Takes a pending proposal out of the queue for deciding: nobody else can decide it, and its
    /// caller keeps waiting until [`Claim::resolve`] (or, if the claim is dropped unresolved, is
    /// told the decision was lost, which rejects).
    pub fn claim(&self, id: &str) -> Result<Claim<'_>, ClaimError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = state.take(id) else { return Err(Self::missing(&state, id)) };
        if entry.answer.is_closed() {
            // The caller is gone (its connection died): nothing to decide.
            State::remember(&mut state.gone, entry.id.clone());
            return Err(ClaimError::NotFound(id.to_owned()));
        }
        State::remember(&mut state.decided, (entry.id.clone(), "claimed"));
        Ok(Claim { queue: self, entry: Some(entry) })
    }

    fn record_decision(&self, id: &str, status: &'static str) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = state.decided.iter_mut().find(|(d, _)| d == id) {
            slot.1 = status;
        }
    }

    /// Appends `event` to the audit log after a last check that it carries nothing secret-looking.
    fn audit(&self, event: AuditEvent) {
        let Some(log) = &self.audit else { return };
        let line = serde_json::to_string(&event).unwrap_or_default();
        let leaked = !self.scrubber.scan(line.as_bytes(), &Location::Other("audit".into())).is_empty();
        let event = if leaked {
            AuditEvent {
                proposal: event.proposal,
                kind: event.kind,
                action: event.action,
                reason: Some("audit line withheld: it contained secret-looking material".into()),
                ..AuditEvent::new(event.event, event.decision)
            }
        } else {
            event
        };
        if let Err(error) = log.append(&event) {
            tracing::error!(%error, "cannot write audit line");
        }
    }
}

/// Withdraws a proposal when its caller stops waiting (the future is dropped).
struct Withdraw<'a> {
    queue: &'a ProposalQueue,
    id: Option<String>,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.queue.drop_pending(&id, "withdrawn", "the caller stopped waiting");
        }
    }
}

/// A proposal taken out of the queue for deciding.
pub struct Claim<'a> {
    queue: &'a ProposalQueue,
    entry: Option<Entry>,
}

impl std::fmt::Debug for Claim<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim").field("id", &self.entry.as_ref().map(|e| e.id.as_str())).finish()
    }
}

impl Claim<'_> {
    /// The proposal's id.
    #[must_use]
    pub fn id(&self) -> &str {
        self.entry.as_ref().map_or("", |e| e.id.as_str())
    }

    /// What it asks for.
    #[must_use]
    pub fn kind(&self) -> ProposalKind {
        self.entry.as_ref().map_or(ProposalKind::Question, |e| e.kind)
    }

    /// For `egress-route`: the route as requested.
    #[must_use]
    pub fn route(&self) -> Option<&RouteRequest> {
        self.entry.as_ref().and_then(|e| e.route.as_ref())
    }

    /// The proposal's details.
    #[must_use]
    pub fn detail(&self) -> Option<&Value> {
        self.entry.as_ref().map(|e| &e.detail)
    }

    /// Answers the caller and logs the decision; `applied` describes what the decision changed
    /// (e.g. the route now in force).
    pub fn resolve(mut self, verdict: Verdict, applied: Option<Value>) {
        let Some(entry) = self.entry.take() else { return };
        let (action, decision, scope, reason) = match &verdict {
            Verdict::Approved { scope, reason, .. } => ("approve", Decision::Allow, Some(*scope), reason.clone()),
            Verdict::Modified { reason, .. } => ("modify", Decision::Allow, None, reason.clone()),
            Verdict::Rejected { reason } => ("reject", Decision::Deny, None, Some(reason.clone())),
            Verdict::TimedOut => ("timeout", Decision::Deny, None, None),
        };
        self.queue.record_decision(&entry.id, verdict.status());
        tracing::info!(proposal = %entry.id, kind = entry.kind.as_str(), status = verdict.status(), "proposal decided");
        self.queue.audit(AuditEvent {
            proposal: Some(entry.id.clone()),
            kind: Some(entry.kind.as_str().into()),
            action: Some(action.into()),
            scope: scope.map(|s| s.as_str().into()),
            reason: reason.map(|r| self.queue.scrub(&r)),
            detail: applied.map(|v| self.queue.scrub_value(v)),
            ..AuditEvent::new("proposal-decision", decision)
        });
        if entry.answer.send(verdict).is_err() {
            tracing::info!(proposal = %entry.id, "the proposal's caller was gone when it was decided");
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.queue.record_decision(&entry.id, "rejected");
            // Dropping the sender tells the caller the decision was lost: a rejection.
        }
    }
}

/// `text` on one line (control characters become spaces), at most `max` characters.
#[must_use]
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let flat = flat.trim();
    if flat.chars().count() <= max {
        return flat.to_owned();
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(timeout: Duration, audit: Option<Arc<AuditLog>>) -> Arc<ProposalQueue> {
        let scrubber = Engine::new(&bottle_dlp::DlpConfig {
            known_secrets: vec![bottle_dlp::KnownSecret::new("SLOT", "planted-known-secret-0123456789")],
            ..bottle_dlp::DlpConfig::default()
        })
        .unwrap();
        Arc::new(ProposalQueue::new(timeout, audit, scrubber))
    }

    fn question(text: &str) -> NewProposal {
        NewProposal {
            kind: ProposalKind::Question,
            summary: format!("question: {text}"),
            detail: serde_json::json!({ "question": text }),
            route: None,
        }
    }

    async fn wait_for(queue: &ProposalQueue, n: usize) -> Vec<ProposalView> {
        for _ in 0..200 {
            let list = queue.list();
            if list.len() == n {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the queue never held {n} proposals");
    }

    #[tokio::test]
    async fn proposals_are_fifo_and_a_decision_reaches_the_caller_once() {
        let queue = queue(Duration::from_secs(30), None);
        let first = tokio::spawn({
            let queue = queue.clone();
            async move { queue.submit(question("one")).await }
        });
        wait_for(&queue, 1).await;
        let second = tokio::spawn({
            let queue = queue.clone();
            async move { queue.submit(question("two")).await }
        });
        let list = wait_for(&queue, 2).await;
        assert_eq!(list[0].summary, "question: one");
        assert_eq!(list[1].summary, "question: two");
        assert!(list.iter().all(|p| p.id.len() == 8 && p.status == "pending"));

        let claim = queue.claim(&list[0].id).unwrap();
        assert_eq!(claim.kind(), ProposalKind::Question);
        assert!(matches!(queue.claim(&list[0].id), Err(ClaimError::AlreadyDecided { .. })));
        claim.resolve(Verdict::Approved { scope: Scope::Once, reason: None, reply: Some("yes".into()) }, None);
        assert_eq!(
            first.await.unwrap(),
            Verdict::Approved { scope: Scope::Once, reason: None, reply: Some("yes".into()) }
        );
        assert_eq!(
            queue.get(&list[0].id),
            Err(ClaimError::AlreadyDecided { id: list[0].id.clone(), status: "approved" })
        );
        assert_eq!(queue.get("deadbeef"), Err(ClaimError::NotFound("deadbeef".into())));

        queue.claim(&list[1].id).unwrap().resolve(Verdict::Rejected { reason: "no".into() }, None);
        assert_eq!(second.await.unwrap(), Verdict::Rejected { reason: "no".into() });
        assert!(queue.list().is_empty());
    }

    #[tokio::test]
    async fn an_unanswered_proposal_times_out_and_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Arc::new(AuditLog::open(&dir.path().join("audit.jsonl")).unwrap());
        let queue = queue(Duration::from_millis(200), Some(audit));
        let verdict = queue.submit(question("anyone?")).await;
        assert_eq!(verdict, Verdict::TimedOut);
        assert!(queue.list().is_empty());
        let log = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
        assert!(log.contains(r#""event":"proposal""#) && log.contains(r#""action":"timeout""#), "{log}");
        assert_eq!(bottle_egress::verify_chain(&dir.path().join("audit.jsonl")).unwrap(), 2);
    }

    #[tokio::test]
    async fn a_caller_that_stops_waiting_withdraws_its_proposal() {
        let queue = queue(Duration::from_secs(30), None);
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.submit(question("still there?")).await }
        });
        let id = wait_for(&queue, 1).await[0].id.clone();
        waiting.abort();
        let _ = waiting.await;
        assert!(queue.list().is_empty());
        assert_eq!(queue.claim(&id).unwrap_err(), ClaimError::NotFound(id));
    }

    #[tokio::test]
    async fn a_dropped_claim_rejects() {
        let queue = queue(Duration::from_secs(30), None);
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.submit(question("?")).await }
        });
        let id = wait_for(&queue, 1).await[0].id.clone();
        drop(queue.claim(&id).unwrap());
        assert!(matches!(waiting.await.unwrap(), Verdict::Rejected { .. }));
    }

    #[tokio::test]
    async fn the_queue_is_bounded_and_notices_expire() {
        let queue = queue(Duration::from_millis(300), None);
        for i in 0..MAX_PENDING {
            assert!(queue.notify(question(&format!("n{i}"))).is_some());
        }
        assert!(queue.notify(question("one too many")).is_none());
        assert!(matches!(queue.submit(question("and a question")).await, Verdict::Rejected { .. }));
        wait_for(&queue, 0).await;
    }

    #[tokio::test]
    async fn text_is_scrubbed_before_it_is_shown_or_logged() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Arc::new(AuditLog::open(&dir.path().join("audit.jsonl")).unwrap());
        let queue = queue(Duration::from_secs(30), Some(audit));
        let planted = "planted-known-secret-0123456789";
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.submit(question(&format!("is {planted} or AKIAIOSFODNN7EXAMPLE ok?"))).await }
        });
        let list = wait_for(&queue, 1).await;
        let shown = serde_json::to_string(&list).unwrap();
        assert!(!shown.contains(planted) && !shown.contains("AKIAIOSFODNN7EXAMPLE"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
        queue.claim(&list[0].id).unwrap().resolve(Verdict::Rejected { reason: format!("not {planted}") }, None);
        let _ = waiting.await;
        let log = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
        assert!(!log.contains(planted) && !log.contains("AKIAIOSFODNN7EXAMPLE"), "{log}");
    }
}
