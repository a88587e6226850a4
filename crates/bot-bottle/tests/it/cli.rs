//! The command line itself: what `--help` offers, flag validation, dry runs that create nothing,
//! doctor and completions.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{bot_bottle, transcript};

fn examples_home() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/home")
}

/// A private copy of `examples/home`, so tests can watch it for writes.
fn example_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_tree(&examples_home(), tmp.path());
    tmp
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).expect("read") {
        let entry = entry.expect("entry");
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            fs::create_dir_all(&dest).expect("mkdir");
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}

fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("read") {
            let p = e.expect("entry").path();
            out.push(p.strip_prefix(root).expect("prefix").display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn help_lists_only_working_commands() {
    let out = bot_bottle().arg("--help").output().expect("runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .expect("commands section")
        .split("Options:")
        .next()
        .expect("section end")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        [
            "info",
            "start",
            "list",
            "exec",
            "attach",
            "cp",
            "stop",
            "cleanup",
            "supervise",
            "dashboard",
            "doctor",
            "image",
            "completions",
            "audit",
            "help"
        ]
    );
}

#[test]
fn a_broken_plugin_is_refused_naming_its_file_line_and_key_and_creates_nothing() {
    let home = tempfile::tempdir().expect("tempdir");
    for dir in ["agents", "bottles", "contrib/mine"] {
        fs::create_dir_all(home.path().join(dir)).expect("mkdir");
    }
    fs::write(home.path().join("agents/a.md"), "---\nbottle: p\n---\nprompt\n").expect("write");
    fs::write(home.path().join("bottles/p.md"), "---\nagent_provider:\n  template: mine\n---\n").expect("write");
    fs::write(
        home.path().join("contrib/mine/provider.toml"),
        "command = [\"/usr/local/bin/mine\"]\n\n[headless]\nargz = [\"{{prompt}}\"]\n",
    )
    .expect("write");
    let before = tree(home.path());
    let out = bot_bottle().arg("--home").arg(home.path()).args(["start", "a", "--dry-run"]).output().expect("runs");
    let text = transcript(&out, home.path());
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("contrib/mine/provider.toml:4:1"), "{text}");
    assert!(text.contains("did you mean `args`?"), "{text}");
    assert_eq!(tree(home.path()), before, "a refused start wrote into the home");

    // Fixed, the plugin plans like a built-in.
    fs::write(
        home.path().join("contrib/mine/provider.toml"),
        "command = [\"/usr/local/bin/mine\"]\n[[routes]]\nhost = \"llm.example.com\"\n",
    )
    .expect("write");
    let out = bot_bottle().arg("--home").arg(home.path()).args(["start", "a", "--dry-run"]).output().expect("runs");
    let text = transcript(&out, home.path());
    assert!(out.status.success(), "{text}");
    assert!(text.contains("provider   mine (plugin)") && text.contains("llm.example.com"), "{text}");
}

#[test]
fn start_without_a_terminal_asks_for_yes_and_creates_nothing() {
    let home = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(home.path().join("agents")).expect("mkdir");
    fs::create_dir_all(home.path().join("bottles")).expect("mkdir");
    fs::write(home.path().join("agents/a.md"), "---\nbottle: sh\n---\nprompt\n").expect("write");
    fs::write(home.path().join("bottles/sh.md"), "---\nagent_provider:\n  template: shell\n---\n").expect("write");
    let before = tree(home.path());
    let out = bot_bottle().arg("--home").arg(home.path()).args(["start", "a"]).output().expect("runs");
    let text = transcript(&out, home.path());
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("--yes"), "{text}");
    assert_eq!(tree(home.path()), before, "an unconfirmed start wrote into the home");
}

#[test]
fn dry_run_prints_a_complete_plan_and_creates_nothing() {
    let home = example_copy();
    let before = tree(home.path());
    let out = bot_bottle()
        .env("HOME", "/nonexistent-home")
        .env("BOT_BOTTLE_CLAUDE_OAUTH_TOKEN", "sk-ant-oat01-planted-claude-token-value")
        .env("BOT_BOTTLE_GITEA_TOKEN", "planted-gitea-token-value-abcdef")
        .arg("--home")
        .arg(home.path())
        .args(["start", "implementer", "--dry-run", "--format", "json"])
        .output()
        .expect("runs");
    let text = transcript(&out, home.path());
    assert!(out.status.success(), "{text}");
    assert_eq!(tree(home.path()), before, "a dry run wrote into the home");
    assert!(!Path::new("/nonexistent-home").exists(), "a dry run created $HOME");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan is JSON");
    assert_eq!(plan["slug"].as_str().map(|s| s.starts_with("implementer-")), Some(true));
    assert_eq!(plan["backend"], "docker");
    assert_eq!(plan["bottles"], serde_json::json!(["claude", "gitea-dev"]));
    assert_eq!(plan["provider"]["template"], "claude");
    // The manifest's two routes and the provider's `api.anthropic.com`, with the token as a slot.
    assert_eq!(plan["egress"]["routes"].as_array().map(Vec::len), Some(3));
    let anthropic = plan["egress"]["routes"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["host"] == "api.anthropic.com"))
        .expect("provider route");
    assert_eq!(anthropic["auth"]["token"], "«BOT_BOTTLE_CLAUDE_OAUTH_TOKEN»");
    assert_eq!(anthropic["from"]["kind"], "provider");
    assert_eq!(anthropic["placeholder"]["value"], "bot-bottle-placeholder-claude-oauth-token");
    assert_eq!(plan["git_gate"]["repos"][0]["gate_url"], "http://127.0.0.1:9420/bot-bottle.git");
    assert!(plan["state_dir"].as_str().is_some_and(|s| s.ends_with(plan["slug"].as_str().unwrap_or("?"))));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for secret in ["sk-ant-oat01-planted-claude-token-value", "planted-gitea-token-value-abcdef"] {
        assert!(!text.contains(secret), "secret leaked into the plan output");
    }
    assert!(stdout.contains("«SENTRY_DSN»"));
    insta::assert_snapshot!("examples_plan_json", text);
}

#[test]
fn examples_text_plan() {
    let home = example_copy();
    let out = bot_bottle()
        .env("HOME", "/nonexistent-home")
        .arg("--home")
        .arg(home.path())
        .args(["start", "implementer", "--dry-run"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    insta::assert_snapshot!("examples_plan_text", transcript(&out, home.path()));
}

#[test]
fn flag_errors_are_explained() {
    let home = example_copy();
    let run = |args: &[&str]| {
        let out = bot_bottle().env("HOME", "/nonexistent-home").arg("--home").arg(home.path()).args(args).output();
        transcript(&out.expect("runs"), home.path())
    };
    let label = run(&["start", "implementer", "--dry-run", "--label", "has space"]);
    assert!(label.starts_with("exit: 2") && label.contains("--label") && label.contains("hint:"), "{label}");
    let color = run(&["start", "implementer", "--dry-run", "--color", "chartreuse"]);
    assert!(color.starts_with("exit: 2") && color.contains("not a colour"), "{color}");
    let bottle = run(&["start", "implementer", "--dry-run", "--bottle", "gitea-devv"]);
    assert!(bottle.starts_with("exit: 2") && bottle.contains("did you mean `gitea-dev`?"), "{bottle}");
    let agent = run(&["info", "implementr"]);
    assert!(agent.starts_with("exit: 2") && agent.contains("did you mean `implementer`?"), "{agent}");
    let backend = run(&["start", "implementer", "--dry-run", "--backend", "vmware"]);
    assert!(backend.starts_with("exit: 2") && backend.contains("docker"), "{backend}");
}

#[test]
fn backend_comes_from_the_environment_when_no_flag() {
    let home = example_copy();
    let out = bot_bottle()
        .env("HOME", "/nonexistent-home")
        .env("BOT_BOTTLE_BACKEND", "namespaces")
        .arg("--home")
        .arg(home.path())
        .args(["start", "implementer", "--dry-run", "--format", "json"])
        .output()
        .expect("runs");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(plan["backend"], "namespaces");
}

#[test]
fn home_from_environment_variable() {
    let home = example_copy();
    let out = bot_bottle()
        .env("HOME", "/nonexistent-home")
        .env("BOT_BOTTLE_HOME", home.path())
        .args(["info", "--format", "json"])
        .output()
        .expect("runs");
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listing["agents"][0]["name"], "implementer");
    assert_eq!(listing["bottles"].as_array().map(Vec::len), Some(2));
}

#[test]
fn doctor_reports_every_check_and_fails_on_an_unwritable_home() {
    let good = tempfile::tempdir().expect("tempdir");
    let out = bot_bottle().arg("--home").arg(good.path()).args(["doctor", "--format", "json"]).output().expect("runs");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<&str> =
        report["checks"].as_array().expect("checks").iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(
        names,
        ["docker engine", "gvisor (runsc)", "smolvm", "/dev/kvm", "user namespaces", "mmdebstrap", "home"]
    );
    let home_check = &report["checks"][6];
    assert_eq!(home_check["status"], "pass");
    assert_eq!(out.status.success(), report["ok"] == true);

    // /proc accepts no new files, even from root.
    let out =
        bot_bottle().args(["--home", "/proc/bot-bottle-home", "doctor", "--format", "json"]).output().expect("runs");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["checks"][6]["status"], "fail");
    assert_eq!(report["ok"], false);
    assert_eq!(out.status.code(), Some(1));

    let text = bot_bottle().args(["--home", "/proc/bot-bottle-home", "doctor"]).output().expect("runs");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("FAIL") && text.contains("hint:"), "{text}");
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = bot_bottle().args(["completions", shell]).output().expect("runs");
        assert!(out.status.success());
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains("bot-bottle") && script.contains("doctor"), "{shell}");
    }
}

/// Needs the Docker engine (`./scripts/setup --no-build`; CI starts it): fails, never skips, without.
#[test]
fn image_build_offline_puts_this_binary_in_the_sidecar() {
    let out = bot_bottle()
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .args(["image", "build", "--offline", "all"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "image build failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tags: Vec<(&str, &str)> = stdout.lines().filter_map(|l| l.split_once(' ')).collect();
    assert_eq!(tags.iter().map(|t| t.0).collect::<Vec<_>>(), ["agent", "sidecar"], "{stdout}");
    assert!(tags[0].1.starts_with("bot-bottle-agent-base:"));
    assert!(tags[1].1.starts_with("bot-bottle-sidecar:"));

    let version = std::process::Command::new("docker")
        .args(["run", "--rm", "--network", "none", tags[1].1, "bot-bottle", "--version"])
        .output()
        .expect("docker CLI runs");
    assert!(version.status.success(), "{}", String::from_utf8_lossy(&version.stderr));
    assert_eq!(String::from_utf8_lossy(&version.stdout), format!("bot-bottle {}\n", env!("CARGO_PKG_VERSION")));
}
