//! The ref policy of a push, pure: which updates may reach the upstream and how.
//!
//! - The upstream's default branch (the mirror's `HEAD` after a refresh) can never be deleted or
//!   rewound, whatever `push_refs` says.
//! - With `push_refs` set, only matching refs may be created, updated, rewound or deleted.
//! - Without `push_refs`, any ref may be created, fast-forwarded or rewound, and nothing may be
//!   deleted.
//!
//! A rewind is forwarded with a lease on the value the agent saw, so it never overwrites upstream
//! work the agent did not have.

use crate::config::RefGlob;

/// One line of pre-receive input: `<old> <new> <ref>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefUpdate {
    pub(crate) old: String,
    pub(crate) new: String,
    pub(crate) refname: String,
}

/// What an update does to its ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpdateKind {
    Create,
    Delete,
    FastForward,
    /// Non-fast-forward (or an annotated tag moved): history the ref had is dropped.
    Rewrite,
}

impl UpdateKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Delete => "delete",
            Self::FastForward => "update",
            Self::Rewrite => "force-update",
        }
    }
}

/// How an allowed update goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forward {
    /// Push with `--force-with-lease=<ref>:<old>` (rewrites and deletions).
    pub(crate) lease: bool,
}

/// Decides one update. `Err` is the refusal shown to the agent.
pub(crate) fn decide(
    update: &RefUpdate,
    kind: UpdateKind,
    default_branch: Option<&str>,
    push_refs: &[RefGlob],
) -> Result<Forward, String> {
    let name = &update.refname;
    if !name.starts_with("refs/") || name.contains('\u{fffd}') {
        return Err(format!("`{name}`: not a ref name the gate forwards"));
    }
    let is_default = default_branch == Some(name.as_str());
    if is_default && kind == UpdateKind::Delete {
        return Err(format!("`{name}`: deleting the upstream's default branch is not allowed"));
    }
    if is_default && kind == UpdateKind::Rewrite {
        return Err(format!(
            "`{name}`: rewriting the upstream's default branch (non-fast-forward) is not allowed\nhint: fetch, rebase your commits onto `{name}` and push without --force"
        ));
    }
    let listed = push_refs.iter().any(|g| g.matches(name));
    if !push_refs.is_empty() && !listed {
        return Err(format!(
            "`{name}`: this bottle may push only to refs matching its `push_refs`\nhint: push to a ref that matches them, or ask the operator to widen them"
        ));
    }
    if kind == UpdateKind::Delete && push_refs.is_empty() {
        return Err(format!(
            "`{name}`: deleting refs is not allowed in this bottle\nhint: the operator can allow deletions of some refs with `push_refs`"
        ));
    }
    Ok(Forward { lease: matches!(kind, UpdateKind::Rewrite | UpdateKind::Delete) })
}

/// Parses pre-receive input. Lines that are not `<oid> <oid> <ref>` are an error.
pub(crate) fn parse_updates(text: &str) -> Result<Vec<RefUpdate>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(old), Some(new), Some(refname))
                    if crate::git::is_oid(old) && crate::git::is_oid(new) && !refname.is_empty() =>
                {
                    Ok(RefUpdate { old: old.to_owned(), new: new.to_owned(), refname: refname.to_owned() })
                }
                _ => Err("git-gate: malformed ref update from receive-pack".to_owned()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    fn update(name: &str) -> RefUpdate {
        RefUpdate { old: A.into(), new: B.into(), refname: name.into() }
    }

    fn globs(patterns: &[&str]) -> Vec<RefGlob> {
        patterns.iter().map(|p| RefGlob::parse("r", p).unwrap()).collect()
    }

    #[test]
    fn default_branch_is_protected_whatever_push_refs_say() {
        let main = Some("refs/heads/main");
        for refs in [globs(&[]), globs(&["refs/heads/*"])] {
            assert!(decide(&update("refs/heads/main"), UpdateKind::Delete, main, &refs).is_err());
            assert!(decide(&update("refs/heads/main"), UpdateKind::Rewrite, main, &refs).is_err());
            assert_eq!(
                decide(&update("refs/heads/main"), UpdateKind::FastForward, main, &refs),
                Ok(Forward { lease: false })
            );
        }
    }

    #[test]
    fn push_refs_limit_every_kind() {
        let refs = globs(&["refs/heads/agent/*"]);
        for kind in [UpdateKind::Create, UpdateKind::FastForward, UpdateKind::Rewrite, UpdateKind::Delete] {
            assert!(decide(&update("refs/heads/feature"), kind, None, &refs).is_err(), "{kind:?}");
            assert!(decide(&update("refs/heads/agent/x"), kind, None, &refs).is_ok(), "{kind:?}");
        }
        assert_eq!(
            decide(&update("refs/heads/agent/x"), UpdateKind::Rewrite, None, &refs),
            Ok(Forward { lease: true })
        );
    }

    #[test]
    fn without_push_refs_no_deletions_but_rewrites_of_other_branches() {
        assert!(decide(&update("refs/heads/x"), UpdateKind::Delete, Some("refs/heads/main"), &[]).is_err());
        assert!(decide(&update("refs/heads/x"), UpdateKind::Rewrite, Some("refs/heads/main"), &[]).is_ok());
        assert!(decide(&update("refs/tags/v1"), UpdateKind::Create, None, &[]).is_ok());
        assert!(decide(&update("HEAD"), UpdateKind::Create, None, &[]).is_err());
    }

    #[test]
    fn parses_input() {
        let updates = parse_updates(&format!("{A} {B} refs/heads/main\n{B} {A} refs/heads/with space\n")).unwrap();
        assert_eq!(updates.len(), 2);
        assert_eq!(updates[1].refname, "refs/heads/with space");
        assert!(parse_updates("garbage\n").is_err());
    }
}
