//! The network layer: listeners, the HTTP/1.1 proxy front, TLS interception of CONNECT tunnels, the
//! per-request pipeline (policy → credentials → DLP → upstream → inbound scan → audit) and reloads.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bottle_ca::Ca;
use bottle_dlp::{Engine, Finding, Location};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch};

use crate::audit::{AuditEvent, AuditLog, Decision};
use crate::body::{self, Body, InboundScanBody, ScannedBody, Verdict};
use crate::config::{EgressConfig, InboundDetector, LogLevel, OnMatch, RouteConfig, Secrets};
use crate::counters::{Counters, HostCounts};
use crate::inbound::{self, InjectionVerdict};
use crate::outbound::{self, DlpEngines, FindingSummary};
use crate::policy::{self, Denial, INTROSPECTION_HOST, Route, RouteTable, Scheme, Side, Target};
use crate::proposal::{DenyAll, Proposal, ProposalDecision, ProposalSink};
use crate::rawhead::{self, HeadGuard, RejectSlot};
use crate::upstream::{self, UpstreamClient, UpstreamConnector};
use crate::{EgressError, ws};

/// Timeouts and size limits. The defaults suit an agent talking to APIs and forges.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time allowed for a request head to arrive (slowloris bound), HTTP/1.
    pub header_read_timeout: Duration,
    /// Time allowed for the agent's TLS handshake inside a tunnel.
    pub tls_handshake_timeout: Duration,
    /// Time allowed to connect (TCP and TLS) to an upstream.
    pub connect_timeout: Duration,
    /// Request bodies up to this size are buffered and scanned whole (every `on_match` mode works);
    /// larger ones are streamed with a hold-back window and any finding aborts the upload.
    pub max_buffered_body: usize,
    /// Text responses with a known length up to this size are scanned whole (block → 403, warn →
    /// header); others are scanned as they stream (block → cut).
    pub max_inbound_scan: usize,
    /// How long in-flight connections get to finish after shutdown is signalled.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_buffered_body: 8 * 1024 * 1024,
            max_inbound_scan: 4 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// What the proxy needs besides its config: the CA, the secrets, the supervise seam, the audit log.
#[derive(Debug)]
pub struct EgressDeps {
    /// The bottle CA that signs interception leaves.
    pub ca: Arc<Ca>,
    /// Token slot → value. Every value is also a DLP known secret.
    pub secrets: Secrets,
    /// Where `supervise` holds go.
    pub proposals: Arc<dyn ProposalSink>,
    /// The bottle's `audit.jsonl`; `None` logs decisions to `tracing` only.
    pub audit_log: Option<PathBuf>,
    /// An audit log already open and shared with the bottle's other services (one hash chain);
    /// takes precedence over `audit_log`.
    pub audit: Option<Arc<AuditLog>>,
    /// Timeouts and size limits.
    pub limits: Limits,
}

impl EgressDeps {
    /// Deps with the deny-all proposal sink, no audit file and default limits.
    pub fn new(ca: Arc<Ca>, secrets: Secrets) -> Self {
        Self { ca, secrets, proposals: Arc::new(DenyAll), audit_log: None, audit: None, limits: Limits::default() }
    }
}

/// A bound listener: TCP, or a unix socket (the agent side of the Docker and namespaces backends).
#[derive(Debug)]
pub enum EgressListener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A unix-domain socket listener.
    Unix(UnixListener),
}

impl EgressListener {
    /// Binds a TCP address.
    pub async fn bind_tcp(addr: SocketAddr) -> Result<Self, EgressError> {
        TcpListener::bind(addr)
            .await
            .map(Self::Tcp)
            .map_err(|source| EgressError::Listen { addr: addr.to_string(), source })
    }

    /// Binds a unix socket at `path`, replacing a stale socket file (never any other file).
    pub fn bind_unix(path: &Path) -> Result<Self, EgressError> {
        use std::os::unix::fs::FileTypeExt as _;
        let listen_err = |source| EgressError::Listen { addr: path.display().to_string(), source };
        if let Ok(meta) = std::fs::symlink_metadata(path)
            && meta.file_type().is_socket()
        {
            std::fs::remove_file(path).map_err(listen_err)?;
        }
        UnixListener::bind(path).map(Self::Unix).map_err(listen_err)
    }

    /// The TCP address, when this is a TCP listener.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().ok(),
            Self::Unix(_) => None,
        }
    }
}

/// The compiled, swappable part of the configuration.
#[derive(Debug)]
struct PolicyState {
    routes: RouteTable,
    secrets: Secrets,
    dlp: DlpEngines,
}

impl PolicyState {
    fn build(routes: &[RouteConfig], secrets: Secrets) -> Result<Self, EgressError> {
        Ok(Self { routes: RouteTable::compile(routes, &secrets)?, dlp: DlpEngines::build(&secrets)?, secrets })
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    policy: RwLock<Arc<PolicyState>>,
    ca: Arc<Ca>,
    proposals: Arc<dyn ProposalSink>,
    audit: Option<Arc<AuditLog>>,
    log_level: LogLevel,
    client: UpstreamClient,
    /// HTTP/1.1-only client for upgrades (WebSocket cannot ride an h2 connection here).
    h1_client: UpstreamClient,
    limits: Limits,
    token_allow_timeout: Duration,
    /// Serializes route changes (reloads and granted routes), so none is lost to a race.
    route_changes: Mutex<()>,
    /// Routes granted at run time; they outlive reloads of the configured routes.
    granted: Mutex<Vec<RouteConfig>>,
    /// Per-host counts of what was allowed, denied and flagged.
    counters: Counters,
    /// Salt of the session allow keys, random per process.
    session_salt: [u8; 32],
    /// Salted hashes of (host, rule, value) the operator approved for the session.
    session_allows: Mutex<HashSet<[u8; 32]>>,
}

impl Shared {
    fn policy(&self) -> Arc<PolicyState> {
        self.policy.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether every key was approved for the session before.
    fn session_allowed(&self, keys: &[[u8; 32]]) -> bool {
        let allows = self.session_allows.lock().unwrap_or_else(PoisonError::into_inner);
        !keys.is_empty() && keys.iter().all(|k| allows.contains(k))
    }

    fn allow_for_session(&self, keys: Vec<[u8; 32]>) {
        self.session_allows.lock().unwrap_or_else(PoisonError::into_inner).extend(keys);
    }

    /// Writes an audit line if the level asks for it. Before writing, the serialized line is checked
    /// for known secrets once more; a line that somehow carries one is replaced by a stub.
    fn audit(&self, policy: &PolicyState, event: AuditEvent) {
        self.counters.record(&event);
        let wanted = match event.decision {
            Decision::Deny | Decision::Warn => true,
            Decision::Allow => self.log_level >= LogLevel::Allows,
        };
        if !wanted {
            return;
        }
        let line = serde_json::to_string(&event).unwrap_or_default();
        let leaked = !policy.dlp.log_scrubber().scan(line.as_bytes(), &Location::Other("audit".into())).is_empty()
            || policy.secrets.values().any(|s| line.contains(s.expose()));
        let event = if leaked {
            AuditEvent {
                rule: event.rule,
                reason: Some("audit line withheld: it contained secret-looking material".into()),
                host: event.host,
                status: event.status,
                ..AuditEvent::new(event.event, event.decision)
            }
        } else {
            event
        };
        match event.decision {
            Decision::Deny => tracing::info!(
                host = event.host.as_deref().unwrap_or(""),
                rule = event.rule.as_deref().unwrap_or(""),
                "egress denied"
            ),
            Decision::Warn => tracing::info!(
                host = event.host.as_deref().unwrap_or(""),
                rule = event.rule.as_deref().unwrap_or(""),
                "egress warning"
            ),
            Decision::Allow => tracing::debug!(host = event.host.as_deref().unwrap_or(""), "egress allowed"),
        }
        if let Some(log) = &self.audit
            && let Err(error) = log.append(&event)
        {
            tracing::error!(%error, "cannot write audit line");
        }
    }
}

/// The proxy, configured and ready to serve.
#[derive(Debug)]
pub struct Egress {
    shared: Arc<Shared>,
}

/// Reloads the route table of a running proxy. Requests already past their route lookup finish
/// under the table they started with.
#[derive(Debug, Clone)]
pub struct EgressHandle {
    shared: Arc<Shared>,
}

impl EgressHandle {
    /// Replaces the configured routes, keeping the secrets; routes granted with
    /// [`EgressHandle::grant_route`] stay on top. On error the old table stays in force.
    pub fn replace_routes(&self, routes: &[RouteConfig]) -> Result<(), EgressError> {
        let secrets = self.shared.policy().secrets.clone();
        self.replace_routes_and_secrets(routes, secrets)
    }

    /// Replaces configured routes and secrets together (a new route may bring a new token); routes
    /// granted at run time stay on top. On error the old table stays in force.
    pub fn replace_routes_and_secrets(&self, routes: &[RouteConfig], secrets: Secrets) -> Result<(), EgressError> {
        let _serial = self.shared.route_changes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all = routes.to_vec();
        all.extend(self.shared.granted.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned());
        let next = Arc::new(PolicyState::build(&all, secrets)?);
        let count = next.routes.routes().len();
        *self.shared.policy.write().unwrap_or_else(PoisonError::into_inner) = next.clone();
        self.shared.audit(
            &next,
            AuditEvent { reason: Some(format!("{count} routes")), ..AuditEvent::new("reload", Decision::Warn) },
        );
        Ok(())
    }

    /// Adds `route`, or replaces the route for the same host and port, in the running proxy for the
    /// rest of its life (reloads keep it). The swap is atomic: requests already routed finish under
    /// the table they started with. Returns the route it replaced. On error nothing changes.
    pub fn grant_route(&self, route: RouteConfig) -> Result<Option<RouteConfig>, EgressError> {
        let _serial = self.shared.route_changes.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.shared.policy();
        let key = policy::split_host_port(&route.host)
            .map_err(|d| policy::RouteError { host: route.host.clone(), reason: d.reason })?;
        let replaced = current
            .routes
            .routes()
            .iter()
            .find(|r| (r.host.as_str(), r.port) == (key.0.as_str(), key.1))
            .map(|r| r.config.clone());
        let mut all: Vec<RouteConfig> = current.routes.routes().iter().map(|r| r.config.clone()).collect();
        all.push(route.clone());
        let next = Arc::new(PolicyState::build(&all, current.secrets.clone())?);
        let count = next.routes.routes().len();
        *self.shared.policy.write().unwrap_or_else(PoisonError::into_inner) = next.clone();
        let mut granted = self.shared.granted.lock().unwrap_or_else(PoisonError::into_inner);
        granted.retain(|r| policy::split_host_port(&r.host).ok().as_ref() != Some(&key));
        granted.push(route);
        drop(granted);
        self.shared.audit(
            &next,
            AuditEvent {
                host: Some(key.0),
                port: key.1,
                reason: Some(format!(
                    "route {} at run time; {count} routes",
                    if replaced.is_some() { "replaced" } else { "added" }
                )),
                ..AuditEvent::new("route-grant", Decision::Warn)
            },
        );
        Ok(replaced)
    }

    /// The routes in force, as configured (no secret values: routes only name token slots).
    pub fn routes(&self) -> Vec<RouteConfig> {
        self.shared.policy().routes.routes().iter().map(|r| r.config.clone()).collect()
    }

    /// Requests allowed and denied and DLP hits, per host, since the proxy started.
    pub fn counters(&self) -> BTreeMap<String, HostCounts> {
        self.shared.counters.snapshot()
    }
}

impl Egress {
    /// Compiles the configuration, builds the DLP engines and upstream clients, opens the audit log.
    pub fn new(config: &EgressConfig, deps: EgressDeps) -> Result<Self, EgressError> {
        let policy = PolicyState::build(&config.routes, deps.secrets)?;
        let tls = upstream::tls_config(config.upstream_ca.as_deref(), &[b"h2", b"http/1.1"])?;
        let h1_tls = upstream::tls_config(config.upstream_ca.as_deref(), &[b"http/1.1"])?;
        let connect_timeout = deps.limits.connect_timeout;
        let audit = match deps.audit {
            Some(shared) => Some(shared),
            None => deps.audit_log.as_deref().map(AuditLog::open).transpose()?.map(Arc::new),
        };
        let shared = Shared {
            policy: RwLock::new(Arc::new(policy)),
            ca: deps.ca,
            proposals: deps.proposals,
            audit,
            log_level: config.log,
            client: upstream::client(UpstreamConnector::new(&config.hosts, tls, connect_timeout)),
            h1_client: upstream::client(UpstreamConnector::new(&config.hosts, h1_tls, connect_timeout)),
            limits: deps.limits,
            token_allow_timeout: Duration::from_secs(config.token_allow_timeout_secs),
            route_changes: Mutex::new(()),
            granted: Mutex::new(Vec::new()),
            counters: Counters::default(),
            session_salt: rand::random(),
            session_allows: Mutex::new(HashSet::new()),
        };
        Ok(Self { shared: Arc::new(shared) })
    }

    /// A handle for live route reloads.
    pub fn handle(&self) -> EgressHandle {
        EgressHandle { shared: self.shared.clone() }
    }

    /// Accepts connections until `shutdown` resolves, then lets in-flight connections finish for up to
    /// [`Limits::shutdown_grace`].
    pub async fn serve(self, listener: EgressListener, shutdown: impl Future<Output = ()>) -> Result<(), EgressError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (tracker, mut all_done) = mpsc::channel::<()>(1);
        tokio::pin!(shutdown);
        let level: u8 = self.shared.log_level.into();
        tracing::info!(log = level, "egress proxy serving");
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                accepted = accept(&listener) => accepted,
            };
            match accepted {
                Ok(Accepted::Tcp(stream)) => {
                    let _ = stream.set_nodelay(true);
                    spawn_front(self.shared.clone(), stream, stop_rx.clone(), tracker.clone());
                }
                Ok(Accepted::Unix(stream)) => {
                    spawn_front(self.shared.clone(), stream, stop_rx.clone(), tracker.clone());
                }
                Err(error) => {
                    // Usually EMFILE; back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        let _ = stop_tx.send(true);
        drop(tracker);
        let _ = tokio::time::timeout(self.shared.limits.shutdown_grace, all_done.recv()).await;
        tracing::info!("egress proxy stopped");
        Ok(())
    }
}

/// Builds an [`Egress`] and serves it: `Egress::new(config, deps)?.serve(listener, shutdown)`.
pub async fn serve(
    config: &EgressConfig,
    deps: EgressDeps,
    listener: EgressListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), EgressError> {
    Egress::new(config, deps)?.serve(listener, shutdown).await
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &EgressListener) -> std::io::Result<Accepted> {
    match listener {
        EgressListener::Tcp(l) => l.accept().await.map(|(s, _)| Accepted::Tcp(s)),
        EgressListener::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
    }
}

/// Per-connection context for spawning tunnel tasks that also honour shutdown.
#[derive(Clone)]
struct ConnCtx {
    stop: watch::Receiver<bool>,
    tracker: mpsc::Sender<()>,
}

fn spawn_front<S>(shared: Arc<Shared>, stream: S, stop: watch::Receiver<bool>, tracker: mpsc::Sender<()>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ctx = ConnCtx { stop: stop.clone(), tracker: tracker.clone() };
    tokio::spawn(async move {
        let _tracked = tracker;
        let svc_shared = shared.clone();
        let slot = RejectSlot::default();
        let svc_slot = slot.clone();
        let service = service_fn(move |req| {
            let shared = svc_shared.clone();
            let ctx = ctx.clone();
            let slot = svc_slot.clone();
            async move { Ok::<_, Infallible>(guarded(&shared.clone(), &slot, req, |req| front(shared, ctx, req)).await) }
        });
        let io = HeadGuard::new(stream, slot, false, shared.limits.header_read_timeout);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(shared.limits.header_read_timeout)
            .max_buf_size(policy::MAX_HEADER_BYTES + 16 * 1024)
            .max_headers(policy::MAX_HEADERS);
        let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => log_conn_end(result.err().map(|e| e.to_string())),
            () = stopped(stop) => {
                conn.as_mut().graceful_shutdown();
                log_conn_end(conn.await.err().map(|e| e.to_string()));
            }
        }
    });
}

/// Resolves once shutdown is signalled (or the server is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn log_conn_end(error: Option<String>) {
    if let Some(error) = error {
        // Downstream: the agent's connection broke or sent something unparsable.
        tracing::debug!(side = "downstream", %error, "proxy connection ended with error");
    }
}

/// The plain proxy listener: CONNECT, absolute-URI HTTP, and `_egress.local` in origin form.
async fn front(shared: Arc<Shared>, ctx: ConnCtx, req: Request<Incoming>) -> Response<Body> {
    if req.method() == Method::CONNECT {
        return connect(shared, ctx, req);
    }
    match req.uri().scheme_str() {
        Some("http") => handle(shared, None, req).await,
        Some(_) => plain_denial(
            &Denial::malformed("egress.bad-scheme", "only `http://` absolute URIs are proxied; use CONNECT for https"),
            "request",
        ),
        None => {
            let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
            if policy::split_host_port(host).is_ok_and(|(h, _)| h == INTROSPECTION_HOST) {
                return introspect(&shared, &req);
            }
            plain_denial(
                &Denial::malformed(
                    "egress.not-proxied",
                    "this is an HTTP proxy: send CONNECT or an absolute URI (set HTTPS_PROXY/HTTP_PROXY)",
                ),
                "request",
            )
        }
    }
}

fn connect(shared: Arc<Shared>, ctx: ConnCtx, req: Request<Incoming>) -> Response<Body> {
    let policy = shared.policy();
    let authority = req.uri().authority().map(|a| a.as_str().to_owned()).unwrap_or_default();
    let what = format!("CONNECT {}", policy::printable(&authority));
    let target = match policy::parse_connect_target(&authority) {
        Ok(target) => target,
        Err(denial) => return deny(&shared, &policy, "connect", &what, None, &denial),
    };
    if target.host != INTROSPECTION_HOST
        && let Err(denial) = policy.routes.lookup(&target)
    {
        return deny(&shared, &policy, "connect", &what, Some(&target), &denial);
    }
    drop(policy);
    tokio::spawn(async move {
        let _tracked = ctx.tracker.clone();
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => bump(shared, ctx, target, TokioIo::new(upgraded)).await,
            Err(error) => tracing::debug!(side = "downstream", %error, "CONNECT upgrade failed"),
        }
    });
    Response::new(body::empty())
}

/// Terminates the agent's TLS with a leaf for the CONNECT target and serves HTTP/1.1 or h2 inside.
async fn bump<IO>(shared: Arc<Shared>, ctx: ConnCtx, target: Target, io: IO)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = shared.limits.tls_handshake_timeout;
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let start = match tokio::time::timeout(timeout, acceptor).await {
        Ok(Ok(start)) => start,
        Ok(Err(error)) => return tracing::debug!(side = "downstream", %error, "TLS client hello failed"),
        Err(_) => return tracing::debug!(side = "downstream", "TLS client hello timed out"),
    };
    let sni = start.client_hello().server_name().map(str::to_owned);
    if let Err(denial) = policy::check_sni(&target, sni.as_deref()) {
        let policy = shared.policy();
        let _ = deny(&shared, &policy, "tls", &format!("TLS to {target}"), Some(&target), &denial);
        return;
    }
    let config = match shared.ca.server_config_for_host(&target.host) {
        Ok(config) => config,
        Err(error) => return tracing::error!(%error, host = %target.host, "cannot mint leaf certificate"),
    };
    let tls = match tokio::time::timeout(timeout, start.into_stream(config)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => return tracing::debug!(side = "downstream", %error, "TLS handshake failed"),
        Err(_) => return tracing::debug!(side = "downstream", "TLS handshake timed out"),
    };
    let svc_shared = shared.clone();
    let svc_target = target.clone();
    let slot = RejectSlot::default();
    let svc_slot = slot.clone();
    let service = service_fn(move |req| {
        let shared = svc_shared.clone();
        let target = svc_target.clone();
        let slot = svc_slot.clone();
        async move {
            Ok::<_, Infallible>(guarded(&shared.clone(), &slot, req, |req| handle(shared, Some(target), req)).await)
        }
    });
    // h2 is admitted by its preface, exactly as hyper-util's protocol sniffing decides.
    let tls = HeadGuard::new(tls, slot, true, shared.limits.header_read_timeout);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_read_timeout)
        .max_buf_size(policy::MAX_HEADER_BYTES + 16 * 1024)
        .max_headers(policy::MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(policy::MAX_HEADER_BYTES).unwrap_or(u32::MAX))
        .max_concurrent_streams(128)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => log_conn_end(result.err().map(|e| e.to_string())),
        () = stopped(ctx.stop) => {
            conn.as_mut().graceful_shutdown();
            log_conn_end(conn.await.err().map(|e| e.to_string()));
        }
    }
}

/// Serves one request that came through a [`HeadGuard`].
///
/// - The guard's synthetic request (it carries [`rawhead::REJECTION_MARKER`]) is answered with the
///   guard's denial (400/431) and the connection is closed; nothing after a refused head is parsed.
/// - An HTTP/1 `CONNECT` or `Upgrade` request answered without switching protocols closes the
///   connection: the guard stops inspecting after such a head (the bytes may be a tunnel), so no
///   further request may follow it on this connection.
async fn guarded<F, Fut>(shared: &Arc<Shared>, slot: &RejectSlot, req: Request<Incoming>, serve: F) -> Response<Body>
where
    F: FnOnce(Request<Incoming>) -> Fut,
    Fut: Future<Output = Response<Body>>,
{
    let h1 = req.version() <= Version::HTTP_11;
    let close = |response: &mut Response<Body>| {
        if h1 {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    };
    if req.headers().contains_key(rawhead::REJECTION_MARKER) {
        let denial = slot.lock().unwrap_or_else(PoisonError::into_inner).take().unwrap_or_else(|| {
            Denial::malformed("egress.smuggling.marker", "request carries the proxy's internal rejection marker")
        });
        let policy = shared.policy();
        let mut response = deny(shared, &policy, "request", "request head", None, &denial);
        close(&mut response);
        return response;
    }
    let connect = req.method() == Method::CONNECT;
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let mut response = serve(req).await;
    let status = response.status();
    let switched = status == StatusCode::SWITCHING_PROTOCOLS || (connect && status.is_success());
    if (connect || upgrade) && !switched {
        close(&mut response);
    }
    response
}

/// A refusal on its way to the agent, with what the audit line needs.
struct Blocked {
    denial: Denial,
    findings: Vec<FindingSummary>,
}

impl From<Denial> for Blocked {
    fn from(denial: Denial) -> Self {
        Self { denial, findings: Vec::new() }
    }
}

/// Audit context accumulated along the pipeline.
struct RequestLog {
    started: Instant,
    target: Option<Target>,
    method: String,
    path: String,
    what: String,
    findings: Vec<FindingSummary>,
    warn_rule: Option<String>,
    request_headers: Option<Vec<(String, String)>>,
}

/// Serves one request, either inside a bumped tunnel to `tunnel` or as a plain absolute-URI request.
async fn handle(shared: Arc<Shared>, tunnel: Option<Target>, req: Request<Incoming>) -> Response<Body> {
    // The table is read once: a reload during this request does not change its decision.
    let policy = shared.policy();
    let scrubber = policy.dlp.log_scrubber().clone();
    let path = outbound::scrub(&scrubber, req.uri().path(), &Location::Path);
    let mut log = RequestLog {
        started: Instant::now(),
        target: None,
        method: req.method().as_str().to_owned(),
        what: format!("{} {}", req.method(), policy::printable(&path)),
        path,
        findings: Vec::new(),
        warn_rule: None,
        request_headers: None,
    };
    match pipeline(&shared, &policy, tunnel, req, &mut log).await {
        Ok(response) => {
            let decision = if log.warn_rule.is_some() { Decision::Warn } else { Decision::Allow };
            let mut event = request_event(&log, decision, response.status());
            event.rule = log.warn_rule.clone();
            event.findings = std::mem::take(&mut log.findings);
            if shared.log_level >= LogLevel::Full {
                event.request_headers = log.request_headers.take();
                event.response_headers = Some(scrub_headers(&scrubber, response.headers(), &[]));
            }
            shared.audit(&policy, event);
            response
        }
        Err(blocked) => {
            let mut event = request_event(&log, Decision::Deny, blocked.denial.status);
            event.rule = Some(blocked.denial.rule.to_owned());
            event.side = Some(blocked.denial.side.as_str());
            event.reason = Some(outbound::scrub(&scrubber, &blocked.denial.reason, &Location::Other("reason".into())));
            event.findings = blocked.findings;
            shared.audit(&policy, event);
            plain_denial(&blocked.denial, &log.what)
        }
    }
}

fn request_event(log: &RequestLog, decision: Decision, status: StatusCode) -> AuditEvent {
    AuditEvent {
        host: log.target.as_ref().map(|t| t.host.clone()),
        port: log.target.as_ref().map(|t| t.port),
        method: Some(log.method.clone()),
        path: Some(log.path.clone()),
        status: Some(status.as_u16()),
        elapsed_ms: Some(u64::try_from(log.started.elapsed().as_millis()).unwrap_or(u64::MAX)),
        ..AuditEvent::new("request", decision)
    }
}

async fn pipeline(
    shared: &Arc<Shared>,
    policy: &PolicyState,
    tunnel: Option<Target>,
    mut req: Request<Incoming>,
    log: &mut RequestLog,
) -> Result<Response<Body>, Blocked> {
    // 1. Target: inside a tunnel the request must name the tunnel's host (no fronting).
    let target = match &tunnel {
        Some(tunnel) => {
            let uri_authority = req.uri().authority().map(|a| a.as_str().to_owned());
            let host_header = match req.headers().get_all(header::HOST).iter().count() {
                0 => None,
                1 => req.headers().get(header::HOST).map(|h| h.to_str().unwrap_or("\u{0}").to_owned()),
                _ => {
                    return Err(
                        Denial::malformed("egress.smuggling.duplicate-host", "more than one Host header").into()
                    );
                }
            };
            let mut target = None;
            for authority in [&uri_authority, &host_header].into_iter().flatten() {
                target = Some(policy::check_inner_authority(tunnel, Some(authority))?);
            }
            target.ok_or_else(|| Denial::malformed("egress.missing-host", "request has no Host or :authority"))?
        }
        None => {
            let authority = req.uri().authority().map(|a| a.as_str().to_owned()).unwrap_or_default();
            policy::parse_authority(&authority, Scheme::Http)?
        }
    };
    log.what =
        format!("{} {}://{}{}", log.method, target.scheme.as_str(), target.authority(), policy::printable(&log.path));
    log.target = Some(target.clone());
    if target.host == INTROSPECTION_HOST {
        return Ok(introspect(shared, &req));
    }

    // 2. Shape, route, matches.
    policy::check_request_shape(req.headers())?;
    let route = policy.routes.lookup(&target)?;
    policy::check_matches(route, req.method(), req.uri().path(), req.headers())?;
    if target.scheme == Scheme::Http && route.config.auth.is_some() {
        return Err(Denial::policy(
            "egress.cleartext-credential",
            "this route injects a credential; use https so it is not sent in clear text",
        )
        .into());
    }
    let upgrade = ws::is_websocket_upgrade(&req);
    if req.headers().contains_key(header::UPGRADE) && !upgrade {
        return Err(Denial::policy("egress.upgrade", "only WebSocket upgrades are proxied").into());
    }
    let agent_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

    // 3. Outbound DLP over the head (before the real credential is in it).
    let (mut parts, incoming) = req.into_parts();
    let upgrade_headers = upgrade.then(|| ws::upgrade_headers(&parts.headers));
    policy::strip_hop_by_hop(&mut parts.headers);
    let dlp = &route.config.dlp;
    let engine = policy.dlp.for_detectors(&dlp.outbound_detectors);
    let query = parts.uri.query().map(str::to_owned);
    let mut findings: Vec<Finding> = match engine {
        Some(engine) => {
            outbound::scan_head(engine, route, &target.host, parts.uri.path(), query.as_deref(), &parts.headers)
        }
        None => Vec::new(),
    };
    // CR/LF/NUL in a header is structural whatever the route's detectors say.
    for (name, value) in &parts.headers {
        findings.extend(bottle_dlp::validate_header(name.as_str().as_bytes(), value.as_bytes()));
    }

    // 4. The body: buffered and scanned whole when small, streamed with a hold-back window when not.
    let verdict: Verdict = Arc::new(Mutex::new(None));
    let mut buffered: Option<Bytes> = None;
    let mut streamed: Option<ScannedBody> = None;
    let mut passthrough: Option<Incoming> = None;
    if incoming.is_end_stream() {
        // No body.
    } else if let Some(engine) = engine {
        if let Some(encoding) = parts.headers.get(header::CONTENT_ENCODING)
            && !encoding.as_bytes().eq_ignore_ascii_case(b"identity")
        {
            return Err(Denial::policy(
                "egress.dlp.encoded-body",
                "compressed request bodies cannot be scanned; send them uncompressed",
            )
            .into());
        }
        match read_prefix(incoming, shared.limits.max_buffered_body).await? {
            Prefix::Complete(bytes) => {
                findings.extend(engine.scan(&bytes, &Location::Body));
                buffered = Some(bytes);
            }
            Prefix::Partial(chunks, rest) => {
                let size_hint = rest.size_hint();
                let hold_back = engine.carry_capacity().saturating_mul(4).max(4096);
                streamed = Some(ScannedBody::new(
                    chunks,
                    rest,
                    engine.stream(Location::Body),
                    hold_back,
                    verdict.clone(),
                    size_hint,
                ));
            }
        }
    } else {
        passthrough = Some(incoming);
    }

    // 5. Apply `outbound_on_match` to what was found so far.
    if !findings.is_empty() {
        let summaries: Vec<FindingSummary> = findings.iter().map(FindingSummary::from_finding).collect();
        let blocked = |rule: &'static str, reason: String| Blocked {
            denial: Denial::policy(rule, reason),
            findings: summaries.clone(),
        };
        let first = &summaries[0];
        let found = format!("`{}` in {}", first.rule, first.location);
        if summaries.iter().any(|s| s.structural) {
            return Err(blocked("dlp.structural", format!("request is malformed: {found}")));
        }
        match dlp.outbound_on_match {
            OnMatch::Block => return Err(blocked("dlp.block", format!("request contains a secret: {found}"))),
            OnMatch::Redact => {
                let Some(engine) = engine else {
                    return Err(blocked("dlp.block", format!("request contains a secret: {found}")));
                };
                redact_request(engine, &findings, &mut parts, &mut buffered)
                    .map_err(|reason| blocked("dlp.redact-residue", reason))?;
                log.warn_rule = Some("dlp.redacted".into());
            }
            OnMatch::Supervise => {
                let scanned = outbound::ScannedRequest {
                    route,
                    host: &target.host,
                    path: parts.uri.path(),
                    query: query.as_deref(),
                    headers: &parts.headers,
                    body: buffered.as_deref(),
                };
                let keys = outbound::session_keys(&shared.session_salt, &findings, &scanned);
                if keys.as_deref().is_some_and(|keys| shared.session_allowed(keys)) {
                    log.warn_rule = Some("dlp.session-allowed".into());
                } else {
                    supervise(shared, &target, log, &summaries, keys).await.map_err(|reason| {
                        blocked(
                            "dlp.supervise-denied",
                            format!("request contains a secret ({found}); the operator denied it: {reason}"),
                        )
                    })?;
                }
            }
        }
        log.findings = summaries;
    }

    // 6. Credentials, then the upstream request.
    let injected = policy::rewrite_credentials(route, &mut parts.headers, &policy.secrets)?;
    let inbound_on = dlp.inbound_detectors.contains(&InboundDetector::NaiveInjectionDetection);
    if inbound_on {
        // Ask for plain bytes so the inbound scan sees text, not gzip.
        parts.headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    }
    if let Some(extra) = upgrade_headers {
        // No compression extension: frames must stay scannable plain bytes.
        parts.headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
        parts.headers.extend(extra);
    }
    if shared.log_level >= LogLevel::Full {
        log.request_headers = Some(scrub_headers(policy.dlp.log_scrubber(), &parts.headers, &injected.headers));
    }
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri: Uri = format!("{}://{}{}", target.scheme.as_str(), target.authority(), path_and_query)
        .parse()
        .map_err(|_| Denial::malformed("egress.bad-target", "cannot build the upstream URI"))?;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let out_body = if let Some(bytes) = buffered {
        parts.headers.remove(header::CONTENT_LENGTH);
        body::full(bytes)
    } else if let Some(scanned) = streamed {
        scanned.boxed()
    } else if let Some(incoming) = passthrough {
        body::incoming(incoming)
    } else {
        body::empty()
    };
    let up_req = Request::from_parts(parts, out_body);
    let client = if upgrade { &shared.h1_client } else { &shared.client };
    let response = match client.request(up_req).await {
        Ok(response) => response,
        Err(error) => {
            if let Some(findings) = verdict.lock().unwrap_or_else(PoisonError::into_inner).take() {
                let first = findings.first().map(|f| format!("`{}` in {}", f.rule, f.location)).unwrap_or_default();
                return Err(Blocked {
                    denial: Denial::policy(
                        "dlp.stream-block",
                        format!("request body contains a secret: {first}; upload aborted"),
                    ),
                    findings,
                });
            }
            return Err(upstream_failure(&target, &error).into());
        }
    };

    // 7. The response: WebSocket splice, or inbound scan.
    if let Some(agent_upgrade) = agent_upgrade {
        return Ok(ws::finish_upgrade(shared.clone(), engine.cloned(), target.clone(), agent_upgrade, response));
    }
    let (mut rparts, rbody) = response.into_parts();
    policy::strip_hop_by_hop(&mut rparts.headers);
    let content_type = rparts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let scan_inbound = inbound_on && inbound::is_text_content_type(content_type.as_deref());
    if !scan_inbound {
        return Ok(Response::from_parts(rparts, body::incoming(rbody)));
    }
    if rparts.headers.get(header::CONTENT_ENCODING).is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity")) {
        rparts.headers.insert(WARNING_HEADER, HeaderValue::from_static("response is compressed and was not scanned"));
        log.warn_rule = Some("inbound.not-scanned".into());
        return Ok(Response::from_parts(rparts, body::incoming(rbody)));
    }
    let small = rbody.size_hint().exact().is_some_and(|n| n <= shared.limits.max_inbound_scan as u64);
    let event_stream = content_type.as_deref().is_some_and(|ct| ct.starts_with("text/event-stream"));
    if small && !event_stream {
        let bytes = http_body_util::Limited::new(rbody, shared.limits.max_inbound_scan)
            .collect()
            .await
            .map_err(|e| upstream_failure(&target, &*e))?
            .to_bytes();
        let report = inbound::scan(&bytes);
        match report.verdict {
            InjectionVerdict::High => {
                return Err(Denial::policy(
                    "inbound.prompt-injection",
                    format!("the response looks like a prompt injection (markers: {})", report.markers.join(", ")),
                )
                .into());
            }
            InjectionVerdict::Medium => {
                let text = format!("possible prompt injection in response (markers: {})", report.markers.join(", "));
                if let Ok(value) = HeaderValue::try_from(text) {
                    rparts.headers.insert(WARNING_HEADER, value);
                }
                log.warn_rule = Some("inbound.prompt-injection-suspected".into());
            }
            InjectionVerdict::Clean => {}
        }
        return Ok(Response::from_parts(rparts, body::full(bytes)));
    }
    let (audit_shared, audit_target, audit_path) = (shared.clone(), target.clone(), log.path.clone());
    let report: body::OnInjection = Box::new(move |verdict, markers| {
        let high = verdict == InjectionVerdict::High;
        let policy = audit_shared.policy();
        audit_shared.audit(
            &policy,
            AuditEvent {
                rule: Some(if high { "inbound.prompt-injection" } else { "inbound.prompt-injection-suspected" }.into()),
                side: Some(Side::Policy.as_str()),
                reason: Some(format!(
                    "streamed response {} (markers: {})",
                    if high { "cut" } else { "forwarded with a suspected injection" },
                    markers.join(", ")
                )),
                host: Some(audit_target.host.clone()),
                port: Some(audit_target.port),
                path: Some(audit_path),
                ..AuditEvent::new("response", if high { Decision::Deny } else { Decision::Warn })
            },
        );
    });
    let scanned = InboundScanBody::new(body::incoming(rbody), report);
    Ok(Response::from_parts(rparts, scanned.boxed()))
}

/// Files a `egress-token-allow` proposal for a held request and waits for the operator (bounded by
/// `token_allow_timeout_secs`). `Err` carries the operator's reason for a denial.
async fn supervise(
    shared: &Shared,
    target: &Target,
    log: &mut RequestLog,
    summaries: &[FindingSummary],
    keys: Option<Vec<[u8; 32]>>,
) -> Result<(), String> {
    let proposal = Proposal {
        kind: "egress-token-allow",
        host: target.host.clone(),
        port: target.port,
        method: log.method.clone(),
        path: log.path.clone(),
        findings: summaries.to_vec(),
    };
    let decision = tokio::time::timeout(shared.token_allow_timeout, shared.proposals.propose(proposal))
        .await
        .unwrap_or(ProposalDecision::Deny { reason: "the operator did not answer in time".into() });
    match decision {
        ProposalDecision::Approve => log.warn_rule = Some("dlp.supervise-approved".into()),
        ProposalDecision::ApproveSession => {
            // Without keys (a value that cannot be located) the approval holds for this request only.
            if let Some(keys) = keys {
                shared.allow_for_session(keys);
            }
            log.warn_rule = Some("dlp.supervise-approved-session".into());
        }
        ProposalDecision::Deny { reason } => return Err(policy::printable(&reason)),
    }
    Ok(())
}

/// Header added to responses the proxy forwards with a warning.
const WARNING_HEADER: HeaderName = HeaderName::from_static("x-bot-bottle-warning");

enum Prefix {
    Complete(Bytes),
    Partial(Vec<Bytes>, Incoming),
}

/// Reads up to `limit` bytes of a request body.
async fn read_prefix(mut incoming: Incoming, limit: usize) -> Result<Prefix, Blocked> {
    let mut chunks = Vec::new();
    let mut total = 0_usize;
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| {
            Denial::malformed(
                "egress.body-read",
                format!("cannot read the request body: {}", policy::printable(&e.to_string())),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            total += data.len();
            chunks.push(data);
            if total > limit {
                return Ok(Prefix::Partial(chunks, incoming));
            }
        }
    }
    let mut all = bytes::BytesMut::with_capacity(total);
    for chunk in chunks {
        all.extend_from_slice(&chunk);
    }
    Ok(Prefix::Complete(all.freeze()))
}

/// Redacts path, query, headers and body in place; errors when anything cannot be made clean.
fn redact_request(
    engine: &Engine,
    findings: &[Finding],
    parts: &mut Parts,
    body: &mut Option<Bytes>,
) -> Result<(), String> {
    if findings.iter().any(|f| f.location == Location::Host) {
        return Err("the host name itself contains a secret and cannot be redacted".into());
    }
    let mut path = parts.uri.path().to_owned();
    let mut query = parts.uri.query().map(str::to_owned);
    if findings.iter().any(|f| f.location == Location::Path) {
        path = redact_uri_part(engine, &path, &Location::Path)?;
    }
    if let Some(q) = &query
        && findings.iter().any(|f| f.location == Location::Query)
    {
        query = Some(redact_uri_part(engine, q, &Location::Query)?);
    }
    let names: Vec<HeaderName> = parts.headers.keys().cloned().collect();
    for name in names {
        let location = Location::header(name.as_str());
        if !findings.iter().any(|f| f.location == location) {
            continue;
        }
        let values: Vec<HeaderValue> = parts.headers.get_all(&name).iter().cloned().collect();
        parts.headers.remove(&name);
        for value in values {
            let redaction = engine.redact(value.as_bytes(), &location);
            if redaction.residue {
                return Err(format!("header `{name}` still contains a secret after redaction"));
            }
            let value = HeaderValue::from_bytes(&redaction.output)
                .map_err(|_| format!("header `{name}` cannot be redacted"))?;
            parts.headers.append(name.clone(), value);
        }
    }
    if let Some(bytes) = body.as_ref()
        && findings.iter().any(|f| f.location == Location::Body)
    {
        let redaction = engine.redact(bytes, &Location::Body);
        if redaction.residue {
            return Err("the body still contains a secret after redaction".into());
        }
        *body = Some(Bytes::from(redaction.output));
    }
    let pq = match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut uri = parts.uri.clone().into_parts();
    uri.path_and_query = Some(pq.parse().map_err(|_| "the redacted path is not a valid URI".to_owned())?);
    parts.uri = Uri::from_parts(uri).map_err(|_| "the redacted path is not a valid URI".to_owned())?;
    Ok(())
}

/// Redacts a path or query and percent-encodes the non-ASCII redaction marker so the URI stays valid.
fn redact_uri_part(engine: &Engine, text: &str, location: &Location) -> Result<String, String> {
    let redaction = engine.redact(text.as_bytes(), location);
    if redaction.residue {
        return Err(format!("the {location} still contains a secret after redaction"));
    }
    let mut out = String::with_capacity(redaction.output.len());
    for &b in &redaction.output {
        if b.is_ascii_graphic() && b != b'#' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

fn upstream_failure(target: &Target, error: &(dyn std::error::Error + 'static)) -> Denial {
    let mut chain = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        chain.push(e.to_string());
        source = e.source();
    }
    Denial {
        rule: "egress.upstream",
        reason: format!("cannot reach `{}`: {}", target.authority(), policy::printable(&chain.join(": "))),
        side: Side::Upstream,
        status: StatusCode::BAD_GATEWAY,
    }
}

/// Level-2 header dump: injected credentials become `«injected»`, everything else is scrubbed.
fn scrub_headers(engine: &Engine, headers: &HeaderMap, injected: &[HeaderName]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let shown = if injected.contains(name) || value.is_sensitive() {
                "«injected»".to_owned()
            } else {
                outbound::scrub(engine, &String::from_utf8_lossy(value.as_bytes()), &Location::header(name.as_str()))
            };
            (name.as_str().to_owned(), shown)
        })
        .collect()
}

/// Writes the audit line for a denial outside the request pipeline and builds the response.
fn deny(
    shared: &Shared,
    policy: &PolicyState,
    event: &'static str,
    what: &str,
    target: Option<&Target>,
    denial: &Denial,
) -> Response<Body> {
    shared.audit(
        policy,
        AuditEvent {
            rule: Some(denial.rule.to_owned()),
            side: Some(denial.side.as_str()),
            reason: Some(outbound::scrub(policy.dlp.log_scrubber(), &denial.reason, &Location::Other("reason".into()))),
            host: target.map(|t| t.host.clone()),
            port: target.map(|t| t.port),
            status: Some(denial.status.as_u16()),
            ..AuditEvent::new(event, Decision::Deny)
        },
    );
    plain_denial(denial, what)
}

/// The 403/400/502 response with the explanatory plain-text body.
pub(crate) fn plain_denial(denial: &Denial, what: &str) -> Response<Body> {
    let mut response = Response::new(body::full(denial.body(what)));
    *response.status_mut() = denial.status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    if let Ok(rule) = HeaderValue::from_str(denial.rule) {
        headers.insert(HeaderName::from_static("x-bot-bottle-rule"), rule);
    }
    response
}

/// `_egress.local`: `GET /allowlist` (routes without secrets) and `GET /health`.
fn introspect<B>(shared: &Shared, req: &Request<B>) -> Response<Body> {
    let policy = shared.policy();
    let json = |value: serde_json::Value| {
        let mut response = Response::new(body::full(value.to_string()));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    };
    if req.method() != Method::GET {
        return plain_denial(&Denial::malformed("egress.introspection", "only GET is supported"), "request");
    }
    match req.uri().path() {
        "/allowlist" => {
            let routes: Vec<&RouteConfig> = policy.routes.routes().iter().map(|r: &Route| &r.config).collect();
            json(serde_json::json!({ "routes": routes }))
        }
        "/health" => json(serde_json::json!({ "status": "ok", "routes": policy.routes.routes().len() })),
        _ => {
            let mut response = plain_denial(
                &Denial {
                    status: StatusCode::NOT_FOUND,
                    ..Denial::malformed("egress.introspection", "unknown path; try /allowlist or /health")
                },
                "request",
            );
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    }
}

/// Hooks for the WebSocket module, which needs the audit log.
pub(crate) fn audit_ws_block(shared: &Shared, target: &Target, findings: Vec<FindingSummary>) {
    let policy = shared.policy();
    shared.audit(
        &policy,
        AuditEvent {
            rule: Some("dlp.websocket-block".into()),
            side: Some(Side::Policy.as_str()),
            host: Some(target.host.clone()),
            port: Some(target.port),
            findings,
            ..AuditEvent::new("websocket", Decision::Deny)
        },
    );
}
