//! The operator's decisions: parsed by hand so each error names its field, checked against the
//! proposal's kind, and applied (an approved route goes into the running proxy) before the waiting
//! caller is answered.

use serde_json::{Map, Value, json};

use crate::Supervisor;
use crate::queue::{ClaimError, ProposalKind, Scope, Verdict};
use crate::route::{Extra, FieldError, RouteRequest, public_route};

/// Longest reason or reply the operator may send.
const MAX_TEXT: usize = 8000;

/// What the operator does with a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Accept as proposed.
    Approve,
    /// Accept with an edited route (`egress-route` only).
    Modify,
    /// Refuse (a reason is required).
    Reject,
}

/// A decision as the control API receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRequest {
    /// What to do.
    pub action: Action,
    /// How long an approval holds (default `once`).
    pub scope: Scope,
    /// Why (required to reject).
    pub reason: Option<String>,
    /// The edited route, for `modify`.
    pub route: Option<Map<String, Value>>,
    /// The answer to a question.
    pub reply: Option<String>,
}

/// Why a decision was not taken.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// No such pending proposal (or already decided).
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// The decision is malformed or does not fit the proposal.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The decision could not be applied; the proposal was rejected.
    #[error("the decision could not be applied: {0}; the proposal was rejected")]
    Apply(String),
}

impl DecisionRequest {
    /// Parses a decision body; `kind` is the proposal's, so a decision that cannot apply to it is
    /// refused here, before anything changes.
    pub fn parse(body: &[u8], kind: ProposalKind) -> Result<Self, FieldError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| FieldError::new("body", format!("is not valid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(FieldError::new("body", "must be a JSON object"));
        };
        if let Some(key) = map.keys().find(|k| !matches!(k.as_str(), "action" | "scope" | "reason" | "route" | "reply"))
        {
            return Err(FieldError::new(
                key.as_str(),
                "unknown field; expected `action`, `scope`, `reason`, `route`, `reply`",
            ));
        }
        let text = |field: &str| -> Result<Option<String>, FieldError> {
            match map.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.chars().count() > MAX_TEXT => {
                    Err(FieldError::new(field, format!("is longer than {MAX_TEXT} characters")))
                }
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(FieldError::new(field, "must be a string")),
            }
        };
        let action = match text("action")?.as_deref() {
            Some("approve") => Action::Approve,
            Some("modify") => Action::Modify,
            Some("reject") => Action::Reject,
            Some(other) => {
                return Err(FieldError::new(
                    "action",
                    format!(
                        "`{}` is not one of `approve`, `modify`, `reject`",
                        other.chars().take(32).collect::<String>()
                    ),
                ));
            }
            None => return Err(FieldError::new("action", "is required (`approve`, `modify` or `reject`)")),
        };
        let scope = match text("scope")?.as_deref() {
            None | Some("once") => Scope::Once,
            Some("session") => Scope::Session,
            Some(_) => return Err(FieldError::new("scope", "must be `once` or `session`")),
        };
        let reason = text("reason")?.filter(|r| !r.trim().is_empty());
        let reply = text("reply")?;
        let route = match map.get("route") {
            None | Some(Value::Null) => None,
            Some(Value::Object(route)) => Some(route.clone()),
            Some(_) => return Err(FieldError::new("route", "must be an object like the `request-egress` arguments")),
        };
        if action == Action::Reject && reason.is_none() {
            return Err(FieldError::new("reason", "is required to reject"));
        }
        if action == Action::Modify && kind != ProposalKind::EgressRoute {
            return Err(FieldError::new(
                "action",
                format!("`modify` applies only to `egress-route` proposals, not `{}`", kind.as_str()),
            ));
        }
        match (action, &route) {
            (Action::Modify, None) => return Err(FieldError::new("route", "is required to modify")),
            (Action::Approve | Action::Reject, Some(_)) => {
                return Err(FieldError::new("route", "is only valid with `modify`"));
            }
            _ => {}
        }
        if reply.is_some() && kind != ProposalKind::Question {
            return Err(FieldError::new(
                "reply",
                format!("applies only to `question` proposals, not `{}`", kind.as_str()),
            ));
        }
        Ok(Self { action, scope, reason, route, reply })
    }
}

impl Supervisor {
    /// Decides pending proposal `id` with the JSON `body`: checks it, applies it (an approved or
    /// modified route goes into the running proxy first), answers the waiting caller, logs it.
    /// Returns the status (`approved`, `modified`, `rejected`).
    pub fn decide(&self, id: &str, body: &[u8]) -> Result<&'static str, DecideError> {
        let kind = self.queue.get(id)?.kind;
        let request = DecisionRequest::parse(body, kind)?;
        let modified = match &request.route {
            Some(route) => Some(
                RouteRequest::parse(route, Extra::AllowJustification, self.queue.scrubber())
                    .map_err(|e| FieldError::new(format!("route.{}", e.field), e.message))?
                    .0,
            ),
            None => None,
        };
        let claim = self.queue.claim(id)?;
        let scrub = |text: Option<String>| text.map(|t| self.queue.scrub(&t));
        let reason = scrub(request.reason);
        let (verdict, applied) = match request.action {
            Action::Reject => (Verdict::Rejected { reason: reason.unwrap_or_default() }, None),
            Action::Approve | Action::Modify if claim.kind() == ProposalKind::EgressRoute => {
                let Some(route) = modified.clone().or_else(|| claim.route().cloned()) else {
                    claim.resolve(Verdict::Rejected { reason: "the proposal holds no route".into() }, None);
                    return Err(DecideError::Apply("the proposal holds no route".into()));
                };
                let routes = self.egress.routes();
                let config = route.to_route(route.current(&routes));
                let shown = public_route(&config);
                if let Err(error) = self.egress.grant_route(config) {
                    let reason = format!("the route could not be put in force: {error}");
                    claim.resolve(Verdict::Rejected { reason: reason.clone() }, None);
                    return Err(DecideError::Apply(reason));
                }
                let verdict = match modified {
                    Some(route) => Verdict::Modified { route, reason },
                    None => Verdict::Approved { scope: request.scope, reason, reply: None },
                };
                (verdict, Some(json!({ "route": shown })))
            }
            Action::Approve | Action::Modify => {
                (Verdict::Approved { scope: request.scope, reason, reply: scrub(request.reply) }, None)
            }
        };
        let status = verdict.status();
        claim.resolve(verdict, applied);
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(body: &str, kind: ProposalKind) -> String {
        DecisionRequest::parse(body.as_bytes(), kind).unwrap_err().field
    }

    #[test]
    fn malformed_decisions_name_their_field() {
        let route = ProposalKind::EgressRoute;
        assert_eq!(field("nope", route), "body");
        assert_eq!(field("[]", route), "body");
        assert_eq!(field("{}", route), "action");
        assert_eq!(field(r#"{"action":"yes"}"#, route), "action");
        assert_eq!(field(r#"{"action":"approve","scope":"forever"}"#, route), "scope");
        assert_eq!(field(r#"{"action":"reject"}"#, route), "reason");
        assert_eq!(field(r#"{"action":"reject","reason":"  "}"#, route), "reason");
        assert_eq!(field(r#"{"action":"modify"}"#, route), "route");
        assert_eq!(field(r#"{"action":"approve","route":{}}"#, route), "route");
        assert_eq!(field(r#"{"action":"modify","route":{"host":"a"}}"#, ProposalKind::GitAllow), "action");
        assert_eq!(field(r#"{"action":"approve","reply":"hi"}"#, ProposalKind::GitAllow), "reply");
        assert_eq!(field(r#"{"action":"approve","why":"x"}"#, route), "why");
    }

    #[test]
    fn well_formed_decisions_parse() {
        let d = DecisionRequest::parse(br#"{"action":"approve","scope":"session"}"#, ProposalKind::EgressTokenAllow)
            .unwrap();
        assert_eq!((d.action, d.scope), (Action::Approve, Scope::Session));
        let d = DecisionRequest::parse(br#"{"action":"approve","reply":"yes"}"#, ProposalKind::Question).unwrap();
        assert_eq!(d.reply.as_deref(), Some("yes"));
        let d =
            DecisionRequest::parse(br#"{"action":"modify","route":{"host":"a.example"}}"#, ProposalKind::EgressRoute)
                .unwrap();
        assert_eq!(d.action, Action::Modify);
    }
}
