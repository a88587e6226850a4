//! The command line, declared with clap. Every subcommand and flag here works; nothing is listed
//! before it does.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "bot-bottle",
    version,
    about = "Run any coding agent as if it might be compromised, and lose nothing when it is",
    long_about = None,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// bot-bottle's home: manifests, state and logs [default: ~/.bot-bottle]
    #[arg(long, global = true, env = "BOT_BOTTLE_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Print only errors and the requested data
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Say more about what is happening (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show an agent's resolved configuration, or list agents and bottles
    Info(InfoArgs),
    /// Launch an agent in a new bottle (or print the plan with --dry-run)
    Start(StartArgs),
    /// List bottles: running, and left behind for cleanup
    List(ListArgs),
    /// Run a command as the agent user inside a running bottle
    Exec(ExecArgs),
    /// Run the agent interactively in a running bottle
    Attach(AttachArgs),
    /// Copy a file or directory out of a running bottle
    Cp(CpArgs),
    /// Stop a bottle and remove its containers, network and volume
    Stop(StopArgs),
    /// Remove what dead bottles left behind (containers, networks, state)
    Cleanup(CleanupArgs),
    /// Review and decide what running bottles ask a human for
    Supervise(SuperviseArgs),
    /// Every bottle and proposal on one screen: attach, launch, stop, decide
    Dashboard,
    /// Check this machine (or a running bottle's boundary) for what bottles need
    Doctor(DoctorArgs),
    /// Build the images bottles run
    #[command(subcommand)]
    Image(ImageCommand),
    /// Print a shell completion script
    Completions(CompletionsArgs),
    /// Work with a bottle's audit log
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run a bottle's sidecar bundle (started by the launcher, not by hand)
    #[command(hide = true)]
    Sidecar(SidecarArgs),
    /// Forward loopback TCP ports to the sidecar's unix sockets (runs inside the agent container)
    #[command(hide = true)]
    Relay(RelayArgs),
    /// Run the boundary probes from inside a bottle (started by the launcher, not by hand)
    #[command(hide = true)]
    Selftest(SelftestArgs),
    /// The git gate's pre-receive hook (run by git inside the sidecar, not by hand)
    #[command(hide = true)]
    GitGateHook(GitGateHookArgs),
    /// Keep a bottle's terminal the size of this one (wraps an interactive smolvm exec)
    #[command(hide = true)]
    PtyBridge(PtyBridgeArgs),
}

#[derive(Debug, Args)]
pub struct PtyBridgeArgs {
    /// The smolvm program the side channel runs
    #[arg(long, requires = "machine", conflicts_with = "local")]
    pub smolvm: Option<String>,
    /// The machine whose ptys follow this terminal
    #[arg(long, requires = "smolvm", conflicts_with = "local")]
    pub machine: Option<String>,
    /// Resize ptys on this host instead of in a machine
    #[arg(long, required_unless_present = "machine")]
    pub local: bool,
    /// Which ptys to resize (a shell glob)
    #[arg(long, default_value = "/dev/pts/[0-9]*")]
    pub target: String,
    /// The interactive command, after `--`
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct GitGateHookArgs {
    /// The gate's private hook socket
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
}

#[derive(Debug, Args)]
pub struct SelftestArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Also try a direct TCP connection to ADDR:PORT (repeatable)
    #[arg(long = "tcp", value_name = "ADDR:PORT")]
    pub tcp: Vec<std::net::SocketAddr>,
    /// The egress proxy is at ADDR:PORT instead of 127.0.0.1:9099 (a VM's sidecar)
    #[arg(long, value_name = "ADDR:PORT")]
    pub proxy: Option<std::net::SocketAddr>,
    /// Also require that nothing answers as a control API at ADDR:PORT (repeatable)
    #[arg(long = "control", value_name = "ADDR:PORT")]
    pub control: Vec<std::net::SocketAddr>,
    /// Also send a real DNS query to ADDR:PORT, which must get no answer (repeatable)
    #[arg(long = "dns", value_name = "ADDR:PORT")]
    pub dns: Vec<std::net::SocketAddr>,
    /// The bottle has an interface and route by design (a VM): skip those probes
    #[arg(long)]
    pub network_path: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Agent to show; without it, list every agent and bottle
    pub agent: Option<String>,
    /// Bottle to use instead of the agent's `bottle:` (repeat for several, merged in order)
    #[arg(long = "bottle", value_name = "BOTTLE")]
    pub bottles: Vec<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// Agent to launch; on a terminal without it, pick one (and then its bottles, the backend and
    /// the label, whichever the flags leave open)
    pub agent: Option<String>,
    /// Bottle to use instead of the agent's `bottle:` (repeat for several, merged in order)
    #[arg(long = "bottle", value_name = "BOTTLE")]
    pub bottles: Vec<String>,
    /// What runs the bottle [default: $BOT_BOTTLE_BACKEND, else docker]
    #[arg(long, value_enum, env = "BOT_BOTTLE_BACKEND")]
    pub backend: Option<BackendArg>,
    /// Name for this bottle, used verbatim as its slug (≤64 of A-Z a-z 0-9 _ . -)
    #[arg(long)]
    pub label: Option<String>,
    /// Colour for the label (an ANSI name such as `cyan` or `bright-magenta`)
    #[arg(long)]
    pub color: Option<String>,
    /// Copy the current directory (with its `.git`) into the bottle at /home/node/workspace and
    /// start the agent there; the bottle's changes stay in the bottle (`cp` copies them out)
    #[arg(long)]
    pub cwd: bool,
    /// Print the plan and create nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Format of the plan printed by --dry-run
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Launch without asking for confirmation
    #[arg(short, long)]
    pub yes: bool,
    /// Run the provider's non-interactive mode with --prompt, then tear down; exits with the agent's code
    #[arg(long, requires = "prompt", conflicts_with = "detach")]
    pub headless: bool,
    /// The task for --headless
    #[arg(long, value_name = "TEXT", requires = "headless")]
    pub prompt: Option<String>,
    /// Leave the bottle running without starting the agent (use attach, exec, stop)
    #[arg(long)]
    pub detach: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The bottle's slug (see `bot-bottle list`)
    pub slug: String,
    /// The command and its arguments, after `--`
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The bottle's slug (see `bot-bottle list`)
    pub slug: String,
    /// Resume the agent's last conversation (providers with a resume form, e.g. `claude --continue`)
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// What to copy: the bottle's slug and a path inside it (relative paths start at the agent's
    /// working directory)
    #[arg(value_name = "SLUG:PATH")]
    pub source: String,
    /// Where to put it on this machine; into it, when it is a directory that exists
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
    /// Replace DEST when it exists (it is replaced only after the copy succeeded)
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Slugs of the bottles to stop
    #[arg(required = true)]
    pub slugs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SuperviseArgs {
    #[command(subcommand)]
    pub action: Option<SuperviseAction>,
    /// Print the pending proposals of every running bottle and exit
    #[arg(long)]
    pub once: bool,
    /// Output of --once
    #[arg(long, value_enum, default_value_t, requires = "once")]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum SuperviseAction {
    /// Approve a pending proposal
    Approve {
        /// Its id (`ID`, or `SLUG:ID` when several bottles use it)
        id: String,
        /// For a held DLP hit: this request only, or the same value to the same host from now on
        #[arg(long, value_parser = ["once", "session"], default_value = "once")]
        scope: String,
    },
    /// Reject a pending proposal
    Reject {
        /// Its id (`ID`, or `SLUG:ID`)
        id: String,
        /// Why (shown to the agent)
        #[arg(long, required = true)]
        reason: String,
    },
    /// Past decisions, across bottles
    History {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Show what would be removed and remove nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Remove without asking for confirmation
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Docker,
    Smolmachines,
    Namespaces,
}

impl From<BackendArg> for bottle_core::BackendKind {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Docker => Self::Docker,
            BackendArg::Smolmachines => Self::Smolmachines,
            BackendArg::Namespaces => Self::Namespaces,
        }
    }
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Rerun the boundary self-test inside this running bottle instead of checking the machine
    #[arg(long, value_name = "SLUG")]
    pub bottle: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the agent and/or sidecar image unless an image of the same inputs exists
    Build(ImageBuildArgs),
}

#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// Which image to build
    #[arg(value_enum, default_value_t)]
    pub which: ImageChoice,
    /// Build from a Debian rootfs made with mmdebstrap instead of pulling `debian:bookworm-slim`
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ImageChoice {
    Sidecar,
    Agent,
    #[default]
    All,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to generate for
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct SidecarArgs {
    /// The sidecar config file the launcher wrote (format: docs/sidecar.md)
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct RelayArgs {
    /// `ADDR:PORT=/path/to.sock`: listen on the TCP address, forward each connection to the socket
    #[arg(long = "map", value_name = "ADDR=SOCKET", required = true)]
    pub maps: Vec<bottle_backend::relay::RelayMap>,
    /// Connections in flight across all maps; more are closed at once
    #[arg(long, value_name = "N", default_value_t = bottle_backend::relay::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of an audit log: every line must carry the SHA-256 of the one before
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// A bottle slug (its `state/<slug>/audit.jsonl`) or the path of an audit log
    pub target: String,
}
