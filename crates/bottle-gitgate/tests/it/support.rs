//! Fixtures: a real `sshd` serving bare upstream repositories, a gate served in-process on
//! 127.0.0.1:0, and an "agent" that is the real git CLI with its own home and an `insteadOf` rule.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bottle_dlp::KnownSecret;
use bottle_egress::{AuditLog, EgressListener};
use bottle_gitgate::{
    BoxFuture, GateLimits, GitDecision, GitGate, GitGateConfig, GitGateDeps, GitProposal, GitProposalSink, RepoConfig,
};
use tempfile::TempDir;

/// An AWS access key id shaped value (not a real key).
pub const AWS_KEY: &str = "AKIAZ2Y3X4W5V6U7T6SR";
/// A GitHub classic token shaped value (not a real token).
pub const GH_TOKEN: &str = "ghp_R8kq2LmZ0pX7vN4cT1wY9bE3uH6sJ5aD2fG0";
/// A value the sidecar holds (a route token), planted as a known secret.
pub const KNOWN_VALUE: &str = "route-token-PLANTED-5f4e3d2c1b0a";

/// Runs `cmd`, returning its output; panics if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd` and asserts success.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A plain git command with an isolated configuration.
pub fn git(home: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("LC_ALL", "C")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Agent")
        .env("GIT_AUTHOR_EMAIL", "agent@bottle.test")
        .env("GIT_COMMITTER_NAME", "Agent")
        .env("GIT_COMMITTER_EMAIL", "agent@bottle.test")
        .stdin(Stdio::null());
    cmd
}

/// A real OpenSSH server on 127.0.0.1 serving bare repositories in its temp dir as this user.
pub struct Upstream {
    pub dir: TempDir,
    pub port: u16,
    sshd: Option<Child>,
    /// The host's public key line (`ssh-ed25519 AAAA… comment`).
    pub host_key_line: String,
    /// The key only the gate gets.
    pub client_key: PathBuf,
    user: String,
}

impl Upstream {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("gg-up-").tempdir().expect("tempdir");
        let keygen = |path: &Path| {
            run_ok(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"]).arg(path));
        };
        let host_key = dir.path().join("host_key");
        let client_key = dir.path().join("client_key");
        keygen(&host_key);
        keygen(&client_key);
        let host_key_line = std::fs::read_to_string(host_key.with_extension("pub")).expect("host pub");
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized).expect("authorized_keys");
        // sshd wants its privilege separation directory even when it will not drop privileges.
        let _ = std::fs::create_dir_all("/run/sshd");
        let user = run_ok(Command::new("id").arg("-un")).trim().to_owned();
        let mut upstream =
            Self { dir, port: 0, sshd: None, host_key_line: host_key_line.trim().to_owned(), client_key, user };
        upstream.launch();
        upstream
    }

    fn launch(&mut self) {
        let port = free_port();
        let config = self.dir.path().join("sshd_config");
        let d = self.dir.path().display();
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 LogLevel ERROR\nSubsystem sftp internal-sftp\n"
            ),
        )
        .expect("sshd_config");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        self.sshd = Some(child);
        self.port = port;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops sshd and every session it serves, as if the host went down: established connections
    /// (the gate's shared SSH connection too) die with it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.sshd.take() {
            let _ = child.kill();
            let _ = child.wait();
            for pid in server_side_of(self.port) {
                let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).stderr(Stdio::null()).status();
            }
        }
    }

    /// The bare repository `name` on the upstream.
    pub fn bare(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.git"))
    }

    /// `ssh://user@127.0.0.1:port/…/name.git`.
    pub fn url(&self, name: &str) -> String {
        format!("ssh://{}@127.0.0.1:{}{}", self.user, self.port, self.bare(name).display())
    }

    /// Creates a bare repository with one commit on `main` (a README) and returns its id.
    pub fn create_repo(&self, name: &str) -> String {
        let bare = self.bare(name);
        run_ok(git(self.dir.path()).args(["init", "-q", "--bare", "-b", "main"]).arg(&bare));
        self.commit_out_of_band(name, "main", "README.md", "# upstream\n", "initial commit")
    }

    /// Commits `file` with `content` on `branch` directly into the upstream (not through the gate).
    pub fn commit_out_of_band(&self, name: &str, branch: &str, file: &str, content: &str, message: &str) -> String {
        let work = tempfile::tempdir().expect("tempdir");
        let home = work.path();
        let bare = self.bare(name);
        let wd = home.join("w");
        run_ok(git(home).args(["init", "-q", "-b", branch]).arg(&wd));
        // A new branch starts from `main`.
        for start in [branch, "main"] {
            if run(git(home).current_dir(&wd).arg("fetch").arg(&bare).arg(start)).status.success() {
                run_ok(git(home).current_dir(&wd).args(["reset", "-q", "--hard", "FETCH_HEAD"]));
                break;
            }
        }
        let path = wd.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, content).expect("write");
        run_ok(git(home).current_dir(&wd).args(["add", "-A"]));
        run_ok(git(home).current_dir(&wd).args(["commit", "-q", "-m", message]));
        run_ok(git(home).current_dir(&wd).arg("push").arg("-q").arg(&bare).arg(format!("HEAD:refs/heads/{branch}")));
        run_ok(git(home).current_dir(&wd).args(["rev-parse", "HEAD"])).trim().to_owned()
    }

    /// `git rev-parse` in the upstream; `None` when the rev does not exist.
    pub fn rev(&self, name: &str, rev: &str) -> Option<String> {
        let out =
            run(git(self.dir.path()).arg("--git-dir").arg(self.bare(name)).args(["rev-parse", "--verify", "-q", rev]));
        out.status.success().then(|| text(&out.stdout).trim().to_owned())
    }

    /// A repo config for the gate.
    pub fn repo_config(&self, name: &str) -> RepoConfig {
        RepoConfig {
            name: name.to_owned(),
            url: self.url(name),
            identity_file: self.client_key.clone(),
            host_key: self.host_key_line.clone(),
            push_refs: Vec::new(),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The processes holding the server side of TCP connections on 127.0.0.1:`port` (sshd's sessions,
/// which sshd detaches from itself), found through `/proc/net/tcp` and `/proc/<pid>/fd`.
fn server_side_of(port: u16) -> Vec<u32> {
    let local = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&local.as_str())).then(|| fields.get(9).map(|i| format!("socket:[{i}]"))).flatten()
        })
        .collect();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let holds = std::fs::read_dir(entry.path().join("fd")).into_iter().flatten().flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
        });
        if holds {
            pids.push(pid);
        }
    }
    pids
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// An approving (or denying) proposal sink that records what it was asked.
#[derive(Debug)]
pub struct RecordingSink {
    pub approve: bool,
    pub seen: Mutex<Vec<GitProposal>>,
}

impl GitProposalSink for RecordingSink {
    fn propose(&self, proposal: GitProposal) -> BoxFuture<'_, GitDecision> {
        self.seen.lock().expect("lock").push(proposal);
        let decision =
            if self.approve { GitDecision::Approve } else { GitDecision::Deny { reason: "operator said no".into() } };
        Box::pin(async move { decision })
    }
}

/// Options for a gate.
pub struct GateOptions {
    pub proposals: Option<Arc<dyn GitProposalSink>>,
    pub known_secrets: Vec<KnownSecret>,
    pub limits: GateLimits,
}

impl Default for GateOptions {
    fn default() -> Self {
        Self {
            proposals: None,
            known_secrets: vec![KnownSecret::new("ROUTE_TOKEN", KNOWN_VALUE)],
            limits: GateLimits { git_timeout_secs: 60, proposal_timeout_secs: 10, ..GateLimits::default() },
        }
    }
}

/// A gate served in-process on 127.0.0.1:0 with its own runtime.
pub struct Gate {
    pub addr: SocketAddr,
    pub dir: TempDir,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

impl Gate {
    pub fn start(repos: Vec<RepoConfig>, options: GateOptions) -> Self {
        Self::try_start(repos, options).unwrap_or_else(|e| panic!("gate did not start: {e}"))
    }

    pub fn try_start(repos: Vec<RepoConfig>, options: GateOptions) -> Result<Self, bottle_gitgate::GitGateError> {
        let dir = tempfile::Builder::new().prefix("gg-gate-").tempdir().expect("tempdir");
        let config = GitGateConfig { repos, mirrors_dir: dir.path().join("mirrors"), limits: options.limits };
        let mut deps = GitGateDeps::new(hook_program());
        deps.known_secrets = options.known_secrets;
        if let Some(sink) = options.proposals {
            deps.proposals = sink;
        }
        deps.audit = Some(Arc::new(AuditLog::open(&dir.path().join("audit.jsonl")).expect("audit log")));
        let gate = GitGate::new(&config, deps)?;
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let listener = runtime.block_on(EgressListener::bind_tcp("127.0.0.1:0".parse().expect("addr"))).expect("bind");
        let addr = listener.local_addr().expect("tcp");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = runtime.spawn(async move {
            gate.serve(listener, async move {
                let _ = rx.await;
            })
            .await
            .expect("serve");
        });
        Ok(Self { addr, dir, runtime: Some(runtime), shutdown: Some(tx), served: Some(served) })
    }

    /// The gate URL of repository `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}.git", self.addr)
    }

    /// The mirror of `name`.
    pub fn mirror(&self, name: &str) -> PathBuf {
        self.dir.path().join("mirrors").join(format!("{name}.git"))
    }

    /// The audit log's text.
    pub fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap_or_default()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            // Let the gate stop on its own (it closes its shared SSH connections), then the runtime.
            if let Some(served) = self.served.take() {
                let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(15), served).await });
            }
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// The hook client program (built by `cargo test` as an example of this crate).
pub fn hook_program() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let program = profile_dir.join("examples").join("git_gate_hook");
    assert!(
        program.exists(),
        "{} is missing: run the tests with `cargo test -p bottle-gitgate`, which builds the examples",
        program.display()
    );
    program
}

/// The agent: the real git CLI, its own home, and `insteadOf` rules sending upstream URLs to the gate.
pub struct Agent {
    pub home: TempDir,
}

impl Agent {
    pub fn new(gate: &Gate, upstream: &Upstream, repos: &[&str]) -> Self {
        let home = tempfile::Builder::new().prefix("gg-agent-").tempdir().expect("tempdir");
        for name in repos {
            run_ok(
                git(home.path())
                    .args(["config", "--global"])
                    .arg(format!("url.{}.insteadOf", gate.url(name)))
                    .arg(upstream.url(name)),
            );
        }
        run_ok(git(home.path()).args(["config", "--global", "init.defaultBranch", "main"]));
        Self { home }
    }

    pub fn git(&self, cwd: &Path) -> Command {
        let mut cmd = git(self.home.path());
        cmd.current_dir(cwd);
        cmd
    }

    /// Clones `url` (an upstream URL, rewritten to the gate) into the agent's home.
    pub fn clone(&self, url: &str, dir: &str) -> PathBuf {
        let target = self.home.path().join(dir);
        run_ok(self.git(self.home.path()).args(["clone", "-q", url]).arg(&target));
        target
    }

    /// Writes `file` and commits it; returns the commit id.
    pub fn commit(&self, wd: &Path, file: &str, content: &str, message: &str) -> String {
        let path = wd.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, content).expect("write");
        run_ok(self.git(wd).args(["add", "-A"]));
        run_ok(self.git(wd).args(["commit", "-q", "-m", message]));
        self.head(wd)
    }

    pub fn head(&self, wd: &Path) -> String {
        run_ok(self.git(wd).args(["rev-parse", "HEAD"])).trim().to_owned()
    }

    /// `git push` with the given args; returns the output (stderr holds the `remote:` lines).
    pub fn push(&self, wd: &Path, args: &[&str]) -> Output {
        run(self.git(wd).arg("push").args(args))
    }
}

/// Asserts that a push was refused, that its messages mention every `needle`, and that no planted
/// secret value appears anywhere in them.
pub fn assert_refused(out: &Output, needles: &[&str]) {
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "push should have been refused:\n{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "message lacks `{needle}`:\n{stderr}");
    }
    assert_no_secret(&stderr);
}

pub fn assert_no_secret(text: &str) {
    for secret in [AWS_KEY, GH_TOKEN, KNOWN_VALUE] {
        assert!(!text.contains(secret), "a secret value leaked:\n{text}");
    }
}

pub fn short(id: &str) -> &str {
    &id[..10]
}
