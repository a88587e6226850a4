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

pub mod undo;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, NetworkCreateRequest, VolumeCreateRequest};
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
/// Where the agent container sees the relay binary.
pub const RELAY_BINARY: &str = "/opt/bot-bottle/bot-bottle";
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
    /// A Linux `bot-bottle` executable on the host, bind-mounted read-only into the agent at
    /// [`RELAY_BINARY`] so any agent image gets the relay without carrying it.
    pub relay_binary: PathBuf,
    /// What the relay forwards; by default `127.0.0.1:9099` to [`EGRESS_SOCKET`].
    pub relay_maps: Vec<RelayMap>,
    pub limits: Limits,
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
            relay_binary,
            relay_maps: vec![RelayMap {
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], EGRESS_PORT)),
                target: PathBuf::from(EGRESS_SOCKET),
            }],
            limits: Limits::default(),
        }
    }
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
}

/// Creates and starts the bottle described by `spec`; on any error everything already created is
/// removed before the error is returned.
pub async fn launch(engine: &Engine, spec: &LaunchSpec) -> Result<DockerBottle, Error> {
    let mut bottle = DockerBottle {
        engine: engine.clone(),
        slug: spec.slug.clone(),
        resources: spec.resources.clone(),
        undo: Undo::default(),
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

    async fn build(&mut self, spec: &LaunchSpec) -> Result<(), Error> {
        let relay_binary = check_relay_binary(&spec.slug, &spec.relay_binary)?;
        let docker = self.engine.docker().clone();
        let names = spec.resources.clone();
        let fail = |action: String| {
            let slug = spec.slug.clone();
            move |source: bollard::errors::Error| Error::Launch { slug, action, source: Box::new(source) }
        };

        docker
            .create_volume(VolumeCreateRequest {
                name: Some(names.socket_volume.clone()),
                labels: Some(labels(&spec.slug, "sockets")),
                ..Default::default()
            })
            .await
            .map_err(fail(format!("create volume `{}`", names.socket_volume)))?;
        self.undo.push(Resource::Volume(names.socket_volume.clone()));

        docker
            .create_network(NetworkCreateRequest {
                name: names.network.clone(),
                driver: Some("bridge".into()),
                labels: Some(labels(&spec.slug, "egress")),
                ..Default::default()
            })
            .await
            .map_err(fail(format!("create network `{}`", names.network)))?;
        self.undo.push(Resource::Network(names.network.clone()));

        let mut sidecar_mounts = vec![volume_mount(&names.socket_volume, SOCKET_DIR, false)];
        if let Some(dir) = &spec.secrets_dir {
            sidecar_mounts.push(bind_mount(dir, SIDECAR_SECRETS_DIR));
        }
        let sidecar = ContainerCreateBody {
            image: Some(spec.sidecar_image.clone()),
            entrypoint: Some(vec![crate::image::SIDECAR_BINARY_PATH.into()]),
            cmd: Some(vec!["sidecar".into(), "--config".into(), SIDECAR_CONFIG.into()]),
            labels: Some(labels(&spec.slug, "sidecar")),
            host_config: Some(HostConfig {
                network_mode: Some(names.network.clone()),
                mounts: Some(sidecar_mounts),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                memory: Some(spec.limits.sidecar_memory_bytes),
                memory_swap: Some(spec.limits.sidecar_memory_bytes),
                pids_limit: Some(spec.limits.sidecar_pids),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.create(&names.sidecar, sidecar).await?;
        // Copied into the created (not yet started) container, so the config never touches the
        // host's disk outside the state dir and never shows in `docker inspect`.
        let archive = config_tar(&spec.sidecar_config).map_err(|e| Error::Launch {
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
        self.start(&names.sidecar).await?;

        let mut relay_cmd = vec!["relay".to_owned()];
        for map in &spec.relay_maps {
            relay_cmd.push("--map".into());
            relay_cmd.push(format!("{}={}", map.listen, map.target.display()));
        }
        let agent = ContainerCreateBody {
            image: Some(spec.agent_image.clone()),
            hostname: Some(spec.slug.clone()),
            // The container's main process is the relay, as root without capabilities: the agent
            // (`node`, started later by exec) can neither signal nor trace it, and root owns the
            // sidecar's sockets, so only the relay can connect to them.
            user: Some("0:0".into()),
            entrypoint: Some(vec![RELAY_BINARY.into()]),
            cmd: Some(relay_cmd),
            labels: Some(labels(&spec.slug, "agent")),
            host_config: Some(HostConfig {
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
        self.create(&names.agent, agent).await?;
        self.start(&names.agent).await?;
        self.wait_ready(spec).await
    }

    async fn create(&mut self, name: &str, body: ContainerCreateBody) -> Result<(), Error> {
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        self.engine.docker().create_container(Some(options), body).await.map_err(|source| Error::Launch {
            slug: self.slug.clone(),
            action: format!("create container `{name}`"),
            source: Box::new(source),
        })?;
        self.undo.push(Resource::Container(name.to_owned()));
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
            if self.exec(&probe, ExecUser::Root).await?.success() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let what = format!("did not create {EGRESS_SOCKET} within {}s", READY_TIMEOUT.as_secs());
                return Err(self.not_ready(&spec.resources.sidecar, &what).await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
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
        let user = match user {
            ExecUser::Agent => "node",
            // The relay runs as root without capabilities (see the agent container's `user`).
            ExecUser::Root | ExecUser::Relay => "0:0",
        };
        let created = docker
            .create_exec(
                &self.resources.agent,
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    user: Some(user.to_owned()),
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

fn labels(slug: &str, role: &str) -> HashMap<String, String> {
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

/// A tar of `bot-bottle/` (0700) and `bot-bottle/sidecar.json` (0600, root), unpacked under `/etc`.
fn config_tar(config: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o700);
    dir.set_size(0);
    tar.append_data(&mut dir, "bot-bottle/", std::io::empty())?;
    let mut file = tar::Header::new_gnu();
    file.set_mode(0o600);
    file.set_size(config.len() as u64);
    tar.append_data(&mut file, "bot-bottle/sidecar.json", config)?;
    tar.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let bytes = config_tar(b"{}").unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let modes: Vec<(String, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.header().mode().unwrap())
            })
            .collect();
        assert_eq!(modes, [("bot-bottle/".to_owned(), 0o700), ("bot-bottle/sidecar.json".to_owned(), 0o600)]);
    }
}
