//! A real docker bottle: the agent (`network=none`) reaches the sidecar's egress proxy only through
//! the relay and the socket volume, reaches nothing else, and closing leaves nothing behind.
//!
//! The relay and the sidecar are the real `bot-bottle` binary, so build it first:
//! `cargo build -p bot-bottle` (the test says so when it is missing).

use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Command;

use bottle_backend::docker::{self, EGRESS_SOCKET, LABEL_SLUG, LaunchSpec, RELAY_ID, SIDECAR_STATE_DIR};
use bottle_backend::image::{BuildMode, ImageBuilder, ImageRecipe, Silent};
use bottle_backend::{Engine, ExecUser};

/// `<target>/debug/bot-bottle`, next to this test's own `deps/` directory.
fn bot_bottle_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BOT_BOTTLE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("<target>/<profile>/deps/<test>");
    let bin = profile_dir.join("bot-bottle");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p bot-bottle` with the same CARGO_TARGET_DIR first (or set BOT_BOTTLE_BIN)",
        bin.display()
    );
    let help = Command::new(&bin).args(["relay", "--help"]).output().expect("runs bot-bottle");
    assert!(
        help.status.success(),
        "{} has no `relay` subcommand: rebuild it (`cargo build -p bot-bottle`)",
        bin.display()
    );
    bin
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

fn engine(rt: &tokio::runtime::Runtime) -> Engine {
    rt.block_on(Engine::connect()).unwrap_or_else(|e| panic!("{e}\nhint: {}", e.hint().unwrap_or_default()))
}

/// Agent image and a sidecar image carrying `binary` (rebuilt only when the binary changed).
fn images(rt: &tokio::runtime::Runtime, engine: &Engine, binary: &std::path::Path) -> (String, String) {
    let builder = ImageBuilder::new(engine, &Silent).expect("cache dir");
    let agent = rt.block_on(builder.build(&ImageRecipe::agent(BuildMode::Offline))).unwrap_or_else(|e| panic!("{e:?}"));
    let recipe = ImageRecipe::sidecar_from_file(BuildMode::Offline, binary).expect("reads bot-bottle");
    let sidecar = rt.block_on(builder.build(&recipe)).unwrap_or_else(|e| panic!("{e:?}"));
    (agent.tag, sidecar.tag)
}

fn sidecar_config(slug: &str) -> Vec<u8> {
    format!(
        r#"{{"slug":"{slug}","state_dir":"{SIDECAR_STATE_DIR}","listen":{{"egress":"unix:{EGRESS_SOCKET}","socket_group":{RELAY_ID}}},"egress":{{"routes":[]}}}}"#
    )
    .into_bytes()
}

/// Names of every container, network and volume carrying the slug label.
fn leftovers(slug: &str) -> Vec<String> {
    let filter = format!("label={LABEL_SLUG}={slug}");
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

/// The default bridge's gateway (the host as containers on it see it).
fn docker0_gateway() -> String {
    let out = Command::new("docker")
        .args(["network", "inspect", "bridge", "--format", "{{range .IPAM.Config}}{{.Gateway}}{{end}}"])
        .output()
        .expect("docker CLI");
    let gw = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if gw.is_empty() { "172.17.0.1".to_owned() } else { gw }
}

/// A host service on 0.0.0.0 that answers every connection, so a probe that reaches it succeeds.
fn host_listener() -> u16 {
    let listener = TcpListener::bind("0.0.0.0:0").expect("bind 0.0.0.0");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok");
        }
    });
    port
}

#[test]
fn agent_reaches_only_its_sidecar_and_close_removes_everything() {
    let binary = bot_bottle_binary();
    let rt = runtime();
    let engine = engine(&rt);
    let (agent_image, sidecar_image) = images(&rt, &engine, &binary);
    let slug = format!("itlaunch-{}", std::process::id());
    let port = host_listener();
    let gateway = docker0_gateway();

    let spec = LaunchSpec::new(&slug, &agent_image, &sidecar_image, sidecar_config(&slug), binary);
    let bottle = rt.block_on(docker::launch(&engine, &spec)).unwrap_or_else(|e| panic!("{e}"));

    // Probes first, teardown always, verdict last: a failed probe must not leak the bottle.
    let mut failures = Vec::new();
    let mut probe = |name: &str, user: ExecUser, script: &str, ok: &dyn Fn(i32, &str) -> bool| {
        let r = rt.block_on(bottle.exec(script, user)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = String::from_utf8_lossy(&r.stdout).trim().to_owned();
        let verdict = ok(r.code, &out);
        eprintln!(
            "{:<28} {} (exit {}, out {out:?}, err {:?})",
            name,
            if verdict { "ok" } else { "FAILED" },
            r.code,
            String::from_utf8_lossy(&r.stderr).trim()
        );
        if !verdict {
            failures.push(name.to_owned());
        }
    };
    let via_proxy = "curl -sS -m 10 -o /dev/null -w '%{http_code}' --proxy http://127.0.0.1:9099";
    probe("health through the relay", ExecUser::Agent, &format!("{via_proxy} http://_egress.local/health"), &|c, o| {
        c == 0 && o == "200"
    });
    probe("non-allowlisted host denied", ExecUser::Agent, &format!("{via_proxy} http://example.com/"), &|c, o| {
        c == 0 && o == "403"
    });
    probe("direct https to 1.1.1.1", ExecUser::Agent, "curl -sS -m 5 https://1.1.1.1", &|c, _| c != 0);
    probe("DNS resolves nothing", ExecUser::Agent, "getent hosts example.com", &|c, _| c != 0);
    probe("host service on 0.0.0.0", ExecUser::Agent, &format!("curl -sS -m 5 http://{gateway}:{port}/"), &|c, _| {
        c != 0
    });
    probe("only loopback exists", ExecUser::Agent, "ls /sys/class/net", &|c, o| c == 0 && o == "lo");
    probe("agent runs as node", ExecUser::Agent, "id -un", &|c, o| c == 0 && o == "node");
    probe("agent cannot signal the relay", ExecUser::Agent, "kill -0 1", &|c, _| c != 0);
    probe(
        "agent cannot use the socket directly",
        ExecUser::Agent,
        &format!("curl -sS -m 5 --unix-socket {EGRESS_SOCKET} http://_egress.local/health"),
        &|c, _| c != 0,
    );
    probe(
        "no capabilities, no new privileges",
        ExecUser::Agent,
        "grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status | tr -s '\\t ' ' '",
        &|c, o| c == 0 && o.contains("CapBnd: 0000000000000000") && o.contains("NoNewPrivs: 1"),
    );

    // Fail closed: with the sidecar gone the relay has nowhere to go and the agent gets nothing.
    let kill = Command::new("docker").args(["kill", &spec.resources.sidecar]).output().expect("docker CLI");
    assert!(kill.status.success(), "docker kill: {}", String::from_utf8_lossy(&kill.stderr));
    probe(
        "sidecar killed: no network",
        ExecUser::Agent,
        &format!("{via_proxy} http://_egress.local/health"),
        &|c, o| c != 0 && o != "200",
    );

    // Control: the same host service is reachable from the sidecar's bridge, so the agent's failure
    // above is the boundary at work and not a service that nothing could reach.
    let control = Command::new("docker")
        .args(["run", "--rm", "--network", &spec.resources.network, &agent_image])
        .args(["curl", "-sS", "-m", "5", &format!("http://{gateway}:{port}/")])
        .output()
        .expect("docker CLI");
    if String::from_utf8_lossy(&control.stdout) != "ok" {
        eprintln!("control probe failed: {}", String::from_utf8_lossy(&control.stderr));
        failures.push("control: host service reachable from the egress bridge".to_owned());
    }

    let names = bottle.resources().clone();
    rt.block_on(bottle.close()).unwrap_or_else(|e| panic!("close: {e}"));
    let left = leftovers(&slug);
    assert!(left.is_empty(), "left behind after close: {left:?} (of {names:?})");
    assert!(failures.is_empty(), "probes failed: {failures:?}");
}

#[test]
fn a_failed_launch_removes_what_it_created() {
    let binary = bot_bottle_binary();
    let rt = runtime();
    let engine = engine(&rt);
    let slug = format!("itunwind-{}", std::process::id());
    // The volume and network get created, then the sidecar image does not exist.
    let spec = LaunchSpec::new(
        &slug,
        "bot-bottle-agent-base:absent",
        "bot-bottle-sidecar:absent",
        sidecar_config(&slug),
        binary,
    );
    let err = rt.block_on(docker::launch(&engine, &spec)).expect_err("the sidecar image is missing");
    assert!(err.to_string().contains("create container"), "{err}");
    assert_eq!(leftovers(&slug), Vec::<String>::new());
}

#[test]
fn secrets_reach_the_sidecar_and_nothing_else() {
    const SECRET: &str = "bb-it-secret-7f3a9c51e2";
    let binary = bot_bottle_binary();
    let rt = runtime();
    let engine = engine(&rt);
    let (agent_image, sidecar_image) = images(&rt, &engine, &binary);
    let slug = format!("itsecret-{}", std::process::id());
    // 0700 and owned by this (root) user, as the sidecar requires (tempdir() itself follows umask).
    let secrets = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(secrets.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::write(secrets.path().join("UP_TOKEN"), format!("{SECRET}\n")).expect("write secret");
    let config = format!(
        r#"{{"slug":"{slug}","state_dir":"{SIDECAR_STATE_DIR}","secrets_dir":"{}","listen":{{"egress":"unix:{EGRESS_SOCKET}","socket_group":{RELAY_ID}}},
            "egress":{{"routes":[{{"host":"allowed.test","auth":{{"scheme":"Bearer","token_slot":"UP_TOKEN"}}}}]}}}}"#,
        docker::SIDECAR_SECRETS_DIR
    );
    let mut spec = LaunchSpec::new(&slug, &agent_image, &sidecar_image, config.into_bytes(), binary);
    spec.secrets_dir = Some(secrets.path().to_owned());
    // The sidecar refuses to start when a slot has no value, so a ready launch proves it read the file.
    let bottle = rt.block_on(docker::launch(&engine, &spec)).unwrap_or_else(|e| panic!("{e}"));

    let health = rt
        .block_on(bottle.exec(
            "curl -sS -m 10 -o /dev/null -w '%{http_code}' --proxy http://127.0.0.1:9099 http://_egress.local/health",
            ExecUser::Agent,
        ))
        .expect("exec");
    // Root in the agent (no capabilities) searches every process's env and argv and the usual places.
    // The pattern is bracketed so grep's own argv does not contain the secret it looks for.
    let pattern = format!("{}[{}]{}", &SECRET[..4], &SECRET[4..5], &SECRET[5..]);
    let search = rt
        .block_on(bottle.exec(
            &format!(
                "grep -rsl '{pattern}' /proc/[0-9]*/environ /proc/[0-9]*/cmdline /etc /home /run /opt/bot-bottle /tmp /root; echo done"
            ),
            ExecUser::Root,
        ))
        .expect("exec");
    // Control: the same search finds the secret once it is planted, so the empty result above means
    // something.
    let control = rt
        .block_on(
            bottle.exec(&format!("printf %s {SECRET} > /tmp/planted; grep -rsl '{pattern}' /tmp"), ExecUser::Agent),
        )
        .expect("exec");
    let inspect = Command::new("docker")
        .args(["inspect", &spec.resources.agent, &spec.resources.sidecar])
        .output()
        .expect("docker CLI");

    rt.block_on(bottle.close()).unwrap_or_else(|e| panic!("close: {e}"));
    assert_eq!(leftovers(&slug), Vec::<String>::new());
    assert_eq!(String::from_utf8_lossy(&health.stdout), "200", "{health:?}");
    assert_eq!(String::from_utf8_lossy(&search.stdout).trim(), "done", "the secret is readable in the agent");
    assert_eq!(String::from_utf8_lossy(&control.stdout).trim(), "/tmp/planted", "{control:?}");
    assert!(inspect.status.success());
    assert!(!String::from_utf8_lossy(&inspect.stdout).contains(SECRET), "the secret shows in `docker inspect`");
}
