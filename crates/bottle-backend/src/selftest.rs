//! The boundary self-test (DESIGN.md §6.7): probes that run inside a bottle before its agent starts,
//! each trying one way out. The launch is refused unless every probe was blocked.
//!
//! The probes run in the `bot-bottle` binary that is bind-mounted into every agent (`bot-bottle
//! selftest`), so they work in any agent image, with or without curl or a shell's networking. They
//! use only blocking std networking, each with a short timeout, all at once on scoped threads, so a
//! run takes about as long as the slowest probe (a few seconds), not the sum.
//!
//! The test fails closed twice over. A probe that cannot tell (an unreadable `/proc` file, a resolver
//! that hangs) reports an escape, not a pass. And the egress proxy must *answer* with a refusal: a
//! proxy nobody listens for proves nothing about the bottle's one way out, so it fails the test too.
//! On the host, [`run_in`] treats a self-test that did not produce a report as an error.

use std::fmt::Write as _;
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs as _, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use bottle_core::plan::{CONTROL_PORT, EGRESS_PORT};
use serde::{Deserialize, Serialize};

use crate::{Bottle, Error, ExecResult, ExecUser};

/// Where the `bot-bottle` binary (and so the probes) lives inside every agent.
pub const SELFTEST_BINARY: &str = crate::docker::RELAY_BINARY;

/// How long a TCP connect may take; inside a bottle every refusal is immediate, so this only bounds
/// the wait where some network path exists and drops packets.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the UDP DNS probe waits for a reply once its query was sent.
pub const DNS_REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the system resolver may take to fail; slower than this means it is talking to someone.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the egress proxy may take to answer a request.
pub const PROXY_TIMEOUT: Duration = Duration::from_secs(3);

/// Direct TCP destinations every run tries: public anycast DNS (v4 and v6), the cloud metadata IP,
/// and the default Docker bridge gateway (the host, where services bound to 0.0.0.0 listen).
pub const DIRECT_TCP: &[SocketAddr] = &[
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)), 443),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)), 53),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)), 80),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(172, 17, 0, 1)), 80),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(172, 17, 0, 1)), 22),
    SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2606, 0x4700, 0x4700, 0, 0, 0, 0, 0x1111)), 443),
];
/// The DNS server the UDP probe sends a real query to.
pub const DNS_SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)), 53);
/// The name the UDP probe asks for (type A).
pub const DNS_QUERY_NAME: &str = "example.com";
/// Names the system resolver must fail on: an ordinary one, and one shaped like a DNS tunnel
/// (data base64-encoded in the leftmost label).
pub const RESOLVE_NAMES: &[&str] = &["example.com", "aGVsbG8.exfil.example.com"];
/// A host on no allow-list (`.invalid` is reserved), asked for through the proxy with `CONNECT`.
pub const PROXY_CONNECT_TARGET: &str = "selftest.invalid:443";
/// A plain-HTTP URL asked for through the proxy: the cloud metadata service.
pub const PROXY_METADATA_URL: &str = "http://169.254.169.254/latest/meta-data/";
/// Container engine sockets that must be absent or refuse: one would hand out the host.
pub const ENGINE_SOCKETS: &[&str] =
    &["/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock", "/run/podman/podman.sock"];

/// Where the probes look; the defaults are the ports every bottle uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOptions {
    /// The egress proxy's port on 127.0.0.1 (the relay to the sidecar).
    pub egress_port: u16,
    /// The sidecar's control port, which must not answer on the bottle's loopback.
    pub control_port: u16,
    /// More direct TCP destinations to try, e.g. a host service a test started.
    pub extra_tcp: Vec<SocketAddr>,
    /// Where the egress proxy is when it is not on loopback (a VM reaches its sidecar's IP).
    pub proxy: Option<SocketAddr>,
    /// More control addresses that must not answer.
    pub extra_control: Vec<SocketAddr>,
    /// More DNS servers a real query must get no answer from.
    pub extra_dns: Vec<SocketAddr>,
    /// The bottle has a network path by design (a VM's interface to its allow-listed sidecar): the
    /// interface and route probes do not apply, the connection probes carry the proof.
    pub network_path: bool,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            egress_port: EGRESS_PORT,
            control_port: CONTROL_PORT,
            extra_tcp: Vec::new(),
            proxy: None,
            extra_control: Vec::new(),
            extra_dns: Vec::new(),
            network_path: false,
        }
    }
}

/// One way out a probe tries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Probe {
    /// `/sys/class/net` (or `/proc/net/dev`) lists no interface but `lo`.
    Interfaces,
    /// `/proc/net/route` has no IPv4 route except through `lo`.
    Routes,
    /// `/proc/net/ipv6_route` has no IPv6 route except through `lo` (or IPv6 is off).
    Routes6,
    /// A direct TCP connection to `addr` fails.
    Tcp { addr: SocketAddr },
    /// A DNS query over UDP to `server` cannot be sent or gets no reply.
    UdpDns { server: SocketAddr },
    /// The system resolver cannot resolve `host`.
    Resolve { host: String },
    /// Nothing answers on the sidecar's control port at `addr` inside the bottle.
    Control { addr: SocketAddr },
    /// The egress proxy at `proxy` answers a `CONNECT` to [`PROXY_CONNECT_TARGET`] with a refusal.
    ProxyConnect { proxy: SocketAddr },
    /// The egress proxy at `proxy` answers a `GET` of [`PROXY_METADATA_URL`] with a 4xx.
    ProxyMetadata { proxy: SocketAddr },
    /// The engine socket at `path` is absent or refuses connections.
    EngineSocket { path: PathBuf },
}

impl Probe {
    /// The probe's short, stable name, e.g. `tcp 1.1.1.1:443` (the key of a report row).
    pub fn name(&self) -> String {
        match self {
            Self::Interfaces => "interfaces".into(),
            Self::Routes => "routes".into(),
            Self::Routes6 => "routes6".into(),
            Self::Tcp { addr } => format!("tcp {addr}"),
            Self::UdpDns { server } => format!("udp dns {server}"),
            Self::Resolve { host } => format!("resolve {host}"),
            Self::Control { addr } => format!("control {addr}"),
            Self::ProxyConnect { .. } => format!("proxy connect {PROXY_CONNECT_TARGET}"),
            Self::ProxyMetadata { .. } => "proxy get metadata".into(),
            Self::EngineSocket { path } => format!("socket {}", path.display()),
        }
    }

    /// Tries the way out and says whether it was blocked.
    pub fn run(&self) -> ProbeOutcome {
        let name = self.name();
        let (blocked, detail) = match self {
            Self::Interfaces => interfaces(),
            Self::Routes => routes_v4(),
            Self::Routes6 => routes_v6(),
            Self::Tcp { addr } | Self::Control { addr } => tcp_connect(*addr),
            Self::UdpDns { server } => udp_dns(*server),
            Self::Resolve { host } => resolve(host),
            Self::ProxyConnect { proxy } => proxy_connect(*proxy),
            Self::ProxyMetadata { proxy } => proxy_metadata(*proxy),
            Self::EngineSocket { path } => engine_socket(path),
        };
        ProbeOutcome { name, blocked, detail }
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOutcome {
    /// [`Probe::name`].
    pub name: String,
    /// Whether the way out was closed. `false` is an escape, or a probe that could not tell.
    pub blocked: bool,
    /// What happened, e.g. `connect: Network is unreachable (os error 101)` or `proxy answered 403
    /// Forbidden`.
    pub detail: String,
}

/// Every probe's outcome, in the order of [`probes`]. `bot-bottle selftest --format json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfTestReport {
    /// One outcome per probe.
    pub probes: Vec<ProbeOutcome>,
}

impl SelfTestReport {
    /// The probes that were not blocked.
    pub fn escaped(&self) -> Vec<&ProbeOutcome> {
        self.probes.iter().filter(|p| !p.blocked).collect()
    }

    /// Whether every probe was blocked. A report with no probes proves nothing and does not pass.
    pub fn passed(&self) -> bool {
        !self.probes.is_empty() && self.probes.iter().all(|p| p.blocked)
    }

    /// `Ok` when the report [passed](Self::passed), else [`Error::SelfTestEscaped`] naming each
    /// escape — what a launch returns to refuse the bottle.
    pub fn ensure_passed(&self, slug: &str) -> Result<(), Error> {
        if self.passed() {
            return Ok(());
        }
        let escaped = if self.probes.is_empty() {
            "no probe ran".to_owned()
        } else {
            self.escaped().iter().map(|p| format!("{} ({})", p.name, p.detail)).collect::<Vec<_>>().join(", ")
        };
        Err(Error::SelfTestEscaped { slug: slug.to_owned(), escaped })
    }
}

/// The probes a run tries, in report order.
pub fn probes(opts: &ProbeOptions) -> Vec<Probe> {
    let loopback = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let mut probes =
        if opts.network_path { Vec::new() } else { vec![Probe::Interfaces, Probe::Routes, Probe::Routes6] };
    let mut tcp: Vec<SocketAddr> = DIRECT_TCP.to_vec();
    for addr in &opts.extra_tcp {
        if !tcp.contains(addr) {
            tcp.push(*addr);
        }
    }
    probes.extend(tcp.into_iter().map(|addr| Probe::Tcp { addr }));
    probes.push(Probe::UdpDns { server: DNS_SERVER });
    for &server in &opts.extra_dns {
        if server != DNS_SERVER {
            probes.push(Probe::UdpDns { server });
        }
    }
    probes.extend(RESOLVE_NAMES.iter().map(|&host| Probe::Resolve { host: host.to_owned() }));
    probes.push(Probe::Control { addr: loopback(opts.control_port) });
    probes.extend(opts.extra_control.iter().map(|&addr| Probe::Control { addr }));
    let proxy = opts.proxy.unwrap_or_else(|| loopback(opts.egress_port));
    probes.push(Probe::ProxyConnect { proxy });
    probes.push(Probe::ProxyMetadata { proxy });
    probes.extend(ENGINE_SOCKETS.iter().map(|&path| Probe::EngineSocket { path: path.into() }));
    probes
}

/// Runs every probe of [`probes`] at once, from inside the bottle, and collects their outcomes in
/// order. Takes as long as the slowest probe: inside a bottle every refusal is immediate and the run
/// ends in well under a second; elsewhere the bound is a few seconds ([`CONNECT_TIMEOUT`], plus
/// [`PROXY_TIMEOUT`] for a proxy that accepts and then stays silent).
pub fn run_probes(opts: &ProbeOptions) -> SelfTestReport {
    let probes = probes(opts);
    let outcomes = std::thread::scope(|scope| {
        let running: Vec<_> = probes
            .iter()
            .map(|probe| (probe, std::thread::Builder::new().spawn_scoped(scope, || probe.run())))
            .collect();
        running
            .into_iter()
            .map(|(probe, handle)| match handle {
                Ok(handle) => handle.join().unwrap_or_else(|_| ProbeOutcome {
                    name: probe.name(),
                    blocked: false,
                    detail: "the probe panicked".into(),
                }),
                // No thread to spare: run it here rather than not at all.
                Err(_) => probe.run(),
            })
            .collect()
    });
    SelfTestReport { probes: outcomes }
}

/// Runs the self-test inside `bottle` as the agent user and returns its report. Fails closed: a run
/// that produced no report (binary missing or too old, crashed, killed) or one whose exit code
/// disagrees with its report is [`Error::SelfTestNotRun`], never a pass. Escapes are in the report;
/// [`SelfTestReport::ensure_passed`] turns them into the error that refuses the launch.
///
/// While it runs, a canary listens on the host's loopback: the probes try it, so a bottle whose
/// `127.0.0.1` is the host's (a VM's socket impersonation) fails instead of passing.
pub fn run_in(bottle: &dyn Bottle) -> Result<SelfTestReport, Error> {
    // On every address of the host, so a bottle with a route to the host (a VM's gateway) finds it
    // too; it accepts and drops, and lives only as long as the probes.
    let not_run = |e: io::Error| Error::SelfTestNotRun {
        slug: bottle.slug().to_string(),
        reason: format!("cannot open the host canary: {e}"),
        log: String::new(),
    };
    let canary = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(not_run)?;
    let port = canary.local_addr().map_err(not_run)?.port();
    let mut args = bottle.selftest_args(port);
    args.extend(["--tcp".to_owned(), format!("127.0.0.1:{port}")]);
    let report = run_with(bottle.slug().as_str(), &args, |script, user| bottle.exec(script, user));
    drop(canary);
    report
}

/// [`run_in`] against any way of running a script in a bottle.
fn run_with(
    slug: &str,
    args: &[String],
    exec: impl FnOnce(&str, ExecUser) -> Result<ExecResult, Error>,
) -> Result<SelfTestReport, Error> {
    let mut script = format!("exec {SELFTEST_BINARY} selftest --format json");
    for a in args {
        script.push(' ');
        script.push_str(&crate::docker::sh_quote(a));
    }
    let result = exec(&script, ExecUser::Agent)?;
    report_from_exec(slug, &result)
}

/// Reads the report out of the self-test's captured output (see [`run_in`]).
pub fn report_from_exec(slug: &str, result: &ExecResult) -> Result<SelfTestReport, Error> {
    let not_run = |reason: String| Error::SelfTestNotRun { slug: slug.to_owned(), reason, log: output_tail(result) };
    let report: SelfTestReport = serde_json::from_slice(&result.stdout)
        .map_err(|e| not_run(format!("exit code {}, and its output is not a report ({e})", result.code)))?;
    if report.probes.is_empty() {
        return Err(not_run("its report lists no probe".into()));
    }
    let expected = if report.passed() { 0 } else { 1 };
    if result.code != expected {
        return Err(not_run(format!("exit code {} disagrees with its report (expected {expected})", result.code)));
    }
    Ok(report)
}

/// The last lines of what the self-test wrote, stderr first (that is where errors go).
fn output_tail(result: &ExecResult) -> String {
    const LINES: usize = 20;
    let stream = if result.stderr.iter().any(|b| !b.is_ascii_whitespace()) { &result.stderr } else { &result.stdout };
    let text = String::from_utf8_lossy(stream);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LINES)..].join("\n");
    if tail.is_empty() { "(no output)".into() } else { tail }
}

/// `probe  blocked|ESCAPED  detail`, one line per probe, the columns aligned.
pub fn render_table(report: &SelfTestReport) -> String {
    let width = report.probes.iter().map(|p| p.name.chars().count()).max().unwrap_or(0);
    let mut table = String::new();
    for p in &report.probes {
        let verdict = if p.blocked { "blocked" } else { "ESCAPED" };
        let _ = writeln!(table, "{:<width$}  {verdict}  {}", p.name, p.detail);
    }
    table
}

// ---------------------------------------------------------------------------------------------
// The probes. Each returns (blocked, detail).

fn interfaces() -> (bool, String) {
    let names = match list_dir(Path::new("/sys/class/net")) {
        Ok(names) => names,
        // Some sandboxes (gVisor) have no sysfs network class; /proc/net/dev lists the same.
        Err(sys_err) => match std::fs::read_to_string("/proc/net/dev") {
            Ok(text) => proc_net_dev_interfaces(&text),
            Err(proc_err) => {
                return (
                    false,
                    format!("cannot list interfaces: /sys/class/net: {sys_err}; /proc/net/dev: {proc_err}"),
                );
            }
        },
    };
    interfaces_verdict(&names)
}

fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Interface names from `/proc/net/dev` (two header lines, then `name: counters…`).
fn proc_net_dev_interfaces(text: &str) -> Vec<String> {
    let mut names: Vec<String> =
        text.lines().filter_map(|line| line.split_once(':')).map(|(name, _)| name.trim().to_owned()).collect();
    names.sort();
    names
}

fn interfaces_verdict(names: &[String]) -> (bool, String) {
    let others: Vec<&str> = names.iter().map(String::as_str).filter(|&n| n != "lo").collect();
    match (others.is_empty(), names.is_empty()) {
        (true, true) => (true, "no interface at all".into()),
        (true, false) => (true, "only lo".into()),
        (false, _) => (false, format!("interfaces besides lo: {}", others.join(", "))),
    }
}

fn routes_v4() -> (bool, String) {
    match std::fs::read_to_string("/proc/net/route") {
        Ok(text) => routes_verdict(&ipv4_routes_off_loopback(&text)),
        Err(e) => (false, format!("cannot read /proc/net/route: {e}")),
    }
}

fn routes_v6() -> (bool, String) {
    match std::fs::read_to_string("/proc/net/ipv6_route") {
        Ok(text) => routes_verdict(&ipv6_routes_off_loopback(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (true, "IPv6 is off (no /proc/net/ipv6_route)".into()),
        Err(e) => (false, format!("cannot read /proc/net/ipv6_route: {e}")),
    }
}

fn routes_verdict(off_loopback: &[String]) -> (bool, String) {
    if off_loopback.is_empty() {
        (true, "none but loopback".into())
    } else {
        (false, format!("routes: {}", off_loopback.join(", ")))
    }
}

/// `/proc/net/route` rows (after the header) whose interface is not `lo`, as `dest/len via iface`.
/// Addresses are little-endian hex.
fn ipv4_routes_off_loopback(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (&iface, &dest) = (fields.first()?, fields.get(1)?);
            if iface == "lo" {
                return None;
            }
            let addr = u32::from_str_radix(dest, 16).map(|d| Ipv4Addr::from(d.to_le_bytes()));
            let len = fields.get(7).and_then(|m| u32::from_str_radix(m, 16).ok()).map(u32::count_ones);
            Some(match (addr, len) {
                (Ok(addr), Some(len)) => format!("{addr}/{len} via {iface}"),
                _ => format!("{dest} via {iface}"),
            })
        })
        .collect()
}

/// `/proc/net/ipv6_route` rows whose interface (the last column) is not `lo`, as `dest/len via iface`.
fn ipv6_routes_off_loopback(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (&iface, &dest) = (fields.last()?, fields.first()?);
            if iface == "lo" {
                return None;
            }
            let addr = u128::from_str_radix(dest, 16).map(Ipv6Addr::from);
            let len = fields.get(1).and_then(|l| u8::from_str_radix(l, 16).ok());
            Some(match (addr, len) {
                (Ok(addr), Some(len)) => format!("{addr}/{len} via {iface}"),
                _ => format!("{dest} via {iface}"),
            })
        })
        .collect()
}

fn tcp_connect(addr: SocketAddr) -> (bool, String) {
    match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
        Ok(_) => (false, "connected".into()),
        Err(e) if is_timeout(&e) => (true, format!("connect: no answer within {}s", CONNECT_TIMEOUT.as_secs())),
        Err(e) => (true, format!("connect: {e}")),
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
}

fn udp_dns(server: SocketAddr) -> (bool, String) {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = match UdpSocket::bind(local) {
        Ok(socket) => socket,
        Err(e) => return (true, format!("bind: {e}")),
    };
    // A connected socket reports ICMP errors (unreachable, refused) instead of swallowing them.
    if let Err(e) = socket.connect(server) {
        return (true, format!("connect: {e}"));
    }
    if let Err(e) = socket.set_read_timeout(Some(DNS_REPLY_TIMEOUT)) {
        return (false, format!("cannot bound the wait for a reply: {e}"));
    }
    if let Err(e) = socket.send(&dns_query(query_id(), DNS_QUERY_NAME)) {
        return (true, format!("send: {e}"));
    }
    let mut reply = [0u8; 512];
    match socket.recv(&mut reply) {
        Ok(n) => (false, format!("got a {n}-byte reply")),
        Err(e) if is_timeout(&e) => (true, format!("query sent, no reply within {}s", DNS_REPLY_TIMEOUT.as_secs())),
        Err(e) => (true, format!("recv: {e}")),
    }
}

/// An id that differs between runs; any reply at all counts as an escape, so it need not be random.
fn query_id() -> u16 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    (std::process::id() ^ nanos) as u16
}

/// A standard recursive query for `name`, type A, class IN (RFC 1035 §4.1).
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut packet = Vec::with_capacity(18 + name.len());
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00]); // flags: RD
    packet.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question, no other records
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let label = &label.as_bytes()[..label.len().min(63)];
        packet.push(u8::try_from(label.len()).unwrap_or(63));
        packet.extend_from_slice(label);
    }
    packet.push(0);
    packet.extend_from_slice(&[0, 1, 0, 1]); // QTYPE A, QCLASS IN
    packet
}

fn resolve(host: &str) -> (bool, String) {
    // getaddrinfo has no timeout of its own: ask on a detached thread and stop waiting after a
    // while (the thread ends with the process).
    let (tx, rx) = mpsc::channel();
    let target = format!("{host}:443");
    let spawned = std::thread::Builder::new().spawn(move || {
        let _ = tx.send(target.to_socket_addrs().map(Iterator::collect::<Vec<_>>));
    });
    if let Err(e) = spawned {
        return (false, format!("cannot start the lookup: {e}"));
    }
    match rx.recv_timeout(RESOLVE_TIMEOUT) {
        Ok(Ok(addrs)) if addrs.is_empty() => (true, "no address".into()),
        Ok(Ok(addrs)) => {
            let shown: Vec<String> = addrs.iter().take(3).map(|a| a.ip().to_string()).collect();
            (false, format!("resolved to {}", shown.join(", ")))
        }
        Ok(Err(e)) => (true, format!("lookup failed: {e}")),
        Err(_) => (
            false,
            format!("the resolver did not finish within {}s (a query may have left)", RESOLVE_TIMEOUT.as_secs()),
        ),
    }
}

fn proxy_connect(proxy: SocketAddr) -> (bool, String) {
    let request = format!("CONNECT {PROXY_CONNECT_TARGET} HTTP/1.1\r\nHost: {PROXY_CONNECT_TARGET}\r\n\r\n");
    match proxy_exchange(proxy, &request) {
        Ok((code, status)) if (200..300).contains(&code) => (false, format!("proxy answered {status}: tunnel open")),
        Ok((_, status)) => (true, format!("proxy answered {status}")),
        Err(failure) => (false, failure),
    }
}

fn proxy_metadata(proxy: SocketAddr) -> (bool, String) {
    let host = PROXY_METADATA_URL.trim_start_matches("http://").split('/').next().unwrap_or_default();
    let request = format!("GET {PROXY_METADATA_URL} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    match proxy_exchange(proxy, &request) {
        Ok((code, status)) if (400..500).contains(&code) => (true, format!("proxy answered {status}")),
        Ok((_, status)) => (false, format!("proxy answered {status}, not a refusal")),
        Err(failure) => (false, failure),
    }
}

const CLOSED_WITHOUT_ANSWER: &str = "egress proxy closed the connection without answering";

/// Sends `request` to the proxy and reads its status line: `(code, "code reason")`. `Err` says why
/// there was no HTTP answer — which fails the probe, since a healthy proxy always answers.
fn proxy_exchange(proxy: SocketAddr, request: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&proxy, CONNECT_TIMEOUT)
        .map_err(|e| format!("egress proxy unreachable: connect {proxy}: {e}"))?;
    let no_answer = |e: io::Error| format!("egress proxy did not answer: {e}");
    stream.set_read_timeout(Some(PROXY_TIMEOUT)).map_err(no_answer)?;
    stream.set_write_timeout(Some(PROXY_TIMEOUT)).map_err(no_answer)?;
    stream.write_all(request.as_bytes()).map_err(no_answer)?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 1024 {
        match stream.read(&mut chunk) {
            Ok(0) if head.is_empty() => return Err(CLOSED_WITHOUT_ANSWER.into()),
            // What a relay whose sidecar is gone does: close the connection, unread request and all.
            Err(e) if head.is_empty() && e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(CLOSED_WITHOUT_ANSWER.into());
            }
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {
                return Err(format!("egress proxy did not answer within {}s", PROXY_TIMEOUT.as_secs()));
            }
            Err(e) => return Err(no_answer(e)),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or_default();
    parse_status_line(line)
        .map(|(code, reason)| (code, format!("{code} {reason}").trim_end().to_owned()))
        .ok_or_else(|| format!("egress proxy answered something other than HTTP: {:?}", truncate(line, 60)))
}

/// `HTTP/1.x NNN reason` → `(NNN, reason)`.
fn parse_status_line(line: &str) -> Option<(u16, &str)> {
    let rest = line.strip_prefix("HTTP/1.")?;
    let (version, rest) = rest.split_once(' ')?;
    if version.len() != 1 || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((code.parse().ok()?, reason.trim()))
}

fn truncate(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(i, _)| &s[..i])
}

fn engine_socket(path: &Path) -> (bool, String) {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => (true, "absent".into()),
        Err(e) => (true, format!("cannot stat: {e}")),
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => (false, "present and accepts connections".into()),
            Err(e) => (true, format!("present, connect: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, blocked: bool, detail: &str) -> ProbeOutcome {
        ProbeOutcome { name: name.into(), blocked, detail: detail.into() }
    }

    fn report(outcomes: &[(&str, bool, &str)]) -> SelfTestReport {
        SelfTestReport { probes: outcomes.iter().map(|&(n, b, d)| outcome(n, b, d)).collect() }
    }

    #[test]
    fn passed_needs_every_probe_blocked_and_at_least_one() {
        let all = report(&[("interfaces", true, "only lo"), ("tcp 1.1.1.1:443", true, "connect: refused")]);
        assert!(all.passed());
        assert!(all.escaped().is_empty());
        assert!(all.ensure_passed("s").is_ok());

        let one = report(&[("interfaces", true, "only lo"), ("tcp 1.1.1.1:443", false, "connected")]);
        assert!(!one.passed());
        assert_eq!(one.escaped(), vec![&outcome("tcp 1.1.1.1:443", false, "connected")]);
        let err = one.ensure_passed("demo-abc").expect_err("an escape refuses the launch");
        assert_eq!(
            err.to_string(),
            "bottle `demo-abc`: the boundary self-test found a way out: tcp 1.1.1.1:443 (connected)"
        );

        assert!(!report(&[]).passed(), "an empty report proves nothing");
        assert!(report(&[]).ensure_passed("s").is_err());
    }

    #[test]
    fn table_aligns_columns_and_shouts_escapes() {
        let table = render_table(&report(&[
            ("interfaces", true, "only lo"),
            ("tcp 1.1.1.1:443", false, "connected"),
            ("proxy connect selftest.invalid:443", true, "proxy answered 403 Forbidden"),
        ]));
        assert_eq!(
            table,
            "interfaces                          blocked  only lo\n\
             tcp 1.1.1.1:443                     ESCAPED  connected\n\
             proxy connect selftest.invalid:443  blocked  proxy answered 403 Forbidden\n"
        );
        assert_eq!(render_table(&report(&[])), "");
    }

    #[test]
    fn report_json_round_trips() {
        let r = report(&[("routes", true, "none but loopback"), ("udp dns 8.8.8.8:53", false, "got a 45-byte reply")]);
        let json = serde_json::to_string(&r).expect("serialises");
        assert_eq!(
            json,
            r#"{"probes":[{"name":"routes","blocked":true,"detail":"none but loopback"},{"name":"udp dns 8.8.8.8:53","blocked":false,"detail":"got a 45-byte reply"}]}"#
        );
        assert_eq!(serde_json::from_str::<SelfTestReport>(&json).expect("parses"), r);
    }

    fn exec(code: i32, stdout: &str, stderr: &str) -> ExecResult {
        ExecResult { code, stdout: stdout.into(), stderr: stderr.into() }
    }

    #[test]
    fn report_from_exec_accepts_consistent_reports() {
        let passed = r#"{"probes":[{"name":"interfaces","blocked":true,"detail":"only lo"}]}"#;
        assert!(report_from_exec("s", &exec(0, passed, "")).expect("a report").passed());
        let escaped = r#"{"probes":[{"name":"interfaces","blocked":false,"detail":"interfaces besides lo: eth0"}]}"#;
        let r = report_from_exec("s", &exec(1, escaped, "")).expect("escapes are a report, not an error");
        assert_eq!(r.escaped().len(), 1);
    }

    #[test]
    fn report_from_exec_fails_closed() {
        let cases = [
            // The binary is too old to know `selftest`: clap's usage error, no report.
            exec(2, "", "error: unrecognized subcommand 'selftest'\n"),
            // Not even a shell.
            exec(127, "", "sh: 1: /opt/bot-bottle/bot-bottle: not found\n"),
            // Killed half way.
            exec(137, r#"{"probes":[{"name":"interf"#, ""),
            // Nothing probed.
            exec(0, r#"{"probes":[]}"#, ""),
            // A pass the exit code denies, and an escape it does not admit.
            exec(1, r#"{"probes":[{"name":"routes","blocked":true,"detail":"none"}]}"#, ""),
            exec(0, r#"{"probes":[{"name":"routes","blocked":false,"detail":"eth0"}]}"#, ""),
        ];
        for result in cases {
            let err = report_from_exec("demo-abc", &result).expect_err("no pass without a consistent report");
            assert!(matches!(err, Error::SelfTestNotRun { .. }), "{err:?}");
            assert!(err.to_string().starts_with("bottle `demo-abc`: the boundary self-test did not run: "), "{err}");
            assert!(err.hint().is_some());
        }
        let err =
            report_from_exec("s", &exec(2, "", "error: unrecognized subcommand 'selftest'\n")).expect_err("fails");
        assert!(err.to_string().ends_with("its last lines:\nerror: unrecognized subcommand 'selftest'"), "{err}");
    }

    #[test]
    fn run_in_runs_the_mounted_binary_as_the_agent() {
        let mut ran = Vec::new();
        let args = vec!["--proxy".to_owned(), "10.0.0.2:9099".to_owned()];
        let report = run_with("demo-abc", &args, |script, user| {
            ran.push((script.to_owned(), user));
            Ok(exec(0, r#"{"probes":[{"name":"interfaces","blocked":true,"detail":"only lo"}]}"#, ""))
        })
        .expect("report");
        assert!(report.passed());
        assert_eq!(
            ran,
            vec![(
                "exec /opt/bot-bottle/bot-bottle selftest --format json '--proxy' '10.0.0.2:9099'".to_owned(),
                ExecUser::Agent
            )]
        );
    }

    #[test]
    fn dns_query_is_a_standard_a_query() {
        let packet = dns_query(0xabcd, "example.com");
        let expected: &[u8] = &[
            0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, // header: id, RD, QDCOUNT 1
            7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, // QNAME
            0, 1, 0, 1, // A, IN
        ];
        assert_eq!(packet, expected);
        assert_eq!(dns_query(1, "example.com."), dns_query(1, "example.com"), "a trailing dot is the root");
    }

    #[test]
    fn a_vm_profile_probes_its_proxy_and_skips_the_interface_checks() {
        let opts = ProbeOptions {
            proxy: Some("10.210.3.2:9099".parse().expect("addr")),
            extra_control: vec!["10.210.3.2:9200".parse().expect("addr")],
            extra_dns: vec!["192.168.1.1:53".parse().expect("addr")],
            extra_tcp: vec!["1.1.1.1:443".parse().expect("addr"), "10.210.3.1:22".parse().expect("addr")],
            network_path: true,
            ..ProbeOptions::default()
        };
        let list = probes(&opts);
        assert!(!list.contains(&Probe::Interfaces) && !list.contains(&Probe::Routes));
        assert!(list.contains(&Probe::ProxyConnect { proxy: "10.210.3.2:9099".parse().expect("addr") }));
        assert!(list.contains(&Probe::Control { addr: "10.210.3.2:9200".parse().expect("addr") }));
        assert!(list.contains(&Probe::UdpDns { server: "192.168.1.1:53".parse().expect("addr") }));
        assert!(list.contains(&Probe::Tcp { addr: "10.210.3.1:22".parse().expect("addr") }));
        let names: Vec<String> = list.iter().map(Probe::name).collect();
        let unique: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "a repeated destination is probed once: {names:?}");
    }

    #[test]
    fn probe_list_covers_the_design_and_has_unique_names() {
        let extra: SocketAddr = "127.0.0.1:4242".parse().expect("addr");
        let list = probes(&ProbeOptions { extra_tcp: vec![extra], ..ProbeOptions::default() });
        let names: Vec<String> = list.iter().map(Probe::name).collect();
        for expected in [
            "interfaces",
            "routes",
            "routes6",
            "tcp 1.1.1.1:443",
            "tcp 8.8.8.8:53",
            "tcp 169.254.169.254:80",
            "tcp 172.17.0.1:80",
            "tcp 172.17.0.1:22",
            "tcp [2606:4700:4700::1111]:443",
            "tcp 127.0.0.1:4242",
            "udp dns 8.8.8.8:53",
            "resolve example.com",
            "resolve aGVsbG8.exfil.example.com",
            "control 127.0.0.1:9200",
            "proxy connect selftest.invalid:443",
            "proxy get metadata",
            "socket /var/run/docker.sock",
            "socket /run/docker.sock",
        ] {
            assert!(names.iter().any(|n| n == expected), "missing {expected} in {names:?}");
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "names must be unique: {names:?}");
        assert!(list.contains(&Probe::ProxyConnect { proxy: "127.0.0.1:9099".parse().expect("addr") }));
    }

    #[test]
    fn interface_lists() {
        assert_eq!(interfaces_verdict(&["lo".into()]), (true, "only lo".into()));
        assert_eq!(interfaces_verdict(&[]), (true, "no interface at all".into()));
        assert_eq!(
            interfaces_verdict(&["eth0".into(), "lo".into(), "docker0".into()]),
            (false, "interfaces besides lo: eth0, docker0".into())
        );
        let dev = "Inter-|   Receive                                                |  Transmit\n \
                   face |bytes    packets errs drop fifo frame compressed multicast|bytes\n    \
                   lo:  123 4 0 0 0 0 0 0 123 4 0 0 0 0 0 0\n  \
                   eth0: 99 1 0 0 0 0 0 0 99 1 0 0 0 0 0 0\n";
        assert_eq!(proc_net_dev_interfaces(dev), vec!["eth0".to_owned(), "lo".to_owned()]);
    }

    #[test]
    fn ipv4_routes_are_read_little_endian() {
        let header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";
        assert!(ipv4_routes_off_loopback(header).is_empty());
        let table = format!(
            "{header}eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
             lo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n"
        );
        assert_eq!(ipv4_routes_off_loopback(&table), vec!["0.0.0.0/0 via eth0", "172.17.0.0/16 via docker0"]);
    }

    #[test]
    fn ipv6_routes_keep_only_loopback() {
        // What a fresh network namespace with `lo` up shows: a reject default and ::1, both on lo.
        let lo_only = "\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
";
        assert!(ipv6_routes_off_loopback(lo_only).is_empty());
        let with_eth = format!(
            "{lo_only}fe800000000000000000000000000000 40 00000000000000000000000000000000 00 \
             00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
        );
        assert_eq!(ipv6_routes_off_loopback(&with_eth), vec!["fe80::/64 via eth0"]);
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 403 Forbidden"), Some((403, "Forbidden")));
        assert_eq!(parse_status_line("HTTP/1.0 200 Connection established"), Some((200, "Connection established")));
        assert_eq!(parse_status_line("HTTP/1.1 502"), Some((502, "")));
        for bad in ["", "SSH-2.0-OpenSSH_9.2", "HTTP/1.1 40 Short", "HTTP/1.1 abc Nope", "HTTP/2 200 OK"] {
            assert_eq!(parse_status_line(bad), None, "{bad:?}");
        }
    }
}
