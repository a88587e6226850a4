//! Offline image builds: both images build, are reused when unchanged, and run what they promise.

use std::process::Command;

use bottle_backend::Engine;
use bottle_backend::image::{BuildMode, ImageBuilder, ImageRecipe, Progress};

/// Prints progress into the test's captured output, so a failure shows what happened.
struct TestProgress;

#[expect(clippy::print_stdout, reason = "libtest captures it and shows it on failure")]
impl Progress for TestProgress {
    fn step(&self, image: &str, message: &str) {
        println!("{image}: {message}");
    }
    fn output(&self, image: &str, line: &str) {
        println!("{image}  | {line}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

fn engine(rt: &tokio::runtime::Runtime) -> Engine {
    rt.block_on(Engine::connect()).unwrap_or_else(|e| {
        panic!("{e}\nhint: {}", e.hint().unwrap_or_default());
    })
}

/// `docker run --rm --network none <image> sh -c <script>`, returning stdout; panics with stderr.
fn run_in(image: &str, user: Option<&str>, script: &str) -> String {
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--rm", "--network", "none"]);
    if let Some(user) = user {
        cmd.args(["--user", user]);
    }
    let out = cmd.args([image, "sh", "-c", script]).output().expect("docker CLI runs");
    assert!(
        out.status.success(),
        "`{script}` in {image} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn engine_api_version_is_negotiated() {
    let rt = runtime();
    let engine = engine(&rt);
    let version = engine.api_version();
    let (major, minor) = version.split_once('.').expect("major.minor");
    assert_eq!(major, "1");
    assert!(minor.parse::<u32>().expect("minor is a number") >= 41, "api {version}");
}

#[test]
fn offline_images_build_once_and_run() {
    let rt = runtime();
    let engine = engine(&rt);
    let builder = ImageBuilder::new(&engine, &TestProgress).expect("cache dir");

    let agent = ImageRecipe::agent(BuildMode::Offline);
    let built = rt.block_on(builder.build(&agent)).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(built.tag, agent.tag);
    assert!(built.id.starts_with("sha256:"), "{built:?}");
    // A second build of unchanged inputs is a lookup.
    let again = rt.block_on(builder.build(&agent)).expect("second build");
    assert!(again.reused);
    assert_eq!(again.id, built.id);

    assert_eq!(
        run_in(&agent.tag, None, "id -un; id -u node; echo $HOME").lines().collect::<Vec<_>>(),
        ["node", "1000", "/home/node"]
    );
    let tools = run_in(
        &agent.tag,
        None,
        "curl --version | head -1; git --version; python3 --version; for t in dig nc bash; do command -v $t; done; test -s /etc/ssl/certs/ca-certificates.crt && echo ca",
    );
    assert!(tools.contains("curl 7.") || tools.contains("curl 8."), "{tools}");
    assert!(tools.contains("git version"), "{tools}");
    assert!(tools.contains("Python 3"), "{tools}");
    assert!(tools.contains("/dig") && tools.contains("/nc") && tools.contains("/bash"), "{tools}");
    assert!(tools.trim_end().ends_with("ca"), "{tools}");

    // The sidecar image carries whatever binary it is given; this test binary stands in for
    // `bot-bottle` (the CLI's own test runs the real one with `--version`). `--list` proves it
    // links and runs in the image's Debian.
    let exe = std::env::current_exe().expect("test binary path");
    let sidecar = ImageRecipe::sidecar_from_file(BuildMode::Offline, &exe).expect("reads the binary");
    let built = rt.block_on(builder.build(&sidecar)).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!built.tag.is_empty());
    let out = run_in(&sidecar.tag, None, "bot-bottle --list >/dev/null && git --version && ssh -V 2>&1");
    assert!(out.contains("git version") && out.contains("OpenSSH"), "{out}");

    let labels = Command::new("docker")
        .args(["image", "inspect", "--format", "{{index .Config.Labels \"bot-bottle\"}}", &agent.tag, &sidecar.tag])
        .output()
        .expect("docker inspect");
    assert_eq!(String::from_utf8_lossy(&labels.stdout), "1\n1\n");
}
