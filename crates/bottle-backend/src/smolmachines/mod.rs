//! The smolmachines backend: the agent in a `smolvm` micro-VM, its sidecar bundle in a Docker
//! container next door.
//!
//! Launch, in order, each step registered for reverse teardown as soon as it exists:
//! 1. a Docker bridge of the bottle's own on a pinned /28 ([`bottle_core::plan::bundle_address`],
//!    collision-checked against the engine and the host's routes under a file lock);
//! 2. the sidecar container at the pinned IP, serving only the agent's service ports there (egress,
//!    git-gate, supervise); its control API is a unix socket in the host state directory, so no
//!    address the VM may reach answers for it;
//! 3. the agent artifact: `smolvm pack create` of the agent image, cached by the image's content
//!    hash and the smolvm version under `~/.cache/bot-bottle/smolmachines/`;
//! 4. `machine create --from ARTIFACT --allow-cidr <sidecar-ip>/32` with the guest environment;
//! 5. `machine start` (retried once on the early-boot race), `chown -R node:node /home/node` and the
//!    `bot-bottle` binary copied in for the probes.
//!
//! Provisioning and the boundary self-test then run through the [`Bottle`] handle like on every
//! backend. The self-test is the only proof the VM's allow-list holds (smolvm versions have
//! accepted and ignored it), so the launcher never starts an agent before it passed.
//!
//! `smolvm` is driven through [`runner::CommandRunner`] with argv from [`cli::SmolvmCli`], built for
//! the installed version ([`version::SmolvmVersion`]).

pub mod bundle;
pub mod cli;
pub mod runner;
pub mod version;

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bottle_core::plan::{BundleAddress, EGRESS_PORT, GIT_GATE_PORT, GUEST_HOME, LaunchPlan, SUPERVISE_PORT};
use bottle_core::{BackendKind, Slug};
use serde::{Deserialize, Serialize};

use self::bundle::{BundleHost, BundleKind, LABEL_BUNDLE, LABEL_ROLE, SidecarSpec};
use self::cli::{CreateSpec, ExecMode, GuestUser, SmolvmCli, guest_command};
use self::runner::{CommandOutput, CommandRunner, run_boot_retry, run_checked};
use self::version::SmolvmVersion;
use crate::{
    Backend, Bottle, BottleStatus, BottleSummary, CleanupOptions, CleanupReport, Error, ExecResult, ExecUser,
    GuestFile, LaunchInputs, Preflight, SidecarLayout,
};

/// The environment variable naming the `smolvm` program (default: `smolvm` on `PATH`).
pub const SMOLVM_VAR: &str = "BOT_BOTTLE_SMOLVM";
/// The control API's socket inside the sidecar: in the state directory, which is the host's.
pub const CONTROL_SOCKET: &str = "/var/lib/bot-bottle/state/control.sock";
/// The control socket's name in the host state directory.
pub const CONTROL_SOCKET_NAME: &str = "control.sock";
/// What the launcher remembers of a smolmachines bottle, in its state directory (0600).
pub const STATE_FILE: &str = "smolmachines.json";
/// Where the `bot-bottle` binary (the probes) lands in the guest.
pub const GUEST_BINARY: &str = crate::docker::RELAY_BINARY;
/// The VM's size.
pub const VM_CPUS: u8 = 2;
/// Names of the machines packing boots: `bbpack-<artifact key>`, which no slug can produce.
pub const PACK_MACHINE_PREFIX: &str = "bbpack-";
pub const VM_MEM_MIB: u32 = 4096;
/// How many candidate subnets a launch tries.
const ADDRESS_ATTEMPTS: u32 = 64;
/// How long the sidecar may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Every name a smolmachines bottle's resources get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    pub machine: String,
    pub sidecar: String,
    pub network: String,
}

impl Names {
    pub fn for_slug(slug: &str) -> Self {
        Self {
            machine: format!("bot-bottle-{slug}"),
            sidecar: format!("bot-bottle-sidecars-{slug}"),
            network: format!("bot-bottle-net-{slug}"),
        }
    }
}

/// The packed agent artifact for an image: its cache key and paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artifact {
    /// Hex SHA-256 (first 16 bytes) of the image's content-hash tag and the smolvm version.
    pub key: String,
    /// `pack create -o`, while packing; smolvm writes `<partial>.smolmachine` beside it, renamed to
    /// [`Artifact::smolmachine`] once complete.
    pub partial: PathBuf,
    pub partial_smolmachine: PathBuf,
    /// What `machine create --from` reads.
    pub smolmachine: PathBuf,
    /// The `docker save` tarball packing starts from (removed after).
    pub image_tar: PathBuf,
    /// The machine packing boots once to unpack the image (deleted after).
    pub pack_machine: String,
}

impl Artifact {
    pub fn new(cache: &Path, image: &str, version: SmolvmVersion) -> Self {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(format!("{image}\n{version}").as_bytes());
        let key = hex::encode(&digest[..16]);
        Self {
            partial: cache.join(format!("{key}.partial")),
            partial_smolmachine: cache.join(format!("{key}.partial.smolmachine")),
            smolmachine: cache.join(format!("{key}.smolmachine")),
            image_tar: cache.join(format!("{key}.image.tar")),
            // Outside `bot-bottle-<slug>`: no slug can name a packing machine.
            pack_machine: format!("{PACK_MACHINE_PREFIX}{key}"),
            key,
        }
    }
}

/// The sidecar's listen addresses: every agent-facing service on all of the container's addresses
/// (it has the bundle's pinned IP and loopback, nothing else), the control API on a unix socket in
/// the host's state directory.
pub fn sidecar_layout() -> SidecarLayout {
    use crate::docker::{
        SIDECAR_CONTROL_TOKEN, SIDECAR_KEYS_DIR, SIDECAR_MIRRORS_DIR, SIDECAR_SECRET_FILES_DIR, SIDECAR_STATE_DIR,
        SIDECAR_UPSTREAM_CA,
    };
    SidecarLayout {
        state_dir: SIDECAR_STATE_DIR.into(),
        secrets_dir: SIDECAR_SECRET_FILES_DIR.into(),
        upstream_ca: SIDECAR_UPSTREAM_CA.into(),
        egress_listen: format!("tcp:0.0.0.0:{EGRESS_PORT}"),
        socket_group: None,
        git_gate_listen: format!("tcp:0.0.0.0:{GIT_GATE_PORT}"),
        keys_dir: SIDECAR_KEYS_DIR.into(),
        mirrors_dir: SIDECAR_MIRRORS_DIR.into(),
        supervise_listen: format!("tcp:0.0.0.0:{SUPERVISE_PORT}"),
        control_listen: format!("unix:{CONTROL_SOCKET}"),
        control_token_file: SIDECAR_CONTROL_TOKEN.into(),
    }
}

/// One resource a launch created, for teardown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    Network(String),
    Container(String),
    /// A machine: stopped, then deleted with `-f`.
    Machine(String),
    File(PathBuf),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Network(n) => write!(f, "network {n}"),
            Self::Container(c) => write!(f, "container {c}"),
            Self::Machine(m) => write!(f, "machine {m}"),
            Self::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

/// What the launch flow runs against: smolvm and the engine.
#[derive(Clone)]
pub struct Driver {
    pub cli: SmolvmCli,
    pub runner: Arc<dyn CommandRunner>,
    pub host: Arc<dyn BundleHost>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("cli", &self.cli).finish_non_exhaustive()
    }
}

impl Driver {
    /// Removes `steps` newest first, trying every one; returns what could not be removed.
    pub fn unwind(&self, steps: &mut Vec<Step>) -> Vec<(Step, Error)> {
        let mut failed = Vec::new();
        while let Some(step) = steps.pop() {
            let result = match &step {
                Step::Network(n) => self.host.remove_network(n),
                Step::Container(c) => self.host.remove_container(c),
                Step::Machine(m) => self.remove_machine(m),
                Step::File(p) => match std::fs::remove_file(p) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(source) => {
                        Err(Error::Io { image: "smolmachines".into(), action: "remove", path: p.clone(), source })
                    }
                },
            };
            if let Err(e) = result {
                failed.push((step, e));
            }
        }
        failed
    }

    /// `stop` then `delete -f`; a machine that is already gone is not an error.
    fn remove_machine(&self, name: &str) -> Result<(), Error> {
        let missing = |out: &CommandOutput| {
            out.smolvm_error()
                .is_some_and(|m| m.contains("not found") || m.contains("does not exist") || m.contains("No machine"))
        };
        let stop = self.runner.run(&self.cli.stop(name), None)?;
        if stop.code != 0 && missing(&stop) {
            return Ok(());
        }
        let delete = self.runner.run(&self.cli.delete(name), None)?;
        if delete.code == 0 || missing(&delete) {
            return Ok(());
        }
        Err(runner::failure(&format!("delete machine `{name}`"), &delete))
    }

    /// The machines smolvm knows, by name, with whether each runs.
    pub fn machines(&self) -> Result<Vec<(String, bool, Option<String>)>, Error> {
        let out = run_checked(self.runner.as_ref(), "list machines", &self.cli.ls(), None)?;
        #[derive(Deserialize)]
        struct Row {
            name: String,
            #[serde(default)]
            state: String,
            #[serde(default)]
            created_at: Option<serde_json::Value>,
        }
        let rows: Vec<Row> = serde_json::from_slice(&out.stdout).map_err(|e| Error::Smolvm {
            action: "list machines".into(),
            message: format!("`machine ls --json` printed something that is not a machine list: {e}"),
        })?;
        Ok(rows.into_iter().map(|r| (r.name, r.state == "running", r.created_at.map(|c| c.to_string()))).collect())
    }
}

/// The parts of a launch the flow needs besides the driver.
#[derive(Debug)]
pub struct FlowInputs<'a> {
    pub slug: &'a str,
    /// The agent's name, on the bundle's labels for `list`.
    pub agent: &'a str,
    pub names: Names,
    pub state_dir: &'a Path,
    pub cache_dir: &'a Path,
    pub inputs: &'a LaunchInputs,
    /// The address [`Backend::reserve`]-style allocation settled on (the plan's services host).
    pub address: BundleAddress,
    pub sidecar_user: (u32, u32),
    pub guest_env: Vec<(String, String)>,
}

/// Creates the bundle's network on the first free candidate address for `slug`, under the cache's
/// allocation lock. Returns the address; the network exists when this returns.
pub fn allocate(
    driver: &Driver,
    slug: &str,
    network: &str,
    cache: &Path,
    labels: &[(String, String)],
) -> Result<BundleAddress, Error> {
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { image: "smolmachines".into(), action, path, source }
    };
    std::fs::create_dir_all(cache).map_err(io("create", cache))?;
    let lock_path = cache.join("bundles.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io("open", &lock_path))?;
    lock.lock().map_err(io("lock", &lock_path))?;
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    for attempt in 0..ADDRESS_ATTEMPTS {
        let address = bottle_core::plan::bundle_address(slug, attempt);
        if bundle::overlaps_host_route(&address.subnet, &routes) {
            continue;
        }
        if driver.host.create_network(network, &address, labels)? {
            return Ok(address);
        }
    }
    Err(Error::Launch {
        slug: slug.to_owned(),
        action: "find a free subnet for the sidecar bundle".into(),
        source: format!(
            "{ADDRESS_ATTEMPTS} candidate /28s of {}.{}.0.0/16 are all taken",
            bottle_core::plan::BUNDLE_POOL.0,
            bottle_core::plan::BUNDLE_POOL.1
        )
        .into(),
    })
}

/// The launch flow after allocation (steps 2–5 of the module docs). `steps` receives every
/// resource as soon as it exists; on error the caller unwinds it.
pub fn bring_up(driver: &Driver, flow: &FlowInputs<'_>, steps: &mut Vec<Step>) -> Result<(), Error> {
    let FlowInputs { slug, names, inputs, address, .. } = flow;
    let cancelled = || -> Result<(), Error> {
        if inputs.cancel.load(Ordering::SeqCst) {
            return Err(Error::Cancelled { slug: (*slug).to_owned() });
        }
        Ok(())
    };
    // The allocation created the network.
    steps.push(Step::Network(names.network.clone()));
    cancelled()?;

    // The sidecar at the pinned IP.
    let mut labels = bundle_labels(slug, "sidecar");
    labels.push((crate::docker::LABEL_AGENT.to_owned(), flow.agent.to_owned()));
    labels.push((crate::docker::LABEL_OWNER.to_owned(), std::process::id().to_string()));
    labels.push((crate::docker::LABEL_DETACHED.to_owned(), if inputs.detached { "1" } else { "0" }.to_owned()));
    let spec = SidecarSpec {
        name: &names.sidecar,
        network: &names.network,
        address,
        image: &inputs.sidecar_image,
        config: &inputs.sidecar_config,
        secrets: &inputs.secrets,
        keys: &inputs.key_files,
        control_token: inputs.control_token.as_deref(),
        upstream_ca: inputs.upstream_ca.as_deref(),
        state_dir: flow.state_dir,
        user: flow.sidecar_user,
        labels,
    };
    steps.push(Step::Container(names.sidecar.clone()));
    driver.host.create_sidecar(&spec)?;
    driver.host.start_container(&names.sidecar)?;
    let egress: std::net::SocketAddr = format!("{}:{EGRESS_PORT}", address.sidecar).parse().map_err(|e| {
        Error::Launch { slug: (*slug).to_owned(), action: "read the sidecar address".into(), source: Box::new(e) }
    })?;
    driver.host.wait_listening(&names.sidecar, egress, READY_TIMEOUT)?;
    cancelled()?;

    // The agent artifact, packed once per image and smolvm version.
    let artifact = Artifact::new(flow.cache_dir, &inputs.agent_image, driver.cli.version);
    if !artifact.smolmachine.is_file() {
        // One packer per artifact: a second launch of the same image waits and then finds it.
        let lock_path = flow.cache_dir.join(format!("{}.lock", artifact.key));
        let io = |action| {
            let path = lock_path.clone();
            move |source| Error::Io { image: inputs.agent_image.clone(), action, path, source }
        };
        std::fs::create_dir_all(flow.cache_dir).map_err(io("create"))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open"))?;
        lock.lock().map_err(io("lock"))?;
        if !artifact.smolmachine.is_file() {
            pack(driver, &artifact, &inputs.agent_image)?;
        }
    }
    cancelled()?;

    // The machine, allowed to reach the sidecar's IP and nothing else.
    let allow = vec![format!("{}/32", address.sidecar)];
    let create = driver.cli.create(&CreateSpec {
        name: &names.machine,
        from: &artifact.smolmachine,
        allow_cidr: &allow,
        env: &flow.guest_env,
        cpus: VM_CPUS,
        mem_mib: VM_MEM_MIB,
    })?;
    steps.push(Step::Machine(names.machine.clone()));
    run_checked(driver.runner.as_ref(), &format!("create machine `{}`", names.machine), &create, None)?;
    run_boot_retry(
        driver.runner.as_ref(),
        &format!("start machine `{}`", names.machine),
        &driver.cli.start(&names.machine),
        None,
    )?;
    cancelled()?;

    // Packed files may belong to the host user's uid; the agent must own its home.
    let chown = guest_command(GuestUser::Root, &flow.guest_env, None, &sh(&format!("chown -R node:node {GUEST_HOME}")));
    run_boot_retry(
        driver.runner.as_ref(),
        "give /home/node to the agent user",
        &driver.cli.exec(&names.machine, ExecMode::default(), &flow.guest_env, &chown),
        None,
    )?;
    // The probes run from the `bot-bottle` binary, as on every backend.
    let binary = std::fs::read(&inputs.relay_binary).map_err(|source| Error::Io {
        image: "smolmachines".into(),
        action: "read",
        path: inputs.relay_binary.clone(),
        source,
    })?;
    let handle = SmolBottle::new(
        driver.clone(),
        bottle_slug(slug)?,
        names.clone(),
        flow.guest_env.clone(),
        address.clone(),
        flow.state_dir,
    );
    handle.put_file(Path::new(GUEST_BINARY), &binary, 0o755, ExecUser::Root)?;
    Ok(())
}

/// Packs `image` into `artifact`: `docker save` → a network-less machine from the tarball, started
/// once to unpack it and stopped → `pack create --from-vm` → the machine and tarball removed. The
/// artifact appears under its final name only when complete.
fn pack(driver: &Driver, artifact: &Artifact, image: &str) -> Result<(), Error> {
    let mut steps = Vec::new();
    let result = (|| {
        steps.push(Step::File(artifact.image_tar.clone()));
        driver.host.save_image(image, &artifact.image_tar)?;
        steps.push(Step::Machine(artifact.pack_machine.clone()));
        let runner = driver.runner.as_ref();
        let m = &artifact.pack_machine;
        run_checked(
            runner,
            &format!("create machine `{m}`"),
            &driver.cli.create_for_pack(m, &artifact.image_tar),
            None,
        )?;
        run_boot_retry(runner, &format!("start machine `{m}`"), &driver.cli.start(m), None)?;
        run_checked(runner, &format!("stop machine `{m}`"), &driver.cli.stop(m), None)?;
        steps.push(Step::File(artifact.partial_smolmachine.clone()));
        steps.push(Step::File(artifact.partial.clone()));
        run_checked(runner, &format!("pack `{image}`"), &driver.cli.pack_from_vm(m, &artifact.partial), None)?;
        std::fs::rename(&artifact.partial_smolmachine, &artifact.smolmachine).map_err(|source| Error::Io {
            image: image.to_owned(),
            action: "store the packed artifact",
            path: artifact.smolmachine.clone(),
            source,
        })?;
        Ok(())
    })();
    let failed = driver.unwind(&mut steps);
    for (step, e) in &failed {
        tracing::warn!(%step, error = %e, "packing left this behind; `bot-bottle cleanup` removes it");
    }
    result
}

fn bottle_slug(slug: &str) -> Result<Slug, Error> {
    Slug::parse(slug).map_err(|e| Error::Launch {
        slug: slug.to_owned(),
        action: "name the bottle".into(),
        source: e.message.into(),
    })
}

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.to_owned()]
}

/// The bundle network's labels: it belongs to this process until the sidecar exists.
fn network_labels(slug: &str) -> Vec<(String, String)> {
    let mut labels = bundle_labels(slug, "network");
    labels.push((crate::docker::LABEL_OWNER.to_owned(), std::process::id().to_string()));
    labels
}

fn bundle_labels(slug: &str, role: &str) -> Vec<(String, String)> {
    vec![
        (crate::image::LABEL.to_owned(), "1".to_owned()),
        (LABEL_BUNDLE.to_owned(), slug.to_owned()),
        (LABEL_ROLE.to_owned(), role.to_owned()),
    ]
}

/// What [`STATE_FILE`] holds: enough to reopen the bottle from another process.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    names: Names,
    address: BundleAddress,
    version: SmolvmVersion,
    /// The guest environment, re-passed on every exec. Holds agent-visible values only (the agent
    /// has them anyway); the file is 0600 in the user's state directory.
    env: Vec<(String, String)>,
}

impl<'de> Deserialize<'de> for SmolvmVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("not a version: {s}")))
    }
}

fn write_saved(state_dir: &Path, saved: &Saved) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = state_dir.join(STATE_FILE);
    let io = |source| Error::Io { image: "smolmachines".into(), action: "write", path: path.clone(), source };
    let json = serde_json::to_vec_pretty(saved).map_err(|e| io(std::io::Error::other(e)))?;
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path).map_err(io)?;
    f.write_all(&json).map_err(io)
}

fn read_saved(state_dir: &Path) -> Option<Saved> {
    serde_json::from_slice(&std::fs::read(state_dir.join(STATE_FILE)).ok()?).ok()
}

/// Where the agent of the smolmachines bottle whose state is `state_dir` reaches its services,
/// when it is one.
pub fn services_host(state_dir: &Path) -> Option<String> {
    read_saved(state_dir).map(|s| s.address.sidecar)
}

/// A smolmachines bottle.
pub struct SmolBottle {
    driver: Driver,
    slug: Slug,
    names: Names,
    env: Vec<(String, String)>,
    address: BundleAddress,
    state_dir: PathBuf,
    /// What [`Bottle::close`] removes, oldest first.
    steps: Vec<Step>,
}

impl std::fmt::Debug for SmolBottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmolBottle").field("slug", &self.slug).field("names", &self.names).finish_non_exhaustive()
    }
}

impl SmolBottle {
    fn new(
        driver: Driver,
        slug: Slug,
        names: Names,
        env: Vec<(String, String)>,
        address: BundleAddress,
        state_dir: &Path,
    ) -> Self {
        let steps = vec![
            Step::Network(names.network.clone()),
            Step::Container(names.sidecar.clone()),
            Step::Machine(names.machine.clone()),
        ];
        Self { driver, slug, names, env, address, state_dir: state_dir.to_owned(), steps }
    }

    /// The bundle's addresses.
    pub fn address(&self) -> &BundleAddress {
        &self.address
    }

    fn guest_user(user: ExecUser) -> GuestUser {
        match user {
            ExecUser::Root => GuestUser::Root,
            ExecUser::Agent => GuestUser::Agent,
            ExecUser::Relay => GuestUser::Nobody,
        }
    }

    /// `smolvm machine exec` of `script` as `user`, stdin from `input` when given.
    fn run_script(&self, script: &str, user: ExecUser, input: Option<&[u8]>) -> Result<CommandOutput, Error> {
        let workdir = (user == ExecUser::Agent).then_some(GUEST_HOME);
        let guest = guest_command(Self::guest_user(user), &self.env, workdir, &sh(script));
        let mode = ExecMode { interactive: input.is_some(), tty: false };
        let out = self.driver.runner.run(&self.driver.cli.exec(&self.names.machine, mode, &self.env, &guest), input)?;
        if let Some(message) = out.smolvm_error() {
            return Err(Error::Smolvm { action: format!("exec in machine `{}`", self.names.machine), message });
        }
        Ok(out)
    }

    /// Unpacks `archive` at `/` as root, then gives `dirs` (created first as `owner`) their owner.
    fn untar(&self, archive: &[u8], what: &str) -> Result<(), Error> {
        let out =
            self.run_script("tar -x -p --same-owner --no-overwrite-dir -C / -f -", ExecUser::Root, Some(archive))?;
        if out.code != 0 || out.truncated {
            return Err(Error::Launch {
                slug: self.slug.to_string(),
                action: format!("copy {what} into the machine"),
                source: out.stderr_tail(5).into(),
            });
        }
        Ok(())
    }

    /// Creates `dir` (and its parents) as `owner`.
    fn mkdir_as(&self, dir: &Path, owner: ExecUser) -> Result<(), Error> {
        let out = self.run_script(
            &format!("mkdir -p -- {}", crate::docker::sh_quote(&dir.display().to_string())),
            owner,
            None,
        )?;
        if out.code != 0 {
            return Err(Error::Launch {
                slug: self.slug.to_string(),
                action: format!("create `{}`", dir.display()),
                source: out.stderr_tail(5).into(),
            });
        }
        Ok(())
    }
}

fn tar_files(files: &[GuestFile<'_>]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for f in files {
        let (uid, gid) = crate::docker::backend::ids(f.owner);
        let mut header = tar::Header::new_gnu();
        header.set_mode(f.mode);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mtime(crate::docker::backend::now_secs());
        header.set_size(f.contents.len() as u64);
        let path = f.dest.strip_prefix("/").map_err(|_| std::io::Error::other("not an absolute path"))?;
        tar.append_data(&mut header, path, f.contents)?;
    }
    tar.into_inner()
}

impl Bottle for SmolBottle {
    fn slug(&self) -> &Slug {
        &self.slug
    }

    fn control_socket(&self) -> Option<PathBuf> {
        Some(self.state_dir.join(CONTROL_SOCKET_NAME))
    }

    fn agent_argv(&self, argv: &[String], tty: bool) -> Vec<String> {
        let guest = guest_command(GuestUser::Agent, &self.env, Some(GUEST_HOME), argv);
        // Stdin always goes in (piped input, as `docker exec -i`); a terminal only when asked.
        let mode = ExecMode { interactive: true, tty };
        let exec = self.driver.cli.exec(&self.names.machine, mode, &self.env, &guest);
        if !tty {
            return exec;
        }
        // The size bridge around the interactive exec: the guest terminal follows this one.
        let exe = std::env::current_exe().map_or_else(|_| "bot-bottle".to_owned(), |p| p.display().to_string());
        let mut out = vec![exe, "pty-bridge".into(), "--smolvm".into(), self.driver.cli.program.clone()];
        out.extend(["--machine".into(), self.names.machine.clone(), "--".into()]);
        out.extend(exec);
        out
    }

    fn exec(&self, script: &str, user: ExecUser) -> Result<ExecResult, Error> {
        let out = self.run_script(script, user, None)?;
        Ok(ExecResult { code: out.code, stdout: out.stdout, stderr: out.stderr })
    }

    fn cp_in(&self, host: &Path, dest: &Path, owner: ExecUser) -> Result<(), Error> {
        let (parent, name) = crate::docker::backend::split_dest(self.slug.as_str(), dest)?;
        self.mkdir_as(Path::new(&parent), owner)?;
        let inner = format!("{}/{name}", parent.trim_start_matches('/'));
        let archive = crate::docker::backend::tar_host_path(host, &inner, owner).map_err(|source| Error::Launch {
            slug: self.slug.to_string(),
            action: format!("pack `{}`", host.display()),
            source: Box::new(source),
        })?;
        self.untar(&archive, &format!("`{}`", host.display()))
    }

    fn cp_out(&self, guest: &Path, host: &Path) -> Result<usize, Error> {
        let fail = |reason: String| Error::CopyOut {
            slug: self.slug.to_string(),
            guest: guest.to_owned(),
            host: host.to_owned(),
            reason,
        };
        let (Some(parent), Some(name)) = (guest.parent().filter(|_| guest.is_absolute()), guest.file_name()) else {
            return Err(fail("the path in the bottle must be absolute, with a file name".into()));
        };
        let script = format!(
            "tar -c -C {} -f - -- {}",
            crate::docker::sh_quote(&parent.display().to_string()),
            crate::docker::sh_quote(&name.to_string_lossy())
        );
        let out = self.run_script(&script, ExecUser::Root, None)?;
        if out.code != 0 {
            return Err(fail(out.stderr_tail(3)));
        }
        if out.truncated {
            return Err(fail(format!(
                "it is larger than {} MiB, the most one exec in a machine returns",
                runner::OUTPUT_CAP >> 20
            )));
        }
        crate::archive::unpack_to(out.stdout.as_slice(), host).map_err(|e| fail(e.to_string()))
    }

    fn put_file(&self, dest: &Path, contents: &[u8], mode: u32, owner: ExecUser) -> Result<(), Error> {
        if let Some(parent) = dest.parent() {
            self.mkdir_as(parent, owner)?;
        }
        self.put_files(&[GuestFile { dest, contents, mode, owner }])
    }

    fn put_files(&self, files: &[GuestFile<'_>]) -> Result<(), Error> {
        // Agent-owned files' directories inside the home are made by the agent, so they are its.
        let mut dirs = std::collections::BTreeSet::new();
        for f in files.iter().filter(|f| f.owner == ExecUser::Agent) {
            if let Some(parent) = f.dest.parent().filter(|p| p.starts_with(GUEST_HOME)) {
                dirs.insert(parent.to_path_buf());
            }
        }
        if !dirs.is_empty() {
            let list: Vec<String> = dirs.iter().map(|d| crate::docker::sh_quote(&d.display().to_string())).collect();
            let out = self.run_script(&format!("mkdir -p -- {}", list.join(" ")), ExecUser::Agent, None)?;
            if out.code != 0 {
                return Err(Error::Launch {
                    slug: self.slug.to_string(),
                    action: "create the agent's directories".into(),
                    source: out.stderr_tail(5).into(),
                });
            }
        }
        let archive = tar_files(files).map_err(|source| Error::Launch {
            slug: self.slug.to_string(),
            action: "pack the provisioned files".into(),
            source: Box::new(source),
        })?;
        self.untar(&archive, "the provisioned files")
    }

    fn attach(&self, argv: &[String]) -> Result<i32, Error> {
        let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        let full = self.agent_argv(argv, tty);
        let (program, args) = full.split_first().ok_or_else(|| Error::Spawn {
            program: "smolvm".into(),
            source: std::io::Error::other("empty command line"),
        })?;
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .map_err(|source| Error::Spawn { program: program.clone(), source })?;
        use std::os::unix::process::ExitStatusExt as _;
        Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    fn selftest_args(&self, canary_port: u16) -> Vec<String> {
        let mut args = probe_args(&self.address);
        for server in host_resolvers() {
            args.extend(["--dns".to_owned(), format!("{server}:53"), "--tcp".to_owned(), format!("{server}:53")]);
        }
        // The host's canary, through the bundle's gateway and the virtio-net gateway.
        for host in [self.address.gateway.as_str(), "100.96.0.1"] {
            args.extend(["--tcp".to_owned(), format!("{host}:{canary_port}")]);
        }
        args
    }

    fn close(mut self: Box<Self>) -> Result<(), Error> {
        let mut steps = std::mem::take(&mut self.steps);
        let failed = self.driver.unwind(&mut steps);
        match failed.into_iter().next() {
            None => Ok(()),
            Some((step, e)) => Err(Error::Launch {
                slug: self.slug.to_string(),
                action: format!("remove {step}"),
                source: Box::new(e),
            }),
        }
    }
}

/// What the probes inside a VM try beyond the common set: the proxy and every service at the
/// bundle's IP (the proxy must answer, the control port must not), the bundle's gateway (the host),
/// the virtio-net gateway, the public DNS server smolvm may add to an allow-list on its own, and SSH
/// on the sidecar's IP. At launch the handle adds the host's resolvers (the other DNS allowance
/// smolvm may add) and the host canary. A VM has an interface and a route by design, so those probes do not apply; its
/// boundary is the allow-list, which these connections test.
pub fn probe_args(address: &BundleAddress) -> Vec<String> {
    let mut args = vec![
        "--network-path".to_owned(),
        "--proxy".into(),
        format!("{}:{EGRESS_PORT}", address.sidecar),
        "--control".into(),
        format!("{}:{}", address.sidecar, bottle_core::plan::CONTROL_PORT),
    ];
    let tcp = vec![
        format!("{}:22", address.sidecar),
        format!("{}:22", address.gateway),
        format!("{}:80", address.gateway),
        "100.96.0.1:22".to_owned(),
        "1.1.1.1:53".to_owned(),
        "8.8.8.8:443".to_owned(),
    ];
    let dns = vec!["1.1.1.1:53".to_owned()];
    for t in tcp {
        args.extend(["--tcp".into(), t]);
    }
    for d in dns {
        args.extend(["--dns".into(), d]);
    }
    args
}

/// The host's IPv4 nameservers, and systemd-resolved's upstreams: smolvm may add one to an
/// allow-list as a DNS allowance, which would be a way out.
fn host_resolvers() -> Vec<String> {
    // Loopback ones too (systemd-resolved's 127.0.0.53): a VM's loopback may be the host's.
    let mut out: Vec<String> = Vec::new();
    for file in ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for ip in text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|ip| ip.trim().parse::<std::net::Ipv4Addr>().ok())
        {
            if !out.contains(&ip.to_string()) {
                out.push(ip.to_string());
            }
        }
    }
    out
}

/// The smolmachines backend.
pub struct SmolBackend {
    /// `None` when no `smolvm` is installed: listing and cleanup of bundles still work.
    driver: Result<Driver, String>,
    host: Arc<dyn BundleHost>,
    runner: Arc<dyn CommandRunner>,
    /// `$BOT_BOTTLE_HOME/state`, where each bottle's [`STATE_FILE`] lives.
    state_root: PathBuf,
    cache: PathBuf,
    /// The network [`Backend::reserve`] created, adopted by the launch that follows.
    reserved: std::sync::Mutex<Option<(String, BundleAddress)>>,
}

impl std::fmt::Debug for SmolBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmolBackend").field("driver", &self.driver).field("cache", &self.cache).finish_non_exhaustive()
    }
}

/// The installed smolvm: program and version, or why there is none.
pub fn detect(runner: &dyn CommandRunner) -> Result<SmolvmCli, String> {
    let program = std::env::var(SMOLVM_VAR).ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "smolvm".to_owned());
    let out = runner
        .run(&SmolvmCli::version_argv(&program), None)
        .map_err(|e| format!("`{program}` is not installed or cannot run ({e})"))?;
    if out.code != 0 {
        return Err(format!("`{program} --version` exited with {}", out.code));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let version = SmolvmVersion::parse(&text)
        .ok_or_else(|| format!("`{program} --version` printed no version: {}", text.trim()))?;
    Ok(SmolvmCli::new(program, version))
}

impl SmolBackend {
    /// The real backend: the engine on `rt` for bundles, `smolvm` (if installed) for machines.
    pub fn connect(rt: Arc<tokio::runtime::Runtime>, state_root: PathBuf) -> Result<Self, Error> {
        let engine = rt.block_on(crate::Engine::connect())?;
        let host: Arc<dyn BundleHost> = Arc::new(bundle::EngineBundle { rt, engine });
        let runner: Arc<dyn CommandRunner> = Arc::new(runner::TokioRunner::new()?);
        Self::with_parts(host, runner, state_root, bundle::cache_dir()?)
    }

    /// A backend on any host and runner (tests record both).
    pub fn with_parts(
        host: Arc<dyn BundleHost>,
        runner: Arc<dyn CommandRunner>,
        state_root: PathBuf,
        cache: PathBuf,
    ) -> Result<Self, Error> {
        let driver = detect(runner.as_ref()).map(|cli| Driver { cli, runner: runner.clone(), host: host.clone() });
        Ok(Self { driver, host, runner, state_root, cache, reserved: std::sync::Mutex::new(None) })
    }

    /// The installed smolvm, when there is one.
    pub fn smolvm(&self) -> Result<&SmolvmCli, Error> {
        self.driver.as_ref().map(|d| &d.cli).map_err(|why| Error::SmolvmMissing { why: why.clone() })
    }

    /// The installed smolvm if bottles may launch on it: present, and not a version whose
    /// allow-list can be dropped. Checked before anything is built or created.
    pub fn ensure_launchable(&self) -> Result<&SmolvmCli, Error> {
        let cli = self.smolvm()?;
        if !cli.version.can_launch() {
            return Err(Error::SmolvmUnsafe { version: cli.version.to_string(), why: cli::FROM_DROPS_EGRESS.into() });
        }
        Ok(cli)
    }

    fn driver(&self) -> Result<&Driver, Error> {
        self.driver.as_ref().map_err(|why| Error::SmolvmMissing { why: why.clone() })
    }

    /// The driver for teardown: with no smolvm, machines cannot exist (or be removed), but bundles can.
    fn teardown_driver(&self) -> Driver {
        self.driver.clone().unwrap_or_else(|_| Driver {
            cli: SmolvmCli::new("smolvm", version::PLANNING_DEFAULT),
            runner: self.runner.clone(),
            host: self.host.clone(),
        })
    }

    /// Every slug with a machine or bundle resource, and what it has.
    fn inventory(&self) -> Result<BTreeMap<String, Inventory>, Error> {
        let mut out: BTreeMap<String, Inventory> = BTreeMap::new();
        for r in self.host.list()? {
            let entry = out.entry(r.slug.clone()).or_default();
            entry.owner = entry.owner.or(r.owner);
            entry.detached |= r.detached;
            match r.kind {
                BundleKind::Container => {
                    entry.sidecar_running = Some(r.running);
                    entry.agent = r.agent.filter(|a| !a.is_empty());
                    entry.created = r.created;
                    entry.steps.push(Step::Container(r.name));
                }
                BundleKind::Network => entry.steps.insert(0, Step::Network(r.name)),
            }
        }
        if let Ok(driver) = self.driver() {
            for (name, running, _) in driver.machines()? {
                let Some(slug) = name.strip_prefix("bot-bottle-") else { continue };
                let entry = out.entry(slug.to_owned()).or_default();
                entry.machine_running = Some(running);
                entry.steps.push(Step::Machine(name));
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Default)]
struct Inventory {
    sidecar_running: Option<bool>,
    machine_running: Option<bool>,
    created: Option<i64>,
    owner: Option<u32>,
    detached: bool,
    agent: Option<String>,
    /// Teardown order is the reverse: machine, container, network.
    steps: Vec<Step>,
}

impl Inventory {
    fn status(&self) -> BottleStatus {
        match (self.machine_running, self.sidecar_running) {
            (Some(true), Some(true)) => BottleStatus::Running,
            (Some(true), _) | (_, Some(true)) => BottleStatus::Degraded,
            _ => BottleStatus::Stopped,
        }
    }

    fn is_live(&self, machines_known: bool) -> bool {
        let owner_alive =
            self.owner.is_some_and(|pid| pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists());
        // Without smolvm nobody can tell whether the machine runs: a running sidecar is kept.
        let unknown = !machines_known && self.sidecar_running == Some(true);
        owner_alive || unknown || (self.detached && self.status() == BottleStatus::Running)
    }
}

impl Backend for SmolBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Smolmachines
    }

    fn sidecar_layout(&self) -> SidecarLayout {
        sidecar_layout()
    }

    fn prepare(&self, _plan: &LaunchPlan, agent_image: &str) -> Result<Preflight, Error> {
        let cli = self.ensure_launchable()?;
        let kvm = Path::new("/dev/kvm");
        if std::fs::OpenOptions::new().read(true).write(true).open(kvm).is_err() {
            return Err(Error::Launch {
                slug: "smolmachines".into(),
                action: "open /dev/kvm".into(),
                source: "smolvm needs read/write access to /dev/kvm (join the `kvm` group)".into(),
            });
        }
        let warnings = cli.version.problems().iter().map(|p| format!("smolvm {}: {}", cli.version, p.what)).collect();
        Ok(Preflight { images: vec![agent_image.to_owned()], runtime: format!("smolvm {}", cli.version), warnings })
    }

    fn reserve(&self, plan: &LaunchPlan) -> Result<Option<String>, Error> {
        let driver = self.driver()?;
        let names = Names::for_slug(plan.slug.as_str());
        if let Some(existing) = self.inventory()?.get(plan.slug.as_str()) {
            let what: Vec<String> = existing.steps.iter().map(ToString::to_string).collect();
            return Err(Error::SlugInUse { slug: plan.slug.to_string(), resources: what.join(", ") });
        }
        let address =
            allocate(driver, plan.slug.as_str(), &names.network, &self.cache, &network_labels(plan.slug.as_str()))?;
        let host = address.sidecar.clone();
        if let Ok(mut r) = self.reserved.lock() {
            *r = Some((plan.slug.to_string(), address));
        }
        Ok(Some(host))
    }

    fn release(&self, slug: &str) {
        let taken = self.reserved.lock().ok().and_then(|mut r| r.take_if(|(s, _)| s == slug));
        if taken.is_some() {
            let _ = self.host.remove_network(&Names::for_slug(slug).network);
        }
    }

    fn launch(&self, plan: &LaunchPlan, inputs: LaunchInputs) -> Result<Box<dyn Bottle>, Error> {
        let driver = self.driver()?;
        let slug = plan.slug.as_str();
        let names = Names::for_slug(slug);
        let sidecar_user = match crate::docker::backend::owner_of(&plan.state_dir) {
            Ok(user) => user,
            Err(e) => {
                self.release(slug);
                return Err(e);
            }
        };
        let reserved = self.reserved.lock().ok().and_then(|mut r| r.take_if(|(s, _)| s == slug));
        let mut steps = Vec::new();
        let address = match reserved {
            Some((_, address)) => address,
            None => allocate(driver, slug, &names.network, &self.cache, &network_labels(slug))?,
        };
        if address.sidecar != plan.ports.host {
            steps.push(Step::Network(names.network.clone()));
            driver.unwind(&mut steps);
            return Err(Error::Launch {
                slug: slug.to_owned(),
                action: "pin the sidecar's address".into(),
                source: format!("the plan names {} and the network got {}", plan.ports.host, address.sidecar).into(),
            });
        }
        let guest_env = inputs.agent_env.clone();
        let flow = FlowInputs {
            slug,
            agent: &plan.agent.name,
            names: names.clone(),
            state_dir: &plan.state_dir,
            cache_dir: &self.cache,
            inputs: &inputs,
            address: address.clone(),
            sidecar_user,
            guest_env: guest_env.clone(),
        };
        if let Err(e) = bring_up(driver, &flow, &mut steps) {
            for (step, err) in driver.unwind(&mut steps) {
                tracing::warn!(%step, error = %err, "launch unwound with leftovers; `bot-bottle cleanup` removes them");
            }
            return Err(e);
        }
        let saved = Saved {
            names: names.clone(),
            address: address.clone(),
            version: driver.cli.version,
            env: guest_env.clone(),
        };
        if let Err(e) = write_saved(&plan.state_dir, &saved) {
            driver.unwind(&mut steps);
            return Err(e);
        }
        Ok(Box::new(SmolBottle::new(driver.clone(), plan.slug.clone(), names, guest_env, address, &plan.state_dir)))
    }

    fn open(&self, slug: &str) -> Result<Box<dyn Bottle>, Error> {
        let driver = self.driver()?;
        let state_dir = self.state_root.join(slug);
        let no_such = || Error::NoSuchBottle { slug: slug.to_owned(), backend: self.kind().to_string() };
        let saved = read_saved(&state_dir).ok_or_else(no_such)?;
        let running = driver.machines()?.into_iter().find(|(n, _, _)| n == &saved.names.machine).map(|(_, r, _)| r);
        match running {
            None => return Err(no_such()),
            Some(false) => return Err(Error::NotRunning { slug: slug.to_owned(), state: "machine stopped".into() }),
            Some(true) => {}
        }
        let slug = Slug::parse(slug).map_err(|_| no_such())?;
        Ok(Box::new(SmolBottle::new(driver.clone(), slug, saved.names, saved.env, saved.address, &state_dir)))
    }

    fn list(&self) -> Result<Vec<BottleSummary>, Error> {
        Ok(self
            .inventory()?
            .into_iter()
            .map(|(slug, inv)| BottleSummary {
                backend: BackendKind::Smolmachines,
                status: inv.status(),
                created: BottleSummary::created_at(inv.created),
                agent: inv.agent,
                slug,
            })
            .collect())
    }

    fn stop(&self, slug: &str) -> Result<CleanupReport, Error> {
        let mut inventory = self.inventory()?;
        let Some(inv) = inventory.remove(slug) else {
            return Err(Error::NoSuchBottle { slug: slug.to_owned(), backend: self.kind().to_string() });
        };
        Ok(remove(&self.teardown_driver(), inv.steps, false))
    }

    fn cleanup(&self, options: &CleanupOptions) -> Result<CleanupReport, Error> {
        let driver = self.teardown_driver();
        let mut report = CleanupReport::default();
        let machines_known = self.driver().is_ok();
        for (slug, inv) in self.inventory()? {
            let owner_gone = options.dead_owners.contains(&slug) && !inv.detached;
            if inv.is_live(machines_known) && !owner_gone {
                continue;
            }
            report.absorb(remove(&driver, inv.steps, options.dry_run));
        }
        // Machines packing left behind (a crash mid-pack) are never live.
        if let Ok(d) = self.driver() {
            for (name, _, _) in d.machines()? {
                let Some(key) = name.strip_prefix(PACK_MACHINE_PREFIX) else { continue };
                // A launch that is packing right now holds the artifact's lock: leave its machine.
                let Ok(lock) = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(self.cache.join(format!("{key}.lock")))
                else {
                    continue;
                };
                if lock.try_lock().is_err() {
                    continue;
                }
                report.absorb(remove(&driver, vec![Step::Machine(name)], options.dry_run));
                drop(lock);
            }
        }
        Ok(report)
    }
}

fn remove(driver: &Driver, mut steps: Vec<Step>, dry_run: bool) -> CleanupReport {
    let all: Vec<String> = steps.iter().rev().map(ToString::to_string).collect();
    if dry_run {
        return CleanupReport { removed: all, failed: Vec::new() };
    }
    let failed = driver.unwind(&mut steps);
    let failed_names: Vec<String> = failed.iter().map(|(s, _)| s.to_string()).collect();
    CleanupReport {
        removed: all.into_iter().filter(|r| !failed_names.contains(r)).collect(),
        failed: failed.into_iter().map(|(s, e)| (s.to_string(), e.to_string())).collect(),
    }
}

/// What `start --dry-run` shows of a smolmachines launch: the network, the pinned IP, the pack
/// cache key and every `smolvm` command line in the order the launch runs them. Pure: the version
/// is the installed one when known, else [`version::PLANNING_DEFAULT`] (and the plan says so).
pub fn dry_run(
    plan: &LaunchPlan,
    cli: &SmolvmCli,
    detected: bool,
    agent_image: &str,
    cache: &Path,
    agent_command: &[String],
) -> serde_json::Value {
    // Secret values are `«NAME»` in the plan's env already.
    let env: Vec<(String, String)> = plan.env.iter().map(|e| (e.name.clone(), e.value.clone())).collect();
    dry_run_parts(plan.slug.as_str(), &plan.state_dir, &env, cli, detected, agent_image, cache, agent_command)
}

#[allow(clippy::too_many_arguments)]
fn dry_run_parts(
    slug: &str,
    state_dir: &Path,
    env: &[(String, String)],
    cli: &SmolvmCli,
    detected: bool,
    agent_image: &str,
    cache: &Path,
    agent_command: &[String],
) -> serde_json::Value {
    let names = Names::for_slug(slug);
    let address = bottle_core::plan::bundle_address(slug, 0);
    let artifact = Artifact::new(cache, agent_image, cli.version);
    let env = env.to_vec();
    let allow = vec![format!("{}/32", address.sidecar)];
    let create = cli.create(&CreateSpec {
        name: &names.machine,
        from: &artifact.smolmachine,
        allow_cidr: &allow,
        env: &env,
        cpus: VM_CPUS,
        mem_mib: VM_MEM_MIB,
    });
    let exec = |user, script: &str| {
        let workdir = (user == GuestUser::Agent).then_some(GUEST_HOME);
        cli.exec(&names.machine, ExecMode::default(), &env, &guest_command(user, &env, workdir, &sh(script)))
    };
    let mut commands = vec![
        serde_json::json!({"step": "pack (only when the artifact is not cached)", "argv": cli.create_for_pack(&artifact.pack_machine, &artifact.image_tar)}),
        serde_json::json!({"step": "pack", "argv": cli.start(&artifact.pack_machine)}),
        serde_json::json!({"step": "pack", "argv": cli.stop(&artifact.pack_machine)}),
        serde_json::json!({"step": "pack", "argv": cli.pack_from_vm(&artifact.pack_machine, &artifact.partial)}),
        serde_json::json!({"step": "pack", "argv": cli.delete(&artifact.pack_machine)}),
    ];
    match &create {
        Ok(argv) => commands.push(serde_json::json!({"step": "create", "argv": argv})),
        Err(e) => commands.push(serde_json::json!({"step": "create", "refused": e.to_string()})),
    }
    commands.push(serde_json::json!({"step": "start", "argv": cli.start(&names.machine)}));
    commands.push(serde_json::json!({"step": "chown", "argv": exec(GuestUser::Root, &format!("chown -R node:node {GUEST_HOME}"))}));
    commands.push(serde_json::json!({"step": "copy the probes binary", "argv": cli.exec(&names.machine, ExecMode { interactive: true, tty: false }, &env, &guest_command(GuestUser::Root, &env, None, &sh("tar -x -p --same-owner --no-overwrite-dir -C / -f -")))}));
    let mut selftest = vec![GUEST_BINARY.to_owned(), "selftest".into(), "--format".into(), "json".into()];
    selftest.extend(probe_args(&address));
    commands.push(serde_json::json!({"step": "boundary self-test", "note": "at launch also: --dns and --tcp to the host's resolvers, --tcp to the host's canary port", "argv": cli.exec(&names.machine, ExecMode::default(), &env, &guest_command(GuestUser::Agent, &env, Some(GUEST_HOME), &selftest))}));
    if !agent_command.is_empty() {
        let guest = guest_command(GuestUser::Agent, &env, Some(GUEST_HOME), agent_command);
        commands.push(serde_json::json!({"step": "agent", "argv": cli.exec(&names.machine, ExecMode { interactive: true, tty: true }, &env, &guest)}));
    }
    commands.push(serde_json::json!({"step": "teardown", "argv": cli.stop(&names.machine)}));
    commands.push(serde_json::json!({"step": "teardown", "argv": cli.delete(&names.machine)}));
    serde_json::json!({
        "smolvm": {
            "program": cli.program,
            "version": cli.version,
            "detected": detected,
            "can_launch": cli.version.can_launch(),
            "problems": cli.version.problems(),
        },
        "network": {"name": names.network, "driver": "bridge", "subnet": address.subnet, "gateway": address.gateway},
        "sidecar": {
            "container": names.sidecar,
            "ip": address.sidecar,
            "listen": [format!("{}:{EGRESS_PORT}", address.sidecar), format!("{}:{GIT_GATE_PORT}", address.sidecar), format!("{}:{SUPERVISE_PORT}", address.sidecar)],
            "control": state_dir.join(CONTROL_SOCKET_NAME),
        },
        "machine": names.machine,
        "allow_cidr": allow,
        "pack": {
            "image": agent_image,
            "cache_dir": cache,
            "key": artifact.key,
            "artifact": artifact.smolmachine,
        },
        "commands": commands,
    })
}

#[cfg(test)]
mod tests;
