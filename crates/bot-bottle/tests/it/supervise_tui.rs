//! The interactive `supervise` view in a real terminal (a detached tmux session), driven with
//! `send-keys` and read with `capture-pane`, against a fake control API that records the decisions
//! it receives. The fake is found through the `BOT_BOTTLE_CONTROL_OVERRIDE` test hook, so no
//! engine is needed.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bot_bottle;

const TOKEN: &str = "ctl-token-6b1f0e9d2c";
const SLUG: &str = "alpha-4k2q";

/// What the fake API holds: the pending proposals, the decision bodies it was sent, and the ids it
/// answers 409 for (decided elsewhere).
#[derive(Default)]
struct State {
    proposals: Vec<Value>,
    decisions: Vec<(String, Value)>,
    conflicting: Vec<String>,
}

/// A control API on 127.0.0.1 speaking the sidecar's contract, one request per connection.
struct FakeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl FakeApi {
    fn start(proposals: Vec<Value>, conflicting: &[&str]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            proposals,
            decisions: Vec::new(),
            conflicting: conflicting.iter().map(|s| (*s).to_owned()).collect(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (served, stopping) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(conn) = conn {
                    let _ = serve(conn, &served);
                }
            }
        });
        Self { addr, state, stop }
    }

    fn decisions(&self) -> Vec<(String, Value)> {
        self.state.lock().expect("state").decisions.clone()
    }

    /// Waits until a decision for `id` arrived.
    fn wait_decision(&self, id: &str, pane: &Tmux) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some((_, body)) = self.decisions().into_iter().find(|(i, _)| i == id) {
                return body;
            }
            assert!(Instant::now() < deadline, "no decision for {id}; screen:\n{}", pane.capture());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_owned());
    let (mut length, mut authorized) = (0usize, false);
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or_default();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().unwrap_or(0);
        }
        if name.eq_ignore_ascii_case("authorization") && value.trim() == format!("Bearer {TOKEN}") {
            authorized = true;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let (status, answer) = if !authorized {
        (401, json!({"error": "missing or wrong token"}))
    } else {
        let mut state = state.lock().expect("state");
        match (method.as_str(), path.strip_prefix("/v1/proposals")) {
            ("GET", Some("")) => (200, Value::Array(state.proposals.clone())),
            ("POST", Some(rest)) => {
                let id = rest.trim_start_matches('/').trim_end_matches("/decision").to_owned();
                let decision: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if state.conflicting.contains(&id) {
                    (409, json!({"error": "already decided"}))
                } else if let Some(at) = state.proposals.iter().position(|p| p["id"] == id.as_str()) {
                    state.proposals.remove(at);
                    state.decisions.push((id, decision));
                    (200, json!({"status": "decided"}))
                } else {
                    (404, json!({"error": "no such proposal"}))
                }
            }
            _ => (404, json!({"error": "not found"})),
        }
    };
    let text = answer.to_string();
    let mut conn = reader.into_inner();
    write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    )
}

fn proposals() -> Vec<Value> {
    let route = |paths: &[&str]| json!({"host": "api.example.com", "matches": [{"paths": paths.iter().map(|p| json!({"type": "prefix", "value": p})).collect::<Vec<_>>()}]});
    vec![
        json!({"id": "p-1", "kind": "egress-route", "created_at": 100, "age_secs": 40, "status": "pending",
               "summary": "add /v1/ on api.example.com",
               "detail": {"host": "api.example.com", "matches": route(&["/v1/"])["matches"], "justification": "the schema lives there",
                          "change": "add", "current": null, "proposed": route(&["/v1/"])}}),
        json!({"id": "p-2", "kind": "egress-token-allow", "created_at": 200, "age_secs": 30, "status": "pending",
               "summary": "github-pat in a POST to api.github.com",
               "detail": {"host": "api.github.com", "port": 443, "method": "POST", "path": "/repos/o/r/issues",
                          "findings": [{"rule": "github-pat", "location": "body"}]}}),
        json!({"id": "p-3", "kind": "git-allow", "created_at": 300, "age_secs": 20, "status": "pending",
               "summary": "aws-access-key allowed inline in creds.txt",
               "detail": {"repo": "origin", "ref": "refs/heads/main", "commit": "0123456789abcdef", "file": "creds.txt", "line": 3, "rule": "aws-access-key"}}),
        json!({"id": "p-4", "kind": "question", "created_at": 400, "age_secs": 10, "status": "pending",
               "summary": "may I delete the snapshots?",
               "detail": {"question": "may I delete the snapshots?", "expects_reply": false}}),
    ]
}

/// A detached tmux session on a private server, killed (and its socket file removed) on drop.
struct Tmux {
    socket: String,
    socket_path: Option<std::path::PathBuf>,
}

impl Tmux {
    fn start(command: &str) -> Self {
        let socket = format!("bb-tui-{}-{}", std::process::id(), rand_suffix());
        let mut tmux = Self { socket, socket_path: None };
        let out = tmux.run(&["new-session", "-d", "-s", "tui", "-x", "120", "-y", "40", command]);
        assert!(out.status.success(), "tmux (apt install tmux): {}", String::from_utf8_lossy(&out.stderr));
        let path = tmux.run(&["display-message", "-p", "-t", "tui", "#{socket_path}"]).stdout;
        tmux.socket_path =
            Some(String::from_utf8_lossy(&path).trim().into()).filter(|p: &std::path::PathBuf| p.is_absolute());
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux (apt install tmux)")
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "tui"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success());
    }

    fn type_text(&self, text: &str) {
        assert!(self.run(&["send-keys", "-t", "tui", "-l", text]).status.success());
    }

    fn capture(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "tui"]).stdout).into_owned()
    }

    /// Waits until the screen shows `text`; returns the screen.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.capture();
            if screen.contains(text) {
                assert!(!screen.contains(TOKEN), "the control token reached the screen:\n{screen}");
                return screen;
            }
            assert!(Instant::now() < deadline, "the screen never showed {text:?}:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        if let Some(path) = &self.socket_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos().into())
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A home whose state directory names the fake bottle's label and colour.
fn home_with_metadata(dir: &Path) -> std::path::PathBuf {
    let home = dir.join("home");
    let state = home.join("state").join(SLUG);
    std::fs::create_dir_all(&state).expect("mkdir");
    let meta = json!({"slug": SLUG, "agent": "demo", "bottles": ["sh"], "backend": "docker",
                      "label": "docs-bot", "color": "cyan", "cwd": "/", "started_at": 0});
    std::fs::write(state.join("metadata.json"), meta.to_string()).expect("metadata");
    home
}

#[test]
fn approve_modify_reject_in_a_real_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = home_with_metadata(dir.path());
    let api = FakeApi::start(proposals(), &["p-4"]);
    // The editor: first saves a route without a host (the view must re-open it with the error),
    // then a valid one with a different path.
    let editor = dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        format!(
            "#!/bin/sh\nn=$(ls {d}/seen-* 2>/dev/null | wc -l)\nn=$((n+1))\ncp \"$1\" {d}/seen-$n.yaml\n\
             if [ $n = 1 ]; then printf 'matches: []\\n' > \"$1\"; exit 0; fi\n\
             printf 'host: api.example.com\\nmatches:\\n  - paths:\\n      - type: prefix\\n        value: /v2/\\n    methods: [GET]\\n' > \"$1\"\n",
            d = quote(&dir.path().display().to_string())
        ),
    )
    .expect("editor");
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let bin = assert_cmd::cargo::cargo_bin("bot-bottle");
    let exit_file = dir.path().join("exit");
    let command = format!(
        "env -i PATH={path} HOME={home} TERM=${{TERM:-screen}} EDITOR={editor} BOT_BOTTLE_CONTROL_OVERRIDE={SLUG}=127.0.0.1:{port}:{TOKEN} \
         {bin} --home {home} supervise; echo exit=$? > {exit}; sleep 60",
        path = quote(&std::env::var("PATH").unwrap_or_default()),
        home = quote(&home.display().to_string()),
        editor = quote(&editor.display().to_string()),
        port = api.addr.port(),
        bin = quote(&bin.display().to_string()),
        exit = quote(&exit_file.display().to_string()),
    );
    let tmux = Tmux::start(&command);

    // All four proposals, oldest first, with the bottle's label; the first one's detail.
    let screen = tmux.wait_for("may I delete the snapshots?");
    for text in ["docs-bot", "egress-route", "egress-token-allow", "git-allow", "question", "new route: no route for"] {
        assert!(screen.contains(text), "{text:?} missing:\n{screen}");
    }
    let order: Vec<usize> = ["add /v1/ on", "github-pat in a POST", "aws-access-key allowed", "may I delete"]
        .iter()
        .map(|summary| screen.find(summary).unwrap_or_else(|| panic!("{summary:?} missing:\n{screen}")))
        .collect();
    assert!(order.is_sorted(), "oldest first:\n{screen}");

    // m: the editor runs twice (the first save has no host), then the edited route is sent.
    tmux.keys(&["m"]);
    tmux.wait_for("approved as modified p-1");
    let modified = api.wait_decision("p-1", &tmux);
    assert_eq!(modified["action"], "modify");
    assert_eq!(
        modified["route"],
        json!({"host": "api.example.com", "matches": [{"paths": [{"type": "prefix", "value": "/v2/"}], "methods": ["GET"]}]})
    );
    let first = std::fs::read_to_string(dir.path().join("seen-1.yaml")).expect("first edit");
    assert!(
        first.contains("host: api.example.com\nmatches:\n  - paths:\n      - type: prefix\n        value: /v1/\n"),
        "{first}"
    );
    let second = std::fs::read_to_string(dir.path().join("seen-2.yaml")).expect("re-opened");
    assert!(second.starts_with("# error: `host` is required\n"), "{second}");

    // a on the held secret asks for the scope; s = the session.
    tmux.wait_for("github-pat in a POST");
    tmux.keys(&["a"]);
    tmux.wait_for("approve p-2: o this request only");
    tmux.keys(&["s"]);
    tmux.wait_for("approved p-2");
    let approved = api.wait_decision("p-2", &tmux);
    assert_eq!((approved["action"].as_str(), approved["scope"].as_str()), (Some("approve"), Some("session")));

    // r with an empty reason is refused, then sent with one.
    tmux.keys(&["r"]);
    tmux.wait_for("reason to reject p-3:");
    tmux.keys(&["Enter"]);
    tmux.wait_for("a reason is required to reject");
    tmux.type_text("rotate the key first");
    tmux.keys(&["Enter"]);
    tmux.wait_for("rejected p-3");
    let rejected = api.wait_decision("p-3", &tmux);
    assert_eq!(rejected, json!({"action": "reject", "reason": "rotate the key first"}));

    // A proposal decided elsewhere (409) is a message, not a crash.
    tmux.keys(&["a"]);
    tmux.wait_for("proposal p-4 was already decided");

    tmux.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exit_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&exit_file).unwrap_or_default().trim(), "exit=0");
    assert_eq!(api.decisions().len(), 3, "{:?}", api.decisions());

    // Every decision is in the host history too.
    let out = bot_bottle()
        .args(["--home", &home.display().to_string(), "supervise", "history", "--format", "json"])
        .output()
        .expect("runs");
    let history: Value = serde_json::from_slice(&out.stdout).expect("json");
    let actions: Vec<&str> = history.as_array().expect("list").iter().filter_map(|r| r["action"].as_str()).collect();
    assert_eq!(actions.len(), 3, "{history}");
    for action in ["modify", "approve", "reject"] {
        assert!(actions.contains(&action), "{history}");
    }
}

#[test]
fn a_bottle_that_stops_answering_loses_its_rows_and_the_view_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = home_with_metadata(dir.path());
    let api = FakeApi::start(proposals(), &[]);
    // A second bottle nothing listens for.
    let dead = TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_port = dead.local_addr().expect("addr").port();
    drop(dead);
    let bin = assert_cmd::cargo::cargo_bin("bot-bottle");
    let command = format!(
        "env -i PATH={path} TERM=${{TERM:-screen}} BOT_BOTTLE_CONTROL_OVERRIDE={SLUG}=127.0.0.1:{port}:{TOKEN},gone-1=127.0.0.1:{dead_port}:x \
         {bin} --home {home} supervise; sleep 60",
        path = quote(&std::env::var("PATH").unwrap_or_default()),
        home = quote(&home.display().to_string()),
        port = api.addr.port(),
        bin = quote(&bin.display().to_string()),
    );
    let tmux = Tmux::start(&command);
    tmux.wait_for("add /v1/ on api.example.com");
    tmux.wait_for("bottle `gone-1` did not answer");
    // The live bottle stops too: its rows go, the view stays up and says why.
    drop(api);
    tmux.wait_for("no pending proposals");
    let screen = tmux.wait_for(&format!("bottle `{SLUG}` did not answer"));
    assert!(!screen.contains("add /v1/"), "{screen}");
    tmux.keys(&["?"]);
    tmux.wait_for("the list refreshes every second");
}

#[test]
fn without_a_terminal_the_view_points_at_the_script_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bot_bottle()
        .args(["--home", &dir.path().display().to_string(), "supervise"])
        .env("BOT_BOTTLE_CONTROL_OVERRIDE", format!("{SLUG}=127.0.0.1:9:{TOKEN}"))
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("supervise needs a terminal; use --once, approve, reject"), "{stderr}");
}

#[test]
fn the_override_feeds_once_too_and_never_prints_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = home_with_metadata(dir.path());
    let api = FakeApi::start(proposals(), &[]);
    let out = bot_bottle()
        .args(["--home", &home.display().to_string(), "supervise", "--once", "--format", "json"])
        .env("BOT_BOTTLE_CONTROL_OVERRIDE", format!("{SLUG}=127.0.0.1:{}:{TOKEN}", api.addr.port()))
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).expect("json");
    let ids: Vec<&str> = listed.as_array().expect("list").iter().filter_map(|p| p["id"].as_str()).collect();
    assert_eq!(ids, ["p-1", "p-2", "p-3", "p-4"]);
    assert_eq!(listed[0]["label"], "docs-bot");
    for stream in [&out.stdout, &out.stderr] {
        assert!(!String::from_utf8_lossy(stream).contains(TOKEN));
    }
}
