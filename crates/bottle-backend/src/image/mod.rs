//! The images bottles run: the base agent image and the sidecar image, built from a Dockerfile
//! (machines with a registry) or offline from a Debian rootfs (`mmdebstrap` → import → build).
//!
//! A recipe ([`ImageRecipe`]) is pure data: its tag is a hash of everything that goes into the
//! image (Dockerfile text, package list, the sidecar binary), so [`ImageBuilder::build`] asks the
//! engine for that tag first and builds only when an input changed.

mod context;
pub mod npm;
pub mod rootfs;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use bollard::query_parameters::{BuildImageOptions, CreateImageOptions};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use crate::{Engine, Error};

pub use npm::NpmSpec;
pub use rootfs::Mirror;

/// The Debian release every image is built from.
pub const SUITE: &str = "bookworm";

/// The label every bot-bottle image carries, so `cleanup` and `list` can find them.
pub const LABEL: &str = "bot-bottle";

/// Packages of the base agent image. `passwd` brings `useradd`, which `minbase` leaves out.
pub const AGENT_PACKAGES: &[&str] =
    &["bash", "ca-certificates", "curl", "dnsutils", "git", "netcat-openbsd", "passwd", "python3"];

/// Packages of the sidecar image (git-gate needs git and ssh; egress needs the CA store).
pub const SIDECAR_PACKAGES: &[&str] = &["ca-certificates", "git", "openssh-client"];

/// Where the sidecar image keeps the `bot-bottle` binary.
pub const SIDECAR_BINARY_PATH: &str = "/usr/local/bin/bot-bottle";

/// Which image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    /// Debian + the tools agents expect + user `node` (uid 1000).
    Agent,
    /// Debian + git + ssh + CA store + the `bot-bottle` binary.
    Sidecar,
    /// A provider's image: the agent image plus its CLI (npm packages or a Dockerfile).
    Provider,
}

impl ImageKind {
    /// Short name used in progress lines and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Sidecar => "sidecar",
            Self::Provider => "provider",
        }
    }

    /// Repository part of the final tag (a provider's is `bot-bottle-agent-<provider>`).
    pub fn repository(self) -> &'static str {
        match self {
            Self::Agent => "bot-bottle-agent-base",
            Self::Sidecar => "bot-bottle-sidecar",
            Self::Provider => "bot-bottle-agent",
        }
    }

    fn rootfs_repository(self) -> &'static str {
        match self {
            Self::Agent | Self::Provider => "bot-bottle-agent-rootfs",
            Self::Sidecar => "bot-bottle-sidecar-rootfs",
        }
    }

    /// The Debian packages this image installs.
    pub fn packages(self) -> &'static [&'static str] {
        match self {
            Self::Agent => AGENT_PACKAGES,
            Self::Sidecar => SIDECAR_PACKAGES,
            Self::Provider => &[],
        }
    }
}

/// How the Debian base is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildMode {
    /// `FROM debian:bookworm-slim` + apt: needs a container registry (untested on machines without one).
    Registry,
    /// `mmdebstrap` a rootfs from the Debian mirror, import it, build FROM it: needs no registry.
    Offline,
}

/// A Debian rootfs the offline mode imports as the build's base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsSpec {
    /// Tag of the imported base, e.g. `bot-bottle-agent-rootfs:0123456789ab`.
    pub tag: String,
    /// Hash of the rootfs inputs; names the cached tarball.
    pub key: String,
    pub packages: Vec<String>,
}

/// A file added to the build context next to the Dockerfile.
#[derive(Clone, PartialEq, Eq)]
struct ContextFile {
    name: &'static str,
    mode: u32,
    data: Bytes,
}

impl std::fmt::Debug for ContextFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextFile")
            .field("name", &self.name)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("len", &self.data.len())
            .finish()
    }
}

/// Everything needed to build one image, and the tag it will have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecipe {
    pub kind: ImageKind,
    /// What progress lines call it: `agent`, `sidecar`, or the provider's name.
    pub display: String,
    pub mode: BuildMode,
    /// `<repository>:<12 hex of the inputs' hash>`.
    pub tag: String,
    pub dockerfile: String,
    /// The imported base, in offline mode.
    pub rootfs: Option<RootfsSpec>,
    files: Vec<ContextFile>,
    /// npm packages staged on the host and sent in the context as `npm/node_modules` (offline).
    pub npm: Option<NpmSpec>,
    /// A directory sent whole as the context (a custom Dockerfile's directory).
    pub context_dir: Option<PathBuf>,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
}

/// Where a provider image keeps its npm packages.
pub const NPM_PREFIX: &str = "/opt/bot-bottle/npm";

/// The largest directory a custom Dockerfile may send as its build context.
const CONTEXT_LIMIT_MIB: u64 = 256;

impl ImageRecipe {
    /// The base agent image.
    pub fn agent(mode: BuildMode) -> Self {
        Self::new(ImageKind::Agent, mode, Vec::new(), &[])
    }

    /// The sidecar image with `binary` (the Linux `bot-bottle` executable) at [`SIDECAR_BINARY_PATH`].
    pub fn sidecar(mode: BuildMode, binary: Bytes) -> Self {
        let digest = hex::encode(Sha256::digest(&binary));
        let file = ContextFile { name: "bot-bottle", mode: 0o755, data: binary };
        Self::new(ImageKind::Sidecar, mode, vec![file], digest.as_bytes())
    }

    /// The sidecar image with the binary read from `path`.
    pub fn sidecar_from_file(mode: BuildMode, path: &Path) -> Result<Self, Error> {
        let binary = std::fs::read(path).map_err(|source| Error::Io {
            image: ImageKind::Sidecar.name().to_owned(),
            action: "read the `bot-bottle` binary",
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::sidecar(mode, Bytes::from(binary)))
    }

    fn new(kind: ImageKind, mode: BuildMode, files: Vec<ContextFile>, binary_digest: &[u8]) -> Self {
        let packages: Vec<String> = kind.packages().iter().map(|p| (*p).to_owned()).collect();
        let rootfs = match mode {
            BuildMode::Registry => None,
            BuildMode::Offline => {
                let key = short_hash(&[
                    b"rootfs v1",
                    SUITE.as_bytes(),
                    rootfs::VARIANT.as_bytes(),
                    packages.join(",").as_bytes(),
                ]);
                Some(RootfsSpec { tag: format!("{}:{key}", kind.rootfs_repository()), key, packages: packages.clone() })
            }
        };
        let dockerfile = dockerfile(kind, rootfs.as_ref().map(|r| r.tag.as_str()), &packages);
        let hash = short_hash(&[dockerfile.as_bytes(), packages.join(",").as_bytes(), binary_digest]);
        Self {
            kind,
            display: kind.name().to_owned(),
            mode,
            tag: format!("{}:{hash}", kind.repository()),
            dockerfile,
            rootfs,
            files,
            npm: None,
            context_dir: None,
            build_args: BTreeMap::new(),
        }
    }

    /// Provider `name`'s image: `base` (the agent image's tag) plus the npm `packages` (exact
    /// versions) under [`NPM_PREFIX`], with `links` (`/usr/local/bin/<name>` → a path under
    /// `node_modules`). Offline, the packages are installed on the host and copied in; from a
    /// registry, a `node` build stage installs them.
    pub fn provider(
        mode: BuildMode,
        name: &str,
        base: &str,
        packages: &[String],
        links: &BTreeMap<String, String>,
    ) -> Self {
        let npm = NpmSpec { key: short_hash(&[b"npm v1", packages.join(" ").as_bytes()]), packages: packages.to_vec() };
        let mut text = match mode {
            BuildMode::Offline => format!("FROM {base}\nUSER root\nCOPY npm/node_modules {NPM_PREFIX}/node_modules\n"),
            BuildMode::Registry => format!(
                "FROM node:22-{SUITE}-slim AS npm\n\
                 RUN npm install --prefix {NPM_PREFIX} --ignore-scripts --no-audit --no-fund --omit=dev {}\n\
                 FROM {base}\nUSER root\n\
                 COPY --from=npm {NPM_PREFIX}/node_modules {NPM_PREFIX}/node_modules\n",
                packages.join(" ")
            ),
        };
        if !links.is_empty() {
            let commands: Vec<String> = links
                .iter()
                .map(|(bin, target)| format!("ln -sf {NPM_PREFIX}/node_modules/{target} /usr/local/bin/{bin}"))
                .collect();
            text.push_str(&format!("RUN {}\n", commands.join(" \\\n && ")));
        }
        text.push_str(&format!(
            "LABEL {LABEL}=1 {LABEL}.image=provider {LABEL}.provider={name}\nUSER node\nWORKDIR /home/node\n"
        ));
        let hash = short_hash(&[text.as_bytes(), npm.key.as_bytes()]);
        Self {
            kind: ImageKind::Provider,
            display: name.to_owned(),
            mode,
            tag: format!("{}-{name}:{hash}", ImageKind::Provider.repository()),
            dockerfile: text,
            rootfs: None,
            files: Vec::new(),
            npm: (mode == BuildMode::Offline && !packages.is_empty()).then_some(npm),
            context_dir: None,
            build_args: BTreeMap::new(),
        }
    }

    /// Provider `name`'s image from a user's Dockerfile, built with its directory as the context and
    /// `BOT_BOTTLE_BASE` (the agent image's tag, for `ARG BOT_BOTTLE_BASE` / `FROM ${BOT_BOTTLE_BASE}`).
    /// The tag hashes the Dockerfile, the base and every file of the context.
    pub fn custom(name: &str, base: &str, dockerfile: &Path) -> Result<Self, Error> {
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { image: name.to_owned(), action, path, source }
        };
        let text = std::fs::read_to_string(dockerfile).map_err(io("read the Dockerfile", dockerfile))?;
        let dir = dockerfile.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let mut hasher = Sha256::new();
        hasher.update(text.as_bytes());
        hasher.update(base.as_bytes());
        let mut total = 0_u64;
        let mut stack = vec![dir.clone()];
        let mut files = Vec::new();
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).map_err(io("read the build context", &d))? {
                let entry = entry.map_err(io("read the build context", &d))?;
                let meta = std::fs::symlink_metadata(entry.path()).map_err(io("read", &entry.path()))?;
                if meta.is_dir() {
                    stack.push(entry.path());
                } else if meta.is_file() {
                    total += meta.len();
                    if total > CONTEXT_LIMIT_MIB << 20 {
                        return Err(Error::ContextTooLarge {
                            image: name.to_owned(),
                            dir,
                            limit_mib: CONTEXT_LIMIT_MIB,
                        });
                    }
                    files.push(entry.path());
                }
            }
        }
        files.sort();
        for f in &files {
            hasher.update(f.strip_prefix(&dir).unwrap_or(f).to_string_lossy().as_bytes());
            hasher.update(std::fs::read(f).map_err(io("read", f))?);
        }
        let mut hash = hex::encode(hasher.finalize());
        hash.truncate(12);
        // The file is sent as `Dockerfile` at the context's root, whatever its own name.
        Ok(Self {
            kind: ImageKind::Provider,
            display: name.to_owned(),
            mode: BuildMode::Registry,
            tag: format!("{}-{name}-custom:{hash}", ImageKind::Provider.repository()),
            dockerfile: text,
            rootfs: None,
            files: Vec::new(),
            npm: None,
            context_dir: Some(dir),
            build_args: BTreeMap::from([("BOT_BOTTLE_BASE".to_owned(), base.to_owned())]),
        })
    }

    /// The build context: the Dockerfile and the files it copies, as a tar archive.
    pub fn context_tar(&self) -> std::io::Result<Vec<u8>> {
        let files: Vec<(&str, u32, &[u8])> = self.files.iter().map(|f| (f.name, f.mode, &f.data[..])).collect();
        context::tar(&self.dockerfile, &files)
    }
}

/// The Dockerfile of `kind`: FROM the imported rootfs when given, else from the registry's
/// `debian:bookworm-slim` with the packages installed by apt.
fn dockerfile(kind: ImageKind, rootfs_tag: Option<&str>, packages: &[String]) -> String {
    let mut text = match rootfs_tag {
        Some(tag) => format!("FROM {tag}\n"),
        None => format!(
            "FROM debian:{SUITE}-slim\n\
             RUN apt-get update \\\n \
             && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {} \\\n \
             && rm -rf /var/lib/apt/lists/*\n",
            packages.join(" ")
        ),
    };
    text.push_str(&format!("LABEL {LABEL}=1 {LABEL}.image={}\n", kind.name()));
    match kind {
        ImageKind::Agent => text.push_str(
            "RUN useradd --create-home --home-dir /home/node --uid 1000 --user-group --shell /bin/bash node\n\
             USER node\n\
             WORKDIR /home/node\n",
        ),
        ImageKind::Sidecar => text.push_str(&format!("COPY bot-bottle {SIDECAR_BINARY_PATH}\n")),
        ImageKind::Provider => {}
    }
    text
}

/// First 12 hex digits of a SHA-256 over length-prefixed parts (so `["ab","c"]` ≠ `["a","bc"]`).
fn short_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    let mut s = hex::encode(h.finalize());
    s.truncate(12);
    s
}

/// Where a build reports what it is doing.
pub trait Progress: Sync {
    /// A step starts or ends: one line for a human.
    fn step(&self, image: &str, message: &str);
    /// One line of a tool's own output (mmdebstrap, Dockerfile steps); shown when verbose.
    fn output(&self, image: &str, line: &str);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn step(&self, _: &str, _: &str) {}
    fn output(&self, _: &str, _: &str) {}
}

/// An image that exists on the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    pub kind: ImageKind,
    pub tag: String,
    /// The engine's image id (`sha256:…`).
    pub id: String,
    /// True when the tag already existed and nothing was built.
    pub reused: bool,
}

/// Builds recipes against one engine.
pub struct ImageBuilder<'a> {
    engine: &'a Engine,
    progress: &'a dyn Progress,
    cache_dir: PathBuf,
    mirror: Mirror,
}

impl std::fmt::Debug for ImageBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageBuilder")
            .field("engine", &self.engine.endpoint())
            .field("cache_dir", &self.cache_dir)
            .field("mirror", &self.mirror)
            .finish_non_exhaustive()
    }
}

/// `$XDG_CACHE_HOME/bot-bottle`, else `~/.cache/bot-bottle`.
pub fn cache_dir() -> Result<PathBuf, Error> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))
        .ok_or(Error::NoCacheDir)?;
    Ok(cache.join("bot-bottle"))
}

impl<'a> ImageBuilder<'a> {
    /// A builder caching rootfs tarballs under [`cache_dir`] with the Debian mirror this host's apt
    /// uses.
    pub fn new(engine: &'a Engine, progress: &'a dyn Progress) -> Result<Self, Error> {
        Ok(Self { engine, progress, cache_dir: cache_dir()?, mirror: Mirror::detect() })
    }

    /// Uses `dir` instead of the default cache directory.
    #[must_use]
    pub fn with_cache_dir(mut self, dir: PathBuf) -> Self {
        self.cache_dir = dir;
        self
    }

    /// Uses `mirror` instead of the one detected from apt's sources.
    #[must_use]
    pub fn with_mirror(mut self, mirror: Mirror) -> Self {
        self.mirror = mirror;
        self
    }

    /// Makes sure `recipe.tag` exists on the engine, building it (and in offline mode its rootfs
    /// base) only when missing.
    pub async fn build(&self, recipe: &ImageRecipe) -> Result<BuiltImage, Error> {
        let name = recipe.display.as_str();
        if let Some(id) = self.existing(name, &recipe.tag).await? {
            self.progress.step(name, &format!("`{}` is up to date", recipe.tag));
            return Ok(BuiltImage { kind: recipe.kind, tag: recipe.tag.clone(), id, reused: true });
        }
        if let Some(rootfs) = &recipe.rootfs {
            self.ensure_rootfs_image(recipe.kind, rootfs).await?;
        }
        let npm_dir = match &recipe.npm {
            Some(spec) => Some(npm::ensure_packages(&self.cache_dir, name, spec, self.progress).await?),
            None => None,
        };
        self.progress.step(name, &format!("building `{}`", recipe.tag));
        let pack_error = |source| Error::Io {
            image: recipe.tag.clone(),
            action: "pack the build context for",
            path: PathBuf::from("Dockerfile"),
            source,
        };
        // Small contexts (a Dockerfile and a binary) are built in memory; a directory goes through a
        // temporary file streamed to the engine, so hundreds of MiB of node_modules never sit in memory.
        let dirs: Vec<(&str, PathBuf)> = npm_dir
            .iter()
            .map(|d| ("npm/node_modules", d.join("node_modules")))
            .chain(recipe.context_dir.iter().map(|d| ("", d.clone())))
            .collect();
        let body = if dirs.is_empty() {
            bollard::body_full(Bytes::from(recipe.context_tar().map_err(pack_error)?))
        } else {
            tokio::fs::create_dir_all(&self.cache_dir).await.map_err(pack_error)?;
            let tmp = tempfile::NamedTempFile::new_in(&self.cache_dir).map_err(pack_error)?;
            let files: Vec<(&str, u32, &[u8])> = recipe.files.iter().map(|f| (f.name, f.mode, &f.data[..])).collect();
            context::tar_to_file(tmp.as_file(), &recipe.dockerfile, &files, &dirs).map_err(pack_error)?;
            let file = tokio::fs::File::open(tmp.path()).await.map_err(pack_error)?;
            // The open file stays readable after the path is gone.
            drop(tmp);
            bollard::body_try_stream(file_chunks(file))
        };
        let labels = HashMap::from([(LABEL.to_owned(), "1".to_owned())]);
        let options = BuildImageOptions {
            t: Some(recipe.tag.clone()),
            rm: true,
            forcerm: true,
            labels: Some(labels),
            buildargs: (!recipe.build_args.is_empty())
                .then(|| recipe.build_args.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            // The offline build installs nothing, so it gets no network at all.
            networkmode: (recipe.mode == BuildMode::Offline).then(|| "none".to_owned()),
            ..Default::default()
        };
        let engine_error = |source| Error::Engine { image: recipe.tag.clone(), step: "docker build", source };
        let mut stream = self.engine.docker().build_image(options, None, Some(body));
        while let Some(info) = stream.next().await {
            let info = info.map_err(engine_error)?;
            if let Some(error) = info.error_detail.and_then(|d| d.message) {
                return Err(engine_error(bollard::errors::Error::DockerStreamError { error }));
            }
            if let Some(text) = info.stream.as_deref() {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    self.progress.output(name, line);
                }
            }
        }
        let id = self.existing(name, &recipe.tag).await?.ok_or_else(|| {
            engine_error(bollard::errors::Error::DockerStreamError {
                error: "the build finished but the tag does not exist".to_owned(),
            })
        })?;
        self.progress.step(name, &format!("built `{}`", recipe.tag));
        Ok(BuiltImage { kind: recipe.kind, tag: recipe.tag.clone(), id, reused: false })
    }

    /// The image id of `tag`, or `None` when the engine has no such image.
    async fn existing(&self, image: &str, tag: &str) -> Result<Option<String>, Error> {
        match self.engine.docker().inspect_image(tag).await {
            Ok(inspect) => Ok(Some(inspect.id.unwrap_or_default())),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(source) => Err(Error::Engine { image: image.to_owned(), step: "inspect image", source }),
        }
    }

    /// Imports the rootfs tarball as `rootfs.tag` unless the engine has it, creating the tarball
    /// with `mmdebstrap` unless it is cached.
    async fn ensure_rootfs_image(&self, kind: ImageKind, rootfs: &RootfsSpec) -> Result<(), Error> {
        let name = kind.name();
        if self.existing(name, &rootfs.tag).await?.is_some() {
            return Ok(());
        }
        let tarball = rootfs::ensure_tarball(&self.cache_dir, kind, rootfs, &self.mirror, self.progress).await?;
        self.progress.step(name, &format!("importing the rootfs as `{}`", rootfs.tag));
        let io_error = |source| Error::Io {
            image: rootfs.tag.clone(),
            action: "read the rootfs tarball",
            path: tarball.clone(),
            source,
        };
        let file = tokio::fs::File::open(&tarball).await.map_err(io_error)?;
        let (repo, tag) = rootfs.tag.split_once(':').unwrap_or((rootfs.tag.as_str(), "latest"));
        let options = CreateImageOptions {
            from_src: Some("-".to_owned()),
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
            message: Some(format!("mmdebstrap {SUITE} {}", rootfs.packages.join(","))),
            changes: vec![
                format!("LABEL {LABEL}=1"),
                // An imported filesystem has no config; give it what `debian:bookworm` has.
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
                "CMD [\"bash\"]".to_owned(),
            ],
            ..Default::default()
        };
        self.engine
            .docker()
            .create_image(Some(options), Some(bollard::body_try_stream(file_chunks(file))), None)
            .try_for_each(|_| futures_util::future::ok(()))
            .await
            .map_err(|source| Error::Engine { image: rootfs.tag.clone(), step: "docker import", source })
    }
}

/// The file as a stream of 1 MiB chunks, so a rootfs of hundreds of MiB is never held in memory.
fn file_chunks(file: tokio::fs::File) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = vec![0_u8; 1 << 20];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), file)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_stable_and_change_with_their_inputs() {
        let a = ImageRecipe::agent(BuildMode::Offline);
        assert_eq!(a.tag, ImageRecipe::agent(BuildMode::Offline).tag);
        assert!(a.tag.starts_with("bot-bottle-agent-base:"));
        assert_eq!(a.tag.len(), "bot-bottle-agent-base:".len() + 12);
        assert_ne!(a.tag, ImageRecipe::agent(BuildMode::Registry).tag);

        let s1 = ImageRecipe::sidecar(BuildMode::Offline, Bytes::from_static(b"binary one"));
        let s2 = ImageRecipe::sidecar(BuildMode::Offline, Bytes::from_static(b"binary two"));
        assert_ne!(s1.tag, s2.tag);
        // The rootfs does not depend on the binary, so a new binary reuses the cached base.
        assert_eq!(s1.rootfs, s2.rootfs);
        assert_ne!(s1.rootfs.as_ref().map(|r| &r.key), a.rootfs.as_ref().map(|r| &r.key));
    }

    #[test]
    fn hash_parts_are_delimited() {
        assert_ne!(short_hash(&[b"ab", b"c"]), short_hash(&[b"a", b"bc"]));
    }

    #[test]
    fn offline_agent_dockerfile_builds_from_the_rootfs_and_adds_node() {
        let r = ImageRecipe::agent(BuildMode::Offline);
        let rootfs = r.rootfs.as_ref().expect("offline has a rootfs");
        assert!(r.dockerfile.starts_with(&format!("FROM {}\n", rootfs.tag)));
        assert!(r.dockerfile.contains("--uid 1000"));
        assert!(r.dockerfile.contains("--home-dir /home/node"));
        assert!(r.dockerfile.contains("LABEL bot-bottle=1"));
        assert!(!r.dockerfile.contains("apt-get"));
    }

    #[test]
    fn registry_dockerfile_installs_the_packages_with_apt() {
        let r = ImageRecipe::sidecar(BuildMode::Registry, Bytes::from_static(b"x"));
        assert!(r.rootfs.is_none());
        assert!(r.dockerfile.starts_with("FROM debian:bookworm-slim\n"));
        assert!(r.dockerfile.contains("install -y --no-install-recommends ca-certificates git openssh-client"));
        assert!(r.dockerfile.contains("COPY bot-bottle /usr/local/bin/bot-bottle"));
    }

    #[test]
    fn context_holds_the_dockerfile_and_an_executable_binary() {
        let r = ImageRecipe::sidecar(BuildMode::Offline, Bytes::from_static(b"\x7fELF"));
        let tar = r.context_tar().expect("packs");
        let mut archive = tar::Archive::new(&tar[..]);
        let entries: Vec<(String, u32, u64)> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let h = e.header();
                (e.path().expect("path").display().to_string(), h.mode().expect("mode"), h.size().expect("size"))
            })
            .collect();
        assert_eq!(
            entries,
            [("Dockerfile".to_owned(), 0o644, r.dockerfile.len() as u64), ("bot-bottle".to_owned(), 0o755, 4)]
        );
    }
}
