//! The docker backend's launch (DESIGN.md §2): a per-bottle socket volume, a per-bottle bridge
//! network for the sidecar's egress only, the sidecar container on it, and the agent container with
//! **`network=none`** whose only way out is the relay to the sidecar's unix sockets in the volume.
//!
//! Why not an `--internal` network: a container on one still reaches host services bound to 0.0.0.0
//! through the bridge gateway. With `network=none` the agent has loopback and nothing else, so the
//! boundary does not depend on what the host runs.
//!
//! Every resource is registered on an [`undo::Undo`] stack as soon as it exists; a failed launch and
//! [`DockerBottle::close`] remove them newest first. Secrets never travel through the engine's API
//! as env, argv or labels: the sidecar reads them from a host directory mounted read-only into the
//! sidecar alone, and its config (which holds no secrets) is copied in as a 0600 file.

pub(crate) mod backend;
pub mod undo;

pub use backend::{
    DockerBackend, DockerHandle, GVISOR_RUNTIME, LABEL_AGENT, LABEL_DETACHED, LABEL_OWNER, RuntimeProbe, probe_runtime,
    sh_quote,
};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, HostConfig, Ipam, IpamConfig, Mount, MountType, NetworkCreateRequest, PortBinding,
    VolumeCreateRequest,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, LogsOptionsBuilder, UploadToContainerOptionsBuilder};
use bottle_core::plan::{EGRESS_PORT, ResourcePlan};
use futures_util::StreamExt as _;

use crate::relay::RelayMap;
use crate::{Engine, Error, ExecResult, ExecUser};
use undo::{Resource, Undo};

/// Label carrying the bottle's slug on every container, network and volume, so `list` and
/// `cleanup` find them.
pub const LABEL_SLUG: &str = "bot-bottle.slug";
/// Label naming a container's role (`agent`, `sidecar`).
pub const LABEL_ROLE: &str = "bot-bottle.role";
/// Where both containers mount the socket volume.
pub const SOCKET_DIR: &str = "/run/bot-bottle/sock";
/// The egress proxy's socket, as both containers see it; the sidecar config's `listen.egress` is
/// `unix:` followed by this.
pub const EGRESS_SOCKET: &str = "/run/bot-bottle/sock/egress.sock";
/// Where the sidecar finds its config file.
pub const SIDECAR_CONFIG: &str = "/etc/bot-bottle/sidecar.json";
/// Where the sidecar sees the host's secrets directory (its config's `secrets_dir`).
pub const SIDECAR_SECRETS_DIR: &str = "/run/bot-bottle/secrets";
/// The sidecar's state directory inside its container (its config's `state_dir`).
pub const SIDECAR_STATE_DIR: &str = "/var/lib/bot-bottle/state";
/// Where the secret files of [`LaunchSpec::secret_files`] land in the sidecar (the launcher's
/// `secrets_dir`).
pub const SIDECAR_SECRET_FILES_DIR: &str = "/etc/bot-bottle/secrets";
/// Where the control API's token lands in the sidecar.
pub const SIDECAR_CONTROL_TOKEN: &str = "/etc/bot-bottle/control-token";
/// The supervise (MCP) socket, as both containers see it.
pub const SUPERVISE_SOCKET: &str = "/run/bot-bottle/sock/supervise.sock";
/// Where [`LaunchSpec::key_files`] land in the sidecar.
pub const SIDECAR_KEYS_DIR: &str = "/etc/bot-bottle/keys";
/// The git-gate's socket, as both containers see it.
pub const GIT_GATE_SOCKET: &str = "/run/bot-bottle/sock/git-gate.sock";
/// Where the sidecar keeps the git-gate's mirrors: under the state directory, so they are the
/// user's and go with the bottle's state.
pub const SIDECAR_MIRRORS_DIR: &str = "/var/lib/bot-bottle/state/mirrors";
/// Where the sidecar finds the extra upstream CA bundle, when the bottle names one.
pub const SIDECAR_UPSTREAM_CA: &str = "/etc/bot-bottle/upstream-ca.pem";
/// Where the agent container sees the relay binary.
pub const RELAY_BINARY: &str = "/opt/bot-bottle/bot-bottle";
/// The relay's uid and gid inside the agent container: neither root nor `node`, so the agent can
/// neither signal nor trace it. The sidecar gives its sockets to this group (mode 0060), so the
/// relay is the only process in the agent container that can connect to them.
pub const RELAY_ID: u32 = 61_000;
/// The agent user's uid in every agent image (`node`).
pub const AGENT_UID: u32 = 1000;
/// How long a launch waits for the sidecar's egress socket to appear.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Memory and process limits of the two containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub agent_memory_bytes: i64,
    pub agent_pids: i64,
    pub sidecar_memory_bytes: i64,
    pub sidecar_pids: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { agent_memory_bytes: 4 << 30, agent_pids: 1024, sidecar_memory_bytes: 512 << 20, sidecar_pids: 256 }
    }
}

/// Everything a docker launch needs.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The bottle's slug, put on every resource as [`LABEL_SLUG`].
    pub slug: String,
    /// Resource names (from the launch plan, or [`resource_names`]).
    pub resources: ResourcePlan,
    pub agent_image: String,
    pub sidecar_image: String,
    /// The sidecar config file (docs/sidecar.md), written against [`EGRESS_SOCKET`],
    /// [`SIDECAR_SECRETS_DIR`] and [`SIDECAR_STATE_DIR`]. It holds no secret values.
    pub sidecar_config: Vec<u8>,
    /// A host directory (mode 0700, one file per token slot) mounted read-only into the sidecar only.
    pub secrets_dir: Option<PathBuf>,
    /// Secret values by slot, copied into the created sidecar (never started yet) as 0600 files in
    /// [`SIDECAR_SECRETS_DIR`] owned by the sidecar's user: nothing lands on the host's disk and
    /// nothing shows in `docker inspect`. They land in [`SIDECAR_SECRET_FILES_DIR`]. Used instead of
    /// `secrets_dir` by the CLI.
    pub secret_files: Vec<(String, Vec<u8>)>,
    /// The extra upstream CA bundle (PEM), copied to [`SIDECAR_UPSTREAM_CA`].
    pub upstream_ca: Option<Vec<u8>>,
    /// Private files for the sidecar alone (git-gate keys), copied like the secrets under
    /// `/etc/bot-bottle/keys/` as 0600 files owned by the sidecar's user: (name, contents).
    pub key_files: Vec<(String, Vec<u8>)>,
    /// The control API's bearer token, copied to [`SIDECAR_CONTROL_TOKEN`] (0600).
    pub control_token: Option<Vec<u8>>,
    /// The sidecar's control port to publish on the host's 127.0.0.1 (a random host port).
    pub control_port: Option<u16>,
    /// The host state directory, mounted read-write at [`SIDECAR_STATE_DIR`] (its `ca/` and
    /// `audit.jsonl`). The sidecar runs as the directory's owner so what it writes stays the user's.
    pub state_dir: Option<PathBuf>,
    /// `uid:gid` the sidecar runs as; root when absent.
    pub sidecar_user: Option<(u32, u32)>,
    /// The agent container's environment (proxy, CA variables, the manifest's `env`).
    pub agent_env: Vec<(String, String)>,
    /// Labels put on every resource besides the slug and role (`bot-bottle.agent`,
    /// `bot-bottle.owner`, `bot-bottle.detached`). They hold no secrets.
    pub extra_labels: Vec<(String, String)>,
    /// The OCI runtime for the agent (`runsc`), when one was probed and works; the engine default
    /// otherwise.
    pub runtime: Option<String>,
    /// A Linux `bot-bottle` executable on the host, bind-mounted read-only into the agent at
    /// [`RELAY_BINARY`] so any agent image gets the relay without carrying it.
    pub relay_binary: PathBuf,
    /// What the relay forwards; by default `127.0.0.1:9099` to [`EGRESS_SOCKET`].
    pub relay_maps: Vec<RelayMap>,
    pub limits: Limits,
    /// Set to abandon the launch between steps (Ctrl-C); what was created is removed.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl LaunchSpec {
    /// A spec with the default relay map and limits.
    pub fn new(
        slug: &str,
        agent_image: &str,
        sidecar_image: &str,
        sidecar_config: Vec<u8>,
        relay_binary: PathBuf,
    ) -> Self {
        Self {
            slug: slug.to_owned(),
            resources: resource_names(slug),
            agent_image: agent_image.to_owned(),
            sidecar_image: sidecar_image.to_owned(),
            sidecar_config,
            secrets_dir: None,
            secret_files: Vec::new(),
            upstream_ca: None,
            key_files: Vec::new(),
            control_token: None,
            control_port: None,
            state_dir: None,
            sidecar_user: None,
            agent_env: Vec::new(),
            extra_labels: Vec::new(),
            runtime: None,
            relay_binary,
            relay_maps: vec![RelayMap {
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], EGRESS_PORT)),
                target: PathBuf::from(EGRESS_SOCKET),
            }],
            limits: Limits::default(),
            cancel: None,
        }
    }
}

impl LaunchSpec {
    fn labels(&self, role: &str) -> HashMap<String, String> {
        let mut all = labels(&self.slug, role);
        all.extend(self.extra_labels.iter().cloned());
        all
    }
}

/// The pool egress networks take a /28 from (4096 subnets); `BOT_BOTTLE_SUBNET_POOL=A.B` picks
/// another `A.B.0.0/16` when this one collides with a network the host uses.
const DEFAULT_SUBNET_POOL: (u8, u8) = (10, 209);
/// How many subnets a launch tries before giving up.
const SUBNET_ATTEMPTS: u32 = 64;

/// The `attempt`-th candidate subnet for `slug` and its gateway.
fn egress_subnet(slug: &str, attempt: u32) -> (String, String) {
    let (a, b) = std::env::var("BOT_BOTTLE_SUBNET_POOL")
        .ok()
        .and_then(|p| {
            let (a, b) = p.split_once('.')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .unwrap_or(DEFAULT_SUBNET_POOL);
    // FNV-1a: stable across builds, unlike the std hasher.
    let hash = slug.bytes().fold(0x811c_9dc5_u32, |h, byte| (h ^ u32::from(byte)).wrapping_mul(0x0100_0193));
    let index = hash.wrapping_add(attempt.wrapping_mul(2_654_435_761)) % 4096;
    let (c, d) = (index / 16, (index % 16) * 16);
    (format!("{a}.{b}.{c}.{d}/28"), format!("{a}.{b}.{c}.{}", d + 1))
}

/// The resource names the launch plan gives a slug (`bottle_core::plan` is the source of truth; this
/// is for callers that launch without a full plan, such as tests).
pub fn resource_names(slug: &str) -> ResourcePlan {
    ResourcePlan {
        agent: format!("bot-bottle-{slug}"),
        sidecar: format!("bot-bottle-sidecars-{slug}"),
        network: format!("bot-bottle-net-{slug}"),
        socket_volume: format!("bot-bottle-sock-{slug}"),
    }
}

/// A launched docker bottle. Dropping it without [`DockerBottle::close`] leaves its resources for
/// `cleanup` (they carry [`LABEL_SLUG`]).
#[derive(Debug)]
pub struct DockerBottle {
    engine: Engine,
    slug: String,
    resources: ResourcePlan,
    undo: Undo,
    /// The control API on the host, once the sidecar publishes it.
    control_addr: Option<std::net::SocketAddr>,
}

/// Creates and starts the bottle described by `spec`; on any error everything already created is
/// removed before the error is returned.
pub async fn launch(engine: &Engine, spec: &LaunchSpec) -> Result<DockerBottle, Error> {
    let mut bottle = DockerBottle {
        engine: engine.clone(),
        slug: spec.slug.clone(),
        resources: spec.resources.clone(),
        undo: Undo::default(),
        control_addr: None,
    };
    match bottle.build(spec).await {
        Ok(()) => Ok(bottle),
        Err(error) => {
            let failed = bottle.undo.unwind(engine.docker()).await;
            if !failed.is_empty() {
                tracing::warn!(slug = %spec.slug, left = failed.len(), "launch unwound with leftovers; `cleanup` removes them");
            }
            Err(error)
        }
    }
}

impl DockerBottle {
    /// The bottle's slug.
    pub fn slug(&self) -> &str {
        &self.slug
    }

    /// The names of the bottle's resources.
    pub fn resources(&self) -> &ResourcePlan {
        &self.resources
    }

    /// The sidecar's control API on the host's loopback, when it is published.
    pub fn control_addr(&self) -> Option<std::net::SocketAddr> {
        self.control_addr
    }

    /// Reads the host port the engine gave the sidecar's `container_port`.
    async fn published_port(&self, container_port: u16) -> Result<Option<std::net::SocketAddr>, Error> {
        let inspect =
            self.engine.docker().inspect_container(&self.resources.sidecar, None).await.map_err(|source| {
                Error::Launch {
                    slug: self.slug.clone(),
                    action: format!("inspect container `{}`", self.resources.sidecar),
                    source: Box::new(source),
                }
            })?;
        let port = inspect
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|p| p.get(&format!("{container_port}/tcp")).cloned().flatten())
            .and_then(|b| b.into_iter().find_map(|b| b.host_port))
            .and_then(|p| p.parse::<u16>().ok());
        Ok(port.map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p))))
    }

    async fn build(&mut self, spec: &LaunchSpec) -> Result<(), Error> {
        let relay_binary = check_relay_binary(&spec.slug, &spec.relay_binary)?;
        let docker = self.engine.docker().clone();
        let names = spec.resources.clone();
        let fail = |action: String| {
            let slug = spec.slug.clone();
            move |source: bollard::errors::Error| Error::Launch { slug, action, source: Box::new(source) }
        };

        // A tmpfs owned by the sidecar's user: the sockets never touch a disk and the agent (which
        // mounts it read-only) can neither plant nor replace one.
        let (sidecar_uid, sidecar_gid) = spec.sidecar_user.unwrap_or((0, 0));
        docker
            .create_volume(VolumeCreateRequest {
                name: Some(names.socket_volume.clone()),
                driver: Some("local".into()),
                driver_opts: Some(HashMap::from([
                    ("type".to_owned(), "tmpfs".to_owned()),
                    ("device".to_owned(), "tmpfs".to_owned()),
                    ("o".to_owned(), format!("size=1m,mode=0755,uid={sidecar_uid},gid={sidecar_gid}")),
                ])),
                labels: Some(spec.labels("sockets")),
                ..Default::default()
            })
            .await
            .map_err(fail(format!("create volume `{}`", names.socket_volume)))?;
        self.undo.push(Resource::Volume(names.socket_volume.clone()));
        self.check_cancel(spec)?;

        // A /28 of our own pool rather than one of the engine's default pools, which hold only
        // about 30 networks: a machine runs more bottles than that. The first candidate is derived
        // from the slug; a subnet another network holds is skipped.
        let mut attempt = 0;
        loop {
            let (subnet, gateway) = egress_subnet(&spec.slug, attempt);
            let created = docker
                .create_network(NetworkCreateRequest {
                    name: names.network.clone(),
                    driver: Some("bridge".into()),
                    labels: Some(spec.labels("egress")),
                    ipam: Some(Ipam {
                        config: Some(vec![IpamConfig {
                            subnet: Some(subnet),
                            gateway: Some(gateway),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await;
            match created {
                Ok(_) => break,
                Err(bollard::errors::Error::DockerResponseServerError { status_code, message })
                    if (status_code == 403 || status_code == 409 || message.contains("overlap"))
                        && attempt < SUBNET_ATTEMPTS =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(fail(format!("create network `{}`", names.network))(e)),
            }
        }
        self.undo.push(Resource::Network(names.network.clone()));
        self.check_cancel(spec)?;

        let mut sidecar_mounts = vec![volume_mount(&names.socket_volume, SOCKET_DIR, false)];
        if let Some(dir) = &spec.secrets_dir {
            sidecar_mounts.push(bind_mount(dir, SIDECAR_SECRETS_DIR));
        }
        if let Some(dir) = &spec.state_dir {
            let mut mount = bind_mount(dir, SIDECAR_STATE_DIR);
            mount.read_only = Some(false);
            sidecar_mounts.push(mount);
        }
        // The control API is published on the host's loopback only, on a port the engine picks; the
        // agent has no network, so it cannot reach it either way.
        let control = spec.control_port.map(|port| format!("{port}/tcp"));
        let port_bindings = control.as_ref().map(|key| {
            HashMap::from([(
                key.clone(),
                Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(String::new()) }]),
            )])
        });
        let sidecar = ContainerCreateBody {
            exposed_ports: control.clone().map(|key| vec![key]),
            image: Some(spec.sidecar_image.clone()),
            user: Some(format!("{sidecar_uid}:{sidecar_gid}")),
            entrypoint: Some(vec![crate::image::SIDECAR_BINARY_PATH.into()]),
            cmd: Some(vec!["sidecar".into(), "--config".into(), SIDECAR_CONFIG.into()]),
            labels: Some(spec.labels("sidecar")),
            host_config: Some(HostConfig {
                network_mode: Some(names.network.clone()),
                mounts: Some(sidecar_mounts),
                // Membership of the relay's group lets it hand its sockets to that group.
                group_add: Some(vec![RELAY_ID.to_string()]),
                port_bindings,
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                memory: Some(spec.limits.sidecar_memory_bytes),
                memory_swap: Some(spec.limits.sidecar_memory_bytes),
                pids_limit: Some(spec.limits.sidecar_pids),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut relay_cmd = vec!["relay".to_owned()];
        for map in &spec.relay_maps {
            relay_cmd.push("--map".into());
            relay_cmd.push(format!("{}={}", map.listen, map.target.display()));
        }
        let agent_labels = spec.labels("agent");
        let agent = ContainerCreateBody {
            image: Some(spec.agent_image.clone()),
            hostname: Some(spec.slug.clone()),
            // The container's main process is the relay, as its own user without capabilities: the
            // agent (`node`, started later by exec) can neither signal nor trace it, and only the
            // relay's group may connect to the sidecar's sockets.
            user: Some(format!("{RELAY_ID}:{RELAY_ID}")),
            entrypoint: Some(vec![RELAY_BINARY.into()]),
            cmd: Some(relay_cmd),
            env: Some(spec.agent_env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: Some(bottle_core::plan::GUEST_HOME.into()),
            labels: Some(agent_labels),
            host_config: Some(HostConfig {
                runtime: spec.runtime.clone(),
                network_mode: Some("none".into()),
                mounts: Some(vec![
                    // Read-only: the agent must not plant or replace sockets; connecting to a unix
                    // socket needs no write access to the filesystem it lives on.
                    volume_mount(&names.socket_volume, SOCKET_DIR, true),
                    bind_mount(&relay_binary, RELAY_BINARY),
                ]),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                memory: Some(spec.limits.agent_memory_bytes),
                memory_swap: Some(spec.limits.agent_memory_bytes),
                pids_limit: Some(spec.limits.agent_pids),
                ..Default::default()
            }),
            ..Default::default()
        };
        // Both containers are created side by side; each is registered for teardown as soon as it
        // exists, whatever happened to the other.
        let (sidecar_created, agent_created) =
            tokio::join!(self.create_raw(&names.sidecar, sidecar), self.create_raw(&names.agent, agent));
        for (name, created) in [(&names.sidecar, &sidecar_created), (&names.agent, &agent_created)] {
            if created.is_ok() {
                self.undo.push(Resource::Container(name.clone()));
            }
        }
        sidecar_created?;
        agent_created?;
        // Copied into the created (not yet started) container, so the config never touches the
        // host's disk outside the state dir and never shows in `docker inspect`.
        let files = SidecarFiles {
            config: &spec.sidecar_config,
            secrets: &spec.secret_files,
            keys: &spec.key_files,
            control_token: spec.control_token.as_deref(),
            upstream_ca: spec.upstream_ca.as_deref(),
            owner: (sidecar_uid, sidecar_gid),
        };
        let archive = config_tar(&files).map_err(|e| Error::Launch {
            slug: spec.slug.clone(),
            action: "pack the sidecar config".into(),
            source: Box::new(e),
        })?;
        docker
            .upload_to_container(
                &names.sidecar,
                Some(UploadToContainerOptionsBuilder::new().path("/etc").build()),
                bollard::body_full(archive.into()),
            )
            .await
            .map_err(fail(format!("copy the config into `{}`", names.sidecar)))?;
        // The relay starts before the sidecar's sockets exist and connects per connection, so the
        // two can start together; `wait_ready` waits for the socket.
        let (sidecar_started, agent_started) = tokio::join!(self.start(&names.sidecar), self.start(&names.agent));
        sidecar_started?;
        agent_started?;
        self.check_cancel(spec)?;
        self.wait_ready(spec).await?;
        if let Some(port) = spec.control_port {
            self.control_addr = self.published_port(port).await?;
        }
        Ok(())
    }

    fn check_cancel(&self, spec: &LaunchSpec) -> Result<(), Error> {
        if spec.cancel.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst)) {
            return Err(Error::Cancelled { slug: self.slug.clone() });
        }
        Ok(())
    }

    /// Creates a container; the caller registers it for teardown.
    async fn create_raw(&self, name: &str, body: ContainerCreateBody) -> Result<(), Error> {
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        self.engine.docker().create_container(Some(options), body).await.map_err(|source| Error::Launch {
            slug: self.slug.clone(),
            action: format!("create container `{name}`"),
            source: Box::new(source),
        })?;
        Ok(())
    }

    async fn start(&self, name: &str) -> Result<(), Error> {
        self.engine.docker().start_container(name, None).await.map_err(|source| Error::Launch {
            slug: self.slug.clone(),
            action: format!("start container `{name}`"),
            source: Box::new(source),
        })
    }

    /// Waits until the agent sees the egress socket, failing early (with the sidecar's last log
    /// lines) when the sidecar or the relay exits.
    async fn wait_ready(&self, spec: &LaunchSpec) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let probe = format!("test -S {EGRESS_SOCKET}");
        loop {
            for name in [&self.resources.sidecar, &self.resources.agent] {
                if !self.running(name).await? {
                    return Err(self.not_ready(name, "exited during launch").await);
                }
            }
            if self.exec(&probe, ExecUser::Relay).await?.success() {
                return Ok(());
            }
            self.check_cancel(spec)?;
            if tokio::time::Instant::now() >= deadline {
                let what = format!("did not create {EGRESS_SOCKET} within {}s", READY_TIMEOUT.as_secs());
                return Err(self.not_ready(&spec.resources.sidecar, &what).await);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn running(&self, name: &str) -> Result<bool, Error> {
        let inspect = self.engine.docker().inspect_container(name, None).await.map_err(|source| Error::Launch {
            slug: self.slug.clone(),
            action: format!("inspect container `{name}`"),
            source: Box::new(source),
        })?;
        Ok(inspect.state.and_then(|s| s.running).unwrap_or(false))
    }

    async fn not_ready(&self, container: &str, what: &str) -> Error {
        Error::NotReady {
            slug: self.slug.clone(),
            message: format!("container `{container}` {what}"),
            log: self.logs(container, 20).await,
        }
    }

    /// The last `lines` lines a container wrote (the sidecar logs no secret values).
    pub async fn logs(&self, container: &str, lines: usize) -> String {
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).tail(&lines.to_string()).build();
        let mut stream = self.engine.docker().logs(container, Some(options));
        let mut out = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        out
    }

    /// Runs `script` with `sh -c` in the agent container as `user` and waits for it. For
    /// provisioning and probes; the script is visible in the engine's exec record, so it must not
    /// carry secrets.
    pub async fn exec(&self, script: &str, user: ExecUser) -> Result<ExecResult, Error> {
        let docker = self.engine.docker();
        let fail = |action: &str| {
            let (slug, action) = (self.slug.clone(), action.to_owned());
            move |source: bollard::errors::Error| Error::Launch { slug, action, source: Box::new(source) }
        };
        let user = exec_user(user);
        let created = docker
            .create_exec(
                &self.resources.agent,
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    user: Some(user),
                    working_dir: Some(bottle_core::plan::GUEST_HOME.to_owned()),
                    cmd: Some(vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()]),
                    ..Default::default()
                },
            )
            .await
            .map_err(fail("create exec"))?;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        if let StartExecResults::Attached { mut output, .. } =
            docker.start_exec(&created.id, None).await.map_err(fail("start exec"))?
        {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(fail("read exec output"))? {
                    bollard::container::LogOutput::StdErr { message } => stderr.extend_from_slice(&message),
                    other => stdout.extend_from_slice(&other.into_bytes()),
                }
            }
        }
        let inspect = docker.inspect_exec(&created.id).await.map_err(fail("inspect exec"))?;
        let code = inspect.exit_code.and_then(|c| i32::try_from(c).ok()).unwrap_or(-1);
        Ok(ExecResult { code, stdout, stderr })
    }

    /// Removes everything the launch created, newest first. Every resource is attempted; the first
    /// failure is returned after the rest were tried.
    pub async fn close(mut self) -> Result<(), Error> {
        let failed = self.undo.unwind(self.engine.docker()).await;
        match failed.into_iter().next() {
            None => Ok(()),
            Some((resource, source)) => Err(Error::Launch {
                slug: self.slug.clone(),
                action: format!("remove {resource}"),
                source: Box::new(source),
            }),
        }
    }
}

pub(crate) fn labels(slug: &str, role: &str) -> HashMap<String, String> {
    HashMap::from([
        (crate::image::LABEL.to_owned(), "1".to_owned()),
        (LABEL_SLUG.to_owned(), slug.to_owned()),
        (LABEL_ROLE.to_owned(), role.to_owned()),
    ])
}

fn volume_mount(volume: &str, target: &str, read_only: bool) -> Mount {
    Mount {
        typ: Some(MountType::VOLUME),
        source: Some(volume.to_owned()),
        target: Some(target.to_owned()),
        read_only: Some(read_only),
        ..Default::default()
    }
}

fn bind_mount(host: &Path, target: &str) -> Mount {
    Mount {
        typ: Some(MountType::BIND),
        source: Some(host.display().to_string()),
        target: Some(target.to_owned()),
        read_only: Some(true),
        ..Default::default()
    }
}

/// The relay binary as an absolute, existing path (bind mounts need one).
fn check_relay_binary(slug: &str, path: &Path) -> Result<PathBuf, Error> {
    let canonical = std::fs::canonicalize(path).map_err(|source| Error::Launch {
        slug: slug.to_owned(),
        action: format!("find the relay binary `{}`", path.display()),
        source: Box::new(source),
    })?;
    Ok(canonical)
}

/// What the sidecar container gets copied into `/etc` before it starts.
pub(crate) struct SidecarFiles<'a> {
    pub config: &'a [u8],
    pub secrets: &'a [(String, Vec<u8>)],
    pub keys: &'a [(String, Vec<u8>)],
    pub control_token: Option<&'a [u8]>,
    pub upstream_ca: Option<&'a [u8]>,
    /// uid, gid of the sidecar's user, who must own all of it.
    pub owner: (u32, u32),
}

/// `bot-bottle/` (0700) with `sidecar.json` (0600), `secrets/` (0700, one 0600 file per slot) and
/// `upstream-ca.pem`, all owned by the sidecar's user, unpacked under `/etc`.
pub(crate) fn config_tar(files: &SidecarFiles<'_>) -> std::io::Result<Vec<u8>> {
    let (uid, gid) = files.owner;
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, data: Option<&[u8]>| {
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode);
        header.set_uid(u64::from(uid));
        header.set_gid(u64::from(gid));
        match data {
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, path, std::io::empty())
            }
            Some(data) => {
                header.set_size(data.len() as u64);
                tar.append_data(&mut header, path, data)
            }
        }
    };
    add("bot-bottle/", 0o700, None)?;
    add("bot-bottle/sidecar.json", 0o600, Some(files.config))?;
    if let Some(ca) = files.upstream_ca {
        add("bot-bottle/upstream-ca.pem", 0o644, Some(ca))?;
    }
    if let Some(token) = files.control_token {
        add("bot-bottle/control-token", 0o600, Some(token))?;
    }
    for (dir, entries) in [("secrets", files.secrets), ("keys", files.keys)] {
        if entries.is_empty() {
            continue;
        }
        add(&format!("bot-bottle/{dir}/"), 0o700, None)?;
        for (name, value) in entries {
            add(&format!("bot-bottle/{dir}/{name}"), 0o600, Some(value))?;
        }
    }
    tar.into_inner()
}

/// The engine's `user` for an exec as `user`.
pub(crate) fn exec_user(user: ExecUser) -> String {
    match user {
        ExecUser::Agent => format!("{AGENT_UID}:{AGENT_UID}"),
        ExecUser::Root => "0:0".to_owned(),
        ExecUser::Relay => format!("{RELAY_ID}:{RELAY_ID}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_subnets_are_28s_of_the_pool() {
        let (subnet, gateway) = egress_subnet("impl-k3j9x2", 0);
        assert!(subnet.starts_with("10.209.") && subnet.ends_with("/28"), "{subnet}");
        let base: u8 = subnet.trim_end_matches("/28").rsplit('.').next().unwrap().parse().unwrap();
        assert_eq!(base % 16, 0);
        assert_eq!(gateway.rsplit('.').next().unwrap().parse::<u8>().unwrap(), base + 1);
        assert_ne!(egress_subnet("impl-k3j9x2", 1).0, subnet, "a retry tries another subnet");
        assert_eq!(egress_subnet("impl-k3j9x2", 0).0, subnet, "stable per slug");
    }

    #[test]
    fn names_follow_the_plan() {
        let names = resource_names("impl-k3j9x2");
        assert_eq!(names.agent, "bot-bottle-impl-k3j9x2");
        assert_eq!(names.sidecar, "bot-bottle-sidecars-impl-k3j9x2");
        assert_eq!(names.network, "bot-bottle-net-impl-k3j9x2");
        assert_eq!(names.socket_volume, "bot-bottle-sock-impl-k3j9x2");
    }

    #[test]
    fn config_tar_is_private() {
        let secrets = vec![("T".to_owned(), b"v".to_vec())];
        let files = SidecarFiles {
            config: b"{}",
            secrets: &secrets,
            keys: &[],
            control_token: None,
            upstream_ca: None,
            owner: (7, 8),
        };
        let bytes = config_tar(&files).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let modes: Vec<(String, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                assert_eq!((e.header().uid().unwrap(), e.header().gid().unwrap()), (7, 8));
                (e.path().unwrap().display().to_string(), e.header().mode().unwrap())
            })
            .collect();
        let expected = [("bot-bottle/", 0o700), ("bot-bottle/sidecar.json", 0o600), ("bot-bottle/secrets/", 0o700)];
        let mut expected: Vec<(String, u32)> = expected.iter().map(|(p, m)| ((*p).to_owned(), *m)).collect();
        expected.push(("bot-bottle/secrets/T".to_owned(), 0o600));
        assert_eq!(modes, expected);
    }
}
