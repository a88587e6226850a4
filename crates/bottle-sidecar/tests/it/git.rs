//! A push with an inline allow marker, decided through the control API, through the real git
//! gate to a real `sshd` upstream.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

fn git(home: &Path) -> Command {
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

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A real OpenSSH server on 127.0.0.1 serving one bare repository (`app.git`, branch `main`).
struct SshUpstream {
    dir: tempfile::TempDir,
    sshd: Child,
    port: u16,
    host_key: String,
    client_key: PathBuf,
}

impl SshUpstream {
    fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("sc-up-").tempdir().unwrap();
        let d = dir.path();
        for key in ["host_key", "client_key"] {
            ok(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "t", "-f"]).arg(d.join(key)));
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dd = d.display();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {dd}/host_key\nPidFile {dd}/sshd.pid\n\
                 AuthorizedKeysFile {dd}/authorized_keys\nStrictModes no\nUsePAM no\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 LogLevel ERROR\n"
            ),
        )
        .unwrap();
        let sshd = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let bare = d.join("app.git");
        ok(git(d).args(["init", "-q", "--bare", "-b", "main"]).arg(&bare));
        let seed = d.join("seed");
        ok(git(d).args(["init", "-q", "-b", "main"]).arg(&seed));
        std::fs::write(seed.join("README.md"), "# app\n").unwrap();
        ok(git(d).current_dir(&seed).args(["add", "-A"]));
        ok(git(d).current_dir(&seed).args(["commit", "-q", "-m", "initial"]));
        ok(git(d).current_dir(&seed).arg("push").arg("-q").arg(&bare).arg("HEAD:refs/heads/main"));
        let host_key = std::fs::read_to_string(d.join("host_key.pub")).unwrap().trim().to_owned();
        Self { client_key: d.join("client_key"), dir, sshd, port, host_key }
    }

    fn url(&self) -> String {
        let user = ok(Command::new("id").arg("-un"));
        format!("ssh://{user}@127.0.0.1:{}{}", self.port, self.dir.path().join("app.git").display())
    }

    fn head(&self) -> String {
        ok(git(self.dir.path()).arg("--git-dir").arg(self.dir.path().join("app.git")).args(["rev-parse", "main"]))
    }
}

impl Drop for SshUpstream {
    fn drop(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}

fn push(home: &Path, wd: &Path) -> tokio::task::JoinHandle<Output> {
    let mut cmd = git(home);
    cmd.current_dir(wd).args(["push", "origin", "HEAD:main"]);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_allow_push_is_rejected_or_approved_by_the_operator() {
    let upstream = SshUpstream::start();
    let mirrors = tempfile::Builder::new().prefix("sc-gate-").tempdir().unwrap();
    let gate = json!({
        "repos": [{"name": "app", "url": upstream.url(), "identity_file": upstream.client_key, "host_key": upstream.host_key}],
        "mirrors_dir": mirrors.path().join("m"),
        "limits": {"git_timeout_secs": 60, "proposal_timeout_secs": 60},
    });
    let world = World::new(Options { git_gate: Some(gate), ..Options::default() }).await;
    let control = world.control();
    let agent = tempfile::Builder::new().prefix("sc-agent-").tempdir().unwrap();
    let home = agent.path();
    let gate_url = format!("http://{}/app.git", world.addrs.git_gate.unwrap());
    ok(git(home).args(["config", "--global"]).arg(format!("url.{gate_url}.insteadOf")).arg(upstream.url()));
    let wd = home.join("app");
    ok(git(home).args(["clone", "-q", &upstream.url()]).arg(&wd));
    std::fs::write(wd.join("fixture.py"), format!("KEY = '{AWS_KEY}'  # gitleaks:allow\n")).unwrap();
    ok(git(home).current_dir(&wd).args(["add", "-A"]));
    ok(git(home).current_dir(&wd).args(["commit", "-q", "-m", "test fixture"]));
    let commit = ok(git(home).current_dir(&wd).args(["rev-parse", "HEAD"]));
    let before = upstream.head();

    // Rejected: the push fails with the operator's reason and the upstream is untouched.
    let pushing = push(home, &wd);
    let proposal = control.wait_for("git-allow").await;
    assert_eq!(
        proposal["detail"],
        json!({"repo": "app", "ref": "refs/heads/main", "commit": commit, "file": "fixture.py", "line": 1, "rule": "aws-access-key-id"})
    );
    let id = proposal["id"].as_str().unwrap();
    assert_eq!(control.decide(id, &json!({"action": "reject", "reason": "use a fake key"})).await.0, 200);
    let out = pushing.await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("use a fake key"), "{stderr}");
    assert_no_secret("push output", &stderr);
    assert_eq!(upstream.head(), before);

    // Approved: the same push goes through to the upstream.
    let pushing = push(home, &wd);
    let id = control.wait_for("git-allow").await["id"].as_str().unwrap().to_owned();
    assert_eq!(control.decide(&id, &json!({"action": "approve"})).await.0, 200);
    let out = pushing.await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(upstream.head(), commit);
    let audit = world.audit();
    assert_eq!(audit.matches(r#""kind":"git-allow""#).count(), 4, "{audit}");
    assert_no_secret("audit", &audit);
    bottle_egress::verify_chain(&world.audit_path()).unwrap();
}
