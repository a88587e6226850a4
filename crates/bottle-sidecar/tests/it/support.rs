//! Fixtures: a local HTTPS upstream signed by a test CA, a real sidecar (egress, supervise MCP,
//! control API, optionally the git gate) started from a config file in its own runtime — so
//! dropping it is a process dying — and clients for each of its doors.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bottle_sidecar::{Sidecar, SidecarOptions};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

/// The route token the sidecar injects: never seen by the agent, an API answer, a proposal or a log.
pub const ROUTE_TOKEN: &str = "routetoken-PLANTED-4d3c2b1a09f8e7d6";
/// A credential-shaped value the agent sends (AWS's documented example key id).
pub const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
/// The control API's bearer token.
pub const CONTROL_TOKEN: &str = "control-token-PLANTED-0123456789abcdef";

pub const API_HOST: &str = "api.test.local";
pub const OPEN_HOST: &str = "open.test.local";
pub const DOCS_HOST: &str = "docs.test.local";
pub const EVIL_HOST: &str = "evil.test.local";
const HOSTS: [&str; 4] = [API_HOST, OPEN_HOST, DOCS_HOST, EVIL_HOST];

/// Asserts that no planted secret occurs in `text`.
pub fn assert_no_secret(what: &str, text: &str) {
    for secret in [ROUTE_TOKEN, AWS_KEY, CONTROL_TOKEN] {
        assert!(!text.contains(secret), "{what} contains a planted secret:\n{text}");
    }
}

/// What the upstream received: method, path and body.
pub type Seen = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// An HTTPS upstream answering every test host with a JSON echo, on its own runtime.
pub struct Upstream {
    pub port: u16,
    pub ca_pem: PathBuf,
    pub seen: Seen,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Upstream {
    pub fn start(dir: &Path) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca_pem = dir.join("upstream-ca.pem");
        std::fs::write(&ca_pem, ca_cert.pem()).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(HOSTS.map(str::to_owned).to_vec()).unwrap().signed_by(&key, &issuer).unwrap();
        let mut tls = rustls::ServerConfig::builder_with_provider(bottle_ca::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let runtime = runtime();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Seen::default();
        let seen_task = seen.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen) = (acceptor.clone(), seen_task.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                            let path = parts.uri.path().to_owned();
                            seen.lock().unwrap().push((parts.method.to_string(), path.clone(), body));
                            let text =
                                json!({ "path": path, "authorized": parts.headers.contains_key("authorization") });
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(text.to_string()))))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { port, ca_pem, seen, runtime: Some(runtime) }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// What the sidecar config holds besides the fixed parts.
pub struct Options {
    /// Routes (`host` without port: the upstream's port is added).
    pub routes: Vec<Value>,
    pub proposal_timeout_secs: u64,
    /// The `git_gate` section, if any (its listener is added).
    pub git_gate: Option<Value>,
    /// Serve MCP on a unix socket (as in a docker bottle) instead of TCP.
    pub mcp_socket: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { routes: Vec::new(), proposal_timeout_secs: 60, git_gate: None, mcp_socket: false }
    }
}

/// The addresses of a running sidecar.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub egress: SocketAddr,
    /// `None` when MCP listens on a unix socket.
    pub mcp: Option<SocketAddr>,
    pub control: SocketAddr,
    pub git_gate: Option<SocketAddr>,
}

/// A temp dir with an upstream, a sidecar config and the running sidecar.
pub struct World {
    pub dir: tempfile::TempDir,
    pub upstream: Upstream,
    pub config: PathBuf,
    pub addrs: Addrs,
    sidecar: Option<tokio::runtime::Runtime>,
}

impl World {
    pub async fn new(options: Options) -> Self {
        bottle_ca::install_crypto_provider();
        let dir = tempfile::Builder::new().prefix("sc-it-").tempdir().unwrap();
        let upstream = Upstream::start(dir.path());
        let config = write_config(dir.path(), &upstream, options);
        let (runtime, addrs) = start_sidecar(&config).await;
        Self { dir, upstream, config, addrs, sidecar: Some(runtime) }
    }

    /// Kills the sidecar as a dying process would (every task and connection dropped), then
    /// starts a new one from the same config and state.
    pub async fn restart(&mut self) {
        self.kill();
        let (runtime, addrs) = start_sidecar(&self.config).await;
        self.sidecar = Some(runtime);
        self.addrs = addrs;
    }

    pub fn kill(&mut self) {
        if let Some(runtime) = self.sidecar.take() {
            runtime.shutdown_background();
        }
    }

    pub fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("state").join("audit.jsonl")).unwrap_or_default()
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("state").join("audit.jsonl")
    }

    pub fn bottle_ca(&self) -> PathBuf {
        self.dir.path().join("state").join("ca").join(bottle_ca::CA_CERT_FILE)
    }

    /// The control API client.
    pub fn control(&self) -> Control {
        Control { base: format!("http://{}", self.addrs.control), client: reqwest::Client::new() }
    }

    /// An MCP client session (the real rmcp client over streamable HTTP).
    pub async fn mcp(&self) -> RunningService<rmcp::RoleClient, ClientConfig> {
        match self.addrs.mcp {
            Some(addr) => {
                let transport = StreamableHttpClientTransport::from_config(
                    StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp")),
                );
                ClientConfig::default().serve(transport).await.unwrap()
            }
            None => {
                let socket = self.dir.path().join("supervise.sock");
                // The Host the agent's relay forwards: its loopback port.
                let transport = StreamableHttpClientTransport::from_unix_socket(
                    socket.to_str().unwrap(),
                    "http://127.0.0.1:9100/mcp",
                );
                ClientConfig::default().serve(transport).await.unwrap()
            }
        }
    }

    /// Runs curl through the egress proxy, trusting only the bottle CA; every output is checked
    /// for secrets. Returns (exit code, stdout, stderr).
    pub async fn curl(&self, args: &[&str]) -> (i32, String, String) {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "90", "--proxy", &format!("http://{}", self.addrs.egress), "--cacert"])
            .arg(self.bottle_ca())
            .args(args)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(!stdout.contains(ROUTE_TOKEN) && !stderr.contains(ROUTE_TOKEN), "{stdout}{stderr}");
        (out.status.code().unwrap_or(-1), stdout, stderr)
    }

    /// `GET url` through the proxy; the HTTP status, or 0 when the proxy refused the tunnel.
    pub async fn get_status(&self, url: &str) -> u16 {
        let (_, out, _) = self.curl(&["-o", "/dev/null", "-w", "%{http_code}", url]).await;
        out.trim().parse().unwrap_or(0)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.kill();
    }
}

fn write_config(dir: &Path, upstream: &Upstream, options: Options) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let secrets = dir.join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(secrets.join("API_TOKEN"), ROUTE_TOKEN).unwrap();
    let token = dir.join("control-token");
    std::fs::write(&token, format!("{CONTROL_TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir(dir.join("state")).unwrap();
    let routes: Vec<Value> = options
        .routes
        .into_iter()
        .map(|mut r| {
            let host = r["host"].as_str().unwrap().to_owned();
            r["host"] = json!(format!("{host}:{}", upstream.port));
            r
        })
        .collect();
    let mut listen = json!({"egress": "tcp:127.0.0.1:0", "supervise": "tcp:127.0.0.1:0", "control": "tcp:127.0.0.1:0"});
    if options.git_gate.is_some() {
        listen["git_gate"] = json!("tcp:127.0.0.1:0");
    }
    if options.mcp_socket {
        listen["supervise"] = json!(format!("unix:{}", dir.join("supervise.sock").display()));
    }
    let mut config = json!({
        "slug": "it-bottle",
        "state_dir": dir.join("state"),
        "secrets_dir": secrets,
        "listen": listen,
        "egress": {
            "log": 1,
            "routes": routes,
            "upstream_ca": upstream.ca_pem,
            "hosts": HOSTS.iter().map(|h| (h.to_string(), json!("127.0.0.1"))).collect::<serde_json::Map<_, _>>(),
            "token_allow_timeout_secs": 120,
        },
        "supervise": {"control_token_file": token, "proposal_timeout_secs": options.proposal_timeout_secs},
    });
    if let Some(gate) = options.git_gate {
        config["git_gate"] = gate;
    }
    let path = dir.join("sidecar.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    path
}

async fn start_sidecar(config: &Path) -> (tokio::runtime::Runtime, Addrs) {
    let runtime = runtime();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let config = config.to_path_buf();
    let options = SidecarOptions { hook_program: Some(hook_program()) };
    runtime.spawn(async move {
        let sidecar = Sidecar::start_with(&config, options).await.unwrap();
        let addrs = Addrs {
            egress: sidecar.egress_addr().unwrap(),
            mcp: sidecar.supervise_addr(),
            control: sidecar.control_addr().unwrap(),
            git_gate: sidecar.git_gate_addr(),
        };
        tx.send(addrs).unwrap();
        sidecar.serve(std::future::pending()).await.unwrap();
    });
    let addrs = tokio::time::timeout(Duration::from_secs(30), rx).await.unwrap().unwrap();
    (runtime, addrs)
}

/// The hook client example this crate's tests build.
pub fn hook_program() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let program = exe.parent().and_then(Path::parent).unwrap().join("examples").join("git_gate_hook");
    assert!(program.exists(), "{} is missing: run `cargo test -p bottle-sidecar`", program.display());
    program
}

/// The control API as the host's CLI uses it.
pub struct Control {
    base: String,
    client: reqwest::Client,
}

impl Control {
    /// `GET path` with the token; (status, JSON body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.client.get(format!("{}{path}", self.base)).bearer_auth(CONTROL_TOKEN)).await
    }

    /// `POST /v1/proposals/{id}/decision`.
    pub async fn decide(&self, id: &str, body: &Value) -> (u16, Value) {
        let url = format!("{}/v1/proposals/{id}/decision", self.base);
        self.send(self.client.post(url).bearer_auth(CONTROL_TOKEN).body(body.to_string())).await
    }

    /// Any request, as built by the caller.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_no_secret("control API response", &text);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Waits until a pending proposal of `kind` is listed and returns it.
    pub async fn wait_for(&self, kind: &str) -> Value {
        for _ in 0..300 {
            let (status, list) = self.get("/v1/proposals").await;
            assert_eq!(status, 200);
            if let Some(found) = list.as_array().unwrap().iter().find(|p| p["kind"] == kind) {
                return found.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no `{kind}` proposal appeared");
    }
}

/// Calls an MCP tool with JSON arguments.
pub async fn call(client: &RunningService<rmcp::RoleClient, ClientConfig>, tool: &str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else { panic!("arguments must be an object") };
    client.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args)).await.unwrap()
}

/// The structured result of a tool call.
pub fn structured(result: &CallToolResult) -> Value {
    let value = result.structured_content.clone().expect("structured content");
    assert_no_secret("tool result", &value.to_string());
    value
}

/// The text of a tool error.
pub fn error_text(result: &CallToolResult) -> String {
    assert_eq!(result.is_error, Some(true), "{result:?}");
    result.content.iter().filter_map(|c| c.as_text()).map(|t| t.text.clone()).collect::<Vec<_>>().join("\n")
}
