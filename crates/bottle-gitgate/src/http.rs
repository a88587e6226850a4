//! Git's smart HTTP protocol in front of the mirrors, and the accept loops.
//!
//! `GET /<name>.git/info/refs?service=…` refreshes the mirror from the upstream, then answers git's
//! ref advertisement; `POST /<name>.git/git-upload-pack` and `…/git-receive-pack` run git with
//! `--stateless-rpc`, the request body (gzip decoded, size capped) on stdin and stdout streamed back.
//! `Git-Protocol` is passed through as `GIT_PROTOCOL`, so protocol v2 works. Every error is a
//! `text/plain` body, which git shows the user line by line.

use std::convert::Infallible;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bottle_egress::EgressListener;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use http_body_util::combinators::BoxBody;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

use crate::Shared;
use crate::hook::PUSH_ID_ENV;
use crate::repo::Repo;

/// Any error a body can fail with.
type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response.
type Body = BoxBody<Bytes, BoxError>;

/// A v2 `ls-refs`/`fetch` is served without another refresh if one succeeded this recently (the
/// client's `GET info/refs` a moment before refreshed the mirror).
const V2_FRESH_WINDOW: Duration = Duration::from_secs(5);
/// Longest a client may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The two git services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    UploadPack,
    ReceivePack,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Self::UploadPack => "upload-pack",
            Self::ReceivePack => "receive-pack",
        }
    }

    fn from_query(query: &str) -> Option<Self> {
        query.split('&').find_map(|pair| match pair {
            "service=git-upload-pack" => Some(Self::UploadPack),
            "service=git-receive-pack" => Some(Self::ReceivePack),
            _ => None,
        })
    }
}

/// What a URL asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    InfoRefs,
    Rpc(Service),
}

/// Splits `/<name>.git/<endpoint>` (the `.git` is optional).
fn route(path: &str) -> Option<(&str, Endpoint)> {
    let path = path.strip_prefix('/')?;
    let (repo, endpoint) = if let Some(repo) = path.strip_suffix("/info/refs") {
        (repo, Endpoint::InfoRefs)
    } else if let Some(repo) = path.strip_suffix("/git-upload-pack") {
        (repo, Endpoint::Rpc(Service::UploadPack))
    } else if let Some(repo) = path.strip_suffix("/git-receive-pack") {
        (repo, Endpoint::Rpc(Service::ReceivePack))
    } else {
        return None;
    };
    let name = repo.strip_suffix(".git").unwrap_or(repo);
    (!name.is_empty() && !name.contains('/')).then_some((name, endpoint))
}

/// Serves HTTP connections and hook connections until `shutdown`; then keeps accepting hook
/// connections (pushes in flight need them) while HTTP connections drain, for at most `grace`.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: EgressListener,
    hooks: tokio::net::UnixListener,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    tracing::info!(repos = shared.repos.len(), "git gate serving");
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener) => match accepted {
                Ok(Accepted::Tcp(stream)) => {
                    let _ = stream.set_nodelay(true);
                    serve_connection(&shared, &graceful, stream);
                }
                Ok(Accepted::Unix(stream)) => serve_connection(&shared, &graceful, stream),
                Err(error) => {
                    tracing::warn!(%error, "git gate: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            accepted = hooks.accept() => accept_hook(&shared, accepted).await,
        }
    }
    drop(listener);
    let drain = graceful.shutdown();
    tokio::pin!(drain);
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut drain => break,
            () = &mut deadline => break,
            accepted = hooks.accept() => accept_hook(&shared, accepted).await,
        }
    }
    tracing::info!("git gate stopped");
}

async fn accept_hook(
    shared: &Arc<Shared>,
    accepted: std::io::Result<(tokio::net::UnixStream, tokio::net::unix::SocketAddr)>,
) {
    match accepted {
        Ok((stream, _)) => {
            tokio::spawn(crate::push::serve_hook_connection(Arc::clone(shared), stream));
        }
        Err(error) => {
            tracing::warn!(%error, "git gate: hook accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
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

fn serve_connection<S>(shared: &Arc<Shared>, graceful: &GracefulShutdown, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let shared = Arc::clone(shared);
    let service = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(shared, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let watched = graceful.watch(connection);
    tokio::spawn(async move {
        if let Err(error) = watched.await {
            tracing::debug!(%error, "git gate: connection ended with an error");
        }
    });
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let Some((name, endpoint)) = route(req.uri().path()) else {
        return text(
            StatusCode::NOT_FOUND,
            "git-gate: not a repository URL\nhint: repositories are served as http://<gate>/<name>.git",
        );
    };
    let Some(repo) = shared.repos.get(name).cloned() else {
        let known: Vec<&str> = shared.repos.keys().map(String::as_str).collect();
        let shown: String = name.chars().filter(|c| !c.is_control()).take(100).collect();
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "git-gate: no repository `{shown}` behind this gate\nhint: this bottle's repositories are: {}",
                if known.is_empty() { "(none)".to_owned() } else { known.join(", ") }
            ),
        );
    };
    let protocol = git_protocol(&req);
    match (req.method(), endpoint) {
        (&Method::GET, Endpoint::InfoRefs) => {
            let Some(service) = req.uri().query().and_then(Service::from_query) else {
                return text(
                    StatusCode::FORBIDDEN,
                    "git-gate: only git's smart HTTP protocol is served (the request named no `service`)",
                );
            };
            info_refs(&shared, &repo, service, protocol.as_deref()).await
        }
        (&Method::POST, Endpoint::Rpc(service)) => {
            let expected = format!("application/x-git-{}-request", service.name());
            if req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
                return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("git-gate: expected a `{expected}` body"));
            }
            match service {
                Service::UploadPack => upload_pack(&shared, &repo, req, protocol).await,
                Service::ReceivePack => receive_pack(&shared, &repo, req, protocol).await,
            }
        }
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "git-gate: method not allowed for this URL"),
    }
}

/// The `Git-Protocol` header, if it is plain (`version=2`, `key=value:key=value`).
fn git_protocol<B>(req: &Request<B>) -> Option<String> {
    let value = req.headers().get("git-protocol")?.to_str().ok()?;
    let plain = value.len() <= 256 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b":=._-".contains(&b));
    plain.then(|| value.to_owned())
}

/// A `git` command for `repo` with the client's protocol.
fn git_command(shared: &Shared, protocol: Option<&str>) -> tokio::process::Command {
    let mut env = shared.env.clone();
    if let Some(protocol) = protocol {
        env.set("GIT_PROTOCOL", protocol);
    }
    env.tokio_git()
}

fn timeout_of(shared: &Shared) -> Duration {
    Duration::from_secs(shared.limits.git_timeout_secs)
}

async fn info_refs(shared: &Shared, repo: &Arc<Repo>, service: Service, protocol: Option<&str>) -> Response<Body> {
    if !repo.is_pinned() {
        audit_refusal(shared, repo, service, "policy", "git.unpinned-host-key", "no pinned upstream host key");
        return text(StatusCode::FORBIDDEN, repo.unpinned_message());
    }
    // Fetches always see the upstream as it is now; a push only needs a mirror that is not too old
    // (see `GateLimits::push_refresh_secs`).
    let push_window = Duration::from_secs(shared.limits.push_refresh_secs);
    let refresh = service == Service::UploadPack || !repo.fresh_within(push_window);
    if refresh && let Err(message) = repo.refresh(&shared.env, timeout_of(shared)).await {
        audit_refusal(shared, repo, service, "upstream", "git.upstream-unreachable", &message);
        return text(StatusCode::BAD_GATEWAY, &*message);
    }
    let mut cmd = git_command(shared, protocol);
    cmd.args([service.name(), "--stateless-rpc", "--advertise-refs"]).arg(&repo.git_dir);
    let out = match crate::git::run_async(cmd, service.name(), timeout_of(shared)).await {
        Ok(out) if out.success => out,
        Ok(out) => return internal(repo, service, &out.stderr),
        Err(error) => return internal(repo, service, &error.to_string()),
    };
    let mut body = Vec::with_capacity(out.stdout.len() + 64);
    // Protocol v2 starts with its own capability advertisement and takes no service line.
    if !out.stdout.starts_with(b"000eversion 2\n") {
        body.extend_from_slice(&pkt_line(format!("# service=git-{}\n", service.name()).as_bytes()));
        body.extend_from_slice(b"0000");
    }
    body.extend_from_slice(&out.stdout);
    git_response(&format!("application/x-git-{}-advertisement", service.name()), full(body))
}

/// One audit line for a fetch or push the gate refused before git ran (accepted fetches are not
/// logged; push decisions are logged by the hook).
fn audit_refusal(shared: &Shared, repo: &Repo, service: Service, side: &'static str, rule: &str, reason: &str) {
    tracing::warn!(repo = %repo.name, service = service.name(), rule, "request refused");
    let Some(log) = &shared.audit else { return };
    let event = match service {
        Service::UploadPack => "git-fetch",
        Service::ReceivePack => "git-push",
    };
    let event = bottle_egress::audit::AuditEvent {
        rule: Some(rule.to_owned()),
        side: Some(side),
        reason: Some(crate::push::scrub(shared, &repo.scrub(reason.lines().next().unwrap_or_default()))),
        repo: Some(repo.name.clone()),
        ..bottle_egress::audit::AuditEvent::new(event, bottle_egress::audit::Decision::Deny)
    };
    if let Err(error) = log.append(&event) {
        tracing::warn!(%error, "cannot write the audit log");
    }
}

fn internal(repo: &Repo, service: Service, detail: &str) -> Response<Body> {
    tracing::warn!(repo = %repo.name, service = service.name(), detail = %repo.scrub(detail), "git failed");
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("git-gate: `git {}` failed on the mirror of `{}`: {}", service.name(), repo.name, repo.scrub(detail)),
    )
}

async fn upload_pack(
    shared: &Shared,
    repo: &Arc<Repo>,
    req: Request<Incoming>,
    protocol: Option<String>,
) -> Response<Body> {
    if !repo.is_pinned() {
        return text(StatusCode::FORBIDDEN, repo.unpinned_message());
    }
    let body = match read_body(shared, req).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let v2 = protocol.as_deref().is_some_and(|p| p.split(':').any(|kv| kv == "version=2"));
    if v2
        && matches!(v2_command(&body), Some("ls-refs" | "fetch"))
        && !repo.fresh_within(V2_FRESH_WINDOW)
        && let Err(message) = repo.refresh(&shared.env, timeout_of(shared)).await
    {
        return text(StatusCode::BAD_GATEWAY, &*message);
    }
    let mut cmd = git_command(shared, protocol.as_deref());
    cmd.args(["upload-pack", "--stateless-rpc"]).arg(&repo.git_dir);
    match run_streaming(cmd, Input::Buffered(body), timeout_of(shared), repo, ()) {
        Ok(body) => git_response("application/x-git-upload-pack-result", body),
        Err(error) => internal(repo, Service::UploadPack, &error.to_string()),
    }
}

async fn receive_pack(
    shared: &Arc<Shared>,
    repo: &Arc<Repo>,
    req: Request<Incoming>,
    protocol: Option<String>,
) -> Response<Body> {
    if !repo.is_pinned() {
        return text(StatusCode::FORBIDDEN, repo.unpinned_message());
    }
    if let Some(response) = check_length(shared, &req) {
        return response;
    }
    let gzip = is_gzip(&req);
    // One push (or refresh) at a time per mirror, for the whole receive-pack including its hook.
    let guard = Arc::clone(&repo.op_lock).lock_owned().await;
    let ticket = shared.pushes.register(Arc::clone(repo));
    let mut cmd = git_command(shared, protocol.as_deref());
    cmd.env(PUSH_ID_ENV, &ticket.id).args(["receive-pack", "--stateless-rpc"]).arg(&repo.git_dir);
    let limits = &shared.limits;
    // The hook waits for the scan, the operator and the upstream push.
    let timeout =
        Duration::from_secs(limits.git_timeout_secs.saturating_mul(3).saturating_add(limits.proposal_timeout_secs));
    let input = Input::Streaming { body: req.into_body(), gzip, cap: limits.max_request_bytes };
    match run_streaming(cmd, input, timeout, repo, (guard, ticket)) {
        Ok(body) => git_response("application/x-git-receive-pack-result", body),
        Err(error) => internal(repo, Service::ReceivePack, &error.to_string()),
    }
}

/// The command of a v2 request: the first pkt-line `command=<name>`.
fn v2_command(body: &[u8]) -> Option<&str> {
    let len = usize::from_str_radix(std::str::from_utf8(body.get(..4)?).ok()?, 16).ok()?;
    let line = body.get(4..len)?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\n');
    line.strip_prefix("command=")
}

fn pkt_line(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{:04x}", payload.len() + 4).into_bytes();
    out.extend_from_slice(payload);
    out
}

fn is_gzip<B>(req: &Request<B>) -> bool {
    req.headers().get(CONTENT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        let v = v.trim();
        v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip")
    })
}

fn too_large(cap: u64) -> Response<Body> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("git-gate: the request is larger than the gate's limit of {} MiB", cap >> 20),
    )
}

fn check_length<B>(shared: &Shared, req: &Request<B>) -> Option<Response<Body>> {
    let cap = shared.limits.max_request_bytes;
    let length = req.headers().get(CONTENT_LENGTH)?.to_str().ok()?.parse::<u64>().ok()?;
    (length > cap).then(|| too_large(cap))
}

/// Reads a whole (upload-pack) request body, gzip decoded, within the size cap.
async fn read_body(shared: &Shared, req: Request<Incoming>) -> Result<Vec<u8>, Box<Response<Body>>> {
    if let Some(response) = check_length(shared, &req) {
        return Err(Box::new(response));
    }
    let cap = shared.limits.max_request_bytes;
    let mut decoder = Decoder::new(is_gzip(&req), cap);
    let mut body = req.into_body();
    let mut out = Vec::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Read)?;
            if let Ok(data) = frame.into_data() {
                out.extend_from_slice(&decoder.push(&data)?);
            }
        }
        out.extend_from_slice(&decoder.finish()?);
        Ok::<_, BodyError>(())
    };
    match tokio::time::timeout(timeout_of(shared), read).await {
        Ok(Ok(())) => Ok(out),
        Ok(Err(error)) => Err(Box::new(body_error(error, cap))),
        Err(_) => Err(Box::new(text(StatusCode::REQUEST_TIMEOUT, "git-gate: the request body took too long"))),
    }
}

fn body_error(error: BodyError, cap: u64) -> Response<Body> {
    match error {
        BodyError::TooLarge => too_large(cap),
        BodyError::Gzip => text(StatusCode::BAD_REQUEST, "git-gate: the gzip request body is corrupt"),
        BodyError::Read => text(StatusCode::BAD_REQUEST, "git-gate: the request body could not be read"),
    }
}

#[derive(Debug, Clone, Copy, thiserror::Error)]
enum BodyError {
    #[error("request body too large")]
    TooLarge,
    #[error("corrupt gzip request body")]
    Gzip,
    #[error("cannot read the request body")]
    Read,
}

/// Decodes (optionally gzip) request bytes and enforces the cap on the decoded size. Input is fed
/// in small pieces so a compression bomb cannot inflate far past the cap in one step.
struct Decoder {
    gzip: Option<flate2::write::GzDecoder<Vec<u8>>>,
    total: u64,
    cap: u64,
}

impl Decoder {
    fn new(gzip: bool, cap: u64) -> Self {
        Self { gzip: gzip.then(|| flate2::write::GzDecoder::new(Vec::new())), total: 0, cap }
    }

    fn count(&mut self, n: usize) -> Result<(), BodyError> {
        self.total = self.total.saturating_add(n as u64);
        if self.total > self.cap { Err(BodyError::TooLarge) } else { Ok(()) }
    }

    fn push(&mut self, data: &[u8]) -> Result<Vec<u8>, BodyError> {
        let Some(gzip) = self.gzip.as_mut() else {
            self.count(data.len())?;
            return Ok(data.to_vec());
        };
        let mut out = Vec::new();
        for piece in data.chunks(1024) {
            gzip.write_all(piece).map_err(|_| BodyError::Gzip)?;
            out.append(gzip.get_mut());
            if self.total.saturating_add(out.len() as u64) > self.cap {
                return Err(BodyError::TooLarge);
            }
        }
        self.count(out.len())?;
        Ok(out)
    }

    fn finish(&mut self) -> Result<Vec<u8>, BodyError> {
        let Some(gzip) = self.gzip.as_mut() else { return Ok(Vec::new()) };
        gzip.try_finish().map_err(|_| BodyError::Gzip)?;
        let out = std::mem::take(gzip.get_mut());
        self.count(out.len())?;
        Ok(out)
    }
}

/// Where a streamed command's stdin comes from.
enum Input {
    Buffered(Vec<u8>),
    Streaming { body: Incoming, gzip: bool, cap: u64 },
}

/// Starts `cmd`, feeds it `input`, and returns its stdout as a streaming body. `keep` (locks, the
/// push ticket) lives until the command has exited. On timeout or a refused input the command is
/// killed and the body ends with an error, which aborts the response.
fn run_streaming<K: Send + 'static>(
    mut cmd: tokio::process::Command,
    input: Input,
    timeout: Duration,
    repo: &Arc<Repo>,
    keep: K,
) -> std::io::Result<Body> {
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    let stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("no stdin"))?;
    let mut stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
    let mut stderr = child.stderr.take().ok_or_else(|| std::io::Error::other("no stderr"))?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, BoxError>>(16);
    let repo = Arc::clone(repo);
    tokio::spawn(async move {
        let _keep = keep;
        let errors = tokio::spawn(async move {
            let mut text = Vec::new();
            let _ = (&mut stderr).take(64 << 10).read_to_end(&mut text).await;
            let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
            String::from_utf8_lossy(&text).trim().to_owned()
        });
        let pump_tx = tx.clone();
        let work = async move {
            let feed = feed_stdin(stdin, input);
            let pump = async {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = stdout.read(&mut buf).await.map_err(|_| BodyError::Read)?;
                    if n == 0 {
                        return Ok::<(), BodyError>(());
                    }
                    if pump_tx.send(Ok(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        // The client went away.
                        return Err(BodyError::Read);
                    }
                }
            };
            tokio::try_join!(feed, pump)?;
            child.wait().await.map_err(|_| BodyError::Read)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(status)) => {
                if !status.success() {
                    let detail = errors.await.unwrap_or_default();
                    tracing::warn!(repo = %repo.name, %status, detail = %repo.scrub(&detail), "git exited unsuccessfully");
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(repo = %repo.name, %error, "git request aborted");
                let _ = tx.send(Err(Box::new(error))).await;
            }
            Err(_) => {
                tracing::warn!(repo = %repo.name, secs = timeout.as_secs(), "git request timed out");
                let _ = tx.send(Err("git-gate: the request timed out".into())).await;
            }
        }
    });
    Ok(ChannelBody { rx }.boxed())
}

async fn feed_stdin(mut stdin: tokio::process::ChildStdin, input: Input) -> Result<(), BodyError> {
    match input {
        Input::Buffered(bytes) => {
            // A command that stops reading early (an error) closes its stdin; that is not ours to report.
            let _ = stdin.write_all(&bytes).await;
        }
        Input::Streaming { mut body, gzip, cap } => {
            let mut decoder = Decoder::new(gzip, cap);
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|_| BodyError::Read)?;
                if let Ok(data) = frame.into_data() {
                    let bytes = decoder.push(&data)?;
                    if stdin.write_all(&bytes).await.is_err() {
                        return Ok(());
                    }
                }
            }
            let rest = decoder.finish()?;
            let _ = stdin.write_all(&rest).await;
        }
    }
    drop(stdin);
    Ok(())
}

/// A response body fed by a channel.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx).map(|item| item.map(|r| r.map(Frame::data)))
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

fn git_response(content_type: &str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(CONTENT_TYPE, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache, max-age=0, must-revalidate"));
    response
}

/// A plain-text error git shows the user (`remote: <line>` per line).
fn text(status: StatusCode, message: impl AsRef<str>) -> Response<Body> {
    let mut body = message.as_ref().to_owned();
    body.push('\n');
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/up.git/info/refs"), Some(("up", Endpoint::InfoRefs)));
        assert_eq!(route("/up/git-upload-pack"), Some(("up", Endpoint::Rpc(Service::UploadPack))));
        assert_eq!(route("/up.git/git-receive-pack"), Some(("up", Endpoint::Rpc(Service::ReceivePack))));
        assert_eq!(route("/a/b.git/info/refs"), None);
        assert_eq!(route("/up.git/HEAD"), None);
        assert_eq!(route("/.git/info/refs"), None);
        assert_eq!(Service::from_query("service=git-upload-pack"), Some(Service::UploadPack));
        assert_eq!(Service::from_query("x=1&service=git-receive-pack"), Some(Service::ReceivePack));
        assert_eq!(Service::from_query("service=git-upload-archive"), None);
    }

    #[test]
    fn pkt_lines() {
        assert_eq!(pkt_line(b"# service=git-upload-pack\n"), b"001e# service=git-upload-pack\n");
        assert_eq!(v2_command(b"0014command=ls-refs\n0001"), Some("ls-refs"));
        assert_eq!(v2_command(b"0012command=fetch\n"), Some("fetch"));
        assert_eq!(v2_command(b"00"), None);
        assert_eq!(v2_command(b"zzzz"), None);
    }

    #[test]
    fn gzip_bodies_are_decoded_and_capped() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&vec![b'a'; 100_000]).unwrap();
        let packed = encoder.finish().unwrap();
        let mut decoder = Decoder::new(true, 200_000);
        let mut out = decoder.push(&packed).unwrap();
        out.extend(decoder.finish().unwrap());
        assert_eq!(out.len(), 100_000);
        let mut small = Decoder::new(true, 10_000);
        assert!(matches!(small.push(&packed), Err(BodyError::TooLarge)));
        let mut plain = Decoder::new(false, 3);
        assert!(matches!(plain.push(b"abcd"), Err(BodyError::TooLarge)));
        let mut corrupt = Decoder::new(true, 1000);
        assert!(corrupt.push(b"not gzip at all").is_err() || corrupt.finish().is_err());
    }
}
