//! The gate's side of the pre-receive hook: ref policy, the scan, proposals for marked findings, and
//! the upstream push — one decision per push, streamed to the pusher and written to the audit log.
//!
//! The agent's push succeeds only if the upstream accepted it: the hook answers 0 after the upstream
//! push succeeded, so the mirror's refs then match the upstream's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bottle_dlp::Location;
use bottle_egress::FindingSummary;
use bottle_egress::audit::{AuditEvent, Decision};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

use crate::Shared;
use crate::git::{GitEnv, Procs, is_zero_oid, run_async};
use crate::hook::{HookRequest, MAX_REQUEST, PUSH_ID_ENV, exit_frame, message_frames};
use crate::policy::{Forward, RefUpdate, UpdateKind, decide, parse_updates};
use crate::proposal::{GIT_ALLOW_KIND, GitDecision, GitProposal};
use crate::repo::Repo;
use crate::scan::{Exclude, Place, PushFinding, ScanReport, ScanRequest, SkipReason, short};

/// An audit line lists at most this many findings (lines stay small; the count is always there).
const MAX_AUDITED_FINDINGS: usize = 100;

/// The hook sends its request at once; a connection that does not is dropped.
const HOOK_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Pushes in flight: the id handed to receive-pack (and so to its hook) → the repository.
#[derive(Debug, Default)]
pub(crate) struct PushRegistry {
    inner: Arc<Mutex<HashMap<String, Arc<Repo>>>>,
}

/// Removes its push from the registry when dropped (if the hook did not already use it).
#[derive(Debug)]
pub(crate) struct PushTicket {
    inner: Arc<Mutex<HashMap<String, Arc<Repo>>>>,
    pub(crate) id: String,
}

impl Drop for PushTicket {
    fn drop(&mut self) {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

impl PushRegistry {
    /// Registers a push of `repo` under a fresh random id.
    pub(crate) fn register(&self, repo: Arc<Repo>) -> PushTicket {
        let id = format!("{:032x}", rand::random::<u128>());
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), repo);
        PushTicket { inner: Arc::clone(&self.inner), id }
    }

    /// The push's repository; each id is good for one hook run.
    fn take(&self, id: &str) -> Option<Arc<Repo>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).remove(id)
    }
}

/// Serves one hook connection: reads the request, streams messages, writes the verdict.
pub(crate) async fn serve_hook_connection(shared: Arc<Shared>, stream: tokio::net::UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST));
    let read_result = tokio::time::timeout(HOOK_REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
    let request: Option<HookRequest> =
        read_result.ok().and_then(Result::ok).and_then(|_| serde_json::from_str(&line).ok());
    let Some(request) = request else {
        let _ = write.write_all(message_frames("git-gate: malformed hook request").as_bytes()).await;
        let _ = write.write_all(exit_frame(1).as_bytes()).await;
        return;
    };
    let (tx, mut rx) = mpsc::channel::<String>(64);
    let check = tokio::spawn(pre_receive(shared, request, Say(tx)));
    while let Some(message) = rx.recv().await {
        if write.write_all(message_frames(&message).as_bytes()).await.is_err() {
            // The pusher is gone; the decision still completes (and is audited).
            break;
        }
    }
    let code = check.await.unwrap_or(1);
    let _ = write.write_all(exit_frame(code).as_bytes()).await;
    let _ = write.shutdown().await;
}

/// Sends messages to the pusher.
struct Say(mpsc::Sender<String>);

impl Say {
    async fn say(&self, text: impl Into<String>) {
        let _ = self.0.send(text.into()).await;
    }
}

/// Everything one push decision records.
#[derive(Debug, Default)]
struct Outcome {
    refs: Vec<String>,
    commits: Option<u64>,
    findings: Vec<FindingSummary>,
    upstream: Option<String>,
    reason: Option<String>,
    rule: Option<String>,
    /// Milliseconds spent on the ref policy, the scan and the upstream push.
    timings: [u128; 3],
}

async fn pre_receive(shared: Arc<Shared>, request: HookRequest, say: Say) -> i32 {
    let started = Instant::now();
    let Some(repo) = request.env.get(PUSH_ID_ENV).and_then(|id| shared.pushes.take(id)) else {
        say.say("git-gate: this push did not come through the gate; refusing it").await;
        return 1;
    };
    let mut outcome = Outcome::default();
    let accepted = match check_and_forward(&shared, &repo, &request, &say, &mut outcome).await {
        Ok(()) => true,
        Err(message) => {
            say.say(message).await;
            false
        }
    };
    let decision = if accepted { Decision::Allow } else { Decision::Deny };
    let elapsed = started.elapsed();
    let [policy_ms, scan_ms, upstream_ms] = outcome.timings;
    tracing::info!(
        repo = %repo.name,
        accepted,
        refs = outcome.refs.len(),
        findings = outcome.findings.len(),
        policy_ms,
        scan_ms,
        upstream_ms,
        elapsed_ms = elapsed.as_millis(),
        "push decided"
    );
    if let Some(log) = &shared.audit {
        let event = AuditEvent {
            rule: outcome.rule,
            side: (!accepted).then_some(if outcome.upstream.is_some() { "upstream" } else { "policy" }),
            reason: outcome.reason.map(|r| scrub(&shared, &r)),
            findings: outcome.findings,
            repo: Some(repo.name.clone()),
            refs: outcome.refs,
            commits: outcome.commits,
            upstream: outcome.upstream.map(|u| scrub(&shared, &u)),
            elapsed_ms: Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)),
            ..AuditEvent::new("git-push", decision)
        };
        if let Err(error) = log.append(&event) {
            tracing::warn!(%error, "cannot write the audit log");
        }
    }
    i32::from(!accepted)
}

/// Redacts anything secret-looking (defence in depth: messages are built without values).
pub(crate) fn scrub(shared: &Shared, text: &str) -> String {
    let redaction = shared.scanner.engine().redact(text.as_bytes(), &Location::Other("audit".into()));
    String::from_utf8_lossy(&redaction.output).into_owned()
}

async fn check_and_forward(
    shared: &Shared,
    repo: &Arc<Repo>,
    request: &HookRequest,
    say: &Say,
    outcome: &mut Outcome,
) -> Result<(), String> {
    let timeout = Duration::from_secs(shared.limits.git_timeout_secs);
    let env = quarantine_env(&shared.env, repo, request)?;
    let updates = parse_updates(&request.updates)?;
    if updates.is_empty() {
        return Ok(());
    }
    // A ref name reaches the upstream too: it must not carry a secret either.
    let secret_names: Vec<String> = updates
        .iter()
        .filter_map(|u| {
            let rules = shared.scanner.findings_in_name(&u.refname);
            (!rules.is_empty()).then(|| format!("`{}`: {}", shared.scanner.redact_name(&u.refname), rules.join(", ")))
        })
        .collect();
    if !secret_names.is_empty() {
        outcome.rule = Some("git.secret-ref-name".into());
        outcome.reason = Some(format!("secret in ref name: {}", secret_names.join("; ")));
        outcome.refs = updates.iter().map(|u| shared.scanner.redact_name(&u.refname)).collect();
        return Err(format!(
            "git-gate: push to `{}` refused: a ref name contains a secret\n  {}\nhint: push under another name",
            repo.name,
            secret_names.join("\n  ")
        ));
    }

    // Ref policy.
    let phase = Instant::now();
    let default_branch = repo.default_branch(&shared.env, timeout).await;
    let mut plan: Vec<(RefUpdate, UpdateKind, Forward)> = Vec::new();
    let mut refusals = Vec::new();
    for update in updates {
        let kind = classify(&env, &update, timeout).await;
        outcome.refs.push(format!(
            "{} {} {}..{}",
            update.refname,
            kind.as_str(),
            short(&update.old),
            short(&update.new)
        ));
        match decide(&update, kind, default_branch.as_deref(), &repo.push_refs) {
            Ok(forward) => plan.push((update, kind, forward)),
            Err(refusal) => refusals.push(refusal),
        }
    }
    if !refusals.is_empty() {
        outcome.rule = Some("git.ref-policy".into());
        outcome.reason = Some(refusals.join("; "));
        return Err(format!("git-gate: push to `{}` refused by the ref policy:\n{}", repo.name, refusals.join("\n")));
    }

    outcome.timings[0] = phase.elapsed().as_millis();

    // Scan what the push adds.
    let phase = Instant::now();
    let tips: Vec<String> =
        plan.iter().filter(|(u, _, _)| !is_zero_oid(&u.new)).map(|(u, _, _)| u.new.clone()).collect();
    let report = if tips.is_empty() { ScanReport::default() } else { scan(shared, repo, &env, tips, timeout).await? };
    outcome.commits = Some(report.commits as u64);
    outcome.timings[1] = phase.elapsed().as_millis();
    let scanned = format!(
        "git-gate: scanned {} new commit(s), {} file version(s), {} KiB",
        report.commits,
        report.files_scanned,
        report.bytes_scanned.div_ceil(1024)
    );
    say.say(scanned).await;
    for note in skipped_notes(&report, &shared.limits) {
        say.say(note).await;
    }
    outcome.findings = report.findings.iter().take(MAX_AUDITED_FINDINGS).map(summary).collect();
    let (marked, hard): (Vec<&PushFinding>, Vec<&PushFinding>) = report.findings.iter().partition(|f| f.allow_marker);
    if !hard.is_empty() {
        outcome.rule = Some("git.secret".into());
        outcome.reason = Some(format!(
            "{} finding(s) in new commits{}",
            report.findings.len(),
            if report.findings.len() > MAX_AUDITED_FINDINGS { " (the first ones listed)" } else { "" }
        ));
        return Err(refusal_message(&repo.name, &hard, &marked, shared.limits.max_listed_findings));
    }
    if !marked.is_empty() {
        let refs: Vec<(&str, &str)> = plan
            .iter()
            .filter(|(u, _, _)| !is_zero_oid(&u.new))
            .map(|(u, _, _)| (u.refname.as_str(), u.new.as_str()))
            .collect();
        if let Err(message) = propose(shared, repo, &env, &refs, &marked, say, timeout).await {
            outcome.rule = Some("git.secret-allow-denied".into());
            outcome.reason = Some("inline-allowed finding(s) not approved".into());
            return Err(message);
        }
    }

    // Forward upstream.
    say.say(format!("git-gate: no secrets found; forwarding to the upstream of `{}`", repo.name)).await;
    let phase = Instant::now();
    let result = forward(shared, repo, &env, &plan, say, timeout).await;
    outcome.timings[2] = phase.elapsed().as_millis();
    outcome.upstream = Some(match &result {
        Ok(()) => "accepted".to_owned(),
        Err(summary) => summary.clone(),
    });
    match result {
        Ok(()) => {
            say.say("git-gate: the upstream accepted the push").await;
            Ok(())
        }
        Err(_) => {
            outcome.rule = Some("git.upstream-rejected".into());
            outcome.reason = Some("the upstream refused the push or could not be reached".into());
            Err(format!(
                "git-gate: the upstream of `{}` did not accept the push (see its messages above); nothing was changed",
                repo.name
            ))
        }
    }
}

/// The environment of the quarantined push: the mirror plus the objects receive-pack just got.
/// The hook's paths must point into this repository's mirror.
fn quarantine_env(base: &GitEnv, repo: &Repo, request: &HookRequest) -> Result<GitEnv, String> {
    let refuse = || "git-gate: the hook's repository does not match the push; refusing it".to_owned();
    let cwd = PathBuf::from(&request.cwd);
    let resolve = |value: &str| -> PathBuf {
        let path = Path::new(value);
        if path.is_absolute() { path.to_path_buf() } else { cwd.join(path) }
    };
    let git_dir = request.env.get("GIT_DIR").map_or_else(|| cwd.clone(), |v| resolve(v));
    let mirror = repo.git_dir.canonicalize().map_err(|_| refuse())?;
    if git_dir.canonicalize().map_err(|_| refuse())? != mirror {
        return Err(refuse());
    }
    let mut env = base.clone().with("GIT_DIR", &mirror);
    if let Some(quarantine) = request.env.get("GIT_QUARANTINE_PATH") {
        let quarantine = resolve(quarantine).canonicalize().map_err(|_| refuse())?;
        let objects = mirror.join("objects");
        if !quarantine.starts_with(&objects) || quarantine == objects {
            return Err(refuse());
        }
        env = env
            .with("GIT_OBJECT_DIRECTORY", &quarantine)
            .with("GIT_ALTERNATE_OBJECT_DIRECTORIES", &objects)
            .with("GIT_QUARANTINE_PATH", &quarantine);
    }
    Ok(env)
}

/// Create, delete, fast-forward or rewrite.
async fn classify(env: &GitEnv, update: &RefUpdate, timeout: Duration) -> UpdateKind {
    if is_zero_oid(&update.old) {
        return UpdateKind::Create;
    }
    if is_zero_oid(&update.new) {
        return UpdateKind::Delete;
    }
    if is_ancestor(env, &update.old, &update.new, timeout).await {
        UpdateKind::FastForward
    } else {
        UpdateKind::Rewrite
    }
}

async fn is_ancestor(env: &GitEnv, ancestor: &str, descendant: &str, timeout: Duration) -> bool {
    let mut cmd = env.tokio_git();
    cmd.args(["merge-base", "--is-ancestor", ancestor, descendant]);
    run_async(cmd, "merge-base", timeout).await.is_ok_and(|out| out.success)
}

/// Runs the scan on a blocking thread; on timeout its git processes are killed.
async fn scan(
    shared: &Shared,
    repo: &Repo,
    env: &GitEnv,
    tips: Vec<String>,
    timeout: Duration,
) -> Result<ScanReport, String> {
    let procs = Procs::default();
    let scanner = shared.scanner.clone();
    let env = env.clone();
    let git_dir = repo.git_dir.clone();
    let task_procs = procs.clone();
    let task = tokio::task::spawn_blocking(move || {
        let request = ScanRequest { git_dir: &git_dir, env: &env, tips: &tips, exclude: Exclude::AllRefs };
        scanner.scan_range_with(&request, &task_procs)
    });
    let fail =
        |detail: String| format!("git-gate: the push to `{}` could not be scanned ({detail}); refusing it", repo.name);
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok(Ok(report))) => Ok(report),
        Ok(Ok(Err(error))) => Err(fail(error.to_string())),
        Ok(Err(_)) => Err(fail("the scan task failed".into())),
        Err(_) => {
            procs.cancel();
            Err(fail(format!("it took longer than {} s", timeout.as_secs())))
        }
    }
}

fn summary(finding: &PushFinding) -> FindingSummary {
    FindingSummary { rule: finding.rule.clone(), location: located(finding), structural: false }
}

/// `` `path` line 3, commit 1a2b3c4d5e `` — never the value or the line's text.
fn located(finding: &PushFinding) -> String {
    let place =
        if finding.line > 0 { format!("{} line {}", finding.place, finding.line) } else { finding.place.to_string() };
    format!("{place}, commit {}", short(&finding.commit))
}

fn refusal_message(repo: &str, hard: &[&PushFinding], marked: &[&PushFinding], max: usize) -> String {
    let total = hard.len() + marked.len();
    let mut text = format!("git-gate: push to `{repo}` refused: {total} secret(s) found in the new commits\n");
    for finding in hard.iter().chain(marked).take(max) {
        let note = if finding.allow_marker { " (marked allow: needs an operator's approval)" } else { "" };
        text.push_str(&format!("  {}: {}{note}\n", finding.rule, located(finding)));
    }
    if total > max {
        text.push_str(&format!("  … and {} more\n", total - max));
    }
    text.push_str(
        "hint: remove each secret from the commit that adds it, then push again: `git commit --amend` for the\n      last commit, `git rebase -i <upstream branch>` (mark the commit `edit`) for older ones;\n      deleting it in a later commit is not enough, it would still be in the history\n",
    );
    text.push_str("hint: if a finding is a false positive, ask the operator");
    text
}

fn skipped_notes(report: &ScanReport, limits: &crate::GateLimits) -> Vec<String> {
    let binary = report.skipped.iter().filter(|s| s.reason == SkipReason::Binary).count();
    let mut notes = Vec::new();
    if binary > 0 {
        notes.push(format!("git-gate: note: {binary} binary file version(s) were not scanned"));
    }
    for skipped in report.skipped.iter().filter(|s| s.reason == SkipReason::TooLarge).take(10) {
        notes.push(format!(
            "git-gate: note: {} ({} MiB) was not scanned: larger than the {} MiB scan limit",
            skipped.path,
            skipped.size >> 20,
            limits.max_scan_file_bytes >> 20
        ));
    }
    notes
}

/// Files a proposal per marked finding and waits for all answers (timeout → denied).
async fn propose(
    shared: &Shared,
    repo: &Repo,
    env: &GitEnv,
    refs: &[(&str, &str)],
    marked: &[&PushFinding],
    say: &Say,
    timeout: Duration,
) -> Result<(), String> {
    let wait = Duration::from_secs(shared.limits.proposal_timeout_secs);
    say.say(format!(
        "git-gate: {} finding(s) carry an inline allow marker; waiting up to {} s for an operator's decision",
        marked.len(),
        wait.as_secs()
    ))
    .await;
    let mut proposals = Vec::new();
    for finding in marked {
        let mut refname = refs.first().map_or("", |r| r.0);
        if refs.len() > 1 {
            for (name, tip) in refs {
                if is_ancestor(env, &finding.commit, tip, timeout).await {
                    refname = name;
                    break;
                }
            }
        }
        // A file's bare (redacted) path; other places by name (`commit message`, …).
        let file = match &finding.place {
            Place::File(path) => path.clone(),
            other => other.to_string(),
        };
        proposals.push(GitProposal {
            kind: GIT_ALLOW_KIND,
            repo: repo.name.clone(),
            refname: refname.to_owned(),
            commit: finding.commit.clone(),
            file,
            line: finding.line,
            rule: finding.rule.clone(),
        });
    }
    let answers = futures_util::future::join_all(proposals.into_iter().map(|p| async move {
        tokio::time::timeout(wait, shared.proposals.propose(p)).await.unwrap_or_else(|_| GitDecision::Deny {
            reason: format!("no operator decision within {} s", wait.as_secs()),
        })
    }))
    .await;
    let mut denied = String::new();
    for (finding, answer) in marked.iter().zip(answers) {
        if let GitDecision::Deny { reason } = answer {
            denied.push_str(&format!("  {}: {}: {}\n", finding.rule, located(finding), reason));
        }
    }
    if denied.is_empty() {
        say.say("git-gate: an operator approved every marked finding").await;
        return Ok(());
    }
    Err(format!(
        "git-gate: push to `{}` refused: finding(s) marked with an inline allow comment need an operator's approval, which was not given:\n{denied}hint: remove the secret (see above), or ask the operator to approve the push",
        repo.name
    ))
}

/// `git push --porcelain` to the upstream from the quarantine; relays its result.
async fn forward(
    shared: &Shared,
    repo: &Repo,
    env: &GitEnv,
    plan: &[(RefUpdate, UpdateKind, Forward)],
    say: &Say,
    timeout: Duration,
) -> Result<(), String> {
    let mut cmd = repo.upstream_env(env).tokio_git();
    cmd.args(["push", "--porcelain", "--no-verify", "--no-progress"]);
    if plan.len() > 1 {
        cmd.arg("--atomic");
    }
    for (update, kind, forward) in plan {
        if forward.lease {
            let expected = if *kind == UpdateKind::Create { String::new() } else { update.old.clone() };
            cmd.arg(format!("--force-with-lease={}:{expected}", update.refname));
        }
    }
    cmd.arg("origin");
    for (update, kind, _) in plan {
        if *kind == UpdateKind::Delete {
            cmd.arg(format!(":{}", update.refname));
        } else {
            cmd.arg(format!("{}:{}", update.new, update.refname));
        }
    }
    let out = match run_async(cmd, "push", timeout).await {
        Ok(out) => out,
        Err(error) => {
            let text = repo.scrub(&error.to_string());
            say.say(format!("upstream: {text}")).await;
            return Err(text);
        }
    };
    let mut lines = Vec::new();
    for line in out.stderr.lines().filter(|l| !l.trim().is_empty()) {
        lines.push(format!("upstream: {}", scrub(shared, &repo.scrub(line))));
    }
    let mut rejected = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        if let [flag, spec, summary] = fields.as_slice() {
            let target = spec.rsplit_once(':').map_or(*spec, |(_, to)| to);
            lines.push(format!("upstream: {target} {}", summary.trim()));
            if flag.trim() == "!" {
                rejected.push(format!("{target} {}", summary.trim()));
            }
        }
    }
    for line in lines {
        say.say(line).await;
    }
    if out.success && rejected.is_empty() {
        Ok(())
    } else if rejected.is_empty() {
        Err(scrub(shared, &repo.scrub(out.stderr.lines().last().unwrap_or("the upstream push failed"))))
    } else {
        Err(rejected.join("; "))
    }
}
