//! Real bottles on the real engine, driven through the CLI: detach → list → exec → attach → stop →
//! cleanup, headless exit codes, a crashed owner, and Ctrl-C during a launch. After each test no
//! container, network, volume or state directory of its bottles remains.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::bot_bottle;

/// A home with one `shell` bottle and one agent, `demo`.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("agents")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("bottles")).expect("mkdir");
        std::fs::write(
            dir.path().join("bottles/sh.md"),
            "---\nagent_provider:\n  template: shell\nenv:\n  GREETING: hello from the manifest\n---\nA shell.\n",
        )
        .expect("write bottle");
        std::fs::write(
            dir.path().join("agents/demo.md"),
            "---\nbottle: sh\ngit-gate:\n  user:\n    name: Lifecycle Agent\n    email: lc@example.com\n---\nBe brief.\n",
        )
        .expect("write agent");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `bot-bottle --home <home> ARGS…` with the engine and image cache of this machine.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = bot_bottle();
        for var in ["HOME", "DOCKER_HOST", "XDG_CACHE_HOME", "BOT_BOTTLE_DEBIAN_MIRROR", "BOT_BOTTLE_SMOLVM"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        cmd.arg("--home").arg(self.path());
        cmd
    }

    /// The same command as a plain `std::process::Command`, for tests that spawn and signal it.
    pub fn spawnable(&self) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("bot-bottle"));
        cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).env("NO_COLOR", "1");
        for var in ["HOME", "DOCKER_HOST", "XDG_CACHE_HOME", "BOT_BOTTLE_DEBIAN_MIRROR", "BOT_BOTTLE_SMOLVM"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        cmd.arg("--home").arg(self.path());
        cmd
    }

    pub fn state(&self, slug: &str) -> PathBuf {
        self.path().join("state").join(slug)
    }
}

/// Builds the images once per test binary so parallel tests do not build them side by side.
pub fn images_ready() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let out = bot_bottle()
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .args(["image", "build", "--offline", "all"])
            .timeout(Duration::from_secs(1800))
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "image build failed (is dockerd running? `./scripts/setup --no-build`):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Every container, network and volume labelled with `slug`.
pub fn leftovers(slug: &str) -> Vec<String> {
    let filter = format!("label=bot-bottle.slug={slug}");
    let mut found = Vec::new();
    for args in [
        vec!["ps", "-a", "--format", "{{.Names}}"],
        vec!["network", "ls", "--format", "{{.Name}}"],
        vec!["volume", "ls", "--format", "{{.Name}}"],
    ] {
        let out = Command::new("docker").args(&args).args(["--filter", &filter]).output().expect("docker CLI");
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        found.extend(String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned));
    }
    found
}

/// Stops `slug` when dropped, so a failed assertion does not leak a running bottle.
pub struct Stopper<'a>(pub &'a Home, pub &'a str);

impl Drop for Stopper<'_> {
    fn drop(&mut self) {
        let _ = self.0.cmd().args(["stop", self.1]).output();
    }
}

pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{}", std::process::id(), nanos % 100_000)
}

#[test]
fn detached_bottle_lists_execs_attaches_stops_and_cleans_up() {
    images_ready();
    let _engine = crate::engine_exclusive();
    let home = Home::new();
    let slug = unique("lc");
    let _stop = Stopper(&home, &slug);
    let out = home.cmd().args(["start", "demo", "--yes", "--detach", "--label", &slug]).output().expect("runs");
    assert!(out.status.success(), "start: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), slug, "start --detach prints the slug");

    // The same label from another home must not touch this bottle.
    let other = Home::new();
    let out = other.cmd().args(["start", "demo", "--yes", "--detach", "--label", &slug]).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "a slug in use must be refused");
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(!other.state(&slug).exists(), "the refused launch left a state directory");

    let out = home.cmd().args(["list", "--format", "json"]).output().expect("runs");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list json");
    let row = rows.as_array().expect("array").iter().find(|r| r["slug"] == slug.as_str()).expect("listed");
    assert_eq!(row["status"], "running");
    assert_eq!(row["agent"], "demo");
    assert_eq!(row["backend"], "docker");
    assert_eq!(row["services"][0]["address"], "127.0.0.1:9099");

    // exec: the agent user, the manifest's env, the provisioned identity, the exit code.
    let out = home
        .cmd()
        .args(["exec", &slug, "--", "sh", "-c", "id -un; echo \"$GREETING\"; git config user.email; exit 7"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "node\nhello from the manifest\nlc@example.com\n");

    // attach runs the provider's interactive command (bash for `shell`) on our stdin.
    let out =
        home.cmd().args(["attach", &slug]).write_stdin("echo attached-$((6*7)); exit 5\n").output().expect("runs");
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("attached-42"));

    // The self-test can be rerun on the live bottle.
    let out = home.cmd().args(["doctor", "--bottle", &slug]).output().expect("runs");
    assert!(out.status.success(), "doctor --bottle: {}", String::from_utf8_lossy(&out.stderr));

    let out = home.cmd().args(["stop", &slug]).output().expect("runs");
    assert!(out.status.success(), "stop: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(leftovers(&slug), Vec::<String>::new());
    let out = home.cmd().args(["exec", &slug, "--", "true"]).output().expect("runs");
    assert_ne!(out.status.code(), Some(0), "exec into a stopped bottle must fail");

    assert!(home.state(&slug).join("audit.jsonl").exists() || home.state(&slug).exists(), "state stays after stop");
    let out = home.cmd().args(["cleanup", "--yes"]).output().expect("runs");
    assert!(out.status.success(), "cleanup: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!home.state(&slug).exists(), "cleanup removes the state directory of a dead bottle");
    let out = home.cmd().args(["cleanup", "--yes"]).output().expect("runs");
    assert!(out.status.success(), "cleanup is idempotent");
}

#[test]
fn headless_passes_the_exit_code_through_and_removes_the_bottle() {
    images_ready();
    let _engine = crate::engine_shared();
    let home = Home::new();
    let slug = unique("hl");
    let out = home
        .cmd()
        .args(["start", "demo", "--headless", "--label", &slug, "--prompt", "echo out-$GREETING; exit 3"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out-hello from the manifest\n");
    assert_eq!(leftovers(&slug), Vec::<String>::new());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.state(&slug).join("metadata.json")).expect("metadata"))
            .expect("json");
    assert_eq!(meta["status"], "exited");
    assert_eq!(meta["exit_code"], 3);
}

#[test]
fn a_crashed_owner_leaves_what_cleanup_removes() {
    images_ready();
    let _engine = crate::engine_exclusive();
    let home = Home::new();
    let slug = unique("crash");
    let mut child = home
        .spawnable()
        .args(["start", "demo", "--headless", "--label", &slug, "--prompt", "sleep 120"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    // Wait until the agent runs, then kill the owner without a chance to tear down.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let meta = std::fs::read(home.state(&slug).join("metadata.json")).unwrap_or_default();
        if String::from_utf8_lossy(&meta).contains("\"running\"") || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The agent's process starts right after `running` is recorded; give it a moment.
    std::thread::sleep(Duration::from_secs(1));
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert!(!leftovers(&slug).is_empty(), "the killed owner left its bottle behind (as a crash would)");

    let out = home.cmd().args(["cleanup", "--yes"]).output().expect("runs");
    assert!(out.status.success(), "cleanup: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(leftovers(&slug), Vec::<String>::new());
    assert!(!home.state(&slug).exists());
}

#[test]
fn ctrl_c_during_launch_removes_everything() {
    images_ready();
    let _engine = crate::engine_shared();
    let home = Home::new();
    let slug = unique("int");
    let child = home
        .spawnable()
        .args(["start", "demo", "--yes", "--detach", "--label", &slug])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    // Interrupt once the launch has created something on the engine.
    let deadline = Instant::now() + Duration::from_secs(60);
    while leftovers(&slug).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let out = child.wait_with_output().expect("waits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "an interrupted launch fails: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(leftovers(&slug), Vec::<String>::new());
    assert!(!home.state(&slug).exists(), "an interrupted launch leaves no state directory");
}

/// `exec` on a terminal hands it to the bottle: the window size at start, a resize while it runs
/// (SIGWINCH), and the exit code, with a real terminal from tmux.
#[test]
fn a_terminal_session_gets_the_window_size_and_its_changes() {
    images_ready();
    let _engine = crate::engine_shared();
    let home = Home::new();
    let slug = unique("tty");
    let _stop = Stopper(&home, &slug);
    let out = home.cmd().args(["start", "demo", "--yes", "--detach", "--label", &slug]).output().expect("runs");
    assert!(out.status.success(), "start: {}", String::from_utf8_lossy(&out.stderr));

    let bin = assert_cmd::cargo::cargo_bin("bot-bottle");
    let session = format!("bb-{slug}");
    let script = "stty size > /tmp/size-start; trap 'stty size > /tmp/size-winch' WINCH; \
                  for i in \\$(seq 1 100); do [ -s /tmp/size-winch ] && exit 9; sleep 0.1; done; exit 1";
    let inner = format!(
        "HOME={} {} --home {} exec {slug} -- bash -c \"{script}\"; echo exit=$? > {}/tty-exit; sleep 5",
        std::env::var("HOME").unwrap_or_default(),
        bin.display(),
        home.path().display(),
        home.path().display()
    );
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().expect("tmux (apt install tmux)");
    let started = tmux(&["new-session", "-d", "-s", &session, "-x", "120", "-y", "40", &inner]);
    assert!(started.status.success(), "tmux: {}", String::from_utf8_lossy(&started.stderr));
    let read = |path: &str| {
        let out = home.cmd().args(["exec", &slug, "--", "cat", path]).output().expect("runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let wait_for = |path: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = read(path);
            if !v.is_empty() || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let at_start = wait_for("/tmp/size-start");
    let _ = tmux(&["resize-window", "-t", &session, "-x", "90", "-y", "25"]);
    let after = wait_for("/tmp/size-winch");
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit_file = home.path().join("tty-exit");
    while !exit_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let exit = std::fs::read_to_string(&exit_file).unwrap_or_default();
    let _ = tmux(&["kill-session", "-t", &session]);
    assert_eq!(at_start, "40 120", "window size at start");
    assert_eq!(after, "25 90", "window size after a resize");
    assert_eq!(exit.trim(), "exit=9", "exit code through the terminal session");
}
