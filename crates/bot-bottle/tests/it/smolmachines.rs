//! The smolmachines backend from the outside: the pty size bridge on real local ptys, the dry-run
//! plan, and — where a real `smolvm` is installed — the full launch with the escape probes.

use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

use crate::bot_bottle;

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// The bridge runs on an outer terminal and its side channel targets another, local pty (standing
/// in for the guest's): the inner pty takes the outer's size at start and follows every resize.
#[test]
fn the_pty_bridge_makes_the_inner_terminal_follow_the_outer() {
    let system = native_pty_system();
    let size = |rows, cols| PtySize { rows, cols, pixel_width: 0, pixel_height: 0 };
    let inner = system.openpty(size(24, 80)).expect("inner pty");
    let inner_path = inner.master.tty_name().expect("inner tty name");
    let outer = system.openpty(size(30, 100)).expect("outer pty");
    let mut cmd = CommandBuilder::new(assert_cmd::cargo::cargo_bin("bot-bottle"));
    cmd.args(["pty-bridge", "--local", "--target"]);
    cmd.arg(&inner_path);
    cmd.args(["--", "sleep", "30"]);
    // Another directory than the binary's: the bridge is invoked by absolute path from anywhere.
    cmd.cwd(std::env::temp_dir());
    let mut child = outer.slave.spawn_command(cmd).expect("spawn bridge");
    let inner_size = || inner.master.get_size().map(|s| (s.rows, s.cols)).unwrap_or((0, 0));

    wait_for("the start size", Duration::from_secs(10), || inner_size() == (30, 100));
    outer.master.resize(size(45, 132)).expect("resize");
    wait_for("the first resize", Duration::from_secs(10), || inner_size() == (45, 132));
    outer.master.resize(size(20, 60)).expect("resize");
    wait_for("the second resize", Duration::from_secs(10), || inner_size() == (20, 60));

    child.kill().expect("kill bridge");
    let _ = child.wait();
}

/// Without a terminal the bridge only runs its command and passes the exit code through.
#[test]
fn the_pty_bridge_without_a_terminal_passes_the_exit_code() {
    let out = bot_bottle().args(["pty-bridge", "--local", "--", "sh", "-c", "exit 7"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Says on the test run's stderr, past the harness's capture, that a test did not run and why.
fn skipped(why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED {why}");
}

/// Whether a real smolvm is installed, as `doctor` decides it; prints the SKIPPED line otherwise.
fn smolvm_or_skip(test: &str) -> bool {
    let program = std::env::var("BOT_BOTTLE_SMOLVM").unwrap_or_else(|_| "smolvm".into());
    let found = std::process::Command::new(&program).arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        skipped(&format!(
            "smolmachines::{test}: no `{program}` on this machine (it cannot be installed here); \
             this test runs wherever smolvm >= 1.8.0 and /dev/kvm are present"
        ));
    }
    found
}

/// The full launch against a real smolvm: a shell bottle comes up only after the boundary self-test
/// (proxy reachable, the allowed route's host not directly, a non-allowlisted host not, host
/// loopback not), then the escape probes run again through `doctor --bottle`.
#[test]
fn real_smolvm_launch_and_escape_suite() {
    if !smolvm_or_skip("real_smolvm_launch_and_escape_suite") {
        return;
    }
    let _engine = crate::ENGINE.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    let home = crate::lifecycle::Home::new();
    let start = home
        .cmd()
        .args(["start", "demo", "--backend", "smolmachines", "--label", "smol-escape", "--detach", "--yes"])
        .output()
        .expect("start");
    assert!(start.status.success(), "{}", String::from_utf8_lossy(&start.stderr));
    let run = |args: &[&str]| home.cmd().args(args).output().expect("runs");
    let doctor = run(&["doctor", "--bottle", "smol-escape", "--format", "json"]);
    let exec = run(&["exec", "smol-escape", "--", "sh", "-c", "id -un; curl -sS -m 5 https://example.com; echo $?"]);
    let stop = run(&["stop", "smol-escape"]);
    assert!(doctor.status.success(), "{}", String::from_utf8_lossy(&doctor.stdout));
    let exec_out = String::from_utf8_lossy(&exec.stdout);
    assert!(exec_out.starts_with("node"), "{exec_out}");
    assert!(!exec_out.contains("Example Domain"), "a non-allowlisted host answered: {exec_out}");
    assert!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
}

/// A launch refused on an installed smolvm older than 1.8.0 creates nothing.
#[test]
fn real_smolvm_old_versions_are_refused() {
    if !smolvm_or_skip("real_smolvm_old_versions_are_refused") {
        return;
    }
    let version = std::process::Command::new("smolvm").arg("--version").output().expect("version");
    let text = String::from_utf8_lossy(&version.stdout).to_string();
    let too_old = bottle_backend::smolmachines::version::SmolvmVersion::parse(&text).is_some_and(|v| !v.can_launch());
    if !too_old {
        skipped(&format!("smolmachines::real_smolvm_old_versions_are_refused: smolvm {} is new enough", text.trim()));
        return;
    }
    let home = crate::lifecycle::Home::new();
    let out =
        home.cmd().args(["start", "demo", "--backend", "smolmachines", "--detach", "--yes"]).output().expect("start");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot run bottles safely"));
}

/// `start --backend smolmachines --dry-run --format json` shows the whole smolvm plan: network,
/// pinned IP, pack cache key and every command line, and the agent's services at that IP. No smolvm
/// is needed for it (the plan names the version it assumed).
#[test]
fn the_dry_run_shows_the_full_smolvm_plan() {
    let home = crate::lifecycle::Home::new();
    let out = home
        .cmd()
        .env("BOT_BOTTLE_SMOLVM", "/nonexistent/smolvm")
        .args(["start", "demo", "--backend", "smolmachines", "--label", "smol-plan", "--dry-run", "--format", "json"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let smol = &plan["smolmachines"];
    let ip = smol["sidecar"]["ip"].as_str().expect("ip");
    assert!(ip.starts_with("10.210."), "{ip}");
    assert_eq!(plan["ports"]["host"], ip, "the agent reaches its services at the bundle's IP");
    assert_eq!(smol["network"]["name"], "bot-bottle-net-smol-plan");
    assert!(smol["network"]["subnet"].as_str().expect("subnet").ends_with("/28"));
    assert_eq!(smol["allow_cidr"][0], format!("{ip}/32"));
    assert_eq!(smol["pack"]["key"].as_str().expect("key").len(), 32);
    assert_eq!(smol["smolvm"]["detected"], false);
    let commands = smol["commands"].as_array().expect("commands");
    let argv = |step: &str| {
        commands.iter().find(|c| c["step"] == step).and_then(|c| c["argv"].as_array()).cloned().unwrap_or_default()
    };
    let create: Vec<String> = argv("create").iter().map(|a| a.as_str().unwrap_or_default().to_owned()).collect();
    assert!(create.windows(2).any(|w| w[0] == "--allow-cidr" && w[1] == format!("{ip}/32")), "{create:?}");
    assert!(create.iter().any(|a| a == &format!("HTTPS_PROXY=http://{ip}:9099")), "{create:?}");
    let agent = argv("agent");
    assert!(agent.iter().any(|a| a == "runuser"), "{agent:?}");
    assert!(!argv("teardown").is_empty());
    let env = plan["env"].as_array().expect("env");
    let proxy = env.iter().find(|e| e["name"] == "HTTPS_PROXY").expect("proxy env");
    assert_eq!(proxy["value"], format!("http://{ip}:9099"));
    // Nothing was created.
    assert!(!home.path().join("state/smol-plan").exists());
}
