//! The docker backend behind the synchronous [`Backend`] and [`Bottle`] traits.
//!
//! The engine client is async (bollard); the CLI is not. [`DockerBackend`] owns a handle on a tokio
//! runtime the caller built (multi-threaded, so a signal watcher can run while the CLI waits on a
//! child) and blocks on it. The interactive paths (`attach`, [`Bottle::agent_argv`]) hand the
//! terminal to `docker exec -it`, which puts it in raw mode, sends the window size at start and on
//! every `SIGWINCH` and passes the exit code through — the same argv a tmux pane runs.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal as _;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bollard::models::{ContainerCreateBody, ContainerSummaryStateEnum, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bottle_core::plan::{GUEST_HOME, LaunchPlan};
use bottle_core::{BackendKind, Slug};
use futures_util::StreamExt as _;
use tokio::runtime::Runtime;

use super::undo::{Resource, Undo};
use super::{
    AGENT_UID, DockerBottle, EGRESS_SOCKET, GIT_GATE_SOCKET, LABEL_ROLE, LABEL_SLUG, LaunchSpec, RELAY_ID,
    SIDECAR_CONTROL_TOKEN, SIDECAR_KEYS_DIR, SIDECAR_MIRRORS_DIR, SIDECAR_SECRET_FILES_DIR, SIDECAR_STATE_DIR,
    SIDECAR_UPSTREAM_CA, SUPERVISE_SOCKET, exec_user, resource_names,
};
use crate::backend::{LaunchInputs, SidecarLayout};
use crate::{
    Backend, Bottle, BottleStatus, BottleSummary, CleanupOptions, CleanupReport, Engine, Error, ExecResult, ExecUser,
    GuestFile, Preflight,
};

/// Label naming the agent a bottle runs.
pub const LABEL_AGENT: &str = "bot-bottle.agent";
/// Label with the pid of the process that launched the bottle. While it lives, `cleanup` leaves the
/// bottle alone (it may be mid-launch, or a foreground session).
pub const LABEL_OWNER: &str = "bot-bottle.owner";
/// Label marking a bottle started with `--detach`: it outlives its launcher on purpose.
pub const LABEL_DETACHED: &str = "bot-bottle.detached";
/// The gVisor runtime's conventional name in the engine's `runtimes`.
pub const GVISOR_RUNTIME: &str = "runsc";

/// The docker backend.
#[derive(Debug, Clone)]
pub struct DockerBackend {
    rt: Arc<Runtime>,
    engine: Engine,
}

impl DockerBackend {
    /// Connects to the engine (`DOCKER_HOST` or the default socket) on `rt`.
    pub fn connect(rt: Arc<Runtime>) -> Result<Self, Error> {
        let engine = rt.block_on(Engine::connect())?;
        Ok(Self { rt, engine })
    }

    /// The engine connection.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The runtime this backend blocks on.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    /// Whether gVisor is registered with the engine and a container actually starts under it.
    pub fn probe_gvisor(&self, image: &str) -> RuntimeProbe {
        self.rt.block_on(probe_runtime(&self.engine, GVISOR_RUNTIME, image))
    }

    /// [`Self::probe_gvisor`], remembered for a day per engine, runtime configuration and image in
    /// the cache directory: the answer does not change between launches, and a probe container costs
    /// a second or more.
    pub fn probe_gvisor_cached(&self, image: &str) -> RuntimeProbe {
        let key = self.rt.block_on(async {
            let info = self.engine.docker().info().await.ok()?;
            let runtime = info.runtimes.as_ref()?.get(GVISOR_RUNTIME)?;
            let image_id = self.engine.docker().inspect_image(image).await.ok()?.id;
            Some(format!(
                "{}|{}|{:?}|{:?}|{:?}",
                info.id.unwrap_or_default(),
                info.server_version.unwrap_or_default(),
                runtime.path,
                runtime.runtime_args,
                image_id
            ))
        });
        let Some(key) = key else {
            // Not registered (or the engine would not say): nothing to probe or remember.
            return self.probe_gvisor(image);
        };
        let file = crate::image::cache_dir().ok().map(|d| d.join("runtime-probe.json"));
        if let Some(cached) = file.as_deref().and_then(|f| ProbeCache::read(f, &key)) {
            return cached;
        }
        let probe = self.probe_gvisor(image);
        if let Some(file) = file {
            ProbeCache::write(&file, &key, &probe);
        }
        probe
    }

    async fn containers(&self) -> Result<Vec<bollard::models::ContainerSummary>, Error> {
        let filters = HashMap::from([("label", vec![LABEL_SLUG])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        self.engine.docker().list_containers(Some(options)).await.map_err(engine_error("list containers"))
    }

    /// Every slug that has a container, network or volume, with what it has.
    async fn inventory(&self) -> Result<BTreeMap<String, Inventory>, Error> {
        let docker = self.engine.docker();
        let mut slugs: BTreeMap<String, Inventory> = BTreeMap::new();
        for c in self.containers().await? {
            let labels = c.labels.unwrap_or_default();
            let Some(slug) = labels.get(LABEL_SLUG) else { continue };
            let entry = slugs.entry(slug.clone()).or_default();
            entry.note_owner(&labels);
            let running = c.state == Some(ContainerSummaryStateEnum::RUNNING);
            let name = c.names.and_then(|n| n.into_iter().next()).unwrap_or_default();
            let name = name.trim_start_matches('/').to_owned();
            match labels.get(LABEL_ROLE).map(String::as_str) {
                Some("agent") => {
                    entry.agent_running = Some(running);
                    entry.agent = labels.get(LABEL_AGENT).cloned();
                    entry.created = c.created;
                }
                Some("sidecar") => entry.sidecar_running = Some(running),
                _ => {}
            }
            entry.containers.push(name);
        }
        let filters = HashMap::from([("label", vec![LABEL_SLUG])]);
        let networks = docker
            .list_networks(Some(ListNetworksOptionsBuilder::new().filters(&filters).build()))
            .await
            .map_err(engine_error("list networks"))?;
        for n in networks {
            let labels = n.labels.unwrap_or_default();
            if let (Some(slug), Some(name)) = (labels.get(LABEL_SLUG), n.name) {
                let entry = slugs.entry(slug.clone()).or_default();
                entry.note_owner(&labels);
                entry.networks.push(name);
            }
        }
        let volumes = docker
            .list_volumes(Some(ListVolumesOptionsBuilder::new().filters(&filters).build()))
            .await
            .map_err(engine_error("list volumes"))?;
        for v in volumes.volumes.unwrap_or_default() {
            if let Some(slug) = v.labels.get(LABEL_SLUG) {
                let entry = slugs.entry(slug.clone()).or_default();
                entry.note_owner(&v.labels);
                entry.volumes.push(v.name);
            }
        }
        Ok(slugs)
    }

    /// Removes what `inventory` holds for one slug: containers first (forced), then networks, then
    /// volumes, each attempted whatever happened to the one before.
    async fn remove(&self, inventory: &Inventory, dry_run: bool, report: &mut CleanupReport) {
        let mut undo = Undo::default();
        for v in &inventory.volumes {
            undo.push(Resource::Volume(v.clone()));
        }
        for n in &inventory.networks {
            undo.push(Resource::Network(n.clone()));
        }
        for c in &inventory.containers {
            undo.push(Resource::Container(c.clone()));
        }
        let all: Vec<String> = undo.resources().iter().rev().map(ToString::to_string).collect();
        if dry_run {
            report.removed.extend(all);
            return;
        }
        let failed = undo.unwind(self.engine.docker()).await;
        let failed_names: Vec<String> = failed.iter().map(|(r, _)| r.to_string()).collect();
        report.removed.extend(all.into_iter().filter(|r| !failed_names.contains(r)));
        report.failed.extend(failed.into_iter().map(|(r, e)| (r.to_string(), e.to_string())));
    }
}

/// What the engine holds for one slug.
#[derive(Debug, Default)]
struct Inventory {
    agent: Option<String>,
    created: Option<i64>,
    agent_running: Option<bool>,
    sidecar_running: Option<bool>,
    containers: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
    owner: Option<u32>,
    detached: bool,
}

impl Inventory {
    fn note_owner(&mut self, labels: &HashMap<String, String>) {
        if let Some(pid) = labels.get(LABEL_OWNER).and_then(|p| p.parse().ok()) {
            self.owner = Some(pid);
        }
        if labels.get(LABEL_DETACHED).is_some_and(|d| d == "1") {
            self.detached = true;
        }
    }

    /// Whether `cleanup` must leave this bottle alone: its launcher still runs (mid-launch or a
    /// foreground session), or it was detached on purpose and is fully up.
    fn is_live(&self) -> bool {
        let owner_alive =
            self.owner.is_some_and(|pid| pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists());
        owner_alive || (self.detached && self.status() == BottleStatus::Running)
    }

    fn status(&self) -> BottleStatus {
        match (self.agent_running, self.sidecar_running) {
            (Some(true), Some(true)) => BottleStatus::Running,
            (Some(true), _) | (_, Some(true)) => BottleStatus::Degraded,
            _ => BottleStatus::Stopped,
        }
    }
}

impl Backend for DockerBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Docker
    }

    fn sidecar_layout(&self) -> SidecarLayout {
        SidecarLayout {
            state_dir: SIDECAR_STATE_DIR.into(),
            secrets_dir: SIDECAR_SECRET_FILES_DIR.into(),
            upstream_ca: SIDECAR_UPSTREAM_CA.into(),
            egress_listen: format!("unix:{EGRESS_SOCKET}"),
            socket_group: Some(RELAY_ID),
            git_gate_listen: format!("unix:{GIT_GATE_SOCKET}"),
            keys_dir: SIDECAR_KEYS_DIR.into(),
            mirrors_dir: SIDECAR_MIRRORS_DIR.into(),
            supervise_listen: format!("unix:{SUPERVISE_SOCKET}"),
            control_listen: format!("tcp:0.0.0.0:{}", bottle_core::plan::CONTROL_PORT),
            control_token_file: SIDECAR_CONTROL_TOKEN.into(),
        }
    }

    fn prepare(&self, _plan: &LaunchPlan, agent_image: &str) -> Result<Preflight, Error> {
        let mut preflight = Preflight { images: vec![agent_image.to_owned()], ..Preflight::default() };
        match self.probe_gvisor_cached(agent_image) {
            RuntimeProbe::Works(runtime) => preflight.runtime = runtime,
            RuntimeProbe::NotRegistered => preflight.runtime = "runc".into(),
            RuntimeProbe::Broken { runtime, error } => {
                preflight.runtime = "runc".into();
                preflight.warnings.push(format!(
                    "gVisor (`{runtime}`) is registered but a probe container failed under it ({error}); \
                     the agent runs with runc (`bot-bottle doctor` shows the check)"
                ));
            }
        }
        Ok(preflight)
    }

    fn launch(&self, plan: &LaunchPlan, inputs: LaunchInputs) -> Result<Box<dyn Bottle>, Error> {
        let slug = plan.slug.as_str();
        // Names are derived from the slug, and creating a volume that exists returns the existing
        // one: two bottles must never share resources, so a slug in use is refused up front.
        if let Some(existing) = self.rt.block_on(self.inventory())?.get(slug) {
            let mut what = existing.containers.clone();
            what.extend(existing.networks.iter().cloned());
            what.extend(existing.volumes.iter().cloned());
            return Err(Error::SlugInUse { slug: slug.to_owned(), resources: what.join(", ") });
        }
        let mut spec = LaunchSpec::new(
            slug,
            &inputs.agent_image,
            &inputs.sidecar_image,
            inputs.sidecar_config,
            inputs.relay_binary,
        );
        spec.resources = plan.resources.clone();
        spec.secret_files = inputs.secrets;
        spec.upstream_ca = inputs.upstream_ca;
        spec.key_files = inputs.key_files;
        if let Some(token) = inputs.control_token {
            spec.control_token = Some(token);
            spec.control_port = Some(bottle_core::plan::CONTROL_PORT);
            spec.relay_maps.push(crate::relay::RelayMap {
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], bottle_core::plan::SUPERVISE_PORT)),
                target: SUPERVISE_SOCKET.into(),
            });
        }
        if inputs.git_gate {
            spec.relay_maps.push(crate::relay::RelayMap {
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], bottle_core::plan::GIT_GATE_PORT)),
                target: GIT_GATE_SOCKET.into(),
            });
        }
        spec.state_dir = Some(plan.state_dir.clone());
        spec.sidecar_user = Some(owner_of(&plan.state_dir)?);
        spec.agent_env = inputs.agent_env;
        spec.extra_labels = vec![
            (LABEL_AGENT.to_owned(), plan.agent.name.clone()),
            (LABEL_OWNER.to_owned(), std::process::id().to_string()),
            (LABEL_DETACHED.to_owned(), if inputs.detached { "1" } else { "0" }.to_owned()),
        ];
        spec.runtime = inputs.runtime;
        spec.cancel = Some(inputs.cancel);
        let bottle = self.rt.block_on(super::launch(&self.engine, &spec))?;
        Ok(Box::new(DockerHandle { rt: self.rt.clone(), slug: plan.slug.clone(), bottle }))
    }

    fn open(&self, slug: &str) -> Result<Box<dyn Bottle>, Error> {
        let parsed = Slug::parse(slug)
            .map_err(|_| Error::NoSuchBottle { slug: slug.to_owned(), backend: self.kind().to_string() })?;
        let names = resource_names(slug);
        let inspect = self.rt.block_on(self.engine.docker().inspect_container(&names.agent, None));
        let state = match inspect {
            Ok(i) => i.state,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                return Err(Error::NoSuchBottle { slug: slug.to_owned(), backend: self.kind().to_string() });
            }
            Err(e) => return Err(engine_error("inspect the agent container")(e)),
        };
        if !state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            let status = state.and_then(|s| s.status).map_or_else(|| "unknown".to_owned(), |s| s.to_string());
            return Err(Error::NotRunning { slug: slug.to_owned(), state: status });
        }
        let mut undo = Undo::default();
        undo.push(Resource::Volume(names.socket_volume.clone()));
        undo.push(Resource::Network(names.network.clone()));
        undo.push(Resource::Container(names.sidecar.clone()));
        undo.push(Resource::Container(names.agent.clone()));
        let mut bottle = DockerBottle {
            engine: self.engine.clone(),
            slug: slug.to_owned(),
            resources: names,
            undo,
            control_addr: None,
        };
        bottle.control_addr = self.rt.block_on(bottle.published_port(bottle_core::plan::CONTROL_PORT))?;
        Ok(Box::new(DockerHandle { rt: self.rt.clone(), slug: parsed, bottle }))
    }

    fn list(&self) -> Result<Vec<BottleSummary>, Error> {
        let inventory = self.rt.block_on(self.inventory())?;
        Ok(inventory
            .into_iter()
            .map(|(slug, inv)| BottleSummary {
                backend: BackendKind::Docker,
                status: inv.status(),
                created: BottleSummary::created_at(inv.created),
                agent: inv.agent,
                slug,
            })
            .collect())
    }

    fn stop(&self, slug: &str) -> Result<CleanupReport, Error> {
        self.rt.block_on(async {
            let inventory = self.inventory().await?;
            let Some(inv) = inventory.get(slug) else {
                return Err(Error::NoSuchBottle { slug: slug.to_owned(), backend: self.kind().to_string() });
            };
            let mut report = CleanupReport::default();
            self.remove(inv, false, &mut report).await;
            Ok(report)
        })
    }

    fn cleanup(&self, options: &CleanupOptions) -> Result<CleanupReport, Error> {
        self.rt.block_on(async {
            let mut report = CleanupReport::default();
            for (slug, inv) in self.inventory().await? {
                let owner_gone = options.dead_owners.contains(&slug) && !inv.detached;
                if inv.is_live() && !owner_gone {
                    continue;
                }
                self.remove(&inv, options.dry_run, &mut report).await;
            }
            self.prune_sidecar_images(options, &mut report).await?;
            Ok(report)
        })
    }
}

impl DockerBackend {
    /// Sidecar images of other `bot-bottle` builds (each build's binary makes its own) that no
    /// container uses. The images named in `options.keep_images` stay.
    async fn prune_sidecar_images(&self, options: &CleanupOptions, report: &mut CleanupReport) -> Result<(), Error> {
        let docker = self.engine.docker();
        let repository = crate::image::ImageKind::Sidecar.repository();
        let filters = HashMap::from([("reference", vec![repository])]);
        let images = docker
            .list_images(Some(bollard::query_parameters::ListImagesOptionsBuilder::new().filters(&filters).build()))
            .await
            .map_err(engine_error("list images"))?;
        let in_use: Vec<String> = {
            let all = ListContainersOptionsBuilder::new().all(true).build();
            let containers = docker.list_containers(Some(all)).await.map_err(engine_error("list containers"))?;
            containers.into_iter().filter_map(|c| c.image_id).collect()
        };
        for image in images {
            let tags: Vec<&String> =
                image.repo_tags.iter().filter(|t| t.starts_with(&format!("{repository}:"))).collect();
            if tags.is_empty() || tags.iter().any(|t| options.keep_images.contains(t)) || in_use.contains(&image.id) {
                continue;
            }
            for tag in tags {
                let what = format!("image {tag}");
                if options.dry_run {
                    report.removed.push(what);
                    continue;
                }
                match docker.remove_image(tag, None::<bollard::query_parameters::RemoveImageOptions>, None).await {
                    Ok(_) => report.removed.push(what),
                    Err(e) => report.failed.push((what, e.to_string())),
                }
            }
        }
        Ok(())
    }
}

/// The uid and gid owning `dir`: the sidecar runs as them so its audit log stays the user's.
pub(crate) fn owner_of(dir: &Path) -> Result<(u32, u32), Error> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(dir).map_err(|source| Error::Io {
        image: "sidecar".into(),
        action: "read the owner of the state directory",
        path: dir.to_owned(),
        source,
    })?;
    Ok((meta.uid(), meta.gid()))
}

/// What probing a runtime found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeProbe {
    /// The engine does not know the runtime.
    NotRegistered,
    /// A probe container ran under it; the name to use.
    Works(String),
    /// Registered, but a probe container failed.
    Broken { runtime: String, error: String },
}

/// The remembered outcome of a runtime probe.
#[derive(serde::Serialize, serde::Deserialize)]
struct ProbeCache {
    key: String,
    /// Seconds since the Unix epoch.
    checked_at: u64,
    works: bool,
    runtime: String,
    error: String,
}

impl ProbeCache {
    const MAX_AGE_SECS: u64 = 24 * 3600;

    fn read(file: &Path, key: &str) -> Option<RuntimeProbe> {
        let cached: Self = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
        if cached.key != key || now_secs().saturating_sub(cached.checked_at) > Self::MAX_AGE_SECS {
            return None;
        }
        Some(if cached.works {
            RuntimeProbe::Works(cached.runtime)
        } else {
            RuntimeProbe::Broken { runtime: cached.runtime, error: cached.error }
        })
    }

    fn write(file: &Path, key: &str, probe: &RuntimeProbe) {
        let (works, runtime, error) = match probe {
            RuntimeProbe::Works(r) => (true, r.clone(), String::new()),
            RuntimeProbe::Broken { runtime, error } => (false, runtime.clone(), error.clone()),
            RuntimeProbe::NotRegistered => return,
        };
        let entry = Self { key: key.to_owned(), checked_at: now_secs(), works, runtime, error };
        if let (Some(dir), Ok(bytes)) = (file.parent(), serde_json::to_vec(&entry)) {
            let _ = std::fs::create_dir_all(dir);
            let _ = std::fs::write(file, bytes);
        }
    }
}

/// Starts a throwaway container (`network=none`, `true`) under `runtime` and reports whether it ran.
pub async fn probe_runtime(engine: &Engine, runtime: &str, image: &str) -> RuntimeProbe {
    let docker = engine.docker();
    let registered = match docker.info().await {
        Ok(info) => info.runtimes.is_some_and(|r| r.contains_key(runtime)),
        Err(e) => return RuntimeProbe::Broken { runtime: runtime.to_owned(), error: e.to_string() },
    };
    if !registered {
        return RuntimeProbe::NotRegistered;
    }
    let name = format!(
        "bot-bottle-probe-{}-{}",
        std::process::id(),
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
    );
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        entrypoint: Some(vec!["true".into()]),
        cmd: Some(Vec::new()),
        labels: Some(HashMap::from([(crate::image::LABEL.to_owned(), "1".to_owned())])),
        host_config: Some(HostConfig {
            runtime: Some(runtime.to_owned()),
            network_mode: Some("none".into()),
            cap_drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let result = async {
        docker.create_container(Some(CreateContainerOptionsBuilder::new().name(&name).build()), body).await?;
        docker.start_container(&name, None).await?;
        let mut wait = docker.wait_container(&name, None);
        while let Some(status) = wait.next().await {
            status?;
        }
        Ok::<(), bollard::errors::Error>(())
    }
    .await;
    let _ = docker.remove_container(&name, Some(RemoveContainerOptionsBuilder::new().force(true).build())).await;
    match result {
        Ok(()) => RuntimeProbe::Works(runtime.to_owned()),
        Err(e) => {
            let error = e.to_string();
            let error = error.lines().next().unwrap_or_default();
            let error = error.split_once("status code 500: ").map_or(error, |(_, rest)| rest);
            let error = error.chars().take(240).collect();
            RuntimeProbe::Broken { runtime: runtime.to_owned(), error }
        }
    }
}

fn engine_error(action: &'static str) -> impl Fn(bollard::errors::Error) -> Error {
    move |source| Error::Engine { image: "-".into(), step: action, source }
}

/// A docker bottle behind the synchronous [`Bottle`] trait.
#[derive(Debug)]
pub struct DockerHandle {
    rt: Arc<Runtime>,
    slug: Slug,
    bottle: DockerBottle,
}

impl Bottle for DockerHandle {
    fn slug(&self) -> &Slug {
        &self.slug
    }

    fn control_addr(&self) -> Option<std::net::SocketAddr> {
        self.bottle.control_addr()
    }

    fn agent_argv(&self, argv: &[String], tty: bool) -> Vec<String> {
        let mut out = vec!["docker".to_owned(), "--host".to_owned(), self.bottle.engine.endpoint().to_owned()];
        out.extend(["exec".to_owned(), "-i".to_owned()]);
        if tty {
            out.push("-t".to_owned());
        }
        out.extend([
            "-u".to_owned(),
            format!("{AGENT_UID}:{AGENT_UID}"),
            "-w".to_owned(),
            GUEST_HOME.to_owned(),
            self.bottle.resources.agent.clone(),
        ]);
        // `docker exec -t` sends the window size only after the command started, so a program
        // that reads it first sees 0x0. Set it in the bottle before the command runs; resizes
        // (SIGWINCH) are forwarded by the client from then on.
        if tty && let Some((rows, cols)) = host_terminal_size() {
            out.extend(
                ["sh", "-c", r#"stty rows "$1" cols "$2" 2>/dev/null; shift 2; exec "$@""#, "bot-bottle-tty"]
                    .map(str::to_owned),
            );
            out.extend([rows.to_string(), cols.to_string()]);
        }
        out.extend(argv.iter().cloned());
        out
    }

    fn exec(&self, script: &str, user: ExecUser) -> Result<ExecResult, Error> {
        self.rt.block_on(self.bottle.exec(script, user))
    }

    fn cp_in(&self, host: &Path, dest: &Path, owner: ExecUser) -> Result<(), Error> {
        let (parent, name) = split_dest(&self.bottle.slug, dest)?;
        let archive = tar_host_path(host, &name, owner).map_err(|source| Error::Launch {
            slug: self.bottle.slug.clone(),
            action: format!("pack `{}`", host.display()),
            source: Box::new(source),
        })?;
        self.upload(&parent, archive, owner)
    }

    fn cp_out(&self, guest: &Path, host: &Path) -> Result<usize, Error> {
        let fail = |reason: String| Error::CopyOut {
            slug: self.bottle.slug.clone(),
            guest: guest.to_owned(),
            host: host.to_owned(),
            reason,
        };
        if !guest.is_absolute() {
            return Err(fail("the path in the bottle must be absolute".into()));
        }
        // The archive is spooled to an unnamed temporary file: a large tree never sits in memory,
        // and nothing is unpacked before the engine has sent all of it.
        let mut spool = tempfile::tempfile().map_err(|e| fail(format!("cannot create a temporary file: {e}")))?;
        self.rt.block_on(async {
            use std::io::Write as _;
            let options = bollard::query_parameters::DownloadFromContainerOptionsBuilder::new()
                .path(&guest.to_string_lossy())
                .build();
            let mut stream =
                self.bottle.engine.docker().download_from_container(&self.bottle.resources.agent, Some(options));
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| match e {
                    bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => {
                        fail("no such file or directory in the bottle".into())
                    }
                    other => fail(other.to_string()),
                })?;
                spool.write_all(&chunk).map_err(|e| fail(format!("cannot spool the archive: {e}")))?;
            }
            Ok::<(), Error>(())
        })?;
        std::io::Seek::rewind(&mut spool).map_err(|e| fail(e.to_string()))?;
        crate::archive::unpack_to(std::io::BufReader::new(spool), host).map_err(|e| fail(e.to_string()))
    }

    fn put_file(&self, dest: &Path, contents: &[u8], mode: u32, owner: ExecUser) -> Result<(), Error> {
        let (parent, name) = split_dest(&self.bottle.slug, dest)?;
        let (uid, gid) = ids(owner);
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mtime(now_secs());
        header.set_size(contents.len() as u64);
        let archive =
            tar.append_data(&mut header, &name, contents).and_then(|()| tar.into_inner()).map_err(|source| {
                Error::Launch {
                    slug: self.bottle.slug.clone(),
                    action: format!("pack `{}`", dest.display()),
                    source: Box::new(source),
                }
            })?;
        self.upload(&parent, archive, owner)
    }

    fn put_files(&self, files: &[GuestFile<'_>]) -> Result<(), Error> {
        let mut tar = tar::Builder::new(Vec::new());
        let pack = || -> std::io::Result<Vec<u8>> {
            // Directories an agent-owned file needs inside the agent's home are made first, owned
            // by the agent too (the engine would make them root's, and the agent could not write
            // into its own `~/.claude`).
            let mut dirs = std::collections::BTreeSet::new();
            for f in files.iter().filter(|f| f.owner == ExecUser::Agent) {
                let mut dir = f.dest.parent();
                while let Some(d) = dir {
                    if d == Path::new(GUEST_HOME) || !d.starts_with(GUEST_HOME) {
                        break;
                    }
                    dirs.insert(d.to_path_buf());
                    dir = d.parent();
                }
            }
            for d in &dirs {
                let (uid, gid) = ids(ExecUser::Agent);
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_uid(uid);
                header.set_gid(gid);
                header.set_mtime(now_secs());
                header.set_size(0);
                let path = d.strip_prefix("/").map_err(|_| std::io::Error::other("not an absolute path"))?;
                tar.append_data(&mut header, path, std::io::empty())?;
            }
            for f in files {
                let (uid, gid) = ids(f.owner);
                let mut header = tar::Header::new_gnu();
                header.set_mode(f.mode);
                header.set_uid(uid);
                header.set_gid(gid);
                header.set_mtime(now_secs());
                header.set_size(f.contents.len() as u64);
                let path = f.dest.strip_prefix("/").map_err(|_| std::io::Error::other("not an absolute path"))?;
                tar.append_data(&mut header, path, f.contents)?;
            }
            tar.into_inner()
        };
        let archive = pack().map_err(|source| Error::Launch {
            slug: self.bottle.slug.clone(),
            action: "pack the provisioned files".into(),
            source: Box::new(source),
        })?;
        self.upload("/", archive, ExecUser::Root)
    }

    fn attach(&self, argv: &[String]) -> Result<i32, Error> {
        let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        let full = self.agent_argv(argv, tty);
        let (program, args) = full.split_first().ok_or_else(|| Error::Spawn {
            program: "docker".into(),
            source: std::io::Error::other("empty command line"),
        })?;
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .map_err(|source| Error::Spawn { program: program.clone(), source })?;
        Ok(exit_code(status))
    }

    fn close(self: Box<Self>) -> Result<(), Error> {
        let Self { rt, bottle, .. } = *self;
        rt.block_on(bottle.close())
    }
}

impl DockerHandle {
    /// Creates `parent` as `owner` and unpacks `archive` into it.
    fn upload(&self, parent: &str, archive: Vec<u8>, owner: ExecUser) -> Result<(), Error> {
        let archive = bytes::Bytes::from(archive);
        let put = |archive: bytes::Bytes| {
            let options = UploadToContainerOptionsBuilder::new().path(parent).build();
            self.rt.block_on(self.bottle.engine.docker().upload_to_container(
                &self.bottle.resources.agent,
                Some(options),
                bollard::body_full(archive),
            ))
        };
        let result = match put(archive.clone()) {
            // The parent does not exist yet: create it as the owner (so it is theirs), then again.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                let mkdir = self.exec(&format!("mkdir -p -- {}", sh_quote(parent)), owner)?;
                if !mkdir.success() {
                    return Err(Error::Launch {
                        slug: self.bottle.slug.clone(),
                        action: format!("create `{parent}`"),
                        source: String::from_utf8_lossy(&mkdir.stderr).trim().to_owned().into(),
                    });
                }
                put(archive)
            }
            other => other,
        };
        result.map_err(|source| Error::Launch {
            slug: self.bottle.slug.clone(),
            action: format!("copy into `{parent}`"),
            source: Box::new(source),
        })
    }
}

/// `dest` as (parent directory, file name); it must be absolute.
pub(crate) fn split_dest(slug: &str, dest: &Path) -> Result<(String, String), Error> {
    let bad = || Error::Launch {
        slug: slug.to_owned(),
        action: format!("copy to `{}`", dest.display()),
        source: "the destination must be an absolute path with a file name".into(),
    };
    if !dest.is_absolute() {
        return Err(bad());
    }
    let parent = dest.parent().ok_or_else(bad)?.display().to_string();
    let name = dest.file_name().ok_or_else(bad)?.to_string_lossy().into_owned();
    Ok((parent, name))
}

pub(crate) fn ids(owner: ExecUser) -> (u64, u64) {
    let user = exec_user(owner);
    let mut parts = user.split(':').map(|p| p.parse::<u64>().unwrap_or(0));
    let uid = parts.next().unwrap_or(0);
    (uid, parts.next().unwrap_or(uid))
}

/// A tar of the host file or directory `host`, named `name` inside, every entry owned by `owner`.
/// Symbolic links are copied as links; modes keep their permission bits.
pub(crate) fn tar_host_path(host: &Path, name: &str, owner: ExecUser) -> std::io::Result<Vec<u8>> {
    let (uid, gid) = ids(owner);
    let mut tar = tar::Builder::new(Vec::new());
    let mut stack = vec![(host.to_path_buf(), name.to_owned())];
    while let Some((path, inner)) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        let mut header = tar::Header::new_gnu();
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mode(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777);
        header.set_mtime(
            meta.modified().ok().and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs()),
        );
        let file_type = meta.file_type();
        if file_type.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            tar.append_data(&mut header, format!("{inner}/"), std::io::empty())?;
            let mut children: Vec<_> = std::fs::read_dir(&path)?.collect::<Result<_, _>>()?;
            children.sort_by_key(std::fs::DirEntry::file_name);
            for child in children.into_iter().rev() {
                stack.push((child.path(), format!("{inner}/{}", child.file_name().to_string_lossy())));
            }
        } else if file_type.is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            tar.append_link(&mut header, &inner, std::fs::read_link(&path)?)?;
        } else if file_type.is_file() {
            header.set_size(meta.len());
            tar.append_data(&mut header, &inner, std::fs::File::open(&path)?)?;
        }
    }
    tar.into_inner()
}

/// The rows and columns of the terminal on stdin, stdout or stderr, when there is one.
pub(crate) fn host_terminal_size() -> Option<(u16, u16)> {
    use terminal_size::{Height, Width, terminal_size_of};
    [terminal_size_of(std::io::stdin()), terminal_size_of(std::io::stdout()), terminal_size_of(std::io::stderr())]
        .into_iter()
        .flatten()
        .map(|(Width(w), Height(h))| (h, w))
        .find(|&(h, w)| h > 0 && w > 0)
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `s` single-quoted for `sh`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A child's exit status as a shell reports it: the code, or 128 + the signal.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
        assert_eq!(sh_quote("/home/node/x y"), "'/home/node/x y'");
    }

    #[test]
    fn destinations_must_be_absolute_files() {
        assert_eq!(
            split_dest("s", Path::new("/home/node/.gitconfig")).unwrap(),
            ("/home/node".to_owned(), ".gitconfig".to_owned())
        );
        assert!(split_dest("s", Path::new("relative")).is_err());
        assert!(split_dest("s", Path::new("/")).is_err());
    }

    #[test]
    fn host_trees_are_owned_by_the_target_user() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/SKILL.md"), "hi").unwrap();
        let bytes = tar_host_path(dir.path(), "skill", ExecUser::Agent).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries: Vec<(String, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.header().uid().unwrap())
            })
            .collect();
        assert_eq!(
            entries,
            [("skill/".to_owned(), 1000), ("skill/sub/".to_owned(), 1000), ("skill/sub/SKILL.md".to_owned(), 1000)]
        );
    }
}
