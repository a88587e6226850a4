//! The scanner on its own, against repositories built with the git CLI.

use std::path::{Path, PathBuf};

use bottle_dlp::{DlpConfig, Engine, KnownSecret};
use bottle_gitgate::scan::{Place, SkipReason};
use bottle_gitgate::{Exclude, GitEnv, ScanReport, ScanRequest, Scanner};

use crate::support::*;

struct Repo {
    dir: tempfile::TempDir,
    wd: PathBuf,
}

impl Repo {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let wd = dir.path().join("w");
        run_ok(git(dir.path()).args(["init", "-q", "-b", "main"]).arg(&wd));
        let repo = Self { dir, wd };
        repo.commit("README.md", b"# repo\n", "initial");
        repo
    }

    fn git(&self) -> std::process::Command {
        let mut cmd = git(self.dir.path());
        cmd.current_dir(&self.wd);
        cmd
    }

    fn commit(&self, file: &str, content: &[u8], message: &str) -> String {
        let path = self.wd.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, content).expect("write");
        run_ok(self.git().args(["add", "-A"]));
        run_ok(self.git().args(["commit", "-q", "-m", message]));
        self.rev("HEAD")
    }

    fn rev(&self, rev: &str) -> String {
        run_ok(self.git().args(["rev-parse", rev])).trim().to_owned()
    }

    fn scan(&self, tip: &str, exclude: &[String], max_file_bytes: u64) -> ScanReport {
        let engine = Engine::new(&DlpConfig {
            known_secrets: vec![KnownSecret::new("ROUTE_TOKEN", KNOWN_VALUE)],
            ..DlpConfig::default()
        })
        .expect("engine");
        let scanner = Scanner::new(engine, max_file_bytes);
        let git_dir = self.wd.join(".git");
        let env = GitEnv::clean(Path::new("/nonexistent"));
        let tips = vec![tip.to_owned()];
        let request = ScanRequest { git_dir: &git_dir, env: &env, tips: &tips, exclude: Exclude::Commits(exclude) };
        scanner.scan_range(&request).expect("scan")
    }
}

#[test]
fn only_the_range_is_scanned_and_binary_or_large_files_are_skipped() {
    let repo = Repo::new();
    repo.commit("old.txt", format!("k = {AWS_KEY}\n").as_bytes(), "old secret");
    let base = repo.rev("HEAD");
    let mut binary = b"\x89PNG\0\0".to_vec();
    binary.extend_from_slice(GH_TOKEN.as_bytes());
    repo.commit("logo.png", &binary, "binary with a token inside");
    let big = format!("{}\ntoken = {GH_TOKEN}\n", "x".repeat(4096));
    repo.commit("big.txt", big.as_bytes(), "big");
    let tip = repo.commit("clean.txt", b"nothing\n", "clean");

    let report = repo.scan(&tip, std::slice::from_ref(&base), 1024);
    assert_eq!(report.commits, 3);
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    let skipped: Vec<(&str, SkipReason)> = report.skipped.iter().map(|s| (s.path.as_str(), s.reason)).collect();
    assert!(skipped.contains(&("logo.png", SkipReason::Binary)), "{skipped:?}");
    assert!(skipped.contains(&("big.txt", SkipReason::TooLarge)), "{skipped:?}");

    // With a larger cap the big file is scanned; the old secret below `base` never is.
    let report = repo.scan(&tip, &[base], 1 << 20);
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    assert_eq!(report.findings[0].place, Place::File("big.txt".into()));
    assert_eq!(report.findings[0].line, 2);
    // Everything: the old secret too.
    let report = repo.scan(&tip, &[], 1 << 20);
    assert!(report.findings.iter().any(|f| f.place == Place::File("old.txt".into())), "{:?}", report.findings);
}

#[test]
fn identities_tags_and_tagged_blobs_are_scanned() {
    let repo = Repo::new();
    let base = repo.rev("HEAD");
    run_ok(repo.git().env("GIT_AUTHOR_NAME", format!("dev {GH_TOKEN}")).args([
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "empty",
    ]));
    let commit = repo.rev("HEAD");
    let report = repo.scan(&commit, std::slice::from_ref(&base), 1 << 20);
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    assert_eq!(report.findings[0].place, Place::CommitIdentity);

    run_ok(repo.git().args(["tag", "-a", "v1", "-m", &format!("release\n\nkey {AWS_KEY}"), &base]));
    let tag = repo.rev("v1");
    let report = repo.scan(&tag, &[], 1 << 20);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.place == Place::TagMessage && f.rule == "aws-access-key-id" && f.commit == tag),
        "{:?}",
        report.findings
    );

    let path = repo.dir.path().join("loose.txt");
    std::fs::write(&path, format!("line\nsecret {KNOWN_VALUE}\n")).expect("write");
    let blob = run_ok(repo.git().args(["hash-object", "-w"]).arg(&path)).trim().to_owned();
    run_ok(repo.git().args(["tag", "-a", "blobtag", "-m", "a blob", &blob]));
    let tag = repo.rev("blobtag");
    let report = repo.scan(&tag, &[], 1 << 20);
    let found: Vec<_> = report.findings.iter().map(|f| (f.rule.as_str(), f.line)).collect();
    assert!(found.contains(&("known-secret:ROUTE_TOKEN", 2)), "{found:?}");
}

#[test]
fn editing_a_file_does_not_reflag_its_old_secret_but_a_copy_elsewhere_is() {
    let repo = Repo::new();
    let lines: Vec<String> = (0..30).map(|i| format!("line {i}")).collect();
    let mut content = lines.clone();
    content.insert(10, format!("key = {AWS_KEY}"));
    repo.commit("a.txt", (content.join("\n") + "\n").as_bytes(), "with secret");
    let base = repo.rev("HEAD");
    // Edit far away from the secret line.
    content[25] = "changed".into();
    repo.commit("a.txt", (content.join("\n") + "\n").as_bytes(), "edit");
    let edit = repo.rev("HEAD");
    assert!(repo.scan(&edit, std::slice::from_ref(&base), 1 << 20).findings.is_empty());
    // The same line in another file is added content.
    let copy = repo.commit("b.txt", format!("key = {AWS_KEY}\n").as_bytes(), "copy");
    let report = repo.scan(&copy, &[base], 1 << 20);
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    assert_eq!((report.findings[0].place.clone(), report.findings[0].line), (Place::File("b.txt".into()), 1));
}
