//! Raw HTTP/1 request-head inspection in front of hyper: the request-smuggling defence.
//!
//! hyper normalizes some ambiguous framings before the policy sees the parsed head: a request with
//! both `Content-Length` and `Transfer-Encoding` is decoded as chunked, and identical duplicate
//! `Content-Length` lines collapse into one. The proxy re-frames what it forwards, but an agent that
//! sends such shapes is probing for a desync and must get a 400, not a silently repaired request. So
//! every request head is checked as bytes, before hyper parses it:
//!
//! - [`inspect_head`] is the pure check of one complete head (table-tested and fuzzed).
//! - [`Framer`] follows the agent's byte stream message by message. It holds each head back until it
//!   is complete and inspected, then releases it; it tracks the body framing the head declared
//!   (fixed length or strictly parsed chunked) so it knows exactly where the next head of a
//!   kept-alive connection starts, and inspects that one too. The grammar it accepts is a strict
//!   subset of hyper's, so the two can only disagree by one of them refusing the connection — never
//!   by placing a message boundary at different bytes.
//! - [`HeadGuard`] is the `AsyncRead + AsyncWrite` wrapper that runs a [`Framer`] over a connection.
//!   A refused head never reaches hyper: hyper instead receives [`SYNTHETIC_REJECTION`], a request
//!   carrying the [`REJECTION_MARKER`] header, after every earlier (valid) message, so the 400 goes
//!   out through hyper in the right order on the connection; the service answers it from the shared
//!   [`RejectSlot`] and closes the connection. Nothing after a refused head is parsed.
//!
//! After `CONNECT` or an HTTP/1.1 `Upgrade` request the stream may stop being HTTP/1 (a tunnel or a
//! WebSocket), so the framer passes the rest of the connection through. That is sound only because
//! the server closes the connection whenever such a request is answered without switching protocols
//! (see `server.rs`), so no further request can follow uninspected.
//!
//! Inside a bumped tunnel, a connection that starts with the HTTP/2 preface is h2 and is passed
//! through: h2 frames carry explicit lengths and the parsed-map checks in `policy` cover them. The
//! decision mirrors hyper-util's own preface sniffing byte for byte.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf as _, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::policy::{Denial, MAX_HEADER_BYTES, MAX_HEADERS, Side};

/// The header by which the service recognizes the request the guard substitutes for a refused head.
pub const REJECTION_MARKER: &str = "x-bot-bottle-rejected-head";

/// What hyper receives instead of a refused head. An agent can send this itself; it then merely
/// gets a 400 and a closed connection.
pub const SYNTHETIC_REJECTION: &[u8] = b"GET / HTTP/1.1\r\nx-bot-bottle-rejected-head: 1\r\n\r\n";

/// Where the guard leaves the reason for the synthetic request's 400.
pub type RejectSlot = Arc<Mutex<Option<Denial>>>;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How the message body after a head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What an accepted head means for the bytes that follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadFacts {
    /// The body framing.
    pub framing: Framing,
    /// `CONNECT` or an HTTP/1.1 `Upgrade`: after the body the connection may switch protocols.
    pub may_switch: bool,
}

fn smuggling(rule: &'static str, reason: impl Into<String>) -> Denial {
    Denial::malformed(rule, reason)
}

fn too_large(rule: &'static str, reason: String) -> Denial {
    Denial { rule, reason, side: Side::Downstream, status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE }
}

/// The first byte-level violation in a head: NUL, a bare CR or LF, or another control byte.
///
/// Only CRLF ends a line here. hyper also accepts a bare LF, so a head that relies on one could be
/// cut differently by hyper and by an upstream; it is refused instead.
fn byte_violation(head: &[u8], from: usize) -> Option<Denial> {
    for i in from..head.len() {
        let bad = match head[i] {
            0 => smuggling("egress.smuggling.nul", "request head contains a NUL byte"),
            b'\n' if i == 0 || head[i - 1] != b'\r' => {
                smuggling("egress.smuggling.bare-lf", "request head contains a LF without CR")
            }
            b'\r' if head.get(i + 1).is_some_and(|&next| next != b'\n') => {
                smuggling("egress.smuggling.bare-cr", "request head contains a CR without LF")
            }
            b'\t' | b'\r' | b'\n' => continue,
            0x01..=0x1f | 0x7f => smuggling("egress.smuggling.control-byte", "request head contains a control byte"),
            _ => continue,
        };
        return Some(bad);
    }
    None
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// Checks one complete HTTP/1 request head (request line, header lines, the empty line; exactly
/// CRLF line ends) and returns its framing.
///
/// Refused: NUL, bare CR or LF and other control bytes; a malformed request line or a version other
/// than HTTP/1.0 and 1.1; obs-fold; header names that are not tokens (including whitespace before the
/// colon); `Content-Length` and `Transfer-Encoding` together; more than one `Content-Length` (equal
/// or not) or one that is not plain digits; `Transfer-Encoding` other than exactly one `chunked` (a
/// strict subset of "chunked last"), or any on HTTP/1.0; a `CONNECT` with a body; too many or too
/// large headers (431).
pub fn inspect_head(head: &[u8]) -> Result<HeadFacts, Denial> {
    if head.len() > MAX_HEADER_BYTES {
        return Err(too_large("egress.header.too-large", format!("request head exceeds {MAX_HEADER_BYTES} bytes")));
    }
    if let Some(denial) = byte_violation(head, 0) {
        return Err(denial);
    }
    let Some(body) = head.strip_suffix(b"\r\n\r\n") else {
        return Err(smuggling("egress.smuggling.head", "request head does not end with an empty line"));
    };
    let mut lines = body.split(|&b| b == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let request_line = lines.next().unwrap_or_default();
    let bad_line = || smuggling("egress.smuggling.request-line", "malformed request line");
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_line());
    };
    if method.is_empty() || !method.iter().copied().all(is_tchar) || target.is_empty() || target.contains(&b'\t') {
        return Err(bad_line());
    }
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        _ => {
            return Err(smuggling("egress.smuggling.version", "only HTTP/1.0 and HTTP/1.1 request heads are accepted"));
        }
    };
    let connect = method == b"CONNECT";

    let mut count = 0_usize;
    let mut content_length: Vec<&[u8]> = Vec::new();
    let mut transfer_encoding: Vec<&[u8]> = Vec::new();
    let mut upgrade = false;
    for line in lines {
        count += 1;
        if count > MAX_HEADERS {
            return Err(too_large("egress.header.too-many", format!("more than {MAX_HEADERS} headers")));
        }
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            return Err(smuggling("egress.smuggling.obs-fold", "folded header line (obs-fold)"));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(smuggling("egress.smuggling.header-line", "header line without a colon"));
        };
        let (name, value) = (&line[..colon], trim_ows(&line[colon + 1..]));
        if name.is_empty() || !name.iter().copied().all(is_tchar) {
            return Err(smuggling(
                "egress.smuggling.header-name",
                "header name is not a token (whitespace before the colon?)",
            ));
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            content_length.push(value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding.push(value);
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade = true;
        }
    }

    if !content_length.is_empty() && !transfer_encoding.is_empty() {
        return Err(smuggling("egress.smuggling.cl-te", "both Content-Length and Transfer-Encoding are present"));
    }
    if content_length.len() > 1 {
        return Err(smuggling("egress.smuggling.duplicate-content-length", "more than one Content-Length header"));
    }
    let mut framing = Framing::None;
    if let Some(value) = content_length.first() {
        let length = (!value.is_empty() && value.len() <= 19 && value.iter().all(u8::is_ascii_digit))
            .then(|| std::str::from_utf8(value).ok()?.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| {
                smuggling("egress.smuggling.bad-content-length", "Content-Length is not a plain decimal number")
            })?;
        if length > 0 {
            framing = Framing::Length(length);
        }
    }
    if !transfer_encoding.is_empty() {
        if !http11 {
            return Err(smuggling("egress.smuggling.transfer-encoding", "Transfer-Encoding on an HTTP/1.0 request"));
        }
        if transfer_encoding.len() > 1 || !transfer_encoding[0].eq_ignore_ascii_case(b"chunked") {
            return Err(smuggling(
                "egress.smuggling.transfer-encoding",
                "Transfer-Encoding must be exactly one `chunked`",
            ));
        }
        framing = Framing::Chunked;
    }
    if connect && framing != Framing::None {
        return Err(smuggling("egress.smuggling.connect-body", "CONNECT request with a body"));
    }
    Ok(HeadFacts { framing, may_switch: connect || (upgrade && http11) })
}

/// Where the framer is in the agent's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a head (held back in `head`).
    Head,
    /// Inside a fixed-length body: this many bytes remain.
    Body(u64),
    /// Reading a chunk-size line: the size so far and how many hex digits it had.
    ChunkSize(u64, u8),
    /// Inside a chunk extension (after `;`), up to the CR.
    ChunkExt(u64, usize),
    /// After the CR of a chunk-size line.
    ChunkSizeLf(u64),
    /// Inside chunk data: this many bytes remain.
    ChunkData(u64),
    /// After chunk data: CR, then LF expected.
    ChunkDataCr,
    ChunkDataLf,
    /// Trailer section: bytes in the current line, bytes in all trailers.
    Trailer(usize, usize),
    /// After the CR of a trailer line (or of the final empty line) of this length.
    TrailerLf(usize, usize),
    /// The connection switched protocols (or is h2): everything passes.
    Passthrough,
    /// A head was refused: the synthetic request has been emitted, nothing else passes.
    Rejected,
    /// The body framing was violated: the connection must die.
    Broken,
}

/// Why [`Framer::feed`] stopped accepting bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A head was refused; the synthetic request was appended to the output and the connection
    /// must be answered with this denial, then closed.
    Head(Denial),
    /// The body framing was violated mid-message; the connection must be dropped.
    Framing(&'static str),
}

/// Follows an HTTP/1 request stream, releasing bytes only once the head they belong to is inspected.
#[derive(Debug)]
pub struct Framer {
    state: State,
    head: Vec<u8>,
    /// How far `head` has been checked byte by byte.
    scanned: usize,
    /// Whether the next head is the connection's first (h2 preface allowed when `allow_h2`).
    first: bool,
    allow_h2: bool,
    after_body: State,
}

/// Longest chunk extension accepted on one chunk-size line.
const MAX_CHUNK_EXT: usize = 4096;

impl Framer {
    /// A framer for a new connection; `allow_h2` admits the HTTP/2 preface (inside TLS tunnels).
    pub fn new(allow_h2: bool) -> Self {
        Self { state: State::Head, head: Vec::new(), scanned: 0, first: true, allow_h2, after_body: State::Head }
    }

    /// Whether a head is partly received (for the head timeout).
    pub fn head_started(&self) -> bool {
        self.state == State::Head && !self.head.is_empty()
    }

    /// Whether the connection's first head is still awaited (for the head timeout).
    pub fn awaiting_first_head(&self) -> bool {
        self.state == State::Head && self.first
    }

    /// Whether the framer is collecting a head (as opposed to a body, a tunnel or a dead connection).
    pub fn in_head(&self) -> bool {
        self.state == State::Head
    }

    /// When the next bytes are opaque (body, chunk data, tunnel): how many may skip the framer.
    pub fn opaque(&self) -> Option<u64> {
        match self.state {
            State::Body(n) | State::ChunkData(n) => Some(n),
            State::Passthrough => Some(u64::MAX),
            _ => None,
        }
    }

    /// Records `n` opaque bytes that went straight to hyper (at most [`Framer::opaque`]).
    pub fn skip_opaque(&mut self, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        match self.state {
            State::Body(left) => {
                let left = left.saturating_sub(n);
                self.state = if left == 0 { self.after_body } else { State::Body(left) };
            }
            State::ChunkData(left) => {
                let left = left.saturating_sub(n);
                self.state = if left == 0 { State::ChunkDataCr } else { State::ChunkData(left) };
            }
            _ => {}
        }
    }

    /// Feeds bytes read from the agent; bytes cleared for hyper are appended to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), Refusal> {
        // Iterative, not recursive: one read can hold hundreds of pipelined heads.
        let mut held: Vec<u8>;
        let mut input = input;
        loop {
            match self.feed_until_head(input, out)? {
                None => return Ok(()),
                Some(rest) => {
                    held = rest;
                    input = &held;
                }
            }
        }
    }

    /// Consumes `input` until it is used up (`None`) or a head completes (`Some` of the bytes that
    /// followed it, which the new state must frame).
    fn feed_until_head(&mut self, mut input: &[u8], out: &mut BytesMut) -> Result<Option<Vec<u8>>, Refusal> {
        while !input.is_empty() {
            match self.state {
                State::Rejected => return Ok(None),
                State::Broken => return Err(Refusal::Framing("connection already refused")),
                State::Passthrough => {
                    out.extend_from_slice(input);
                    return Ok(None);
                }
                State::Body(_) | State::ChunkData(_) => {
                    let left = self.opaque().unwrap_or(0);
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    out.extend_from_slice(&input[..take]);
                    self.skip_opaque(take);
                    input = &input[take..];
                }
                State::Head => {
                    self.head.extend_from_slice(input);
                    match self.scan_head(out) {
                        Err(denial) => {
                            self.head = Vec::new();
                            self.state = State::Rejected;
                            out.extend_from_slice(SYNTHETIC_REJECTION);
                            return Err(Refusal::Head(denial));
                        }
                        // Still incomplete: everything is held in `self.head`.
                        Ok(false) => return Ok(None),
                        // Complete (the new state may be `Head` again for a bodiless request).
                        Ok(true) => {
                            self.scanned = 0;
                            return Ok(Some(std::mem::take(&mut self.head)));
                        }
                    }
                }
                _ => {
                    let Some((&byte, rest)) = input.split_first() else { return Ok(None) };
                    input = rest;
                    if let Err(reason) = self.chunk_byte(byte) {
                        self.state = State::Broken;
                        return Err(Refusal::Framing(reason));
                    }
                    out.extend_from_slice(&[byte]);
                }
            }
        }
        Ok(None)
    }

    /// Looks for the end of the head in `self.head`; on completion (`true`) releases it to `out`, moves
    /// to the body state and leaves the bytes after the head in `self.head`.
    fn scan_head(&mut self, out: &mut BytesMut) -> Result<bool, Denial> {
        if self.first && self.allow_h2 {
            let n = self.head.len().min(H2_PREFACE.len());
            if self.head[..n] == H2_PREFACE[..n] {
                if n < H2_PREFACE.len() {
                    return Ok(false); // Could still be the preface: wait.
                }
                out.extend_from_slice(&self.head);
                self.head = Vec::new();
                self.state = State::Passthrough;
                return Ok(true);
            }
        }
        // RFC 9112 §2.2: empty lines before the request line are ignored (not forwarded).
        while self.scanned == 0 && self.head.starts_with(b"\r\n") {
            self.head.drain(..2);
        }
        if self.scanned == 0 && (self.head.is_empty() || self.head == b"\r") {
            return Ok(false);
        }
        let from = self.scanned;
        let end = (from.saturating_sub(3)..self.head.len().saturating_sub(3))
            .find(|&i| &self.head[i..i + 4] == b"\r\n\r\n")
            .map(|i| i + 4);
        let checked_to = end.unwrap_or(self.head.len());
        // A CR as the very last byte is not judged yet: an LF may follow.
        if let Some(denial) = byte_violation(&self.head[..checked_to], from) {
            return Err(denial);
        }
        let Some(end) = end else {
            if self.head.len() > MAX_HEADER_BYTES {
                return Err(too_large(
                    "egress.header.too-large",
                    format!("request head exceeds {MAX_HEADER_BYTES} bytes"),
                ));
            }
            // Re-check the last three bytes next time: they may start the terminator or be a CR.
            self.scanned = self.head.len().saturating_sub(3);
            return Ok(false);
        };
        let facts = inspect_head(&self.head[..end])?;
        out.extend_from_slice(&self.head[..end]);
        self.head.drain(..end);
        self.first = false;
        self.after_body = if facts.may_switch { State::Passthrough } else { State::Head };
        self.state = match facts.framing {
            Framing::None => self.after_body,
            Framing::Length(n) => State::Body(n),
            Framing::Chunked => State::ChunkSize(0, 0),
        };
        Ok(true)
    }

    /// One byte of chunked framing outside chunk data (RFC 9112 §7.1, without the lenient forms:
    /// no whitespace after the size, no bare LF, no control bytes in extensions or trailers).
    fn chunk_byte(&mut self, byte: u8) -> Result<(), &'static str> {
        self.state = match (self.state, byte) {
            (State::ChunkSize(size, digits), b) if b.is_ascii_hexdigit() => {
                if digits >= 16 {
                    return Err("chunk size too long");
                }
                let digit = u64::from(char::from(b).to_digit(16).unwrap_or(0));
                State::ChunkSize((size << 4) | digit, digits + 1)
            }
            (State::ChunkSize(size, digits), b';') if digits > 0 => State::ChunkExt(size, 0),
            (State::ChunkSize(size, digits), b'\r') if digits > 0 => State::ChunkSizeLf(size),
            (State::ChunkSize(..), _) => return Err("invalid chunk size"),
            (State::ChunkExt(size, _), b'\r') => State::ChunkSizeLf(size),
            (State::ChunkExt(_, len), _) if len >= MAX_CHUNK_EXT => return Err("chunk extension too long"),
            (State::ChunkExt(size, len), b) if b == b'\t' || (b >= 0x20 && b != 0x7f) => State::ChunkExt(size, len + 1),
            (State::ChunkExt(..), _) => return Err("invalid byte in chunk extension"),
            (State::ChunkSizeLf(0), b'\n') => State::Trailer(0, 0),
            (State::ChunkSizeLf(size), b'\n') => State::ChunkData(size),
            (State::ChunkSizeLf(_), _) => return Err("chunk size line without LF"),
            (State::ChunkDataCr, b'\r') => State::ChunkDataLf,
            (State::ChunkDataLf, b'\n') => State::ChunkSize(0, 0),
            (State::ChunkDataCr | State::ChunkDataLf, _) => return Err("chunk data without CRLF"),
            (State::Trailer(line, total), b'\r') => State::TrailerLf(line, total),
            (State::Trailer(_, total), _) if total >= MAX_HEADER_BYTES => return Err("trailers too large"),
            (State::Trailer(line, total), b) if b == b'\t' || (b >= 0x20 && b != 0x7f) => {
                State::Trailer(line + 1, total + 1)
            }
            (State::Trailer(..), _) => return Err("invalid byte in trailer"),
            (State::TrailerLf(0, _), b'\n') => self.after_body,
            (State::TrailerLf(_, total), b'\n') => State::Trailer(0, total + 2),
            (State::TrailerLf(..), _) => return Err("trailer line without LF"),
            (state, _) => state,
        };
        Ok(())
    }
}

/// Runs a [`Framer`] over a connection in front of hyper; see the module docs.
#[derive(Debug)]
pub struct HeadGuard<IO> {
    io: IO,
    framer: Framer,
    /// Bytes cleared for hyper, not yet handed over.
    out: BytesMut,
    scratch: Vec<u8>,
    slot: RejectSlot,
    timeout: Duration,
    /// Deadline for the head being received. hyper has its own header timeout, but inside a tunnel
    /// hyper-util first sniffs for the h2 preface without one, and a held-back head gives hyper
    /// nothing to time; this bounds slowloris on both paths.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<IO> HeadGuard<IO> {
    /// Wraps `io`; a refused head's denial goes to `slot`. `allow_h2` admits the h2 preface.
    pub fn new(io: IO, slot: RejectSlot, allow_h2: bool, timeout: Duration) -> Self {
        let deadline = Some(Box::pin(tokio::time::sleep(timeout)));
        Self { io, framer: Framer::new(allow_h2), out: BytesMut::new(), scratch: Vec::new(), slot, timeout, deadline }
    }
}

impl<IO: AsyncRead + Unpin> HeadGuard<IO> {
    /// Keeps the head deadline in step with the framer: armed while the first head is awaited or a
    /// head is partly received, cleared otherwise (idle keep-alive is hyper's business).
    fn update_deadline(&mut self) {
        let wanted = self.framer.awaiting_first_head() || self.framer.head_started();
        match (wanted, self.deadline.is_some()) {
            (true, false) => self.deadline = Some(Box::pin(tokio::time::sleep(self.timeout))),
            (false, true) => self.deadline = None,
            _ => {}
        }
    }

    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(deadline) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request head timed out")));
        }
        Poll::Pending
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for HeadGuard<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            match this.framer.state {
                State::Broken => {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "request framing refused")));
                }
                State::Rejected => {
                    // The synthetic request is out; hyper answers it and closes. Until then the rest of
                    // the agent's bytes are read and dropped (an EOF here would make hyper drop the
                    // 400 as a half-closed request only when the agent really closed).
                    this.scratch.resize(8192, 0);
                    let mut tmp = ReadBuf::new(&mut this.scratch);
                    ready!(Pin::new(&mut this.io).poll_read(cx, &mut tmp))?;
                    if tmp.filled().is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    continue;
                }
                _ => {}
            }
            if let Some(limit) = this.framer.opaque() {
                // Body or tunnel bytes: straight into hyper's buffer, no copy.
                let want = usize::try_from(limit).unwrap_or(usize::MAX).min(buf.remaining());
                let slice = buf.initialize_unfilled_to(want);
                let mut direct = ReadBuf::new(slice);
                ready!(Pin::new(&mut this.io).poll_read(cx, &mut direct))?;
                let n = direct.filled().len();
                buf.advance(n);
                this.framer.skip_opaque(n);
                this.update_deadline();
                return Poll::Ready(Ok(()));
            }
            this.scratch.resize(16 * 1024, 0);
            let mut tmp = ReadBuf::new(&mut this.scratch);
            match Pin::new(&mut this.io).poll_read(cx, &mut tmp) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    if this.framer.in_head() {
                        // Registers the timer's waker too; errors once the deadline has passed.
                        return this.poll_deadline(cx);
                    }
                    return Poll::Pending;
                }
            }
            let n = tmp.filled().len();
            if n == 0 {
                // EOF. A partial head is dropped: hyper could not have made a request of it.
                return Poll::Ready(Ok(()));
            }
            let mut out = std::mem::take(&mut this.out);
            let fed = this.framer.feed(&this.scratch[..n], &mut out);
            this.out = out;
            this.update_deadline();
            match fed {
                Ok(()) => {}
                Err(Refusal::Head(denial)) => {
                    *this.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(denial);
                }
                Err(Refusal::Framing(reason)) => {
                    tracing::debug!(side = "downstream", reason, "request body framing refused");
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, reason)));
                }
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for HeadGuard<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
