//! The git gate inside a real bottle: a real `sshd` on the host serves the upstream with a key only
//! the sidecar holds; the agent clones, fetches and pushes with the URL it knows, and a push with a
//! secret is refused before anything reaches the upstream.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::lifecycle::{Home, images_ready, leftovers};

/// A throwaway `sshd` on a random port, serving as root with one authorized key.
struct Sshd {
    child: Child,
    port: u16,
    host_key_pub: String,
    client_key: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "bot-bottle-test", "-f"]).arg(path));
}

impl Sshd {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let host_key = dir.path().join("host_key");
        let client_key = dir.path().join("client_key");
        keygen(&host_key);
        keygen(&client_key);
        std::fs::copy(client_key.with_extension("pub"), dir.path().join("authorized_keys")).expect("authorize");
        std::fs::create_dir_all("/run/sshd").expect("privsep dir");
        let port = std::net::TcpListener::bind("0.0.0.0:0").expect("free port").local_addr().expect("addr").port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 0.0.0.0\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile {}\n",
                host_key.display(),
                dir.path().join("authorized_keys").display(),
                dir.path().join("sshd.pid").display()
            ),
        )
        .expect("config");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd (apt install openssh-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let host_key_pub = std::fs::read_to_string(host_key.with_extension("pub")).expect("host key");
        let host_key_pub = host_key_pub.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        Self { child, port, host_key_pub, client_key, _dir: dir }
    }
}

/// A bare upstream with one commit on `main`.
fn upstream(dir: &Path) -> PathBuf {
    let bare = dir.join("up.git");
    run(Command::new("git").args(["init", "-q", "--bare", "-b", "main"]).arg(&bare));
    let work = dir.join("seed");
    run(Command::new("git").args(["init", "-q", "-b", "main"]).arg(&work));
    std::fs::write(work.join("README.md"), "upstream\n").expect("write");
    let git = |args: &[&str]| {
        run(Command::new("git")
            .arg("-C")
            .arg(&work)
            .args(["-c", "user.name=Up", "-c", "user.email=up@example.com"])
            .args(args))
    };
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "initial"]);
    git(&["push", "-q", bare.to_str().expect("utf-8 path"), "main"]);
    bare
}

/// Commits `file` (already written in the seed clone) and pushes it to the upstream directly, as
/// someone working outside the bottle would.
fn commit_upstream(seed: &Path, bare: &Path, file: &str, message: &str) {
    let git = |args: &[&str]| {
        run(Command::new("git")
            .arg("-C")
            .arg(seed)
            .args(["-c", "user.name=Up", "-c", "user.email=up@example.com"])
            .args(args))
    };
    git(&["add", file]);
    git(&["commit", "-qm", message]);
    git(&["push", "-q", bare.to_str().expect("utf-8 path"), "main"]);
}

fn upstream_head(bare: &Path) -> String {
    run(Command::new("git").arg("--git-dir").arg(bare).args(["rev-parse", "main"])).trim().to_owned()
}

#[test]
fn the_agent_clones_fetches_and_pushes_through_the_gate_and_secrets_stay_out() {
    images_ready();
    let _engine = crate::engine_shared();
    let sshd = Sshd::start();
    let up_dir = tempfile::tempdir().expect("tempdir");
    let bare = upstream(up_dir.path());
    let url = format!("ssh://root@{}:{}{}", crate::escape::bridge_gateway(), sshd.port, bare.display());

    let home = Home::new();
    std::fs::write(
        home.path().join("bottles/gated.md"),
        format!(
            "---\nagent_provider:\n  template: shell\ngit-gate:\n  user:\n    name: Gate Agent\n    email: gate@example.com\n  \
             repos:\n    up:\n      url: {url}\n      identity: {}\n      host_key: {}\n---\n",
            sshd.client_key.display(),
            sshd.host_key_pub
        ),
    )
    .expect("bottle");
    std::fs::write(home.path().join("agents/gated.md"), "---\nbottle: gated\n---\nPush carefully.\n").expect("agent");
    let slug = format!("gate-{}", std::process::id());
    let out = home.cmd().args(["start", "gated", "--yes", "--detach", "--label", &slug]).output().expect("runs");
    assert!(out.status.success(), "start: {}", String::from_utf8_lossy(&out.stderr));

    let exec = |script: &str| {
        let out = home.cmd().args(["exec", &slug, "--", "bash", "-c", script]).output().expect("runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let mut failures = Vec::new();
    let mut check = |name: &str, ok: bool, detail: &str| {
        eprintln!("{:<48} {}", name, if ok { "ok" } else { "FAILED" });
        if !ok {
            failures.push(format!("{name}: {detail}"));
        }
    };

    let (code, out, err) = exec(&format!("git clone -q {url} work && cat work/README.md"));
    check("clone through the gate", code == Some(0) && out.contains("upstream"), &format!("{out}{err}"));

    let before = upstream_head(&bare);
    let (code, _, err) = exec(
        "cd work && echo clean > notes.txt && git add . && git commit -qm 'clean change' && git push -q origin main",
    );
    let after = upstream_head(&bare);
    check("clean push lands upstream", code == Some(0) && after != before, &err);

    let secret = "AKIAQWERTYUIOPASDFGH";
    let (code, out, err) = exec(&format!(
        "cd work && echo 'aws_key = {secret}' > config.py && git add . && git commit -qm 'add config' && git push origin main"
    ));
    let text = format!("{out}{err}");
    check("a pushed secret is refused", code != Some(0) && text.contains("secret(s) found in the new commits"), &text);
    check(
        "the refusal names the rule and file",
        text.contains("aws-access-key-id") && text.contains("config.py"),
        &text,
    );
    check("the refusal does not echo the value", !text.contains(secret), &text);
    check("nothing reached the upstream", upstream_head(&bare) == after, "upstream moved");

    // Every way a secret can ride a push, each refused with the upstream untouched.
    let token = "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8";
    let reset = "cd work && git reset -q --hard origin/main && git clean -qfd";
    let cases = [
        ("secret in a modified line", format!("sed -i '1s/$/ {token}/' README.md && git commit -qam 'tweak readme'")),
        ("secret in a commit message", format!("git commit -q --allow-empty -m 'deploy with {token}'")),
        ("secret in a file name", format!("touch '{secret}.txt' && git add . && git commit -qm 'add file'")),
        (
            "secret deep in a 20-commit push",
            format!(
                "for i in $(seq 1 20); do if [ $i = 7 ]; then echo 'k={token}' > f$i.txt; else echo $i > f$i.txt; fi; \
                 git add f$i.txt && git commit -qm c$i; done"
            ),
        ),
        (
            "secret in a merge commit",
            format!(
                "git checkout -qb side && echo side > side.txt && git add side.txt && git commit -qm side && \
                 git checkout -q main && git merge -q --no-ff side -m merge && echo 'k={token}' > evil.txt && \
                 git add evil.txt && git commit -q --amend --no-edit"
            ),
        ),
    ];
    for (name, change) in &cases {
        let (code, out, err) = exec(&format!("{reset} && {change} && git push origin HEAD:main"));
        let text = format!("{out}{err}");
        let refused = code != Some(0)
            && text.contains("secret(s) found in the new commits")
            && !text.contains(token)
            && upstream_head(&bare) == after;
        check(name, refused, &text);
    }
    let (code, _, err) = exec(&format!("{reset} && git commit -q --amend -m rewritten && git push -f origin main"));
    let by_policy = |err: &str| err.contains("refused by the ref policy");
    check(
        "force-push to the default branch refused",
        code != Some(0) && by_policy(&err) && upstream_head(&bare) == after,
        &err,
    );
    let (code, _, err) = exec(&format!("{reset} && git push origin :main"));
    check(
        "deleting the default branch refused",
        code != Some(0) && by_policy(&err) && upstream_head(&bare) == after,
        &err,
    );

    // A commit pushed upstream out of band is seen by the agent's next fetch (the mirror refreshes).
    let seed = up_dir.path().join("seed");
    run(Command::new("git").arg("-C").arg(&seed).args(["pull", "-q", bare.to_str().expect("utf-8"), "main"]));
    std::fs::write(seed.join("oob.txt"), "out of band\n").expect("write");
    commit_upstream(&seed, &bare, "oob.txt", "oob file");
    let (code, out, err) = exec("cd work && git fetch -q origin && git log --format=%s origin/main | head -n 3");
    check(
        "fetch sees an out-of-band upstream commit",
        code == Some(0) && out.contains("oob file"),
        &format!("{out}{err}"),
    );

    // A secret already in upstream history is not flagged again when the agent edits that file.
    std::fs::write(seed.join("legacy.env"), format!("OLD_TOKEN={token}\nother=1\n")).expect("write");
    commit_upstream(&seed, &bare, "legacy.env", "legacy");
    let (code, _, err) = exec(
        "cd work && git fetch -q origin && git reset -q --hard origin/main && sed -i 's/other=1/other=2/' legacy.env && \
         git commit -qam 'touch legacy' && git push -q origin main",
    );
    check("a secret already upstream is not re-flagged", code == Some(0), &err);

    // The key never reaches the agent: search everything the agent can read for a piece of it.
    let key = std::fs::read_to_string(&sshd.client_key).expect("key");
    let line = key.lines().nth(2).expect("key body line");
    let piece = &line[..24];
    let pattern = format!("{}[{}]{}", &piece[..4], &piece[4..5], &piece[5..]);
    let (_, out, _) = exec(&format!(
        "grep -rsl -- '{pattern}' /proc/[0-9]*/environ /proc/[0-9]*/cmdline /etc /home /run /opt /tmp /var /root 2>/dev/null; \
         env | grep -c -- '{pattern}'; echo done"
    ));
    check("the agent cannot find the upstream key", out.trim_end().ends_with("0\ndone") && !out.contains('/'), &out);

    // A pinned host key that is not the upstream's: nothing is fetched (no trust on first use).
    let wrong_dir = tempfile::tempdir().expect("tempdir");
    keygen(&wrong_dir.path().join("other"));
    let wrong = std::fs::read_to_string(wrong_dir.path().join("other.pub")).expect("key");
    let wrong = wrong.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    std::fs::write(
        home.path().join("bottles/wrongkey.md"),
        format!(
            "---\nagent_provider:\n  template: shell\ngit-gate:\n  repos:\n    up:\n      url: {url}\n      identity: {}\n      \
             host_key: {wrong}\n---\n",
            sshd.client_key.display()
        ),
    )
    .expect("bottle");
    let other = format!("{slug}-wk");
    let out = home
        .cmd()
        .args(["start", "gated", "--bottle", "wrongkey", "--yes", "--detach", "--label", &other])
        .output()
        .expect("runs");
    assert!(out.status.success(), "start: {}", String::from_utf8_lossy(&out.stderr));
    let clone = home.cmd().args(["exec", &other, "--", "git", "clone", "-q", &url, "w"]).output().expect("runs");
    let err = String::from_utf8_lossy(&clone.stderr).into_owned();
    let _ = home.cmd().args(["stop", &other]).output();
    check("a wrong pinned host key is refused", !clone.status.success() && err.contains("git-gate"), &err);

    // Upstream down: fetch fails closed, with a message naming the gate.
    drop(sshd);
    let (code, out, err) = exec("cd work && git fetch origin");
    check("upstream down: fetch fails closed", code != Some(0) && format!("{out}{err}").contains("git-gate"), &err);
    let (code, _, err) = exec("cd work && git commit -q --allow-empty -m later && git push origin main");
    check("upstream down: push fails closed", code != Some(0) && err.contains("git-gate"), &err);

    let stop = home.cmd().args(["stop", &slug]).output().expect("runs");
    assert!(stop.status.success(), "stop: {}", String::from_utf8_lossy(&stop.stderr));
    assert_eq!(leftovers(&slug), Vec::<String>::new());
    assert!(failures.is_empty(), "git-gate checks failed:\n{}", failures.join("\n"));
}
