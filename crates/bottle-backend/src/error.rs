//! The crate's one error type. Every message names the image or step; [`Error::hint`] says what to do.

use std::path::PathBuf;

/// Everything that can go wrong talking to an engine or building an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No engine answered on the socket.
    #[error("cannot reach the docker engine at `{endpoint}`")]
    EngineUnreachable {
        endpoint: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// `DOCKER_HOST` names a transport this build does not speak.
    #[error("`DOCKER_HOST={endpoint}` is not a unix socket")]
    UnsupportedEndpoint { endpoint: String },
    /// An engine API call failed during a build step.
    #[error("image `{image}`: {step} failed")]
    Engine {
        image: String,
        step: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
    /// `mmdebstrap` is not installed or could not be started.
    #[error("image `{image}`: cannot run `mmdebstrap`")]
    MmdebstrapMissing {
        image: String,
        #[source]
        source: std::io::Error,
    },
    /// `mmdebstrap` ran and failed; `log` is the tail of its output.
    #[error("image `{image}`: `mmdebstrap` exited with {status} using mirror `{mirror}`; its last lines:\n{log}")]
    Mmdebstrap { image: String, status: String, mirror: String, log: String },
    /// A file the build needs could not be read or written.
    #[error("image `{image}`: cannot {action} `{}`", path.display())]
    Io {
        image: String,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `npm` is not installed on this machine.
    #[error("image `{image}`: cannot run `npm` to fetch the agent CLI: {source}")]
    NpmMissing {
        image: String,
        #[source]
        source: std::io::Error,
    },
    /// `npm install` failed.
    #[error("image `{image}`: `npm install {packages}` failed ({status}):\n{log}")]
    Npm { image: String, packages: String, status: String, log: String },
    /// A custom Dockerfile's directory is too large to send as a build context.
    #[error("image `{image}`: the build context `{}` is larger than {limit_mib} MiB", dir.display())]
    ContextTooLarge { image: String, dir: PathBuf, limit_mib: u64 },
    /// Neither `XDG_CACHE_HOME` nor `HOME` is set, so there is nowhere to cache rootfs tarballs.
    #[error("no cache directory: neither `XDG_CACHE_HOME` nor `HOME` is set")]
    NoCacheDir,
    /// The sidecar image needs the `bot-bottle` binary and none was given.
    #[error("image `{image}`: no `bot-bottle` binary to copy in")]
    NoSidecarBinary { image: String },
    /// A step of launching (or closing) a bottle failed; what it created so far was removed.
    #[error("bottle `{slug}`: cannot {action}")]
    Launch {
        slug: String,
        action: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Copying a path out of a bottle failed or was refused; nothing was left at `host`.
    #[error("bottle `{slug}`: cannot copy `{}` to `{}`: {reason}", guest.display(), host.display())]
    CopyOut { slug: String, guest: PathBuf, host: PathBuf, reason: String },
    /// Resources of a bottle with this slug already exist on the engine.
    #[error("a bottle `{slug}` already exists on the engine ({resources})")]
    SlugInUse { slug: String, resources: String },
    /// The launch was abandoned (Ctrl-C); what it created was removed.
    #[error("bottle `{slug}`: launch interrupted; everything it created was removed")]
    Cancelled { slug: String },
    /// No bottle of this slug exists on the backend.
    #[error("no bottle `{slug}` on {backend}")]
    NoSuchBottle { slug: String, backend: String },
    /// The bottle exists but its agent container is not running.
    #[error("bottle `{slug}` is not running ({state})")]
    NotRunning { slug: String, state: String },
    /// A host command the backend hands the terminal to (`docker exec -it`) could not run.
    #[error("cannot run `{program}`")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The bottle's containers started but its services never came up; `log` is the tail of the
    /// failing container's output.
    #[error("bottle `{slug}`: {message}; its last lines:\n{log}")]
    NotReady { slug: String, message: String, log: String },
    /// The boundary self-test produced no usable report inside the bottle, so nothing is proven;
    /// `log` is the tail of its output.
    #[error("bottle `{slug}`: the boundary self-test did not run: {reason}; its last lines:\n{log}")]
    SelfTestNotRun { slug: String, reason: String, log: String },
    /// A `smolvm` call failed; `message` is smolvm's own `Error:` line or the command's last lines.
    #[error("smolvm: cannot {action}: {message}")]
    Smolvm { action: String, message: String },
    /// The installed smolvm cannot keep a bottle's boundary.
    #[error("smolvm {version} cannot run bottles safely: {why}")]
    SmolvmUnsafe { version: String, why: String },
    /// No usable smolvm is installed.
    #[error("the smolmachines backend needs smolvm: {why}")]
    SmolvmMissing { why: String },
    /// A boundary probe got out of the bottle (or could not tell); `escaped` names each one.
    #[error("bottle `{slug}`: the boundary self-test found a way out: {escaped}")]
    SelfTestEscaped { slug: String, escaped: String },
}

impl Error {
    /// What the user can do about it, shown on its own `hint:` line.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Self::EngineUnreachable { .. } => {
                "start the engine with `./scripts/setup --no-build`; `DOCKER_HOST` selects another socket".into()
            }
            Self::UnsupportedEndpoint { .. } => {
                "point `DOCKER_HOST` at a unix socket (`unix:///var/run/docker.sock`) or unset it".into()
            }
            Self::Engine { .. } => "`docker info` shows the engine's state; its log says more".into(),
            Self::MmdebstrapMissing { .. } => {
                "install it with `./scripts/setup --no-build` (Debian package `mmdebstrap`)".into()
            }
            Self::Mmdebstrap { .. } => {
                "check the mirror answers (`apt-get update`), or set `BOT_BOTTLE_DEBIAN_MIRROR` to another one".into()
            }
            Self::Io { .. } => "check the path exists and is writable by this user".into(),
            Self::NoCacheDir => "set `HOME` (or `XDG_CACHE_HOME`)".into(),
            Self::NpmMissing { .. } => "install Node.js and npm (`apt-get install npm`), which fetch the agent CLIs".into(),
            Self::Npm { .. } => "check that the npm registry answers (`npm view <package> version`); set `npm_config_registry` for a mirror".into(),
            Self::ContextTooLarge { .. } => "keep the Dockerfile in a directory of its own (its whole directory is the build context)".into(),
            Self::NoSidecarBinary { .. } => "build the sidecar image with the `bot-bottle` binary itself".into(),
            Self::Launch { .. } => {
                "`docker info` shows the engine's state; `bot-bottle cleanup` removes anything left behind".into()
            }
            Self::CopyOut { slug, .. } => format!(
                "`bot-bottle exec {slug} -- ls -la <path>` shows what is there; the destination must not exist \
                 and its directory must be writable"
            ),
            Self::SlugInUse { slug, .. } => {
                format!("pick another `--label`, or remove it with `bot-bottle stop {slug}`")
            }
            Self::Cancelled { .. } => "nothing is left to clean up".into(),
            Self::NoSuchBottle { .. } => "`bot-bottle list` shows the bottles that exist".into(),
            Self::NotRunning { .. } => {
                "`bot-bottle stop <slug>` removes it; `bot-bottle cleanup` removes every dead bottle".into()
            }
            Self::Spawn { .. } => "install the docker client (Debian package `docker.io`)".into(),
            Self::NotReady { .. } => "the sidecar's log above says why; check its config and secrets".into(),
            Self::SelfTestNotRun { .. } => format!(
                "the agent does not start until the probes run; the `bot-bottle` binary mounted at `{}` must \
                 be this version (rebuild it with `cargo build -p bot-bottle`)",
                crate::selftest::SELFTEST_BINARY
            ),
            Self::Smolvm { .. } => {
                "`smolvm machine ls` shows the machines; `bot-bottle cleanup` removes what a failed launch left".into()
            }
            Self::SmolvmUnsafe { .. } => format!(
                "install smolvm {} or later (README: smolmachines); `bot-bottle doctor` lists the known-bad versions",
                crate::smolmachines::version::MIN_LAUNCH
            ),
            Self::SmolvmMissing { .. } => format!(
                "install smolvm {} or later (README: smolmachines), or set `{}` to its path",
                crate::smolmachines::version::MIN_LAUNCH,
                crate::smolmachines::SMOLVM_VAR
            ),
            Self::SelfTestEscaped { .. } => {
                "the agent was not started; this backend does not isolate on this machine, `bot-bottle doctor` \
                 checks its runtime"
                    .into()
            }
        })
    }
}
