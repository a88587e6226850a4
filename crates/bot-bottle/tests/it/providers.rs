//! The real agent CLIs in real bottles: Claude Code, Codex and Pi from npm, against a local fake
//! of their APIs (`tests/fixtures/scripts/fake-llm.py`, HTTPS with a test CA) that egress reaches
//! through `egress.hosts` / `egress.upstream_ca` — the CLIs keep their real host names and go
//! through the bottle's proxy and its TLS interception like they would in use. And a user plugin.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::Value;

use crate::bot_bottle;
use crate::escape::bridge_gateway;
use crate::lifecycle::{images_ready, leftovers};

/// The fake listens on port 443 of the bridge gateway (the CLIs connect to `host:443`), so the
/// tests that need it take turns.
static PORT_443: Mutex<()> = Mutex::new(());

pub const REPLY: &str = "BOTTLE-FAKE-REPLY-42";

/// The fake LLM APIs for `hosts`, with a certificate from a test CA.
pub struct FakeLlm {
    child: Child,
    pub log: PathBuf,
    pub ca: PathBuf,
    pub gateway: std::net::Ipv4Addr,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl FakeLlm {
    pub fn start(dir: &Path, hosts: &[&str]) -> Self {
        let turn = PORT_443.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let gateway = bridge_gateway();
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "provider tests fake LLM CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let leaf = CertificateParams::new(names).expect("leaf params").signed_by(&leaf_key, &issuer).expect("leaf");
        let (ca, cert, key, log) =
            (dir.join("llm-ca.pem"), dir.join("llm.pem"), dir.join("llm.key"), dir.join("llm.log"));
        std::fs::write(&ca, ca_cert.pem()).expect("write");
        std::fs::write(&cert, leaf.pem()).expect("write");
        std::fs::write(&key, leaf_key.serialize_pem()).expect("write");
        std::fs::write(&log, "").expect("write");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scripts/fake-llm.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(gateway.to_string())
            .arg("443")
            .args([&cert, &key, &log])
            .env("FAKE_REPLY", REPLY)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("reads");
        assert_eq!(line.trim(), "ready", "the fake LLM did not start (port 443 of {gateway} in use?)");
        Self { child, log, ca, gateway, _turn: turn }
    }

    /// Every request the fake saw so far.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bot-bottle home plus a user home (skills, Codex login) for provider bottles.
pub struct ProviderHome {
    pub dir: tempfile::TempDir,
}

impl ProviderHome {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["home/agents", "home/bottles", "home/contrib", "user/.claude/skills"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        Self { dir }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn user(&self) -> PathBuf {
        self.dir.path().join("user")
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    /// `bot-bottle --home <home>` with `HOME` the test's user home and this machine's image cache.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = bot_bottle();
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"), PathBuf::from);
        cmd.env("HOME", self.user()).env("XDG_CACHE_HOME", cache);
        // The agent CLIs come from this machine's npm registry, configured in the real user's npmrc.
        if let Some(real) = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".npmrc")).filter(|p| p.is_file()) {
            cmd.env("NPM_CONFIG_USERCONFIG", real);
        }
        for (k, v) in std::env::vars_os() {
            let name = k.to_string_lossy().to_ascii_lowercase();
            let tls_or_proxy =
                ["node_extra_ca_certs", "ssl_cert_file", "ssl_cert_dir", "https_proxy", "http_proxy", "no_proxy"]
                    .contains(&name.as_str());
            if name.starts_with("npm_config_") || tls_or_proxy {
                cmd.env(k, v);
            }
        }
        if let Some(v) = std::env::var_os("DOCKER_HOST") {
            cmd.env("DOCKER_HOST", v);
        }
        cmd.arg("--home").arg(self.home()).timeout(Duration::from_secs(1500));
        cmd
    }
}

/// A bottle for `template` that sends the fake's hosts to it.
fn llm_bottle(fake: &FakeLlm, hosts: &[&str], provider: &str) -> String {
    let mut s = format!("---\nagent_provider:\n{provider}egress:\n  upstream_ca: {}\n  hosts:\n", fake.ca.display());
    for h in hosts {
        s.push_str(&format!("    {h}: {}\n", fake.gateway));
    }
    s.push_str("---\n");
    s
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn claude_code_answers_headless_with_the_injected_token_prompt_and_skill() {
    let _engine = crate::engine_shared();
    images_ready();
    let h = ProviderHome::new();
    let fake = FakeLlm::start(h.dir.path(), &["api.anthropic.com"]);
    h.write(
        "home/bottles/claude-e2e.md",
        &llm_bottle(&fake, &["api.anthropic.com"], "  template: claude\n  auth_token: E2E_CLAUDE_TOKEN\n"),
    );
    h.write(
        "home/agents/coder.md",
        "---\nbottle: claude-e2e\nskills: [probe-skill]\n---\nSYSTEM-PROMPT-MARKER-7f3a: you are a test agent.\n",
    );
    h.write(
        "user/.claude/skills/probe-skill/SKILL.md",
        "---\nname: probe-skill\ndescription: SKILL-MARKER-19c2 probes things\n---\nProbe.\n",
    );
    let token = format!("sk-ant-oat01-e2e{}", std::process::id());
    let out = h
        .cmd()
        .env("E2E_CLAUDE_TOKEN", &token)
        .args(["start", "coder", "--label", &format!("claude-e2e-{}", std::process::id())])
        .args(["--headless", "--prompt", "Reply with the magic word."])
        .output()
        .expect("runs");
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(REPLY), "{all}");
    assert!(!all.contains(&token), "the token reached the output");

    let requests = fake.requests();
    let messages: Vec<&Value> = requests
        .iter()
        .filter(|r| r["method"] == "POST" && r["path"].as_str().is_some_and(|p| p.starts_with("/v1/messages")))
        .collect();
    assert!(!messages.is_empty(), "no Messages API call reached the fake: {requests:?}");
    for r in &requests {
        let auth = r["headers"]["authorization"].as_str().unwrap_or("");
        assert!(!auth.contains("placeholder"), "the placeholder reached the upstream: {r}");
    }
    for m in &messages {
        assert_eq!(m["headers"]["authorization"], format!("Bearer {token}"), "{m}");
    }
    let bodies: String = messages.iter().map(|m| m["body"].to_string()).collect();
    assert!(bodies.contains("SYSTEM-PROMPT-MARKER-7f3a"), "the appended system prompt is not in the request");
    assert!(bodies.contains("SKILL-MARKER-19c2") || bodies.contains("probe-skill"), "the skill is not in the request");
    assert!(leftovers(&format!("claude-e2e-{}", std::process::id())).is_empty());
}

#[test]
fn a_user_plugin_launches_and_receives_its_prompt() {
    let _engine = crate::engine_shared();
    images_ready();
    let h = ProviderHome::new();
    // A shell-script agent: prints its system prompt file and its headless prompt.
    h.write(
        "home/contrib/echoer/provider.toml",
        "description = \"test plugin\"\ncommand = [\"sh\", \"{{home}}/echoer.sh\"]\n\
         [prompt]\nmode = \"append_file\"\nflag = \"--system\"\n\
         [headless]\nargs = [\"--say\", \"{{prompt}}\"]\n\
         [env]\nECHOER_LABEL = \"{{label}}\"\n\
         [[files]]\npath = \"echoer.sh\"\nmode = 0o755\ncontent = '''\n\
         [ \"$1\" = --system ] && printf 'system: %s\\n' \"$(cat \"$2\")\"\n\
         printf 'label: %s\\n' \"$ECHOER_LABEL\"\nprintf 'prompt: %s\\n' \"$4\"\n'''\n",
    );
    h.write("home/bottles/plug.md", "---\nagent_provider:\n  template: echoer\n---\n");
    h.write("home/agents/echo.md", "---\nbottle: plug\n---\nPLUGIN-SYSTEM-PROMPT\n");
    let label = format!("plugin-{}", std::process::id());
    let out = h
        .cmd()
        .args(["start", "echo", "--label", &label, "--headless", "--prompt", "hello plugin"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout.contains("system: PLUGIN-SYSTEM-PROMPT"), "{stdout}");
    assert!(stdout.contains(&format!("label: {label}")), "{stdout}");
    assert!(stdout.contains("prompt: hello plugin"), "{stdout}");
    assert!(leftovers(&label).is_empty());
}

/// A JWT-shaped token (Codex reads its claims, never its signature).
fn jwt(claims: &Value) -> String {
    use base64::Engine as _;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes()),
        b64(b"real-signature")
    )
}

/// Everything in the bottle's agent container that holds `needle`, searched as root: every file
/// outside /proc and /sys, and every process's environment and command line (but the search's own
/// shell, whose arguments carry the needle).
fn holders(slug: &str, needle: &str) -> String {
    let script = "grep -rlsF -e \"$1\" / --exclude-dir=proc --exclude-dir=sys 2>/dev/null; \
                  for p in /proc/[0-9]*; do [ \"$p\" = /proc/$$ ] && continue; cat $p/environ $p/cmdline 2>/dev/null | grep -qaF -e \"$1\" && echo \"$p\"; done; true";
    let out = Command::new("docker")
        .args(["exec", "-u", "0", &format!("bot-bottle-{slug}"), "sh", "-c", script, "sh", needle])
        .output()
        .expect("docker exec");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One provider bottle, detached: its real credential is nowhere in the bottle, its placeholder is
/// what the agent holds, and the real CLI's request leaves with the real credential.
struct Case<'a> {
    template: &'a str,
    provider: String,
    real: String,
    placeholder_probe: &'a str,
    run: &'a [&'a str],
    env: Vec<(&'a str, String)>,
}

pub fn every_provider_holds_only_its_placeholder() {
    let _engine = crate::engine_shared();
    images_ready();
    let h = ProviderHome::new();
    let hosts = ["api.anthropic.com", "chatgpt.com", "api.openai.com", "llm.test"];
    let fake = FakeLlm::start(h.dir.path(), &hosts);
    let pid = std::process::id();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let auth = serde_json::json!({"chatgpt_account_id": "acct-e2e", "chatgpt_plan_type": "plus"});
    let codex_access = jwt(&serde_json::json!({"exp": now + 86_400, "https://api.openai.com/auth": auth, "n": pid}));
    h.write(
        "user/.codex/auth.json",
        &serde_json::json!({"OPENAI_API_KEY": null, "last_refresh": "2026-11-01T00:00:00Z", "tokens": {
            "access_token": codex_access, "refresh_token": "rt-real-refresh-secret",
            "id_token": jwt(&serde_json::json!({"exp": now + 86_400, "email": "e2e@example.com", "https://api.openai.com/auth": auth})),
            "account_id": "acct-e2e"}})
        .to_string(),
    );
    let claude_token = format!("sk-ant-oat01-escape{pid}");
    let pi_key = format!("pi-real-key-{pid}-abcdef");
    let cases = [
        Case {
            template: "claude",
            provider: "  template: claude\n  auth_token: ESC_CLAUDE_TOKEN\n".into(),
            real: claude_token.clone(),
            placeholder_probe: "printenv CLAUDE_CODE_OAUTH_TOKEN",
            run: &["claude", "--dangerously-skip-permissions", "-p", "hi"],
            env: vec![("ESC_CLAUDE_TOKEN", claude_token.clone())],
        },
        Case {
            template: "codex",
            provider: "  template: codex\n  forward_host_credentials: true\n".into(),
            real: codex_access.clone(),
            placeholder_probe: "cat ~/.codex/auth.json",
            run: &["codex", "exec", "--dangerously-bypass-approvals-and-sandbox", "--skip-git-repo-check", "hi"],
            env: Vec::new(),
        },
        Case {
            template: "pi",
            provider: "  template: pi\n  settings:\n    base_url: https://llm.test/v1\n    model: fake-model\n".into(),
            real: pi_key.clone(),
            placeholder_probe: "cat ~/.pi/agent/models.json",
            run: &["pi", "-p", "--no-session", "hi"],
            env: vec![("ESC_PI_KEY", pi_key.clone())],
        },
    ];
    for case in &cases {
        let mut bottle = llm_bottle(&fake, &hosts, &case.provider);
        if case.template == "pi" {
            // A model server is a normal route: the bottle holds its key, the agent a placeholder.
            bottle = bottle.trim_end_matches("---\n").to_owned()
                + "  routes:\n    - host: llm.test\n      auth:\n        scheme: Bearer\n        token_ref: ESC_PI_KEY\n      dlp:\n        outbound_on_match: redact\n---\n";
        }
        h.write(&format!("home/bottles/{}.md", case.template), &bottle);
        h.write(
            &format!("home/agents/{}-agent.md", case.template),
            &format!("---\nbottle: {}\n---\nBe brief.\n", case.template),
        );
        let slug = format!("esc-{}-{pid}", case.template);
        let mut cmd = h.cmd();
        for (k, v) in &case.env {
            cmd.env(k, v);
        }
        let out = cmd
            .args(["start", &format!("{}-agent", case.template), "--detach", "--yes", "--label", &slug])
            .output()
            .expect("runs");
        let _stop = StopOnDrop(&h, slug.clone());
        assert!(out.status.success(), "{}: {}", case.template, text(&out));
        assert!(!text(&out).contains(&case.real), "{}: the credential reached the output", case.template);

        let found = holders(&slug, &case.real);
        assert!(found.is_empty(), "{}: the real credential is readable in the bottle at:\n{found}", case.template);
        let probe = h.cmd().args(["exec", &slug, "--", "sh", "-c", case.placeholder_probe]).output().expect("runs");
        let held = String::from_utf8_lossy(&probe.stdout);
        assert!(
            probe.status.success() && held.contains("placeholder"),
            "{}: the agent holds no placeholder: {held}",
            case.template
        );

        let before = fake.requests().len();
        let run = h.cmd().args(["exec", &slug, "--"]).args(case.run).output().expect("runs");
        assert!(
            String::from_utf8_lossy(&run.stdout).contains(REPLY),
            "{}: the real CLI did not get the fake reply:\n{}",
            case.template,
            text(&run)
        );
        let sent: Vec<Value> = fake.requests().split_off(before);
        let with_real =
            sent.iter().filter(|r| r["headers"]["authorization"] == format!("Bearer {}", case.real)).count();
        assert!(with_real > 0, "{}: no request carried the real credential: {sent:?}", case.template);
        for r in &sent {
            assert!(
                !r["headers"]["authorization"].as_str().unwrap_or("").contains("placeholder"),
                "{}: a placeholder left the bottle: {r}",
                case.template
            );
        }
    }
}

struct StopOnDrop<'a>(&'a ProviderHome, String);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.cmd().args(["stop", &self.1]).output();
    }
}

#[test]
fn claude_code_interactive_in_tmux_answers_follows_resizes_and_exits() {
    let _engine = crate::engine_shared();
    images_ready();
    let h = ProviderHome::new();
    let fake = FakeLlm::start(h.dir.path(), &["api.anthropic.com"]);
    h.write(
        "home/bottles/claude-tty.md",
        &llm_bottle(&fake, &["api.anthropic.com"], "  template: claude\n  auth_token: E2E_CLAUDE_TOKEN\n"),
    );
    h.write("home/agents/tty.md", "---\nbottle: claude-tty\n---\nBe brief.\n");
    let slug = format!("claude-tty-{}", std::process::id());
    let out = h
        .cmd()
        .env("E2E_CLAUDE_TOKEN", format!("sk-ant-oat01-tty{}", std::process::id()))
        .args(["start", "tty", "--detach", "--yes", "--label", &slug, "--color", "green"])
        .output()
        .expect("runs");
    let _stop = StopOnDrop(&h, slug.clone());
    assert!(out.status.success(), "{}", text(&out));

    let bin = assert_cmd::cargo::cargo_bin("bot-bottle");
    let session = format!("bb-{slug}");
    let exit_file = h.dir.path().join("attach-exit");
    let inner = format!(
        "HOME={} {} --home {} attach {slug}; echo exit=$? > {}; sleep 5",
        h.user().display(),
        bin.display(),
        h.home().display(),
        exit_file.display()
    );
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().expect("tmux (apt install tmux)");
    let started = tmux(&["new-session", "-d", "-s", &session, "-x", "120", "-y", "40", &inner]);
    assert!(started.status.success(), "tmux: {}", String::from_utf8_lossy(&started.stderr));
    let pane = || String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned();
    let wait = |what: &dyn Fn(&str) -> bool, secs: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let p = pane();
            if what(&p) || std::time::Instant::now() > deadline {
                return p;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    // The TUI is up when its status line shows the bottle.
    let drawn = wait(&|p| p.contains(&format!("[bottle {slug}]")), 60);
    let _ = tmux(&["send-keys", "-t", &session, "-l", "Say the magic word."]);
    std::thread::sleep(Duration::from_millis(500));
    let _ = tmux(&["send-keys", "-t", &session, "Enter"]);
    let answered = wait(&|p| p.contains(REPLY), 60);

    // The agent's terminal follows the window.
    let _ = tmux(&["resize-window", "-t", &session, "-x", "100", "-y", "30"]);
    let size = || {
        let probe = "for p in /proc/[0-9]*; do case \"$(cat $p/cmdline 2>/dev/null | tr '\\0' ' ')\" in claude*) \
                     stty size < /proc/${p#/proc/}/fd/0; exit;; esac; done";
        let out = h.cmd().args(["exec", &slug, "--", "sh", "-c", probe]).output().expect("runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut resized = size();
    while resized != "30 100" && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        resized = size();
    }

    // `/exit` ends the session and `attach` passes the exit code through.
    let _ = tmux(&["send-keys", "-t", &session, "-l", "/exit"]);
    std::thread::sleep(Duration::from_millis(500));
    let _ = tmux(&["send-keys", "-t", &session, "Enter"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !exit_file.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let exit = std::fs::read_to_string(&exit_file).unwrap_or_default();
    let last = pane();
    let _ = tmux(&["kill-session", "-t", &session]);
    assert!(drawn.contains(&format!("[bottle {slug}]")), "the TUI never drew its status line:\n{drawn}");
    assert!(answered.contains(REPLY), "the reply never appeared on screen:\n{answered}");
    assert_eq!(resized, "30 100", "the agent's terminal did not follow the window");
    assert_eq!(exit.trim(), "exit=0", "attach did not end cleanly:\n{last}");
    assert!(
        fake.requests().iter().any(|r| r["path"].as_str().is_some_and(|p| p.starts_with("/v1/messages"))),
        "no Messages API call"
    );
}
