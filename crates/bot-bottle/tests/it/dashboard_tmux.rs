//! `bot-bottle dashboard` in a real tmux server with real bottles, driven with `send-keys` and read
//! with `capture-pane`: a launch from the picker streams its bring-up into the right pane and ends
//! in the agent's shell, a second attach respawns that pane (never a third), a pane closed by hand
//! is split again, a held proposal is approved from the dashboard, `x` stops a bottle; with a tmux
//! that does not answer the agent runs in the foreground and the dashboard comes back; killing the
//! tmux server mid-attach ends the dashboard without a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::lifecycle::{Home, images_ready};

const SCRIPT: &str = include_str!("../fixtures/scripts/mcp-request-egress.sh");
const LAUNCH: Duration = Duration::from_secs(120);
const SHORT: Duration = Duration::from_secs(20);

/// A private tmux server with the dashboard in its first pane. On drop: every bottle of the home
/// is stopped and the server killed.
struct Session<'a> {
    socket: String,
    home: &'a Home,
    dashboard: String,
    errors: PathBuf,
    _dir: tempfile::TempDir,
}

impl<'a> Session<'a> {
    /// Starts the dashboard; `env` goes in front of it (e.g. a `TMUX` that points nowhere).
    fn start(home: &'a Home, env: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let errors = dir.path().join("stderr");
        let socket = format!("bb-dash-{}-{}", std::process::id(), nanos());
        let bin = assert_cmd::cargo::cargo_bin("bot-bottle");
        let command = format!(
            "env NO_COLOR=1 {env} {} --home {} dashboard 2>{}; echo \"exit=$?\" >>{}",
            quote(&bin.display().to_string()),
            quote(&home.path().display().to_string()),
            quote(&errors.display().to_string()),
            quote(&errors.display().to_string())
        );
        let mut session = Self { socket, home, dashboard: String::new(), errors, _dir: dir };
        let out = session.tmux(&["new-session", "-d", "-x", "200", "-y", "50", "-P", "-F", "#{pane_id}", &command]);
        assert!(out.status.success(), "tmux: {}", String::from_utf8_lossy(&out.stderr));
        session.dashboard = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        // Keep the pane when the dashboard exits, to read what it left on the screen.
        let pane = session.dashboard.clone();
        session.tmux(&["set-option", "-p", "-t", &pane, "remain-on-exit", "on"]);
        session.wait(&pane, SHORT, |s| s.contains(" bottles · "));
        session
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux (apt install tmux)")
    }

    fn keys(&self, pane: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", pane];
        args.extend_from_slice(keys);
        assert!(self.tmux(&args).status.success(), "send-keys to {pane}");
    }

    fn type_line(&self, pane: &str, text: &str) {
        assert!(self.tmux(&["send-keys", "-t", pane, "-l", text]).status.success());
        self.keys(pane, &["Enter"]);
    }

    fn capture(&self, pane: &str) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", pane]).stdout).into_owned()
    }

    fn panes(&self) -> Vec<String> {
        let out = self.tmux(&["list-panes", "-a", "-F", "#{pane_id}"]);
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    }

    /// The pane that is not the dashboard's (exactly one).
    fn right_pane(&self) -> String {
        let others: Vec<String> = self.panes().into_iter().filter(|p| *p != self.dashboard).collect();
        assert_eq!(others.len(), 1, "one agent pane besides the dashboard: {others:?}");
        others[0].clone()
    }

    /// Waits until `pane` shows what `ok` wants; returns the screen.
    fn wait(&self, pane: &str, within: Duration, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.capture(pane);
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "pane {pane} never showed what was expected:\n{screen}\n--- panes {:?}; dashboard:\n{}\n--- stderr:\n{}",
                self.panes(),
                self.capture(&self.dashboard),
                std::fs::read_to_string(&self.errors).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Moves the dashboard's selection to `name`'s row.
    fn select(&self, name: &str) {
        self.keys(&self.dashboard, &["g"]);
        for _ in 0..40 {
            let screen = self.capture(&self.dashboard);
            if screen.lines().any(|l| l.contains(&format!("▶ {name} "))) {
                return;
            }
            self.keys(&self.dashboard, &["j"]);
            std::thread::sleep(Duration::from_millis(150));
        }
        panic!("no row for {name}:\n{}", self.capture(&self.dashboard));
    }

    /// The slugs this home has state for.
    fn slugs(&self) -> Vec<String> {
        let mut found: Vec<String> = std::fs::read_dir(self.home.path().join("state"))
            .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        found.sort();
        found
    }

    /// Waits for the dashboard to exit; its exit code as the wrapper recorded it.
    fn exit_code(&self) -> String {
        let deadline = Instant::now() + SHORT;
        loop {
            let text = self.stderr_text();
            if let Some(code) = text.lines().find_map(|l| l.strip_prefix("exit=")) {
                return code.trim().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "the dashboard did not exit:\n{}\n{text}",
                self.capture(&self.dashboard)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The dashboard's pid (the child of the pane's shell).
    fn dashboard_pid(&self) -> String {
        let shell = String::from_utf8_lossy(
            &self.tmux(&["display-message", "-p", "-t", &self.dashboard, "#{pane_pid}"]).stdout,
        )
        .trim()
        .to_owned();
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap_or_default();
        children.split_whitespace().next().expect("the dashboard runs under the pane's shell").to_owned()
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.errors).unwrap_or_default()
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        for slug in self.slugs() {
            let _ = self.home.cmd().args(["stop", &slug]).output();
        }
        let _ = self.tmux(&["kill-server"]);
    }
}

fn nanos() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A shell prompt of the agent in `slug` on the last non-empty line.
fn at_prompt(slug: &str) -> impl Fn(&str) -> bool + '_ {
    move |screen: &str| {
        screen.lines().rev().find(|l| !l.trim().is_empty()).is_some_and(|l| l.starts_with(&format!("node@{slug}")))
    }
}

fn launch(home: &Home, label: &str) {
    let out = home.cmd().args(["start", "demo", "--yes", "--detach", "--label", label]).output().expect("runs");
    assert!(out.status.success(), "start: {}", String::from_utf8_lossy(&out.stderr));
}

fn with_broken_agent(home: &Home) {
    std::fs::write(home.path().join("agents/broken.md"), "---\nbottle: no-such-bottle\n---\nBroken.\n").expect("write");
}

/// It holds the engine alone: other tests' bottles would show up in its dashboard and their load
/// would only slow the panes it waits for.
#[test]
fn launch_attach_respawn_resplit_approve_and_stop_in_tmux() {
    images_ready();
    let _engine = crate::engine_exclusive();
    let home = Home::new();
    with_broken_agent(&home);
    let s = Session::start(&home, "");
    let dash = s.dashboard.clone();

    // `n`: the picker lists the broken agent with its error, the good one is preselected.
    s.keys(&dash, &["n"]);
    let picker = s.wait(&dash, SHORT, |x| x.contains("launch an agent"));
    assert!(picker.contains("broken") && picker.contains("error:") && picker.contains("▶ demo"), "{picker}");
    s.keys(&dash, &["Enter"]);
    // The bring-up streams into the right pane, then the agent's shell starts there.
    s.wait(&dash, SHORT, |_| s.panes().len() == 2);
    let first_pane = s.right_pane();
    let screen = s.wait(&first_pane, LAUNCH, |x| x.contains("boundary self-test") || x.contains("node@"));
    assert!(!screen.contains("panicked"), "{screen}");
    let slugs = s.slugs();
    assert_eq!(slugs.len(), 1, "one bottle launched: {slugs:?}");
    let first = slugs[0].clone();
    s.wait(&first_pane, LAUNCH, at_prompt(&first));
    s.type_line(&first_pane, "echo hi-$((6*7))");
    s.wait(&first_pane, SHORT, |x| x.contains("\nhi-42"));
    // The shell template has no resume form: `attach --resume` says so and the dashboard does not
    // use it.
    let out = s.home.cmd().args(["attach", "--resume", &first]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no resume form"));

    // A second bottle: Enter respawns the same pane.
    let second = format!("dt{}", std::process::id() % 100_000);
    launch(s.home, &second);
    s.wait(&dash, SHORT, |x| x.contains(&second));
    s.select(&second);
    s.keys(&dash, &["Enter"]);
    s.wait(&first_pane, LAUNCH, at_prompt(&second));
    assert_eq!(s.panes().len(), 2, "respawned, not split: {:?}", s.panes());
    assert_eq!(s.right_pane(), first_pane);

    // The operator closes the agent pane; the next attach splits a new one.
    assert!(s.tmux(&["kill-pane", "-t", &first_pane]).status.success());
    s.select(&first);
    s.keys(&dash, &["Enter"]);
    s.wait(&dash, SHORT, |_| s.panes().len() == 2);
    let new_pane = s.right_pane();
    assert_ne!(new_pane, first_pane);
    s.wait(&new_pane, LAUNCH, at_prompt(&first));

    // A held request is approved from the dashboard; the agent's call returns.
    let call = s
        .home
        .spawnable()
        .args(["exec", &first, "--", "bash", "-c", SCRIPT, "_", "example.org"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    s.wait(&dash, SHORT, |x| x.contains("egress-route") && x.contains("1 pending"));
    s.keys(&dash, &["a"]);
    let answer = call.wait_with_output().expect("waits");
    let answer = String::from_utf8_lossy(&answer.stdout);
    assert!(answer.contains(r#""status":"approved""#), "{answer}");
    s.wait(&dash, SHORT, |x| x.contains("approved") && x.contains("0 pending"));

    // `x` asks, `y` stops.
    s.keys(&dash, &["Tab"]);
    s.select(&second);
    s.keys(&dash, &["x"]);
    s.wait(&dash, SHORT, |x| x.contains(&format!("stop {second}?")));
    s.keys(&dash, &["y"]);
    s.wait(&dash, LAUNCH, |x| x.contains(&format!("stopped `{second}`")));

    // `q` quits with 0 and nothing panicked.
    s.keys(&dash, &["q"]);
    assert_eq!(s.exit_code(), "0", "{}", s.stderr_text());
    assert!(!s.stderr_text().contains("panicked"), "{}", s.stderr_text());
}

#[test]
fn tmux_that_fails_falls_back_to_the_foreground_and_a_dead_server_ends_the_dashboard_cleanly() {
    images_ready();
    let _engine = crate::engine_shared();
    let home = Home::new();
    let slug = format!("df{}", std::process::id() % 100_000);
    launch(&home, &slug);

    // `$TMUX` names a server that does not exist: every tmux call fails.
    let s = Session::start(&home, "TMUX=/nonexistent/bb-tmux-socket,1,0");
    let dash = s.dashboard.clone();
    s.wait(&dash, SHORT, |x| x.contains(&slug));
    s.select(&slug);
    s.keys(&dash, &["Enter"]);
    s.wait(&dash, LAUNCH, at_prompt(&slug));
    assert_eq!(s.panes().len(), 1, "no pane was made");
    s.type_line(&dash, "echo fg-$((6*7)); exit");
    let back = s.wait(&dash, SHORT, |x| x.contains("ran on this terminal instead"));
    assert!(back.contains(" bottles · "), "the dashboard is back:\n{back}");
    s.keys(&dash, &["q"]);
    assert_eq!(s.exit_code(), "0", "{}", s.stderr_text());
    // The agent's output stays on the terminal the dashboard leaves.
    s.wait(&dash, SHORT, |x| x.contains("fg-42"));
    assert!(!s.stderr_text().contains("panicked"), "{}", s.stderr_text());

    // A real server this time, killed while the agent runs in the right pane.
    let live = Session::start(&home, "");
    let dash = live.dashboard.clone();
    let pid = live.dashboard_pid();
    live.wait(&dash, SHORT, |x| x.contains(&slug));
    live.select(&slug);
    live.keys(&dash, &["Enter"]);
    live.wait(&dash, SHORT, |_| live.panes().len() == 2);
    live.wait(&live.right_pane(), LAUNCH, at_prompt(&slug));
    assert!(live.tmux(&["kill-server"]).status.success());
    let proc_dir = Path::new("/proc").join(&pid);
    let deadline = Instant::now() + SHORT;
    while proc_dir.exists() && !std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default().contains(") Z ") {
        assert!(Instant::now() < deadline, "the dashboard (pid {pid}) outlived its tmux server");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!live.stderr_text().contains("panicked"), "{}", live.stderr_text());
    // The bottle itself is untouched.
    let out = live.home.cmd().args(["exec", &slug, "--", "true"]).output().expect("runs");
    assert!(out.status.success(), "the bottle survived: {}", String::from_utf8_lossy(&out.stderr));
    drop(s);
}
