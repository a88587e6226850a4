//! The smolmachines backend from the outside: the pty size bridge on real local ptys, the dry-run
//! plan, and — where a real `smolvm` is installed — the full launch with the escape probes.

use std::path::Path;
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

/// A stand-in `smolvm` that only prints a version: the real one cannot be installed on this
/// machine, and version detection and the refusal need nothing more than `--version`.
fn fake_smolvm(dir: &Path, version: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("smolvm");
    std::fs::write(&path, format!("#!/bin/sh\n[ \"$1\" = --version ] && echo 'smolvm {version}' && exit 0\necho \"Error: this stand-in only knows --version\" >&2\nexit 1\n")).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// `doctor` names the installed version and calls the ones whose `--from` drops the allow-list
/// unsafe; a launch on such a version is refused before anything is built or created.
#[test]
fn known_bad_versions_are_reported_and_refused() {
    let tools = tempfile::tempdir().expect("tools");
    let old = fake_smolvm(tools.path(), "0.8.0");
    let home = crate::lifecycle::Home::new();
    let doctor =
        home.cmd().env("BOT_BOTTLE_SMOLVM", &old).args(["doctor", "--format", "json"]).output().expect("doctor");
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).expect("json");
    let check = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "smolvm")
        .expect("smolvm check")
        .clone();
    assert_eq!(check["status"], "warn", "{check}");
    let detail = check["detail"].as_str().expect("detail");
    assert!(detail.contains("0.8.0") && detail.contains("unsafe") && detail.contains("--allow-cidr"), "{detail}");

    let start = home
        .cmd()
        .env("BOT_BOTTLE_SMOLVM", &old)
        .args(["start", "demo", "--backend", "smolmachines", "--label", "smol-old", "--detach", "--yes"])
        .output()
        .expect("start");
    let stderr = String::from_utf8_lossy(&start.stderr);
    assert!(!start.status.success(), "{stderr}");
    assert!(stderr.contains("smolvm 0.8.0 cannot run bottles safely") && stderr.contains("1.8.0"), "{stderr}");
    assert!(!home.path().join("state/smol-old").exists(), "nothing was created");
    let networks = std::process::Command::new("docker")
        .args(["network", "ls", "-q", "--filter", "name=bot-bottle-net-smol-old"])
        .output();
    if let Ok(out) = networks {
        assert!(out.stdout.is_empty(), "no bundle network: {}", String::from_utf8_lossy(&out.stdout));
    }

    let newer = tempfile::tempdir().expect("tools");
    let good = fake_smolvm(newer.path(), "1.9.3");
    let doctor =
        home.cmd().env("BOT_BOTTLE_SMOLVM", &good).args(["doctor", "--format", "json"]).output().expect("doctor");
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).expect("json");
    let check =
        report["checks"].as_array().expect("checks").iter().find(|c| c["name"] == "smolvm").expect("check").clone();
    assert_eq!(check["status"], "pass", "{check}");
    // The dry run plans for the version it found.
    let plan = home
        .cmd()
        .env("BOT_BOTTLE_SMOLVM", &good)
        .args(["start", "demo", "--backend", "smolmachines", "--dry-run", "--format", "json"])
        .output()
        .expect("plan");
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("json");
    assert_eq!(plan["smolmachines"]["smolvm"]["detected"], true);
    assert_eq!(plan["smolmachines"]["smolvm"]["version"], "1.9.3");
}

/// `fake-smolvm` (tests/fixtures/scripts): smolvm's CLI played on Docker, because the real one cannot
/// be installed here. Its "machines" are containers whose allow-list is enforced with iptables.
fn stand_in() -> std::path::PathBuf {
    crate::fixtures_dir().join("../scripts/fake-smolvm")
}

fn docker_lines(args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new("docker").args(args).output().expect("docker");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// A home whose bottles run on the stand-in, with its own machine store; the bottle `label` is
/// stopped on drop, whatever an assertion did, so the stand-in's firewall rules go with it.
struct StandIn {
    home: crate::lifecycle::Home,
    machines: tempfile::TempDir,
    label: &'static str,
}

impl StandIn {
    fn new(label: &'static str) -> Self {
        Self { home: crate::lifecycle::Home::new(), machines: tempfile::tempdir().expect("state"), label }
    }

    fn cmd(&self) -> assert_cmd::Command {
        let mut c = self.home.cmd();
        c.env("BOT_BOTTLE_SMOLVM", stand_in()).env("FAKE_SMOLVM_STATE", self.machines.path());
        c
    }

    fn start(&self, env: &[(&str, &str)]) -> std::process::Output {
        let mut c = self.cmd();
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(["start", "demo", "--backend", "smolmachines", "--label", self.label, "--detach", "--yes"])
            .output()
            .expect("start")
    }

    fn machine_exists(&self, name: &str) -> bool {
        self.machines.path().join(name).exists()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.cmd().args(["stop", self.label]).output();
    }
}

/// The whole launch path on the stand-in: the real bundle (network on a pinned subnet, sidecar at
/// its IP), packing and the cache, the machine with its allow-list, provisioning through exec with
/// tar on stdin, the self-test, then exec/list/doctor/stop — and nothing left afterwards.
#[test]
fn stand_in_launch_provisions_passes_the_self_test_and_stops_clean() {
    let _engine = crate::ENGINE.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    let world = StandIn::new("smol-e2e");
    let start = world.start(&[]);
    assert!(start.status.success(), "launch failed:\n{}", String::from_utf8_lossy(&start.stderr));
    assert_eq!(String::from_utf8_lossy(&start.stdout).trim(), "smol-e2e");

    let exec = |script: &str| {
        let out = world.cmd().args(["exec", "smol-e2e", "--", "sh", "-c", script]).output().expect("exec");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let (code, who) = exec("id -un; echo $HOME; pwd");
    assert_eq!((code, who.lines().collect::<Vec<_>>()), (Some(0), vec!["node", "/home/node", "/home/node"]));
    let (_, files) = exec("cat ~/.gitconfig; stat -c '%U %a' ~/.gitconfig /opt/bot-bottle/bot-bottle ~/.mcp.json");
    assert!(files.contains("Lifecycle Agent"), "{files}");
    assert!(files.contains("node 644") && files.contains("root 755"), "{files}");
    let (_, env) = exec("env");
    let ip = env.lines().find_map(|l| l.strip_prefix("HTTPS_PROXY=http://")).and_then(|p| p.strip_suffix(":9099"));
    let ip = ip.unwrap_or_else(|| panic!("proxy env: {env}")).to_owned();
    assert!(ip.starts_with("10.210."), "{ip}");
    assert!(env.contains("GREETING=hello from the manifest"), "the manifest env reaches every exec: {env}");
    let (_, mcp) = exec("cat ~/.mcp.json");
    assert!(mcp.contains(&format!("http://{ip}:9100/mcp")), "{mcp}");

    let list = world.cmd().args(["list", "--format", "json"]).output().expect("list");
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    let row = rows.as_array().expect("rows").iter().find(|r| r["slug"] == "smol-e2e").expect("listed").clone();
    assert_eq!((row["backend"].as_str(), row["status"].as_str()), (Some("smolmachines"), Some("running")), "{row}");
    assert_eq!(row["services"][0]["address"], format!("{ip}:9099"));

    let doctor = world.cmd().args(["doctor", "--bottle", "smol-e2e", "--format", "json"]).output().expect("doctor");
    let report = String::from_utf8_lossy(&doctor.stdout).to_string();
    assert!(doctor.status.success(), "{report}");
    assert!(report.contains(&format!("control {ip}:9200")), "{report}");
    assert!(!report.contains("\"interfaces\""), "a VM's interface probes do not apply: {report}");

    // Work comes out through `cp` (tar in the machine, unpacked without trusting it).
    let out_dir = tempfile::tempdir().expect("dest");
    let dest = out_dir.path().join("gitconfig");
    let cp = world.cmd().arg("cp").arg("smol-e2e:/home/node/.gitconfig").arg(&dest).output().expect("cp");
    assert!(cp.status.success(), "{}", String::from_utf8_lossy(&cp.stderr));
    assert!(std::fs::read_to_string(&dest).expect("copied").contains("Lifecycle Agent"));
    let again = world.cmd().arg("cp").arg("smol-e2e:/home/node/.gitconfig").arg(&dest).output().expect("cp");
    assert!(!again.status.success(), "an existing destination needs --force");

    // The supervise plane answers over the state directory's socket.
    let supervise = world.cmd().args(["supervise", "--once", "--format", "json"]).output().expect("supervise");
    assert!(supervise.status.success(), "{}", String::from_utf8_lossy(&supervise.stderr));

    let stop = world.cmd().args(["stop", "smol-e2e"]).output().expect("stop");
    assert!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
    assert!(docker_lines(&["ps", "-aq", "--filter", "name=bot-bottle-sidecars-smol-e2e"]).is_empty());
    assert!(docker_lines(&["network", "ls", "-q", "--filter", "name=bot-bottle-net-smol-e2e"]).is_empty());
    assert!(!world.machine_exists("bot-bottle-smol-e2e"), "the machine is deleted");
    let pack_left = world
        .machines
        .path()
        .read_dir()
        .expect("dir")
        .any(|e| e.expect("entry").file_name().to_string_lossy().starts_with("bbpack-"));
    assert!(!pack_left, "packing left its machine");
}

/// A smolvm that accepts the allow-list and ignores it (as versions before 1.8 did with `--from`)
/// is caught by the self-test — the host canary answers through the bundle's gateway — and the
/// launch removes everything it created.
#[test]
fn stand_in_that_ignores_the_allow_list_is_refused_by_the_self_test() {
    let _engine = crate::ENGINE.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    let world = StandIn::new("smol-open");
    let start = world.start(&[("FAKE_SMOLVM_OPEN", "1")]);
    let stderr = String::from_utf8_lossy(&start.stderr);
    assert!(!start.status.success(), "an open network must not launch:\n{stderr}");
    assert!(stderr.contains("boundary self-test failed"), "{stderr}");
    assert!(stderr.contains("ESCAPED") || stderr.contains("tcp 10.210."), "{stderr}");
    assert!(docker_lines(&["ps", "-aq", "--filter", "name=bot-bottle-sidecars-smol-open"]).is_empty(), "sidecar left");
    assert!(
        docker_lines(&["network", "ls", "-q", "--filter", "name=bot-bottle-net-smol-open"]).is_empty(),
        "network left"
    );
    assert!(!world.machine_exists("bot-bottle-smol-open"), "machine left");
    assert!(!world.home.path().join("state/smol-open").exists(), "state left");
}

/// What a dead bottle leaves (its sidecar gone, its machine still up) is listed as degraded and
/// removed by `cleanup`: machine, sidecar container, network.
#[test]
fn stand_in_leftovers_are_cleaned_up() {
    let _engine = crate::ENGINE.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    let world = StandIn::new("smol-dead");
    let start = world.start(&[]);
    assert!(start.status.success(), "{}", String::from_utf8_lossy(&start.stderr));
    docker_lines(&["rm", "-f", "bot-bottle-sidecars-smol-dead"]);
    let list = world.cmd().args(["list", "--format", "json"]).output().expect("list");
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    let row = rows.as_array().expect("rows").iter().find(|r| r["slug"] == "smol-dead").expect("listed").clone();
    assert_eq!(row["status"], "degraded", "{row}");
    let preview = world.cmd().args(["cleanup", "-n"]).output().expect("cleanup -n");
    let preview = String::from_utf8_lossy(&preview.stdout).to_string();
    assert!(
        preview.contains("machine bot-bottle-smol-dead") && preview.contains("network bot-bottle-net-smol-dead"),
        "{preview}"
    );
    let cleanup = world.cmd().args(["cleanup", "--yes"]).output().expect("cleanup");
    assert!(cleanup.status.success(), "{}", String::from_utf8_lossy(&cleanup.stderr));
    assert!(!world.machine_exists("bot-bottle-smol-dead"), "machine left");
    assert!(
        docker_lines(&["network", "ls", "-q", "--filter", "name=bot-bottle-net-smol-dead"]).is_empty(),
        "network left"
    );
    let list = world.cmd().args(["list", "--format", "json"]).output().expect("list");
    assert!(!String::from_utf8_lossy(&list.stdout).contains("smol-dead"), "still listed");
}

/// `attach` on a terminal goes through the pty bridge into an interactive exec as the agent: the
/// shell answers, and its terminal has this terminal's size, also after a resize.
#[test]
fn stand_in_attach_runs_the_agent_on_a_terminal_of_this_size() {
    let _engine = crate::ENGINE.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    let world = StandIn::new("smol-tty");
    let start = world.start(&[]);
    assert!(start.status.success(), "{}", String::from_utf8_lossy(&start.stderr));

    let size = |rows, cols| PtySize { rows, cols, pixel_width: 0, pixel_height: 0 };
    let pty = native_pty_system().openpty(size(33, 101)).expect("pty");
    let mut cmd = CommandBuilder::new(assert_cmd::cargo::cargo_bin("bot-bottle"));
    cmd.env_clear();
    for (k, v) in [
        ("PATH", std::env::var_os("PATH").unwrap_or_default()),
        ("HOME", std::env::var_os("HOME").unwrap_or_default()),
        ("TERM", "xterm".into()),
        ("NO_COLOR", "1".into()),
        ("BOT_BOTTLE_SMOLVM", stand_in().into_os_string()),
        ("FAKE_SMOLVM_STATE", world.machines.path().as_os_str().to_owned()),
    ] {
        cmd.env(k, v);
    }
    cmd.arg("--home");
    cmd.arg(world.home.path());
    cmd.args(["attach", "smol-tty"]);
    let mut child = pty.slave.spawn_command(cmd).expect("attach");
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().expect("reader");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut reader, &mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().expect("lock").push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut writer = pty.master.take_writer().expect("writer");
    let mut say = |line: &str| {
        std::io::Write::write_all(&mut writer, line.as_bytes()).expect("write");
        std::io::Write::flush(&mut writer).expect("flush");
    };
    let has = |needle: &str| seen.lock().expect("lock").contains(needle);
    std::thread::sleep(Duration::from_millis(1500));
    say("echo who=$(id -un)\r");
    wait_for("the agent's shell", Duration::from_secs(20), || has("who=node"));
    say("echo size=$(stty size | tr ' ' x)\r");
    wait_for("the terminal size", Duration::from_secs(10), || has("size=33x101"));
    pty.master.resize(size(40, 120)).expect("resize");
    std::thread::sleep(Duration::from_millis(1500));
    say("echo size=$(stty size | tr ' ' x)\r");
    wait_for("the resized terminal", Duration::from_secs(10), || has("size=40x120"));
    say("exit\r");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "attach did not end after exit:\n{}", seen.lock().expect("lock"));
        std::thread::sleep(Duration::from_millis(100));
    }
}
