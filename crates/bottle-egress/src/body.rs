//! Body plumbing: the boxed body type, and the streaming scanners wrapped around bodies too large to
//! buffer (outbound DLP with a hold-back window, inbound injection scan).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bottle_dlp::StreamScanner;
use bytes::{Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};

use crate::inbound::{self, InjectionVerdict};
use crate::outbound::FindingSummary;

/// Any error a body can fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every request and response the proxy produces.
pub type Body = BoxBody<Bytes, BoxError>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub(crate) fn incoming(body: Incoming) -> Body {
    body.map_err(BoxError::from).boxed()
}

/// The body was cut because it carried something it must not.
#[derive(Debug, thiserror::Error)]
#[error("body blocked by {rule}")]
pub(crate) struct BodyBlocked {
    pub(crate) rule: String,
}

/// Where a streaming scanner reports what stopped it, for the response and the audit line.
pub(crate) type Verdict = Arc<Mutex<Option<Vec<FindingSummary>>>>;

/// An outbound body scanned as it streams. Bytes are released only once the scanner can no longer
/// report a finding that overlaps them (`hold_back` bytes are kept), so a secret is never partly sent
/// before the upload is aborted.
pub(crate) struct ScannedBody {
    prefix: VecDeque<Bytes>,
    rest: Option<Incoming>,
    scanner: Option<StreamScanner>,
    held: BytesMut,
    hold_back: usize,
    verdict: Verdict,
    size_hint: SizeHint,
    done: bool,
}

impl ScannedBody {
    pub(crate) fn new(
        prefix: Vec<Bytes>,
        rest: Incoming,
        scanner: StreamScanner,
        hold_back: usize,
        verdict: Verdict,
        size_hint: SizeHint,
    ) -> Self {
        Self {
            prefix: prefix.into(),
            rest: Some(rest),
            scanner: Some(scanner),
            held: BytesMut::new(),
            hold_back,
            verdict,
            size_hint,
            done: false,
        }
    }

    fn block(&mut self, findings: &[bottle_dlp::Finding]) -> BoxError {
        let summaries: Vec<FindingSummary> = findings.iter().map(FindingSummary::from_finding).collect();
        let rule = summaries.first().map_or_else(|| "dlp".to_owned(), |s| s.rule.clone());
        *self.verdict.lock().unwrap_or_else(PoisonError::into_inner) = Some(summaries);
        self.done = true;
        self.held.clear();
        Box::new(BodyBlocked { rule })
    }

    /// Feeds one chunk; returns the bytes that are now safe to release.
    fn accept(&mut self, chunk: &[u8]) -> Result<Option<Bytes>, BoxError> {
        let findings = self.scanner.as_mut().map(|s| s.feed(chunk)).unwrap_or_default();
        if !findings.is_empty() {
            return Err(self.block(&findings));
        }
        self.held.extend_from_slice(chunk);
        if self.held.len() > self.hold_back {
            let release = self.held.len() - self.hold_back;
            return Ok(Some(self.held.split_to(release).freeze()));
        }
        Ok(None)
    }
}

impl HttpBody for ScannedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(chunk) = this.prefix.pop_front() {
                match this.accept(&chunk) {
                    Ok(Some(out)) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                    Ok(None) => continue,
                    Err(e) => return Poll::Ready(Some(Err(e))),
                }
            }
            let Some(rest) = this.rest.as_mut() else {
                // End of input: final scan, then release what was held.
                let findings = this.scanner.take().map(StreamScanner::finish).unwrap_or_default();
                if !findings.is_empty() {
                    return Poll::Ready(Some(Err(this.block(&findings))));
                }
                this.done = true;
                if this.held.is_empty() {
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(Ok(Frame::data(this.held.split().freeze()))));
            };
            match Pin::new(rest).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.rest = None,
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are dropped: they would bypass the scan.
                    if let Ok(data) = frame.into_data() {
                        match this.accept(&data) {
                            Ok(Some(out)) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                            Ok(None) => {}
                            Err(e) => return Poll::Ready(Some(Err(e))),
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        self.size_hint
    }
}

/// How many trailing bytes of the previous chunk are re-scanned with the next one, so a marker phrase
/// cut by a chunk boundary is still seen.
const INBOUND_OVERLAP: usize = 256;

/// Called once when a streamed response that tripped the inbound scan is dropped (for the audit line).
pub(crate) type OnInjection = Box<dyn FnOnce(InjectionVerdict, Vec<&'static str>) + Send + Sync>;

/// A response body scanned for injection markers as it streams; a high-confidence hit cuts the
/// stream. The worst verdict is reported through the callback when the body is dropped.
pub(crate) struct InboundScanBody {
    inner: Body,
    carry: Vec<u8>,
    worst: Option<(InjectionVerdict, Vec<&'static str>)>,
    on_injection: Option<OnInjection>,
    done: bool,
}

impl InboundScanBody {
    pub(crate) fn new(inner: Body, on_injection: OnInjection) -> Self {
        Self { inner, carry: Vec::new(), worst: None, on_injection: Some(on_injection), done: false }
    }
}

impl Drop for InboundScanBody {
    fn drop(&mut self) {
        if let (Some((verdict, markers)), Some(report)) = (self.worst.take(), self.on_injection.take()) {
            report(verdict, markers);
        }
    }
}

impl HttpBody for InboundScanBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let mut window = std::mem::take(&mut this.carry);
                    window.extend_from_slice(data);
                    let report = inbound::scan(&window);
                    let start = window.len().saturating_sub(INBOUND_OVERLAP);
                    this.carry = window[start..].to_vec();
                    if report.verdict != InjectionVerdict::Clean {
                        if this.worst.as_ref().is_none_or(|(v, _)| *v < report.verdict) {
                            this.worst = Some((report.verdict, report.markers));
                        }
                        if report.verdict == InjectionVerdict::High {
                            this.done = true;
                            return Poll::Ready(Some(Err(Box::new(BodyBlocked {
                                rule: "inbound.prompt-injection".into(),
                            }))));
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
