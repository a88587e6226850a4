//! The gate end to end: the agent's git CLI through the gate to a real sshd upstream.

use crate::support::*;

#[test]
fn clone_fetch_and_clean_push_go_through_the_gate() {
    let upstream = Upstream::start();
    let first = upstream.create_repo("up");
    let gate = Gate::start(vec![upstream.repo_config("up")], GateOptions::default());
    let agent = Agent::new(&gate, &upstream, &["up"]);

    let wd = agent.clone(&upstream.url("up"), "up");
    assert_eq!(agent.head(&wd), first);
    assert!(wd.join("README.md").exists());

    // Pushed upstream out of band: the next fetch sees it.
    let theirs = upstream.commit_out_of_band("up", "main", "theirs.txt", "from elsewhere\n", "out of band");
    run_ok(agent.git(&wd).args(["pull", "-q", "--ff-only"]));
    assert_eq!(agent.head(&wd), theirs);

    // A clean push lands upstream.
    let ours = agent.commit(&wd, "src/lib.rs", "pub fn answer() -> u32 { 42 }\n", "add answer");
    let out = agent.push(&wd, &["origin", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(upstream.rev("up", "refs/heads/main").as_deref(), Some(ours.as_str()));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("remote: git-gate: the upstream accepted the push"), "{stderr}");
    let audit = gate.audit();
    assert!(audit.contains(r#""event":"git-push""#) && audit.contains(r#""decision":"allow""#), "{audit}");
    assert!(audit.contains(r#""upstream":"accepted""#), "{audit}");

    // A new branch, too.
    run_ok(agent.git(&wd).args(["checkout", "-q", "-b", "agent/feature"]));
    let feature = agent.commit(&wd, "feature.txt", "feature\n", "feature");
    let out = agent.push(&wd, &["origin", "agent/feature"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(upstream.rev("up", "refs/heads/agent/feature").as_deref(), Some(feature.as_str()));
}

/// An upstream with `up` (one commit on `main`), a gate with default options, an agent and its clone.
struct Setup {
    upstream: Upstream,
    gate: Gate,
    agent: Agent,
    wd: std::path::PathBuf,
    base: String,
}

fn setup_with(configure: impl FnOnce(&Upstream) -> (Vec<bottle_gitgate::RepoConfig>, GateOptions)) -> Setup {
    let upstream = Upstream::start();
    let base = upstream.create_repo("up");
    let (repos, options) = configure(&upstream);
    let gate = Gate::start(repos, options);
    let agent = Agent::new(&gate, &upstream, &["up"]);
    let wd = agent.clone(&upstream.url("up"), "up");
    Setup { upstream, gate, agent, wd, base }
}

fn setup() -> Setup {
    setup_with(|u| (vec![u.repo_config("up")], GateOptions::default()))
}

impl Setup {
    /// Asserts `main` upstream is still `base` and the mirror does not hold `commit`.
    fn assert_nothing_landed(&self, commit: &str) {
        assert_eq!(self.upstream.rev("up", "refs/heads/main").as_deref(), Some(self.base.as_str()));
        assert!(self.upstream.rev("up", &format!("{commit}^{{commit}}")).is_none(), "the commit reached the upstream");
        let in_mirror = run(git(self.gate.dir.path())
            .arg("--git-dir")
            .arg(self.gate.mirror("up"))
            .args(["cat-file", "-e", commit]));
        assert!(!in_mirror.status.success(), "the refused commit stayed in the mirror");
    }
}

#[test]
fn secret_in_a_new_file_is_refused_with_rule_file_line_and_commit() {
    let s = setup();
    let commit = s.agent.commit(
        &s.wd,
        "config/prod.env",
        &format!("REGION=eu\nBUCKET=x\nAWS_ACCESS_KEY_ID={AWS_KEY}\n"),
        "add config",
    );
    let out = s.agent.push(&s.wd, &["origin", "main"]);
    assert_refused(
        &out,
        &[
            "aws-access-key-id",
            "`config/prod.env` line 3",
            short(&commit),
            "hint: ",
            "git commit --amend",
            "false positive",
        ],
    );
    s.assert_nothing_landed(&commit);
    let audit = s.gate.audit();
    assert!(audit.contains(r#""decision":"deny""#) && audit.contains("git.secret"), "{audit}");
    assert!(audit.contains("config/prod.env"), "{audit}");
    assert_no_secret(&audit);
    assert!(bottle_egress::verify_chain(&s.gate.dir.path().join("audit.jsonl")).is_ok());
}

#[test]
fn secret_in_a_modified_line_is_refused() {
    let s = setup();
    let settings = "DEBUG = False\nTOKEN = None\nNAME = 'app'\n";
    s.upstream.commit_out_of_band("up", "main", "settings.py", settings, "settings");
    run_ok(s.agent.git(&s.wd).args(["pull", "-q", "--ff-only"]));
    let base = s.agent.head(&s.wd);
    let commit = s.agent.commit(&s.wd, "settings.py", &settings.replace("None", &format!("'{GH_TOKEN}'")), "set token");
    let out = s.agent.push(&s.wd, &["origin", "main"]);
    assert_refused(&out, &["github-personal-access-token", "`settings.py` line 2", short(&commit)]);
    assert_eq!(s.upstream.rev("up", "refs/heads/main").as_deref(), Some(base.as_str()));
}

#[test]
fn secret_in_a_commit_message_is_refused() {
    let s = setup();
    std::fs::write(s.wd.join("deploy.sh"), "#!/bin/sh\necho deploy\n").unwrap();
    run_ok(s.agent.git(&s.wd).args(["add", "-A"]));
    run_ok(s.agent.git(&s.wd).args([
        "commit",
        "-q",
        "-m",
        "deploy script",
        "-m",
        &format!("used token {GH_TOKEN} to test"),
    ]));
    let commit = s.agent.head(&s.wd);
    let out = s.agent.push(&s.wd, &["origin", "main"]);
    assert_refused(&out, &["github-personal-access-token", "commit message line 3", short(&commit)]);
    s.assert_nothing_landed(&commit);
}

#[test]
fn secret_in_a_file_name_is_refused_without_showing_it() {
    let s = setup();
    let commit = s.agent.commit(&s.wd, &format!("keys/{AWS_KEY}.txt"), "nothing to see\n", "add key file");
    let out = s.agent.push(&s.wd, &["origin", "main"]);
    assert_refused(&out, &["aws-access-key-id", "file name `keys/«REDACTED:aws-access-key-id».txt`", short(&commit)]);
    s.assert_nothing_landed(&commit);
}

#[test]
fn known_secret_deep_in_a_twenty_commit_push_is_refused() {
    let s = setup();
    let mut planted = String::new();
    for i in 1..=20 {
        let content = if i == 7 {
            format!("note {i}\nclient = Client(token=\"{KNOWN_VALUE}\")\n")
        } else {
            format!("note {i}\nnothing secret here\n")
        };
        let id = s.agent.commit(&s.wd, &format!("notes/{i:02}.txt"), &content, &format!("note {i}"));
        if i == 7 {
            planted = id;
        }
    }
    let out = s.agent.push(&s.wd, &["origin", "main"]);
    assert_refused(
        &out,
        &["known-secret:ROUTE_TOKEN", "`notes/07.txt` line 2", short(&planted), "scanned 20 new commit(s)"],
    );
    assert_eq!(s.upstream.rev("up", "refs/heads/main").as_deref(), Some(s.base.as_str()));
}

#[test]
fn evil_merge_content_is_refused_but_merged_history_is_not_reflagged() {
    let s = setup();
    // The upstream already has a branch whose history holds a secret (someone else's mistake).
    s.upstream.commit_out_of_band("up", "legacy", "legacy/creds.txt", &format!("old = {AWS_KEY}\n"), "legacy creds");
    run_ok(s.agent.git(&s.wd).args(["fetch", "-q", "origin"]));
    let ours = s.agent.commit(&s.wd, "ours.txt", "ours\n", "ours");
    // Merging that branch brings in nothing new: accepted.
    run_ok(s.agent.git(&s.wd).args(["merge", "-q", "--no-edit", "origin/legacy"]));
    let clean_merge = s.agent.head(&s.wd);
    let out = s.agent.push(&s.wd, &["origin", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.upstream.rev("up", "refs/heads/main").as_deref(), Some(clean_merge.as_str()));
    let _ = ours;

    // An evil merge: the merge commit itself adds a secret line.
    run_ok(s.agent.git(&s.wd).args(["checkout", "-q", "-b", "side", "HEAD~1"]));
    s.agent.commit(&s.wd, "side.txt", "side\n", "side work");
    run_ok(s.agent.git(&s.wd).args(["checkout", "-q", "main"]));
    s.agent.commit(&s.wd, "main.txt", "main\n", "main work");
    run_ok(s.agent.git(&s.wd).args(["merge", "-q", "--no-commit", "side"]));
    std::fs::write(s.wd.join("side.txt"), format!("side\ntoken = {GH_TOKEN}\n")).unwrap();
    run_ok(s.agent.git(&s.wd).args(["add", "-A"]));
    run_ok(s.agent.git(&s.wd).args(["commit", "-q", "--no-edit"]));
    let merge = s.agent.head(&s.wd);
    let out = s.agent.push(&s.wd, &["origin", "main"]);
    assert_refused(&out, &["github-personal-access-token", "`side.txt` line 2", short(&merge)]);
    assert_eq!(s.upstream.rev("up", "refs/heads/main").as_deref(), Some(clean_merge.as_str()));
}

#[test]
fn secret_already_upstream_is_not_reflagged_when_its_file_changes() {
    let s = setup();
    s.upstream.commit_out_of_band(
        "up",
        "main",
        "fixtures/aws.txt",
        &format!("# test fixture\nkey = {AWS_KEY}\n"),
        "fixture",
    );
    run_ok(s.agent.git(&s.wd).args(["pull", "-q", "--ff-only"]));
    let content = std::fs::read_to_string(s.wd.join("fixtures/aws.txt")).unwrap();
    let commit = s.agent.commit(&s.wd, "fixtures/aws.txt", &format!("{content}region = eu-west-1\n"), "add region");
    let out = s.agent.push(&s.wd, &["origin", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.upstream.rev("up", "refs/heads/main").as_deref(), Some(commit.as_str()));
    // Renaming it is not adding it either.
    run_ok(s.agent.git(&s.wd).args(["mv", "fixtures/aws.txt", "fixtures/aws-keys.txt"]));
    run_ok(s.agent.git(&s.wd).args(["commit", "-q", "-m", "rename fixture"]));
    let renamed = s.agent.head(&s.wd);
    let out = s.agent.push(&s.wd, &["origin", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.upstream.rev("up", "refs/heads/main").as_deref(), Some(renamed.as_str()));
}

#[test]
fn default_branch_cannot_be_rewritten_or_deleted() {
    let s = setup();
    let pushed = s.agent.commit(&s.wd, "a.txt", "a\n", "a");
    assert!(s.agent.push(&s.wd, &["origin", "main"]).status.success());
    run_ok(s.agent.git(&s.wd).args(["reset", "-q", "--hard", "HEAD~1"]));
    s.agent.commit(&s.wd, "b.txt", "b\n", "b instead");
    let out = s.agent.push(&s.wd, &["--force", "origin", "main"]);
    assert_refused(&out, &["rewriting the upstream's default branch", "refs/heads/main"]);
    assert_eq!(s.upstream.rev("up", "refs/heads/main").as_deref(), Some(pushed.as_str()));
    let out = s.agent.push(&s.wd, &["origin", ":main"]);
    assert_refused(&out, &["deleting the upstream's default branch"]);
    assert_eq!(s.upstream.rev("up", "refs/heads/main").as_deref(), Some(pushed.as_str()));
    // Without push_refs, other refs cannot be deleted either; they can be force-pushed.
    run_ok(s.agent.git(&s.wd).args(["checkout", "-q", "-b", "topic"]));
    s.agent.commit(&s.wd, "t.txt", "t\n", "t");
    assert!(s.agent.push(&s.wd, &["origin", "topic"]).status.success());
    run_ok(s.agent.git(&s.wd).args(["commit", "-q", "--amend", "-m", "t amended"]));
    let amended = s.agent.head(&s.wd);
    let out = s.agent.push(&s.wd, &["--force", "origin", "topic"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.upstream.rev("up", "refs/heads/topic").as_deref(), Some(amended.as_str()));
    let out = s.agent.push(&s.wd, &["origin", ":topic"]);
    assert_refused(&out, &["deleting refs is not allowed"]);
    assert!(s.upstream.rev("up", "refs/heads/topic").is_some());
}

#[test]
fn push_refs_limit_where_the_agent_may_push() {
    let s = setup_with(|u| {
        let mut repo = u.repo_config("up");
        repo.push_refs = vec!["refs/heads/agent/*".into()];
        (vec![repo], GateOptions::default())
    });
    let commit = s.agent.commit(&s.wd, "x.txt", "x\n", "x");
    let out = s.agent.push(&s.wd, &["origin", "main"]);
    assert_refused(&out, &["`refs/heads/main`", "push_refs"]);
    assert_eq!(s.upstream.rev("up", "refs/heads/main").as_deref(), Some(s.base.as_str()));
    let out = s.agent.push(&s.wd, &["origin", "HEAD:refs/heads/agent/x"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.upstream.rev("up", "refs/heads/agent/x").as_deref(), Some(commit.as_str()));
    // Deleting a ref push_refs cover is allowed.
    let out = s.agent.push(&s.wd, &["origin", ":refs/heads/agent/x"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(s.upstream.rev("up", "refs/heads/agent/x").is_none());
}

#[test]
fn upstream_down_fails_fetch_and_push_closed() {
    let mut s = setup();
    s.agent.commit(&s.wd, "x.txt", "x\n", "x");
    s.upstream.stop();
    let out = run(s.agent.git(&s.wd).args(["fetch", "origin"]));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("git-gate: cannot refresh `up` from upstream"), "{stderr}");
    assert!(stderr.contains("hint: "), "{stderr}");
    assert!(!stderr.contains("client_key"), "the key path leaked: {stderr}");
    let audit = s.gate.audit();
    assert!(audit.contains(r#""event":"git-fetch""#) && audit.contains("git.upstream-unreachable"), "{audit}");
    assert!(!audit.contains("client_key"), "{audit}");
    // The push is scanned, then refused because the upstream cannot take it.
    let out = s.agent.push(&s.wd, &["origin", "main"]);
    assert_refused(&out, &["upstream: ", "Connection refused", "the upstream of `up` did not accept the push"]);
    assert!(!text(&out.stderr).contains("client_key"), "the key path leaked");
    // A gate that must refresh before every push refuses it before receiving anything.
    let mut s = setup_with(|u| {
        let options = GateOptions {
            limits: bottle_gitgate::GateLimits { push_refresh_secs: 0, ..GateOptions::default().limits },
            ..GateOptions::default()
        };
        (vec![u.repo_config("up")], options)
    });
    s.agent.commit(&s.wd, "x.txt", "x\n", "x");
    s.upstream.stop();
    let out = s.agent.push(&s.wd, &["origin", "main"]);
    assert_refused(&out, &["cannot refresh `up` from upstream"]);
}

#[test]
fn wrong_or_missing_host_key_is_refused() {
    let upstream = Upstream::start();
    upstream.create_repo("up");
    upstream.create_repo("blank");
    let other = tempfile::tempdir().unwrap();
    run_ok(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(other.path().join("k")),
    );
    let mut wrong = upstream.repo_config("up");
    wrong.host_key = std::fs::read_to_string(other.path().join("k.pub")).unwrap();
    let mut blank = upstream.repo_config("blank");
    blank.host_key = String::new();
    let gate = Gate::start(vec![wrong, blank], GateOptions::default());
    let agent = Agent::new(&gate, &upstream, &["up", "blank"]);
    let out = run(agent.git(agent.home.path()).args(["clone", &upstream.url("up")]));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot refresh `up` from upstream") && stderr.contains("Host key verification failed"),
        "{stderr}"
    );
    let out = run(agent.git(agent.home.path()).args(["clone", &upstream.url("blank")]));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("`blank` has no pinned upstream host key"), "{stderr}");
    // Nothing was fetched into either mirror.
    for name in ["up", "blank"] {
        let refs = run_ok(git(gate.dir.path()).arg("--git-dir").arg(gate.mirror(name)).args(["for-each-ref"]));
        assert!(refs.is_empty(), "{name}: {refs}");
    }
}

#[test]
fn inline_allow_is_refused_without_a_supervisor() {
    let s = setup();
    let commit = s.agent.commit(&s.wd, "test/fixture.py", &format!("KEY = '{AWS_KEY}'  # gitleaks:allow\n"), "fixture");
    let out = s.agent.push(&s.wd, &["origin", "main"]);
    assert_refused(
        &out,
        &["inline allow", "operator", "aws-access-key-id", "`test/fixture.py` line 1", short(&commit)],
    );
    s.assert_nothing_landed(&commit);
}

#[test]
fn inline_allow_is_accepted_when_an_operator_approves() {
    let sink = std::sync::Arc::new(RecordingSink { approve: true, seen: std::sync::Mutex::new(Vec::new()) });
    let for_gate = sink.clone();
    let s = setup_with(move |u| {
        (vec![u.repo_config("up")], GateOptions { proposals: Some(for_gate), ..GateOptions::default() })
    });
    let commit =
        s.agent.commit(&s.wd, "test/fixture.py", &format!("x = 1\nKEY = '{AWS_KEY}'  # bot-bottle:allow\n"), "fixture");
    let out = s.agent.push(&s.wd, &["origin", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.upstream.rev("up", "refs/heads/main").as_deref(), Some(commit.as_str()));
    let seen = sink.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let p = &seen[0];
    assert_eq!((p.kind, p.repo.as_str(), p.refname.as_str()), ("git-allow", "up", "refs/heads/main"));
    assert_eq!(
        (p.commit.as_str(), p.file.as_str(), p.line, p.rule.as_str()),
        (commit.as_str(), "test/fixture.py", 2, "aws-access-key-id")
    );
    assert_no_secret(&format!("{p:?}"));
}

#[test]
fn protocol_v2_and_v0_fetches_work_and_unknown_repos_are_404() {
    let s = setup();
    let theirs = s.upstream.commit_out_of_band("up", "main", "v2.txt", "v2\n", "for v2");
    let out =
        run(s.agent.git(&s.wd).env("GIT_TRACE_PACKET", "1").args(["-c", "protocol.version=2", "fetch", "origin"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let trace = text(&out.stderr);
    assert!(trace.contains("version 2") && trace.contains("ls-refs"), "not protocol v2:\n{trace}");
    assert_eq!(run_ok(s.agent.git(&s.wd).args(["rev-parse", "origin/main"])).trim(), theirs);
    let v0 = s.agent.home.path().join("v0");
    let out = run(s
        .agent
        .git(s.agent.home.path())
        .args(["-c", "protocol.version=0", "clone", "-q", &s.upstream.url("up")])
        .arg(&v0));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.agent.head(&v0), theirs);
    let out = run(s.agent.git(&s.wd).args(["ls-remote", &s.gate.url("nope")]));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no repository `nope` behind this gate") && stderr.contains("not found"), "{stderr}");
}

/// Sends one raw HTTP/1.1 request to the gate and returns the whole response as text.
fn raw_request(gate: &Gate, head: &str, body: &[u8]) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(gate.addr).expect("connect");
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(body).expect("write body");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    text(&response)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

#[test]
fn gzip_request_bodies_are_decoded_and_sizes_capped() {
    let s = setup_with(|u| {
        let options = GateOptions {
            limits: bottle_gitgate::GateLimits { max_request_bytes: 4096, ..GateOptions::default().limits },
            ..GateOptions::default()
        };
        (vec![u.repo_config("up")], options)
    });
    let post = |body: &[u8], encoding: &str| {
        let head = format!(
            "POST /up.git/git-upload-pack HTTP/1.1\r\nHost: gate\r\nContent-Type: application/x-git-upload-pack-request\r\nGit-Protocol: version=2\r\n{encoding}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        raw_request(&s.gate, &head, body)
    };
    // A protocol v2 ls-refs, gzip encoded, answers the refs.
    let response = post(&gzip(b"0014command=ls-refs\n0000"), "Content-Encoding: gzip\r\n");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(&format!("{} refs/heads/main", s.base)), "{response}");
    // Over the limit, plainly or once decompressed: 413 with a message.
    let response = post(&vec![b'0'; 5000], "");
    assert!(response.starts_with("HTTP/1.1 413") && response.contains("larger than the gate's limit"), "{response}");
    let response = post(&gzip(&vec![b'0'; 100_000]), "Content-Encoding: gzip\r\n");
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    // A corrupt gzip body is a client error.
    let response = post(b"definitely not gzip", "Content-Encoding: gzip\r\n");
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
}

#[test]
fn concurrent_fetches_and_a_push_all_complete() {
    let s = setup();
    let ours = s.agent.commit(&s.wd, "mine.txt", "mine\n", "mine");
    std::thread::scope(|scope| {
        let fetches: Vec<_> =
            (0..3).map(|_| scope.spawn(|| run(s.agent.git(&s.wd).args(["fetch", "-q", "origin"])))).collect();
        let push = scope.spawn(|| s.agent.push(&s.wd, &["origin", "HEAD:refs/heads/agent/concurrent"]));
        for fetch in fetches {
            let out = fetch.join().unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
        let out = push.join().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    });
    assert_eq!(s.upstream.rev("up", "refs/heads/agent/concurrent").as_deref(), Some(ours.as_str()));
}

#[test]
fn a_secret_in_a_ref_name_is_refused() {
    let s = setup();
    s.agent.commit(&s.wd, "x.txt", "x\n", "x");
    let out = s.agent.push(&s.wd, &["origin", &format!("HEAD:refs/heads/leak-{GH_TOKEN}")]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let gate_lines: String = stderr.lines().filter(|l| l.contains("git-gate")).collect();
    assert!(gate_lines.contains("a ref name contains a secret"), "{stderr}");
    assert_no_secret(&gate_lines);
    assert_no_secret(&s.gate.audit());
    assert!(
        run_ok(git(s.upstream.dir.path()).arg("--git-dir").arg(s.upstream.bare("up")).arg("for-each-ref"))
            .lines()
            .count()
            == 1
    );
}
