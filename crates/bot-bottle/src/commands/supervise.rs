//! `bot-bottle supervise`: the one queue of requests every running bottle holds for a human.
//!
//! Without a subcommand it opens the interactive view (`supervise/tui.rs`); `--once` prints the
//! pending proposals and exits; `approve`/`reject` decide one by id; `history` lists past
//! decisions from the host database. Proposals never carry secret values, and nothing here prints
//! a token.

pub mod tui;

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use bottle_core::Diagnostic;
use bottle_state::{DecisionRecord, History};
use serde::Serialize;

use crate::cli::{Format, GlobalArgs, SuperviseAction, SuperviseArgs};
use crate::commands::context;
use crate::control::{self, Control};
use crate::printer::Printer;

/// A pending proposal and the bottle holding it.
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    pub slug: String,
    pub label: Option<String>,
    pub color: Option<String>,
    pub id: String,
    pub kind: String,
    pub summary: String,
    pub created_at: u64,
    pub age_secs: u64,
    pub detail: serde_json::Value,
}

/// Every pending proposal across `bottles`, oldest first. A bottle that does not answer is
/// reported in the second list and skipped: it may have just stopped.
pub fn pending(bottles: &[Control]) -> (Vec<Pending>, Vec<(String, String)>) {
    let mut all = Vec::new();
    let mut unreachable = Vec::new();
    for bottle in bottles {
        match bottle.get("/v1/proposals") {
            Ok(list) => {
                for p in list.as_array().into_iter().flatten() {
                    let text = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
                    let num = |k: &str| p.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
                    all.push(Pending {
                        slug: bottle.slug.clone(),
                        label: bottle.label.clone(),
                        color: bottle.color.clone(),
                        id: text("id"),
                        kind: text("kind"),
                        summary: text("summary"),
                        created_at: num("created_at"),
                        age_secs: num("age_secs"),
                        detail: p.get("detail").cloned().unwrap_or(serde_json::Value::Null),
                    });
                }
            }
            Err(e) => unreachable.push((bottle.slug.clone(), format!("{e:#}"))),
        }
    }
    all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
    (all, unreachable)
}

/// The decision body the control API takes.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
}

/// Sends `decision` for `proposal` and records it in the host history.
pub fn decide(
    home: &bottle_state::Home,
    bottle: &Control,
    proposal: &Pending,
    decision: &Decision,
) -> anyhow::Result<()> {
    bottle.post(&format!("/v1/proposals/{}/decision", proposal.id), &serde_json::to_value(decision)?)?;
    let history = History::open(&home.db_path())?;
    history.record(&DecisionRecord {
        decided_at: SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        slug: proposal.slug.clone(),
        proposal_id: proposal.id.clone(),
        kind: proposal.kind.clone(),
        summary: proposal.summary.clone(),
        action: decision.action.to_owned(),
        scope: decision.scope.clone(),
        reason: decision.reason.clone(),
    })?;
    Ok(())
}

pub fn run(global: &GlobalArgs, args: &SuperviseArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let ctx = context(global)?;
    match &args.action {
        None if !args.once => tui::run(&ctx.home, printer),
        None => {
            let bottles = control::running(&ctx.home)?;
            let (pending, unreachable) = pending(&bottles);
            for (slug, why) in &unreachable {
                printer.warn(&format!("bottle `{slug}` did not answer: {why}"));
            }
            match args.format {
                Format::Json => printer.json(&pending)?,
                Format::Text if pending.is_empty() => printer.step(&format!(
                    "no pending proposals ({} running bottle{} with a control API)",
                    bottles.len(),
                    if bottles.len() == 1 { "" } else { "s" }
                )),
                Format::Text => {
                    let mut out = format!("{:<10} {:<24} {:<18} {:>5}  {}\n", "ID", "BOTTLE", "KIND", "AGE", "SUMMARY");
                    for p in &pending {
                        out.push_str(&format!(
                            "{:<10} {:<24} {:<18} {:>4}s  {}\n",
                            p.id, p.slug, p.kind, p.age_secs, p.summary
                        ));
                    }
                    printer.out(&out)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(SuperviseAction::Approve { id, scope }) => {
            let decision =
                Decision { action: "approve", scope: Some(scope.clone()), reason: None, route: None, reply: None };
            one(&ctx.home, id, &decision, printer)
        }
        Some(SuperviseAction::Reject { id, reason }) => {
            let decision =
                Decision { action: "reject", scope: None, reason: Some(reason.clone()), route: None, reply: None };
            one(&ctx.home, id, &decision, printer)
        }
        Some(SuperviseAction::History { format }) => {
            let records = History::open(&ctx.home.db_path())?.list()?;
            match format {
                Format::Json => printer.json(&records)?,
                Format::Text => {
                    let mut out = String::new();
                    for r in &records {
                        out.push_str(&format!(
                            "{}  {:<24} {:<10} {:<18} {:<8} {}{}\n",
                            r.decided_at,
                            r.slug,
                            r.proposal_id,
                            r.kind,
                            r.action,
                            r.summary,
                            r.reason.as_ref().map(|x| format!(" — {x}")).unwrap_or_default()
                        ));
                    }
                    if out.is_empty() {
                        printer.step("no decisions yet");
                    } else {
                        printer.out(&out)?;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Finds `id` (`ID` or `SLUG:ID`) among the running bottles and decides it.
fn one(home: &bottle_state::Home, id: &str, decision: &Decision, printer: &Printer) -> anyhow::Result<ExitCode> {
    let (want_slug, want_id) = match id.split_once(':') {
        Some((slug, id)) => (Some(slug), id),
        None => (None, id),
    };
    let bottles = control::running(home)?;
    let (pending, _) = pending(&bottles);
    let matches: Vec<&Pending> =
        pending.iter().filter(|p| p.id == want_id && want_slug.is_none_or(|s| s == p.slug)).collect();
    let proposal = match matches.as_slice() {
        [one] => *one,
        [] => {
            return Err(Diagnostic::new(format!("no pending proposal `{id}`"))
                .hint("`bot-bottle supervise --once` lists the pending ones; it may have been decided or timed out")
                .into());
        }
        _ => {
            return Err(Diagnostic::new(format!("`{id}` is pending in several bottles"))
                .hint("name it as `SLUG:ID`")
                .into());
        }
    };
    let bottle = bottles.iter().find(|b| b.slug == proposal.slug).context("the bottle went away")?;
    decide(home, bottle, proposal, decision)?;
    printer.step(&format!("{}: {} {} ({})", proposal.slug, decision.action, proposal.id, proposal.summary));
    Ok(ExitCode::SUCCESS)
}
