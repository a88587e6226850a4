//! The interactive `start` on a real terminal (a pty): the agent picker filters as you type, the
//! bottle multi-select keeps the order of picking into the plan, the backend picker offers what can
//! launch, a label that is taken re-prompts, and answering N (or Ctrl-C) creates nothing.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

use crate::bot_bottle;

const DOWN: &str = "\x1b[B";
const UP: &str = "\x1b[A";
const RIGHT: &str = "\x1b[C";
const BACKSPACE: &str = "\x7f";

/// A home with agents `alpha`, `beta` and a broken one, bottles `sh`, `zeta` and a broken one.
fn home() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["agents", "bottles", "state/taken"] {
        std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
    }
    let write = |p: &str, s: &str| std::fs::write(dir.path().join(p), s).expect("write");
    write("bottles/sh.md", "---\nagent_provider:\n  template: shell\n---\n");
    write("bottles/zeta.md", "---\nenv:\n  ZETA: z\n---\n");
    write("bottles/broken-b.md", "---\nnot_a_key: 1\n---\n");
    write("agents/alpha.md", "---\nbottle: sh\n---\nA.\n");
    write("agents/beta.md", "---\nbottle: sh\n---\nB.\n");
    write("agents/broken.md", "---\nbottle: [\n---\n");
    dir
}

/// `bot-bottle start` on a pty, its output collected as it comes.
pub struct Session {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    writer: Box<dyn std::io::Write + Send>,
    output: Arc<Mutex<Vec<u8>>>,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Session {
    fn start(home: &Path, args: &[&str]) -> Self {
        let mut all = vec!["start"];
        all.extend_from_slice(args);
        Self::run(home, &all, &[("NO_COLOR", "1")])
    }

    /// `bot-bottle --home HOME ARGS…` on a pty, with `env` added.
    pub fn run(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let pair =
            native_pty_system().openpty(PtySize { rows: 30, cols: 110, pixel_width: 0, pixel_height: 0 }).expect("pty");
        let mut cmd = CommandBuilder::new(assert_cmd::cargo::cargo_bin("bot-bottle"));
        cmd.env_clear();
        cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        cmd.env("TERM", "xterm-256color");
        for (k, v) in env {
            cmd.env(k, v);
        }
        for var in ["HOME", "DOCKER_HOST"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        cmd.cwd(home);
        cmd.arg("--home");
        cmd.arg(home);
        cmd.args(args);
        let child = pair.slave.spawn_command(cmd).expect("spawn");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("reader");
        let writer = pair.master.take_writer().expect("writer");
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        });
        Self { child, writer, output, _master: pair.master }
    }

    /// Everything printed so far with escape sequences removed (a cursor move becomes a space).
    fn text(&self) -> String {
        plain(&String::from_utf8_lossy(&self.output.lock().expect("lock")))
    }

    /// Everything printed so far, escapes included.
    pub fn raw(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().expect("lock")).into_owned()
    }

    fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.text().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("`{needle}` never appeared; the screen said:\n{}", self.text());
    }

    fn keys(&mut self, keys: &[&str]) {
        for k in keys {
            self.writer.write_all(k.as_bytes()).expect("write");
            self.writer.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    pub fn exit_code(&mut self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.exit_code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("start did not exit; the screen said:\n{}", self.text());
    }
}

/// `s` without CSI/OSC escapes; cursor positioning becomes one space so words stay apart.
fn plain(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    let mut last = ' ';
                    for n in chars.by_ref() {
                        last = n;
                        if ('@'..='~').contains(&n) {
                            break;
                        }
                    }
                    if last == 'H' {
                        out.push(' ');
                    }
                }
                Some(']') => {
                    while let Some(n) = chars.next() {
                        if n == '\x07' || (n == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

fn docker_leftovers(label: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter", &format!("label=bot-bottle.slug={label}")])
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pickers_fill_the_plan_and_no_creates_nothing() {
    let home = home();
    let label = format!("picked-{}", std::process::id());
    let mut s = Session::start(home.path(), &[]);

    s.wait_for("pick an agent");
    s.wait_for("unavailable:"); // the broken agent is listed with its reason
    s.keys(&["e", "t", "\r"]); // only `beta` matches `et`; Enter alone would pick `alpha`

    s.wait_for("bottles for `beta`");
    // `sh` comes preselected (the agent's `bottle:`); unpick it, pick `zeta`, then `sh` again.
    s.keys(&[" ", DOWN, " ", UP, " ", "\r"]);

    s.wait_for("pick a backend");
    s.keys(&["\r"]);

    s.wait_for("label and colour");
    s.keys(&["t", "a", "k", "e", "n", "\r"]);
    s.wait_for("already has a state directory");
    let mut keys: Vec<String> = std::iter::repeat_n(BACKSPACE.to_owned(), 5).collect();
    keys.extend(label.chars().map(String::from));
    keys.extend([RIGHT.to_owned(), RIGHT.to_owned(), "\r".to_owned()]);
    s.keys(&keys.iter().map(String::as_str).collect::<Vec<_>>());

    s.wait_for("Launch this bottle? [y/N]");
    let text = s.text();
    assert!(text.contains("agent      beta"), "{text}");
    assert!(text.contains("bottles    zeta → sh"), "the order picked is the merge order:\n{text}");
    assert!(text.contains("backend    docker"), "{text}");
    assert!(text.contains(&format!("label      {label} [red]")), "{text}");
    assert!(text.contains("runtime    "), "{text}");
    s.keys(&["n\r"]);
    s.wait_for("not launched");
    assert_eq!(s.exit_code(), 1);
    assert!(!home.path().join("state").join(&label).exists(), "N left a state directory");
    assert!(home.path().join("state/taken").is_dir());
    assert_eq!(docker_leftovers(&label), "", "N left containers");
}

#[test]
fn ctrl_c_in_a_picker_creates_nothing() {
    let home = home();
    let mut s = Session::start(home.path(), &["beta", "--bottle", "sh", "--backend", "docker"]);
    s.wait_for("label and colour");
    assert!(!s.text().contains("pick an agent"), "an agent on the command line is not asked for");
    s.keys(&["\x03"]);
    s.wait_for("cancelled: nothing was created");
    assert_eq!(s.exit_code(), 1);
    let states: Vec<_> =
        std::fs::read_dir(home.path().join("state")).expect("ls").map(|e| e.expect("e").file_name()).collect();
    assert_eq!(states, ["taken"]);
}

#[test]
fn without_an_agent_or_a_terminal_start_says_what_to_pass() {
    let home = home();
    let out = bot_bottle().arg("--home").arg(home.path()).arg("start").output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no agent to start"), "{stderr}");
    assert!(stderr.contains("bot-bottle start <AGENT>"), "{stderr}");
}
