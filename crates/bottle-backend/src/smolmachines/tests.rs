//! The launch flow against a recording engine and smolvm: order of steps, teardown after a failure
//! at every step, and the handle's command lines.

use std::sync::{Arc, Mutex};

use super::runner::RecordingRunner;
use super::*;

type Log = Arc<Mutex<Vec<String>>>;

/// An engine that records and fails the first call whose description contains `fail_on`.
struct Host {
    log: Log,
    fail_on: Option<String>,
}

impl Host {
    fn note(&self, event: String) -> Result<(), Error> {
        let fail = self.fail_on.as_ref().is_some_and(|f| event.contains(f.as_str()));
        self.log.lock().unwrap().push(event.clone());
        if fail {
            return Err(Error::Launch { slug: "t".into(), action: event, source: "injected".into() });
        }
        Ok(())
    }
}

impl BundleHost for Host {
    fn create_network(&self, name: &str, a: &BundleAddress, _: &[(String, String)]) -> Result<bool, Error> {
        self.note(format!("network create {name} {}", a.subnet)).map(|()| true)
    }
    fn remove_network(&self, name: &str) -> Result<(), Error> {
        self.log.lock().unwrap().push(format!("network remove {name}"));
        Ok(())
    }
    fn create_sidecar(&self, spec: &SidecarSpec<'_>) -> Result<(), Error> {
        self.note(format!("container create {} at {}", spec.name, spec.address.sidecar))
    }
    fn start_container(&self, name: &str) -> Result<(), Error> {
        self.note(format!("container start {name}"))
    }
    fn remove_container(&self, name: &str) -> Result<(), Error> {
        self.log.lock().unwrap().push(format!("container remove {name}"));
        Ok(())
    }
    fn wait_listening(&self, container: &str, addr: std::net::SocketAddr, _: Duration) -> Result<(), Error> {
        self.note(format!("wait {container} {addr}"))
    }
    fn save_image(&self, image: &str, dest: &Path) -> Result<(), Error> {
        self.note(format!("save {image}"))?;
        std::fs::write(dest, b"tar").map_err(|source| Error::Io {
            image: image.into(),
            action: "write",
            path: dest.into(),
            source,
        })
    }
    fn list(&self) -> Result<Vec<bundle::BundleResource>, Error> {
        Ok(Vec::new())
    }
}

struct World {
    log: Log,
    driver: Driver,
    dir: tempfile::TempDir,
}

fn world(version: (u32, u32, u32), fail_on: Option<&str>) -> World {
    let log: Log = Arc::default();
    let fail = fail_on.map(str::to_owned);
    let runner_log = log.clone();
    let runner_fail = fail.clone();
    let runner = RecordingRunner::new(move |argv, _| {
        let line = argv.join(" ");
        runner_log.lock().unwrap().push(line.clone());
        if argv.get(1).map(String::as_str) == Some("pack") {
            let out = argv.iter().position(|a| a == "-o").and_then(|i| argv.get(i + 1)).unwrap();
            std::fs::write(format!("{out}.smolmachine"), b"packed").unwrap();
        }
        if runner_fail.as_ref().is_some_and(|f| line.contains(f.as_str())) {
            return CommandOutput::failed(1, "Error: injected failure");
        }
        CommandOutput::ok("")
    });
    let host = Host { log: log.clone(), fail_on: fail };
    let cli = SmolvmCli::new("smolvm", SmolvmVersion::new(version.0, version.1, version.2));
    World {
        log,
        driver: Driver { cli, runner: Arc::new(runner), host: Arc::new(host) },
        dir: tempfile::tempdir().unwrap(),
    }
}

fn inputs(dir: &Path) -> LaunchInputs {
    let binary = dir.join("bot-bottle");
    std::fs::write(&binary, b"\x7fELF").unwrap();
    LaunchInputs {
        sidecar_config: b"{}".to_vec(),
        secrets: vec![("TOKEN".into(), b"s3cret-value".to_vec())],
        upstream_ca: None,
        key_files: Vec::new(),
        git_gate: false,
        control_token: Some(b"tok".to_vec()),
        agent_env: vec![("HTTPS_PROXY".into(), "http://10.210.0.2:9099".into())],
        agent_image: "bot-bottle-agent:abc".into(),
        sidecar_image: "bot-bottle-sidecar:def".into(),
        runtime: None,
        relay_binary: binary,
        cancel: Arc::default(),
        detached: false,
    }
}

/// Runs allocation and the flow like [`SmolBackend::launch`], unwinding on error.
fn launch(w: &World) -> Result<(), Error> {
    let names = Names::for_slug("demo");
    let cache = w.dir.path().join("cache");
    let state = w.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let inputs = inputs(w.dir.path());
    let mut steps = Vec::new();
    let result = (|| {
        let address = allocate(&w.driver, "demo", &names.network, &cache, &[])?;
        let flow = FlowInputs {
            slug: "demo",
            agent: "demo-agent",
            names: names.clone(),
            state_dir: &state,
            cache_dir: &cache,
            inputs: &inputs,
            address,
            sidecar_user: (1000, 1000),
            guest_env: inputs.agent_env.clone(),
        };
        bring_up(&w.driver, &flow, &mut steps)
    })();
    if result.is_err() {
        w.driver.unwind(&mut steps);
    }
    result
}

fn log(w: &World) -> Vec<String> {
    w.log.lock().unwrap().clone()
}

#[test]
fn launch_runs_the_steps_in_order() {
    let w = world((1, 9, 0), None);
    launch(&w).unwrap();
    let log = log(&w);
    let at = |needle: &str| log.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}: {log:#?}"));
    let order = [
        "network create bot-bottle-net-demo",
        "container create bot-bottle-sidecars-demo",
        "container start bot-bottle-sidecars-demo",
        "wait bot-bottle-sidecars-demo",
        "save bot-bottle-agent:abc",
        "--image",
        "pack create --from-vm",
        "machine create --name bot-bottle-demo --from",
        "machine start --name bot-bottle-demo",
        "chown -R node:node /home/node",
        "tar -x -p",
    ];
    let positions: Vec<usize> = order.iter().map(|n| at(n)).collect();
    assert!(positions.windows(2).all(|p| p[0] < p[1]), "{log:#?}");
    let create = &log[at("machine create --name bot-bottle-demo")];
    let allow = bottle_core::plan::bundle_address("demo", 0).sidecar;
    assert!(create.contains(&format!("--allow-cidr {allow}/32")), "{create}");
    assert!(create.contains("-e HTTPS_PROXY=http://10.210.0.2:9099"), "{create}");
    // The pack machine is gone once packing is done; the bottle's own is not.
    assert!(log.iter().any(|l| l.contains("machine delete --name bbpack-")));
    assert!(!log.iter().any(|l| l.contains("machine delete --name bot-bottle-demo")));
    assert!(!log.iter().any(|l| l.contains("s3cret-value")), "secrets go to the sidecar's files only");
}

#[test]
fn a_cached_artifact_is_not_packed_again() {
    let w = world((1, 9, 0), None);
    launch(&w).unwrap();
    let packs = |w: &World| log(w).iter().filter(|l| l.contains("pack create")).count();
    assert_eq!(packs(&w), 1);
    let names = Names::for_slug("demo");
    let mut steps =
        vec![Step::Network(names.network.clone()), Step::Container(names.sidecar), Step::Machine(names.machine)];
    w.driver.unwind(&mut steps);
    w.log.lock().unwrap().clear();
    launch(&w).unwrap();
    assert_eq!(packs(&w), 0, "{:#?}", log(&w));
}

/// After a failure at any step, everything created before it is removed, newest first, and the
/// machine is stopped before it is deleted.
#[test]
fn a_failure_at_every_step_unwinds_in_reverse() {
    let failures = [
        ("network create", &[][..]),
        ("container create", &["container remove bot-bottle-sidecars-demo", "network remove bot-bottle-net-demo"][..]),
        ("container start", &["container remove bot-bottle-sidecars-demo", "network remove bot-bottle-net-demo"]),
        ("wait ", &["container remove bot-bottle-sidecars-demo", "network remove bot-bottle-net-demo"]),
        ("save ", &["container remove bot-bottle-sidecars-demo", "network remove bot-bottle-net-demo"]),
        ("pack create", &["container remove bot-bottle-sidecars-demo", "network remove bot-bottle-net-demo"]),
        (
            "machine create --name bot-bottle-demo",
            &[
                "smolvm machine stop --name bot-bottle-demo",
                "smolvm machine delete --name bot-bottle-demo -f",
                "container remove bot-bottle-sidecars-demo",
                "network remove bot-bottle-net-demo",
            ],
        ),
        (
            "machine start --name bot-bottle-demo",
            &[
                "smolvm machine stop --name bot-bottle-demo",
                "smolvm machine delete --name bot-bottle-demo -f",
                "container remove bot-bottle-sidecars-demo",
                "network remove bot-bottle-net-demo",
            ],
        ),
        (
            "chown -R",
            &[
                "smolvm machine stop --name bot-bottle-demo",
                "smolvm machine delete --name bot-bottle-demo -f",
                "container remove bot-bottle-sidecars-demo",
                "network remove bot-bottle-net-demo",
            ],
        ),
    ];
    for (fail_on, teardown) in failures {
        let w = world((1, 9, 0), Some(fail_on));
        let err = launch(&w).expect_err(fail_on);
        assert!(err.to_string().contains("injected") || err.to_string().contains(fail_on.trim()), "{fail_on}: {err}");
        let log = log(&w);
        let failed_at = log.iter().position(|l| l.contains(fail_on)).unwrap();
        let after: Vec<&String> = log[failed_at + 1..].iter().filter(|l| !l.contains("bbpack-")).collect();
        assert_eq!(after, teardown.iter().collect::<Vec<_>>(), "after a failure at `{fail_on}`: {log:#?}");
        // Packing always cleans up after itself, failed or not.
        if log.iter().any(|l| l.contains("create --name bbpack-")) {
            assert!(log.iter().any(|l| l.contains("delete --name bbpack-")), "{fail_on}: {log:#?}");
        }
        assert!(
            !w.dir.path().join("cache").read_dir().unwrap().any(|e| {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                name.ends_with(".tar") || name.contains("partial")
            }),
            "{fail_on}: packing left files behind"
        );
    }
}

#[test]
fn a_cancelled_launch_unwinds() {
    let w = world((1, 9, 0), None);
    let names = Names::for_slug("demo");
    let inputs = inputs(w.dir.path());
    inputs.cancel.store(true, Ordering::SeqCst);
    let state = w.dir.path().to_owned();
    let cache = w.dir.path().join("cache");
    let mut steps = Vec::new();
    let flow = FlowInputs {
        slug: "demo",
        agent: "demo-agent",
        names,
        state_dir: &state,
        cache_dir: &cache,
        inputs: &inputs,
        address: bottle_core::plan::bundle_address("demo", 0),
        sidecar_user: (0, 0),
        guest_env: Vec::new(),
    };
    assert!(matches!(bring_up(&w.driver, &flow, &mut steps), Err(Error::Cancelled { .. })));
    assert_eq!(steps, vec![Step::Network("bot-bottle-net-demo".into())]);
}

#[test]
fn old_versions_are_refused_before_a_machine_exists() {
    let w = world((1, 7, 5), None);
    let err = launch(&w).unwrap_err();
    assert!(matches!(err, Error::SmolvmUnsafe { .. }), "{err}");
    let log = log(&w);
    assert!(
        !log.iter().any(
            |l| l.contains("machine create --name bot-bottle-demo") || l.contains("machine create bot-bottle-demo")
        ),
        "{log:#?}"
    );
    assert!(log.iter().any(|l| l == "network remove bot-bottle-net-demo"), "{log:#?}");
}

#[test]
fn positional_names_on_0_8() {
    let w = world((0, 8, 0), None);
    let cli = &w.driver.cli;
    assert_eq!(cli.delete("bot-bottle-x").join(" "), "smolvm machine delete bot-bottle-x -f");
    let mut steps = vec![Step::Machine("bot-bottle-x".into())];
    w.driver.unwind(&mut steps);
    assert_eq!(log(&w), ["smolvm machine stop --name bot-bottle-x", "smolvm machine delete bot-bottle-x -f"]);
}

fn handle(w: &World) -> SmolBottle {
    let env = vec![
        ("HTTPS_PROXY".to_owned(), "http://10.210.0.2:9099".to_owned()),
        ("TERM_PROGRAM".to_owned(), "x".to_owned()),
    ];
    SmolBottle::new(
        w.driver.clone(),
        Slug::parse("demo").unwrap(),
        Names::for_slug("demo"),
        env,
        bottle_core::plan::bundle_address("demo", 0),
        w.dir.path(),
    )
}

#[test]
fn agent_argv_switches_user_and_passes_env_on_every_exec() {
    let w = world((1, 9, 0), None);
    let h = handle(&w);
    let argv = h.agent_argv(&["claude".into(), "--continue".into()], false);
    let joined = argv.join(" ");
    assert!(
        joined.starts_with("smolvm machine exec --name bot-bottle-demo -i -e HTTPS_PROXY=http://10.210.0.2:9099"),
        "{joined}"
    );
    assert!(!argv.contains(&"-t".to_owned()) && argv.contains(&"-i".to_owned()), "stdin, no tty: {joined}");
    let dash = argv.iter().position(|a| a == "--").unwrap();
    assert_eq!(&argv[dash + 1..dash + 5], ["runuser", "-u", "node", "--"]);
    let guest = &argv[dash + 1..];
    let pos = |n: &str| guest.iter().position(|a| a == n).unwrap();
    assert!(pos("runuser") < pos("HOME=/home/node") && pos("HOME=/home/node") < pos("claude"));
    assert!(guest.contains(&"HTTPS_PROXY=http://10.210.0.2:9099".to_owned()), "env after runuser too");
    assert_eq!(guest[guest.len() - 2..], ["claude", "--continue"]);
    assert!(guest.iter().any(|a| a.starts_with("cd '/home/node'")), "workdir: {guest:?}");
    assert!(!guest.iter().any(|a| a == "-l" || a == "-lc"));
}

#[test]
fn agent_argv_with_a_tty_goes_through_the_pty_bridge() {
    let w = world((1, 9, 0), None);
    let argv = handle(&w).agent_argv(&["claude".into()], true);
    assert!(argv[0].starts_with('/'), "the bridge is run by absolute path: {argv:?}");
    assert_eq!(argv[1..6], ["pty-bridge", "--smolvm", "smolvm", "--machine", "bot-bottle-demo"]);
    let dash = argv.iter().position(|a| a == "--").unwrap();
    assert_eq!(argv[dash + 1..dash + 8], ["smolvm", "machine", "exec", "--name", "bot-bottle-demo", "-i", "-t"]);
}

#[test]
fn exec_runs_sh_c_as_the_user_and_reads_smolvm_errors() {
    let w = world((1, 9, 0), None);
    let h = handle(&w);
    h.exec("id -u", ExecUser::Root).unwrap();
    h.exec("id -u", ExecUser::Agent).unwrap();
    let log = log(&w);
    assert!(
        log[0].ends_with(
            "-- env HOME=/root USER=root HTTPS_PROXY=http://10.210.0.2:9099 TERM_PROGRAM=x /bin/sh -c id -u"
        ),
        "{}",
        log[0]
    );
    assert!(log[1].contains("-- runuser -u node -- env HOME=/home/node"), "{}", log[1]);
    let failing = world((1, 9, 0), Some("exec"));
    let err = handle(&failing).exec("true", ExecUser::Root).unwrap_err();
    assert!(matches!(err, Error::Smolvm { .. }), "{err}");
}

#[test]
fn a_guest_exit_of_one_is_the_commands_not_smolvms() {
    let runner = RecordingRunner::new(|_, _| CommandOutput::failed(1, "grep: nothing"));
    let w = world((1, 9, 0), None);
    let driver = Driver { runner: Arc::new(runner), ..w.driver.clone() };
    let h = SmolBottle::new(
        driver,
        Slug::parse("demo").unwrap(),
        Names::for_slug("demo"),
        Vec::new(),
        bottle_core::plan::bundle_address("demo", 0),
        w.dir.path(),
    );
    assert_eq!(h.exec("grep x /dev/null", ExecUser::Agent).unwrap().code, 1);
}

#[test]
fn the_dry_run_shows_every_command_and_the_bundle() {
    let cli = SmolvmCli::new("smolvm", SmolvmVersion::new(1, 9, 3));
    let plan_json = dry_run_fixture(&cli);
    assert_eq!(plan_json["network"]["name"], "bot-bottle-net-demo");
    let ip = plan_json["sidecar"]["ip"].as_str().unwrap().to_owned();
    assert_eq!(plan_json["allow_cidr"][0], format!("{ip}/32"));
    assert_eq!(plan_json["pack"]["key"].as_str().unwrap().len(), 32);
    let steps: Vec<&str> =
        plan_json["commands"].as_array().unwrap().iter().map(|c| c["step"].as_str().unwrap()).collect();
    for step in ["create", "start", "chown", "boundary self-test", "agent", "teardown"] {
        assert!(steps.contains(&step), "{step}: {steps:?}");
    }
    let refused = dry_run_fixture(&SmolvmCli::new("smolvm", SmolvmVersion::new(0, 8, 0)));
    let create = refused["commands"].as_array().unwrap().iter().find(|c| c["step"] == "create").unwrap();
    assert!(create["refused"].as_str().unwrap().contains("--allow-cidr"), "{create}");
}

fn dry_run_fixture(cli: &SmolvmCli) -> serde_json::Value {
    let address = bottle_core::plan::bundle_address("demo", 0);
    let json = serde_json::json!({"slug": "demo", "state_dir": "/s", "env": [], "ports": {"host": address.sidecar}});
    // The plan's shape is bottle-core's; the fields dry_run reads are all it needs here.
    let plan = PlanStub::from(json);
    dry_run_parts(
        &plan.slug,
        &plan.state_dir,
        &[],
        cli,
        true,
        "bot-bottle-agent:abc",
        Path::new("/cache"),
        &["claude".into()],
    )
}

struct PlanStub {
    slug: String,
    state_dir: PathBuf,
}

impl From<serde_json::Value> for PlanStub {
    fn from(v: serde_json::Value) -> Self {
        Self { slug: v["slug"].as_str().unwrap().into(), state_dir: v["state_dir"].as_str().unwrap().into() }
    }
}

/// Whatever form the provider renders — interactive, a prompt flag before its value, a prompt as
/// the last word — reaches the guest verbatim and in order, after the user switch and workdir.
#[test]
fn prompt_modes_keep_the_providers_order() {
    let w = world((1, 9, 0), None);
    let h = handle(&w);
    for argv in [
        vec!["claude", "--dangerously-skip-permissions"],
        vec!["claude", "-p", "fix the build", "--output-format", "json"],
        vec!["codex", "exec", "--full-auto", "fix the build"],
        vec!["pi", "--print", "fix the build"],
    ] {
        let argv: Vec<String> = argv.into_iter().map(str::to_owned).collect();
        let full = h.agent_argv(&argv, false);
        assert_eq!(full[full.len() - argv.len()..], argv[..], "{full:?}");
        let marker = full.iter().position(|a| a == "bot-bottle-agent").unwrap();
        assert_eq!(marker, full.len() - argv.len() - 1, "nothing between the workdir wrapper and the agent");
    }
}
