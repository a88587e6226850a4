//! WebSocket upgrades on allowed routes: the handshake is proxied like any request, then frames from
//! the agent are parsed, unmasked and DLP-scanned before they are relayed; upstream frames pass as is.
//!
//! Compression extensions are stripped from the handshake so payloads are scannable plain bytes.

use std::sync::Arc;

use bottle_dlp::{Engine, Location, StreamScanner};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::body::{self, Body};
use crate::outbound::FindingSummary;
use crate::policy::Target;
use crate::server::{Shared, audit_ws_block};

/// Largest frame the relay buffers for scanning; bigger frames close the connection.
const MAX_FRAME: u64 = 16 * 1024 * 1024;

/// Whether `req` asks for an HTTP/1.1 WebSocket upgrade.
pub(crate) fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    req.method() == Method::GET
        && req.version() == http::Version::HTTP_11
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket")))
}

/// The hop-by-hop headers an upgrade request must carry upstream (stripped with the others before).
pub(crate) fn upgrade_headers(_agent: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers
}

/// Answers the agent with the upstream's handshake response and, on 101, starts the relay.
pub(crate) fn finish_upgrade(
    shared: Arc<Shared>,
    engine: Option<Engine>,
    target: Target,
    agent: OnUpgrade,
    mut response: Response<Incoming>,
) -> Response<Body> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, incoming) = response.into_parts();
        return Response::from_parts(parts, body::incoming(incoming));
    }
    let upstream = hyper::upgrade::on(&mut response);
    let mut reply = Response::new(body::empty());
    *reply.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for name in [header::CONNECTION, header::UPGRADE, header::SEC_WEBSOCKET_ACCEPT, header::SEC_WEBSOCKET_PROTOCOL] {
        if let Some(value) = response.headers().get(&name) {
            reply.headers_mut().insert(name, value.clone());
        }
    }
    tokio::spawn(async move {
        let (agent, upstream) = match tokio::try_join!(agent, upstream) {
            Ok(pair) => pair,
            Err(error) => return tracing::debug!(%error, "WebSocket upgrade failed"),
        };
        let (agent_read, mut agent_write) = tokio::io::split(TokioIo::new(agent));
        let (mut upstream_read, upstream_write) = tokio::io::split(TokioIo::new(upstream));
        let down = tokio::io::copy(&mut upstream_read, &mut agent_write);
        let up = relay_agent_frames(agent_read, upstream_write, engine);
        tokio::select! {
            _ = down => {}
            result = up => {
                if let Err(Relay::Blocked(findings)) = result {
                    audit_ws_block(&shared, &target, findings);
                }
            }
        }
    });
    reply
}

enum Relay {
    Io,
    Blocked(Vec<FindingSummary>),
}

impl From<std::io::Error> for Relay {
    fn from(_: std::io::Error) -> Self {
        Self::Io
    }
}

/// Relays agent frames upstream after scanning each message's unmasked payload.
async fn relay_agent_frames(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    engine: Option<Engine>,
) -> Result<(), Relay> {
    let mut scanner: Option<StreamScanner> = None;
    loop {
        let mut head = [0_u8; 2];
        match from.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let mut header = head.to_vec();
        let fin = head[0] & 0x80 != 0;
        let opcode = head[0] & 0x0f;
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7f {
            126 => {
                let mut ext = [0_u8; 2];
                from.read_exact(&mut ext).await?;
                header.extend_from_slice(&ext);
                u64::from(u16::from_be_bytes(ext))
            }
            127 => {
                let mut ext = [0_u8; 8];
                from.read_exact(&mut ext).await?;
                header.extend_from_slice(&ext);
                u64::from_be_bytes(ext)
            }
            n => u64::from(n),
        };
        if len > MAX_FRAME {
            return Err(Relay::Io);
        }
        let mut mask = [0_u8; 4];
        if masked {
            from.read_exact(&mut mask).await?;
            header.extend_from_slice(&mask);
        }
        let mut payload = vec![0_u8; usize::try_from(len).map_err(|_| Relay::Io)?];
        from.read_exact(&mut payload).await?;
        if let Some(engine) = &engine
            && matches!(opcode, 0..=2)
        {
            let plain: Vec<u8> = if masked {
                payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect()
            } else {
                payload.clone()
            };
            if opcode != 0 || scanner.is_none() {
                scanner = Some(engine.stream(Location::Other("websocket".into())));
            }
            let mut findings = scanner.as_mut().map(|s| s.feed(&plain)).unwrap_or_default();
            if fin && let Some(done) = scanner.take() {
                findings.extend(done.finish());
            }
            if !findings.is_empty() {
                return Err(Relay::Blocked(findings.iter().map(FindingSummary::from_finding).collect()));
            }
        }
        to.write_all(&header).await?;
        to.write_all(&payload).await?;
        to.flush().await?;
    }
}
