//! Streaming scans: feed a body in chunks, get the same findings as a whole-buffer scan, with
//! memory bounded by [`crate::Engine::carry_capacity`] per view.
//!
//! Each view (raw, and normalised once the stream shows anything to normalise) keeps a carry of
//! the bytes its unevaluated anchors may still look at. An anchor is evaluated only when its whole
//! window has arrived, so a secret cut by a chunk boundary is found exactly once.

use std::collections::HashSet;

use crate::engine::{Engine, LaneInput};
use crate::finding::{Finding, FindingKey, Location, key_of};
use crate::normalize::{self, Normalizer, OffsetMap};

/// One view's carried bytes.
#[derive(Debug, Default)]
struct Lane {
    buf: Vec<u8>,
    /// View offset of `buf[0]`.
    base: usize,
    /// Anchors starting before this view offset have been evaluated.
    from: usize,
    /// View → raw offsets (normalised view only).
    map: Option<OffsetMap>,
}

impl Lane {
    fn scan(&mut self, engine: &Engine, is_final: bool, location: &Location, out: &mut Vec<Finding>) {
        let input = LaneInput { buf: &self.buf, base: self.base, is_final, map: self.map.as_ref() };
        self.from = engine.scan_lane(input, self.from, location, out);
        // Drop what no later anchor can look at.
        let keep_from = self.from.saturating_sub(engine.keep_before()).max(self.base);
        let keep_from = keep_from.min(self.base + self.buf.len());
        self.buf.drain(..keep_from - self.base);
        self.base = keep_from;
        if let Some(map) = &mut self.map {
            map.forget_before(keep_from);
        }
    }

    /// Raw offset of the first carried byte: no later finding of this lane starts before it.
    fn raw_floor(&self) -> usize {
        match &self.map {
            Some(map) if !self.buf.is_empty() => map.raw_start(self.base),
            Some(_) => usize::MAX,
            None => self.base,
        }
    }
}

/// An in-progress streaming scan. Create with [`Engine::stream`], call [`Self::feed`] per chunk
/// and [`Self::finish`] at the end; findings come out as soon as they are certain.
pub struct StreamScanner {
    engine: Engine,
    location: Location,
    raw: Lane,
    /// The normalised view, started the first time the stream contains something to normalise;
    /// until then it would be identical to the raw view.
    normalized: Option<(Lane, Normalizer)>,
    /// While `normalized` is off: trailing raw bytes that might start an escape or UTF-8 sequence.
    tail: Vec<u8>,
    /// Findings already emitted whose bytes may still be seen again (by the other view).
    emitted: HashSet<FindingKey>,
    finished: bool,
}

// Manual: the carried bytes are the caller's data and may hold the very secret being looked for.
impl std::fmt::Debug for StreamScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamScanner")
            .field("location", &self.location)
            .field("buffered_len", &self.buffered_len())
            .field("normalizing", &self.normalized.is_some())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl StreamScanner {
    pub(crate) fn new(engine: Engine, location: Location) -> Self {
        Self {
            engine,
            location,
            raw: Lane::default(),
            normalized: None,
            tail: Vec::new(),
            emitted: HashSet::new(),
            finished: false,
        }
    }

    /// Scans the next chunk; returns findings that are now complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Finding> {
        let mut out = Vec::new();
        self.push(chunk, false, &mut out);
        out
    }

    /// Ends the stream; returns the remaining findings.
    #[must_use]
    pub fn finish(mut self) -> Vec<Finding> {
        let mut out = Vec::new();
        self.push(&[], true, &mut out);
        out
    }

    /// Bytes currently carried over (raw plus normalised view), for memory accounting.
    #[must_use]
    pub fn buffered_len(&self) -> usize {
        self.raw.buf.len() + self.normalized.as_ref().map_or(0, |(lane, _)| lane.buf.len())
    }

    fn push(&mut self, chunk: &[u8], is_final: bool, out: &mut Vec<Finding>) {
        if self.finished {
            return;
        }
        self.finished = is_final;
        if self.normalized.is_none() {
            self.maybe_start_normalized(chunk);
        }
        let mut found = Vec::new();
        if let Some((lane, normalizer)) = &mut self.normalized {
            let map = lane.map.get_or_insert_with(OffsetMap::default);
            normalizer.push(chunk, is_final, &mut lane.buf, map);
            lane.scan(&self.engine, is_final, &self.location, &mut found);
        }
        self.raw.buf.extend_from_slice(chunk);
        self.raw.scan(&self.engine, is_final, &self.location, &mut found);

        found.sort_by_key(|f| (f.span.start, f.span.end));
        for finding in found {
            if self.emitted.insert(key_of(&finding)) {
                out.push(finding);
            }
        }
        let floor = self.raw.raw_floor().min(self.normalized.as_ref().map_or(usize::MAX, |(lane, _)| lane.raw_floor()));
        self.emitted.retain(|key| key.1 >= floor);
    }

    /// Starts the normalised view if `chunk` (with the held-back tail) has anything to normalise.
    fn maybe_start_normalized(&mut self, chunk: &[u8]) {
        // A sequence cut by the previous chunk boundary starts in `tail` and ends within the
        // first 3 bytes of `chunk`; everything else is inside `chunk`.
        let mut seam = self.tail.clone();
        seam.extend_from_slice(&chunk[..chunk.len().min(4)]);
        let dirty = normalize::is_dirty(&seam) || normalize::is_dirty(chunk);
        if !dirty {
            seam.clear();
            seam.extend_from_slice(&self.tail);
            seam.extend_from_slice(&chunk[chunk.len().saturating_sub(3)..]);
            let keep = seam.len().min(3);
            let last = &seam[seam.len() - keep..];
            self.tail = last[last.len() - normalize::pending_tail(last)..].to_vec();
            return;
        }
        // Until now the stream was clean, so the normalised view equals the raw carry (minus the
        // held-back tail) and has evaluated exactly the same anchors.
        let raw_end = self.raw.base + self.raw.buf.len();
        let clean_end = raw_end - self.tail.len();
        let lane = Lane {
            buf: self.raw.buf[..self.raw.buf.len() - self.tail.len()].to_vec(),
            base: self.raw.base,
            from: self.raw.from,
            map: Some(OffsetMap::identity_from(self.raw.base, self.raw.base)),
        };
        let normalizer = Normalizer::resume(clean_end, clean_end, &self.tail);
        self.tail.clear();
        self.normalized = Some((lane, normalizer));
    }
}

#[cfg(test)]
mod tests {
    use crate::{DlpConfig, Engine, KnownSecret, Location};

    fn engine() -> Engine {
        let config = DlpConfig {
            known_secrets: vec![KnownSecret::new("route", "Zm9vYmFyYmF6cXV4-0123456789")],
            ..DlpConfig::default()
        };
        Engine::new(&config).unwrap()
    }

    fn streamed(engine: &Engine, input: &[u8], chunk: usize) -> Vec<(&'static str, usize, usize)> {
        let mut scanner = engine.stream(Location::Body);
        let mut found = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            found.extend(scanner.feed(piece));
        }
        found.extend(scanner.finish());
        let mut keys: Vec<_> = found.iter().map(|f| (f.rule_id, f.span.start, f.span.end)).collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn every_chunk_size_matches_whole_scan() {
        let e = engine();
        let input = "x=1 AKIAIOSFODNN7EXAMPLE gh\u{200B}p_0123456789abcdefghijABCDEFGHIJ012345 \
                     api_key = \"q8Zt3Lw9Vx2Rk7Yp5Nm1\" Zm9vYmFyYmF6cXV4-0123456789 %41KIA2345672345672345"
            .as_bytes();
        let mut whole: Vec<_> =
            e.scan(input, &Location::Body).iter().map(|f| (f.rule_id, f.span.start, f.span.end)).collect();
        whole.sort_unstable();
        assert!(whole.len() >= 5, "{whole:?}");
        for chunk in 1..=input.len() {
            assert_eq!(streamed(&e, input, chunk), whole, "chunk size {chunk}");
        }
    }

    #[test]
    fn memory_stays_bounded() {
        let e = engine();
        let mut scanner = e.stream(Location::Body);
        let block = "lorem ipsum %20 dolor \u{200B} sit amet ".repeat(1000);
        for _ in 0..20 {
            let _ = scanner.feed(block.as_bytes());
            assert!(scanner.buffered_len() <= 2 * e.carry_capacity() + 2 * block.len());
        }
        let _ = scanner.feed(b"x");
        assert!(scanner.buffered_len() <= 2 * e.carry_capacity() + 2);
    }
}
