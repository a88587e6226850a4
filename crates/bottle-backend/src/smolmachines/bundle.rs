//! The sidecar bundle next to a VM: a Docker bridge of its own with a pinned subnet and the sidecar
//! container at a pinned IP — the one address the VM's allow-list admits.
//!
//! [`BundleHost`] is the seam between the launch flow and the engine, so the flow's order and its
//! teardown are tested with a recording host; [`EngineBundle`] is the real one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Ipam, IpamConfig, Mount, MountType,
    NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bottle_core::plan::BundleAddress;
use futures_util::StreamExt as _;
use tokio::runtime::Runtime;

use crate::{Engine, Error};

/// Label carrying the bottle's slug on a smolmachines bundle's container and network. Not the
/// docker backend's `bot-bottle.slug`: that backend must neither list nor clean up a bundle whose
/// agent is a VM it knows nothing of.
pub const LABEL_BUNDLE: &str = "bot-bottle.smolmachines.slug";
/// Label naming a bundle resource's role (`sidecar`, `network`).
pub const LABEL_ROLE: &str = "bot-bottle.role";

/// What the bundle's sidecar container gets.
#[derive(Debug, Clone)]
pub struct SidecarSpec<'a> {
    pub name: &'a str,
    pub network: &'a str,
    pub address: &'a BundleAddress,
    pub image: &'a str,
    pub config: &'a [u8],
    pub secrets: &'a [(String, Vec<u8>)],
    pub keys: &'a [(String, Vec<u8>)],
    pub control_token: Option<&'a [u8]>,
    pub upstream_ca: Option<&'a [u8]>,
    /// The host state directory, mounted read-write at the sidecar's state dir.
    pub state_dir: &'a Path,
    /// uid, gid the sidecar runs as (the state directory's owner).
    pub user: (u32, u32),
    pub labels: Vec<(String, String)>,
}

/// One bundle resource on the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleResource {
    pub slug: String,
    pub kind: BundleKind,
    pub name: String,
    pub running: bool,
    /// The launching process, for a bottle it still owns.
    pub owner: Option<u32>,
    pub detached: bool,
    pub agent: Option<String>,
    pub created: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    Container,
    Network,
}

/// What the launch flow asks of the engine.
pub trait BundleHost: Send + Sync {
    /// Creates the bridge `name` on `address.subnet`. `Ok(false)`: the subnet is taken.
    fn create_network(&self, name: &str, address: &BundleAddress, labels: &[(String, String)]) -> Result<bool, Error>;
    fn remove_network(&self, name: &str) -> Result<(), Error>;
    /// Creates the sidecar container (not started) and copies its config in.
    fn create_sidecar(&self, spec: &SidecarSpec<'_>) -> Result<(), Error>;
    fn start_container(&self, name: &str) -> Result<(), Error>;
    fn remove_container(&self, name: &str) -> Result<(), Error>;
    /// Waits until something accepts TCP on `addr`, failing early when `container` exits.
    fn wait_listening(&self, container: &str, addr: SocketAddr, timeout: Duration) -> Result<(), Error>;
    /// Writes `image` as a `docker save` tarball to `dest`.
    fn save_image(&self, image: &str, dest: &Path) -> Result<(), Error>;
    /// Every bundle container and network on the engine.
    fn list(&self) -> Result<Vec<BundleResource>, Error>;
}

/// The real [`BundleHost`]: the Docker engine.
#[derive(Debug, Clone)]
pub struct EngineBundle {
    pub rt: Arc<Runtime>,
    pub engine: Engine,
}

fn engine_err(action: String) -> impl FnOnce(bollard::errors::Error) -> Error {
    move |source| Error::Launch { slug: "smolmachines".into(), action, source: Box::new(source) }
}

fn gone(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

impl BundleHost for EngineBundle {
    fn create_network(&self, name: &str, address: &BundleAddress, labels: &[(String, String)]) -> Result<bool, Error> {
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".into()),
            labels: Some(labels.iter().cloned().collect()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(address.subnet.clone()),
                    gateway: Some(address.gateway.clone()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        match self.rt.block_on(self.engine.docker().create_network(request)) {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code, message })
                if status_code == 403 || message.contains("overlap") =>
            {
                Ok(false)
            }
            Err(e) => Err(engine_err(format!("create network `{name}`"))(e)),
        }
    }

    fn remove_network(&self, name: &str) -> Result<(), Error> {
        match self.rt.block_on(self.engine.docker().remove_network(name)) {
            Ok(()) => Ok(()),
            Err(e) if gone(&e) => Ok(()),
            Err(e) => Err(engine_err(format!("remove network `{name}`"))(e)),
        }
    }

    fn create_sidecar(&self, spec: &SidecarSpec<'_>) -> Result<(), Error> {
        let docker = self.engine.docker();
        let mounts = vec![Mount {
            typ: Some(MountType::BIND),
            source: Some(spec.state_dir.display().to_string()),
            target: Some(crate::docker::SIDECAR_STATE_DIR.to_owned()),
            read_only: Some(false),
            ..Default::default()
        }];
        let (uid, gid) = spec.user;
        let limits = crate::docker::Limits::default();
        let body = ContainerCreateBody {
            image: Some(spec.image.to_owned()),
            user: Some(format!("{uid}:{gid}")),
            entrypoint: Some(vec![crate::image::SIDECAR_BINARY_PATH.into()]),
            cmd: Some(vec!["sidecar".into(), "--config".into(), crate::docker::SIDECAR_CONFIG.into()]),
            labels: Some(spec.labels.iter().cloned().collect()),
            host_config: Some(HostConfig {
                network_mode: Some(spec.network.to_owned()),
                mounts: Some(mounts),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                memory: Some(limits.sidecar_memory_bytes),
                memory_swap: Some(limits.sidecar_memory_bytes),
                pids_limit: Some(limits.sidecar_pids),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    spec.network.to_owned(),
                    EndpointSettings {
                        ipam_config: Some(EndpointIpamConfig {
                            ipv4_address: Some(spec.address.sidecar.clone()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(spec.name).build();
        self.rt
            .block_on(docker.create_container(Some(options), body))
            .map_err(engine_err(format!("create container `{}`", spec.name)))?;
        let files = crate::docker::SidecarFiles {
            config: spec.config,
            secrets: spec.secrets,
            keys: spec.keys,
            control_token: spec.control_token,
            upstream_ca: spec.upstream_ca,
            owner: spec.user,
        };
        let archive = crate::docker::config_tar(&files).map_err(|e| Error::Launch {
            slug: "smolmachines".into(),
            action: "pack the sidecar config".into(),
            source: Box::new(e),
        })?;
        self.rt
            .block_on(docker.upload_to_container(
                spec.name,
                Some(UploadToContainerOptionsBuilder::new().path("/etc").build()),
                bollard::body_full(archive.into()),
            ))
            .map_err(engine_err(format!("copy the config into `{}`", spec.name)))
    }

    fn start_container(&self, name: &str) -> Result<(), Error> {
        self.rt
            .block_on(self.engine.docker().start_container(name, None))
            .map_err(engine_err(format!("start container `{name}`")))
    }

    fn remove_container(&self, name: &str) -> Result<(), Error> {
        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match self.rt.block_on(self.engine.docker().remove_container(name, Some(options))) {
            Ok(()) => Ok(()),
            Err(e) if gone(&e) => Ok(()),
            Err(e) => Err(engine_err(format!("remove container `{name}`"))(e)),
        }
    }

    fn wait_listening(&self, container: &str, addr: SocketAddr, timeout: Duration) -> Result<(), Error> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            let inspect = self.rt.block_on(self.engine.docker().inspect_container(container, None));
            let running = inspect.ok().and_then(|i| i.state).and_then(|s| s.running).unwrap_or(false);
            if !running || std::time::Instant::now() >= deadline {
                let what = if running {
                    format!("did not listen on {addr} within {}s", timeout.as_secs())
                } else {
                    "exited during launch".to_owned()
                };
                let log = self.rt.block_on(logs(&self.engine, container));
                return Err(Error::NotReady {
                    slug: container.to_owned(),
                    message: format!("container `{container}` {what}"),
                    log,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn save_image(&self, image: &str, dest: &Path) -> Result<(), Error> {
        use std::io::Write as _;
        let io_err = |source| Error::Io { image: image.to_owned(), action: "write", path: dest.to_owned(), source };
        let mut file = std::fs::File::create(dest).map_err(io_err)?;
        let mut stream = self.engine.docker().export_image(image);
        self.rt.block_on(async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(engine_err(format!("save image `{image}`")))?;
                file.write_all(&chunk).map_err(io_err)?;
            }
            file.sync_all().map_err(io_err)
        })
    }

    fn list(&self) -> Result<Vec<BundleResource>, Error> {
        let docker = self.engine.docker();
        let filters = HashMap::from([("label", vec![LABEL_BUNDLE])]);
        let mut out = Vec::new();
        let containers = self
            .rt
            .block_on(
                docker.list_containers(Some(ListContainersOptionsBuilder::new().all(true).filters(&filters).build())),
            )
            .map_err(engine_err("list containers".into()))?;
        for c in containers {
            let labels = c.labels.unwrap_or_default();
            let Some(slug) = labels.get(LABEL_BUNDLE) else { continue };
            out.push(BundleResource {
                slug: slug.clone(),
                kind: BundleKind::Container,
                name: c.names.and_then(|n| n.into_iter().next()).unwrap_or_default().trim_start_matches('/').to_owned(),
                running: c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING),
                owner: labels.get(crate::docker::LABEL_OWNER).and_then(|p| p.parse().ok()),
                detached: labels.get(crate::docker::LABEL_DETACHED).is_some_and(|d| d == "1"),
                agent: labels.get(crate::docker::LABEL_AGENT).cloned(),
                created: c.created,
            });
        }
        let networks = self
            .rt
            .block_on(docker.list_networks(Some(ListNetworksOptionsBuilder::new().filters(&filters).build())))
            .map_err(engine_err("list networks".into()))?;
        for n in networks {
            let labels = n.labels.unwrap_or_default();
            if let (Some(slug), Some(name)) = (labels.get(LABEL_BUNDLE), n.name) {
                out.push(BundleResource {
                    slug: slug.clone(),
                    kind: BundleKind::Network,
                    name,
                    running: false,
                    owner: labels.get(crate::docker::LABEL_OWNER).and_then(|p| p.parse().ok()),
                    detached: labels.get(crate::docker::LABEL_DETACHED).is_some_and(|d| d == "1"),
                    agent: None,
                    created: None,
                });
            }
        }
        Ok(out)
    }
}

async fn logs(engine: &Engine, container: &str) -> String {
    let options = bollard::query_parameters::LogsOptionsBuilder::new().stdout(true).stderr(true).tail("20").build();
    let mut stream = engine.docker().logs(container, Some(options));
    let mut out = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    out
}

/// Whether `subnet` (`A.B.C.D/N`) overlaps a route the host already has (a VPN, a LAN): the VM's
/// traffic to the sidecar would go the wrong way.
pub fn overlaps_host_route(subnet: &str, routes: &str) -> bool {
    let Some((net, len)) = parse_cidr(subnet) else { return true };
    let mask = |len: u32| if len == 0 { 0 } else { u32::MAX << (32 - len) };
    routes.lines().skip(1).any(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (Some(dest), Some(m)) = (cols.get(1), cols.get(7)) else { return false };
        let (Ok(dest), Ok(m)) = (u32::from_str_radix(dest, 16), u32::from_str_radix(m, 16)) else { return false };
        // /proc/net/route is little-endian; the default route (mask 0) overlaps everything and
        // says nothing.
        let (dest, m) = (dest.swap_bytes(), m.swap_bytes());
        if m == 0 {
            return false;
        }
        let common = mask(len.min(m.count_ones()));
        (dest & common) == (net & common)
    })
}

fn parse_cidr(s: &str) -> Option<(u32, u32)> {
    let (ip, len) = s.split_once('/')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    Some((u32::from(ip), len.parse().ok().filter(|l: &u32| *l <= 32)?))
}

/// `~/.cache/bot-bottle/smolmachines/`: packed artifacts and the allocation lock.
pub fn cache_dir() -> Result<PathBuf, Error> {
    Ok(crate::image::cache_dir()?.join("smolmachines"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_routes_that_overlap_are_found() {
        // 10.210.5.0/24 via eth1 (little-endian hex), and the default route.
        let routes = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
                      eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\n\
                      eth1\t0005D20A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
        assert!(overlaps_host_route("10.210.5.16/28", routes));
        assert!(!overlaps_host_route("10.210.6.16/28", routes));
        assert!(overlaps_host_route("garbage", routes), "unparseable is taken");
    }
}
