//! The host side of a sidecar's control API: find the running bottles of this home that serve one,
//! and talk to each over HTTP/1.1 on the host's loopback with its bearer token.
//!
//! The API (served by `bottle-supervise` in the sidecar):
//! `GET /v1/proposals`, `GET /v1/proposals/{id}`, `POST /v1/proposals/{id}/decision`,
//! `GET /v1/routes`, `GET /v1/counters`, `GET /v1/health`; every request carries
//! `Authorization: Bearer <token>`. The token lives in `state/<slug>/control-token` (0600) and is
//! never printed.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bottle_backend::BottleStatus;
use bottle_state::Home;

/// The file in a bottle's state directory holding its control token.
pub const TOKEN_FILE: &str = "control-token";
/// Longest a control call may take (a decision returns at once; nothing here waits on a human).
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body accepted.
const MAX_BODY: usize = 16 << 20;

/// One bottle's control API.
#[derive(Clone)]
pub struct Control {
    pub slug: String,
    pub label: Option<String>,
    pub color: Option<String>,
    addr: Endpoint,
    token: String,
}

/// Where a control API listens: the host's loopback (docker publishes it there) or a unix socket in
/// the state directory (smolmachines, where the VM must reach no address that serves it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "{a}"),
            Self::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A connected control stream of either kind.
trait Stream: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> Stream for T {}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").field("slug", &self.slug).field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// A non-2xx answer, with the API's `error` text.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "control API answered {}: {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl Control {
    /// `GET path` → JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.call("GET", path, None)
    }

    /// `POST path` with a JSON body → JSON.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
        self.call("POST", path, Some(body))
    }

    fn call(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> anyhow::Result<serde_json::Value> {
        let unreachable = || format!("bottle `{}`: cannot reach its control API at {}", self.slug, self.addr);
        let mut stream: Box<dyn Stream> = match &self.addr {
            Endpoint::Tcp(addr) => {
                let s = TcpStream::connect_timeout(addr, TIMEOUT).with_context(unreachable)?;
                s.set_read_timeout(Some(TIMEOUT))?;
                s.set_write_timeout(Some(TIMEOUT))?;
                Box::new(s)
            }
            Endpoint::Unix(path) => {
                let s = UnixStream::connect(path).with_context(unreachable)?;
                s.set_read_timeout(Some(TIMEOUT))?;
                s.set_write_timeout(Some(TIMEOUT))?;
                Box::new(s)
            }
        };
        let body = body.map(serde_json::to_vec).transpose()?.unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: bot-bottle-control\r\nAuthorization: Bearer {}\r\n\
             Connection: close\r\nAccept: application/json\r\n",
            self.token
        );
        if method == "POST" {
            request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes())?;
        stream.write_all(&body)?;
        let (status, bytes) = read_response(stream).with_context(|| format!("bottle `{}`: control API", self.slug))?;
        let value: serde_json::Value = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .with_context(|| format!("bottle `{}`: the control API's answer is not JSON", self.slug))?
        };
        if !(200..300).contains(&status) {
            let message = value.get("error").and_then(|e| e.as_str()).unwrap_or("no detail").to_owned();
            return Err(ApiError { status, message }.into());
        }
        Ok(value)
    }
}

/// Reads an HTTP/1.1 response: status and body (Content-Length, chunked, or until close).
fn read_response(stream: impl std::io::Read) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("malformed status line")?;
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("connection closed in the headers");
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().context("bad content-length")?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size =
                usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16).context("bad chunk size")?;
            if size == 0 {
                break;
            }
            if body.len() + size > MAX_BODY {
                bail!("response larger than {MAX_BODY} bytes");
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else if let Some(length) = length {
        if length > MAX_BODY {
            bail!("response larger than {MAX_BODY} bytes");
        }
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.take(MAX_BODY as u64).read_to_end(&mut body)?;
    }
    Ok((status, body))
}

/// Test hook: `SLUG=HOST:PORT:TOKEN[,…]` names the control APIs `running` returns instead of asking
/// the engine, so the supervise view can be driven against a fake API without Docker. Not a user
/// setting; the tokens it carries are never printed.
pub const OVERRIDE_VAR: &str = "BOT_BOTTLE_CONTROL_OVERRIDE";

/// The control APIs of every running bottle of this home that has one, by slug. Bottles that
/// vanish between listing and opening are skipped: they have nothing to decide any more.
pub fn running(home: &Home) -> anyhow::Result<Vec<Control>> {
    if let Some(spec) = std::env::var_os(OVERRIDE_VAR) {
        return overridden(home, &spec.to_string_lossy());
    }
    running_on(home, &crate::backends::Backends::connect(home)?)
}

/// [`running`] on backends already connected (a caller that polls keeps one connection).
pub fn running_on(home: &Home, backends: &crate::backends::Backends) -> anyhow::Result<Vec<Control>> {
    if let Some(spec) = std::env::var_os(OVERRIDE_VAR) {
        return overridden(home, &spec.to_string_lossy());
    }
    let mut out = Vec::new();
    for backend in backends.all() {
        let Ok(summaries) = backend.list() else { continue };
        for summary in summaries {
            if summary.status != BottleStatus::Running {
                continue;
            }
            let state = home.state(&summary.slug);
            let Ok(token) = std::fs::read_to_string(state.dir().join(TOKEN_FILE)) else {
                continue;
            };
            let Ok(bottle) = backend.open(&summary.slug) else {
                continue;
            };
            let Some(addr) =
                bottle.control_addr().map(Endpoint::Tcp).or_else(|| bottle.control_socket().map(Endpoint::Unix))
            else {
                continue;
            };
            let meta = state.read_metadata().ok();
            out.push(Control {
                slug: summary.slug,
                label: meta.as_ref().and_then(|m| m.label.clone()),
                color: meta.as_ref().and_then(|m| m.color.clone()),
                addr,
                token: token.trim().to_owned(),
            });
        }
    }
    Ok(out)
}

/// The bottles [`OVERRIDE_VAR`] names, with the label and colour of their metadata when it exists.
fn overridden(home: &Home, spec: &str) -> anyhow::Result<Vec<Control>> {
    let mut out = Vec::new();
    for (i, entry) in spec.split(',').filter(|e| !e.trim().is_empty()).enumerate() {
        // The entry holds a token: errors name its position, never its text.
        let malformed = || anyhow::anyhow!("`{OVERRIDE_VAR}` entry {} is not `SLUG=HOST:PORT:TOKEN`", i + 1);
        let (slug, rest) = entry.trim().split_once('=').ok_or_else(malformed)?;
        let (addr, token) = rest.rsplit_once(':').ok_or_else(malformed)?;
        let addr = Endpoint::Tcp(addr.parse().map_err(|_| malformed())?);
        if slug.is_empty() || token.is_empty() {
            return Err(malformed());
        }
        let meta = home.state(slug).read_metadata().ok();
        out.push(Control {
            slug: slug.to_owned(),
            label: meta.as_ref().and_then(|m| m.label.clone()),
            color: meta.as_ref().and_then(|m| m.color.clone()),
            addr,
            token: token.to_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(response: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut conn, &mut buf);
            conn.write_all(response.as_bytes()).unwrap();
        });
        addr
    }

    fn control(addr: SocketAddr) -> Control {
        Control { slug: "s".into(), label: None, color: None, addr: Endpoint::Tcp(addr), token: "t".into() }
    }

    #[test]
    fn reads_json_bodies_plain_and_chunked() {
        let addr = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{\"a\":1}\n");
        assert_eq!(control(addr).get("/v1/health").unwrap()["a"], 1);
        let addr =
            serve_once("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"b\"\r\n3\r\n:2}\r\n0\r\n\r\n");
        assert_eq!(control(addr).get("/v1/health").unwrap()["b"], 2);
    }

    #[test]
    fn the_override_names_bottles_and_never_echoes_a_token() {
        let home = Home::resolve(Some(std::env::temp_dir().join("bb-no-such-home")), None).unwrap();
        let found = overridden(&home, "a=127.0.0.1:9:tok-a, b=[::1]:10:tok-b").unwrap();
        assert_eq!(found.iter().map(|c| c.slug.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(found[1].addr, Endpoint::Tcp("[::1]:10".parse().unwrap()));
        assert!(!format!("{found:?}").contains("tok-"));
        let err = overridden(&home, "a=127.0.0.1:9:ok,b=nowhere:secret-ish").unwrap_err().to_string();
        assert!(err.contains("entry 2") && !err.contains("secret-ish"), "{err}");
    }

    #[test]
    fn unix_socket_endpoints_are_spoken_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut conn, &mut buf);
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"u\":3}").unwrap();
        });
        let c = Control { slug: "s".into(), label: None, color: None, addr: Endpoint::Unix(path), token: "t".into() };
        assert_eq!(c.get("/v1/health").unwrap()["u"], 3);
    }

    #[test]
    fn errors_carry_the_status_and_message() {
        let addr = serve_once("HTTP/1.1 409 Conflict\r\nContent-Length: 30\r\n\r\n{\"error\":\"already decided\"}   ");
        let err = control(addr).get("/v1/proposals/x").unwrap_err();
        let api = err.downcast_ref::<ApiError>().unwrap();
        assert_eq!((api.status, api.message.as_str()), (409, "already decided"));
    }
}
