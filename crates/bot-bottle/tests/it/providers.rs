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
