//! The normalised view: undoes cheap evasions so the rules see what a server would see.
//!
//! Applied in one left-to-right pass: valid `%XX` escapes are decoded, zero-width characters and
//! the soft hyphen are dropped, and a small table of Cyrillic, Greek and fullwidth look-alikes is
//! mapped to the ASCII letters and digits they imitate. Each output byte remembers which raw bytes
//! produced it ([`OffsetMap`]) so findings always point into the caller's raw input.
//!
//! The transducer looks at most 3 bytes ahead, so it can run on a stream: an escape or UTF-8
//! sequence cut by a chunk boundary is held back until the next chunk (or flushed literally at the
//! end), which makes streamed output identical to whole-buffer output.

/// Zero-width and invisible code points that are removed.
const INVISIBLE: [u32; 6] = [0x00AD, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF];

/// Look-alikes of ASCII letters, digits and token punctuation (code point, ASCII).
const CONFUSABLES: &[(u32, u8)] = &[
    // Greek capitals and a few lowercase that render like Latin letters.
    (0x0391, b'A'),
    (0x0392, b'B'),
    (0x0395, b'E'),
    (0x0396, b'Z'),
    (0x0397, b'H'),
    (0x0399, b'I'),
    (0x039A, b'K'),
    (0x039C, b'M'),
    (0x039D, b'N'),
    (0x039F, b'O'),
    (0x03A1, b'P'),
    (0x03A4, b'T'),
    (0x03A5, b'Y'),
    (0x03A7, b'X'),
    (0x03B1, b'a'),
    (0x03B9, b'i'),
    (0x03BA, b'k'),
    (0x03BD, b'v'),
    (0x03BF, b'o'),
    (0x03C1, b'p'),
    (0x03C5, b'u'),
    // Cyrillic.
    (0x0405, b'S'),
    (0x0406, b'I'),
    (0x0408, b'J'),
    (0x0410, b'A'),
    (0x0412, b'B'),
    (0x0415, b'E'),
    (0x041A, b'K'),
    (0x041C, b'M'),
    (0x041D, b'H'),
    (0x041E, b'O'),
    (0x0420, b'P'),
    (0x0421, b'C'),
    (0x0422, b'T'),
    (0x0425, b'X'),
    (0x0430, b'a'),
    (0x0435, b'e'),
    (0x043E, b'o'),
    (0x0440, b'p'),
    (0x0441, b'c'),
    (0x0443, b'y'),
    (0x0445, b'x'),
    (0x0455, b's'),
    (0x0456, b'i'),
    (0x0458, b'j'),
    (0x0501, b'd'),
    (0x051B, b'q'),
    (0x051D, b'w'),
];

/// Maps a code point to the ASCII byte it imitates (fullwidth forms by range, others by table).
fn confusable(cp: u32) -> Option<u8> {
    match cp {
        // Fullwidth digits and letters are a fixed offset from ASCII.
        0xFF10..=0xFF19 | 0xFF21..=0xFF3A | 0xFF41..=0xFF5A => u8::try_from(cp - 0xFEE0).ok(),
        0xFF0D => Some(b'-'),
        0xFF3F => Some(b'_'),
        _ => CONFUSABLES.binary_search_by_key(&cp, |&(c, _)| c).ok().map(|i| CONFUSABLES[i].1),
    }
}

/// What the transducer does at a special byte.
enum Step {
    /// Copy `n` bytes unchanged.
    Literal(usize),
    /// Emit one byte in place of `consumed` raw bytes.
    Emit(u8, usize),
    /// Drop `consumed` raw bytes.
    Drop(usize),
    /// Cannot decide before more input arrives.
    NeedMore,
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decides what to do with `data[0]`, which is `%` or a non-ASCII byte.
fn step(data: &[u8], is_final: bool) -> Step {
    let lead = data[0];
    if lead == b'%' {
        return match data.get(1..3) {
            Some(&[h, l]) => match (hex_value(h), hex_value(l)) {
                (Some(h), Some(l)) => Step::Emit(h << 4 | l, 3),
                _ => Step::Literal(1),
            },
            _ if is_final => Step::Literal(1),
            _ => {
                // Only wait if what we have so far could still become an escape.
                if data[1..].iter().all(|&b| hex_value(b).is_some()) { Step::NeedMore } else { Step::Literal(1) }
            }
        };
    }
    let len = match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return Step::Literal(1),
    };
    let Some(seq) = data.get(..len) else {
        let continuation_so_far = data[1..].iter().all(|&b| b & 0xC0 == 0x80);
        return if !is_final && continuation_so_far { Step::NeedMore } else { Step::Literal(1) };
    };
    if seq[1..].iter().any(|&b| b & 0xC0 != 0x80) {
        return Step::Literal(1);
    }
    let mut cp = u32::from(lead) & (0x7F >> len);
    for &b in &seq[1..] {
        cp = cp << 6 | u32::from(b & 0x3F);
    }
    if INVISIBLE.contains(&cp) {
        Step::Drop(len)
    } else if let Some(ascii) = confusable(cp) {
        Step::Emit(ascii, len)
    } else {
        Step::Literal(len)
    }
}

/// Index of the next byte that may need normalising (`%` or non-ASCII), from `start`.
fn find_special(data: &[u8], start: usize) -> Option<usize> {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    const PERCENT: u64 = 0x2525_2525_2525_2525;
    let mut i = start;
    // Eight bytes at a time: a set high bit, or a zero byte after XOR with '%', marks a candidate.
    while i + 8 <= data.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&data[i..i + 8]);
        let w = u64::from_le_bytes(word);
        let x = w ^ PERCENT;
        let has_percent = x.wrapping_sub(ONES) & !x & HIGH;
        if (w & HIGH) | has_percent != 0 {
            break;
        }
        i += 8;
    }
    data[i..].iter().position(|&b| b == b'%' || b >= 0x80).map(|p| p + i)
}

/// `<[u8]>::is_ascii`, but as an OR-reduction the compiler vectorises (several times faster on
/// long inputs, which matters: this runs over every scanned byte).
fn is_ascii(data: &[u8]) -> bool {
    data.chunks(4096).all(|chunk| chunk.iter().fold(0u8, |acc, &b| acc | b) < 0x80)
}

/// True if normalising `data` would change anything (so the normalised view is worth scanning).
/// Incomplete sequences at the end count as clean.
pub(crate) fn is_dirty(data: &[u8]) -> bool {
    // Fast path for the common case: ASCII text can only be dirty through a `%XX` escape.
    if is_ascii(data) {
        return memchr::memchr_iter(b'%', data).any(
            |i| matches!(data.get(i + 1..i + 3), Some(&[h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit()),
        );
    }
    let mut i = 0;
    while let Some(j) = find_special(data, i) {
        match step(&data[j..], true) {
            Step::Literal(n) => i = j + n,
            Step::Emit(..) | Step::Drop(_) => return true,
            Step::NeedMore => return false,
        }
    }
    false
}

/// Number of trailing bytes of `data` that the streaming transducer would hold back.
pub(crate) fn pending_tail(data: &[u8]) -> usize {
    let start = data.len().saturating_sub(3);
    for j in start..data.len() {
        if (data[j] == b'%' || data[j] >= 0xC0) && matches!(step(&data[j..], false), Step::NeedMore) {
            return data.len() - j;
        }
    }
    0
}

/// One run of the view → raw mapping.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// First view offset of the run.
    view: usize,
    /// Raw offset it came from.
    raw: usize,
    /// 0: a run where each view byte is one raw byte; otherwise the single view byte at `view`
    /// came from this many raw bytes.
    raw_len: usize,
}

/// Maps offsets of the normalised view back to raw input offsets.
#[derive(Debug, Clone, Default)]
pub(crate) struct OffsetMap {
    segments: Vec<Segment>,
}

impl OffsetMap {
    /// A map where view offset `view` is raw offset `raw`, one to one from there on.
    pub(crate) fn identity_from(view: usize, raw: usize) -> Self {
        Self { segments: vec![Segment { view, raw, raw_len: 0 }] }
    }

    fn push_identity(&mut self, view: usize, raw: usize) {
        if let Some(last) = self.segments.last()
            && last.raw_len == 0
            && last.raw + (view - last.view) == raw
        {
            return;
        }
        self.segments.push(Segment { view, raw, raw_len: 0 });
    }

    fn push_mapped(&mut self, view: usize, raw: usize, raw_len: usize) {
        self.segments.push(Segment { view, raw, raw_len });
    }

    fn segment(&self, view: usize) -> Segment {
        let idx = self.segments.partition_point(|s| s.view <= view).saturating_sub(1);
        self.segments[idx]
    }

    /// Raw offset of the first raw byte behind view byte `view`.
    pub(crate) fn raw_start(&self, view: usize) -> usize {
        let s = self.segment(view);
        if s.raw_len == 0 { s.raw + (view - s.view) } else { s.raw }
    }

    /// Raw offset just past the raw bytes behind view byte `view`.
    pub(crate) fn raw_end(&self, view: usize) -> usize {
        let s = self.segment(view);
        if s.raw_len == 0 { s.raw + (view - s.view) + 1 } else { s.raw + s.raw_len }
    }

    /// Forgets runs that end before view offset `view` (streaming keeps memory bounded).
    pub(crate) fn forget_before(&mut self, view: usize) {
        let idx = self.segments.partition_point(|s| s.view <= view).saturating_sub(1);
        self.segments.drain(..idx);
    }
}

/// Streaming normaliser state: where it is in raw and view coordinates, plus held-back bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Normalizer {
    pending: Vec<u8>,
    /// Raw offset of the first pending byte (or of the next chunk when nothing is pending).
    raw_pos: usize,
    /// View offset of the next output byte.
    view_pos: usize,
}

impl Normalizer {
    /// A normaliser that continues a clean stream at the given raw and view offsets with `pending`
    /// (raw bytes at `raw_pos`) held back.
    pub(crate) fn resume(raw_pos: usize, view_pos: usize, pending: &[u8]) -> Self {
        Self { pending: pending.to_vec(), raw_pos, view_pos }
    }

    /// Normalises `chunk`, appending view bytes to `out` and runs to `map`.
    pub(crate) fn push(&mut self, chunk: &[u8], is_final: bool, out: &mut Vec<u8>, map: &mut OffsetMap) {
        let joined;
        let data: &[u8] = if self.pending.is_empty() {
            chunk
        } else {
            // Rare (a sequence cut by a chunk boundary): one copy of the chunk is fine.
            let mut buf = std::mem::take(&mut self.pending);
            buf.extend_from_slice(chunk);
            joined = buf;
            &joined
        };
        let base = self.raw_pos;
        let mut i = 0;
        loop {
            let next = find_special(data, i).unwrap_or(data.len());
            if next > i {
                map.push_identity(self.view_pos, base + i);
                out.extend_from_slice(&data[i..next]);
                self.view_pos += next - i;
            }
            if next == data.len() {
                i = next;
                break;
            }
            match step(&data[next..], is_final) {
                Step::Literal(n) => {
                    map.push_identity(self.view_pos, base + next);
                    out.extend_from_slice(&data[next..next + n]);
                    self.view_pos += n;
                    i = next + n;
                }
                Step::Emit(byte, consumed) => {
                    map.push_mapped(self.view_pos, base + next, consumed);
                    out.push(byte);
                    self.view_pos += 1;
                    i = next + consumed;
                }
                Step::Drop(consumed) => i = next + consumed,
                Step::NeedMore => {
                    i = next;
                    break;
                }
            }
        }
        self.pending = data[i..].to_vec();
        self.raw_pos = base + i;
    }
}

/// Normalises a whole buffer: the view and its map.
pub(crate) fn normalize_all(data: &[u8]) -> (Vec<u8>, OffsetMap) {
    let mut out = Vec::with_capacity(data.len());
    let mut map = OffsetMap::default();
    Normalizer::default().push(data, true, &mut out, &mut map);
    (out, map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(data: &[u8]) -> Vec<u8> {
        normalize_all(data).0
    }

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(CONFUSABLES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn decodes_percent_escapes_of_either_case() {
        assert_eq!(view(b"gh%70_%2f%2F"), b"ghp_//");
        assert_eq!(view(b"100% %zz %4"), b"100% %zz %4");
    }

    #[test]
    fn removes_invisible_characters() {
        assert_eq!(view("g\u{200B}h\u{00AD}p\u{FEFF}_\u{2060}x\u{200D}".as_bytes()), b"ghp_x");
    }

    #[test]
    fn maps_confusables_to_ascii() {
        // Cyrillic А, Greek Κ, fullwidth I and A.
        assert_eq!(view("\u{0410}\u{039A}\u{FF29}\u{FF21}".as_bytes()), b"AKIA");
        assert_eq!(view("ｇｈｐ＿１".as_bytes()), b"ghp_1");
        // Unrelated non-ASCII stays as is.
        assert_eq!(view("naïve – ok".as_bytes()), "naïve – ok".as_bytes());
    }

    #[test]
    fn map_points_back_to_raw_bytes() {
        let raw = "a%41\u{200B}b\u{0410}c".as_bytes();
        let (v, map) = normalize_all(raw);
        assert_eq!(v, b"aAbAc");
        let spans: Vec<_> = (0..v.len()).map(|i| (map.raw_start(i), map.raw_end(i))).collect();
        assert_eq!(spans, [(0, 1), (1, 4), (7, 8), (8, 10), (10, 11)]);
    }

    #[test]
    fn streaming_matches_whole_for_every_split() {
        let raw = "x%4\u{0410}%41\u{200B}ｇ%".as_bytes();
        let whole = view(raw);
        for cut in 0..=raw.len() {
            let mut n = Normalizer::default();
            let (mut out, mut map) = (Vec::new(), OffsetMap::default());
            n.push(&raw[..cut], false, &mut out, &mut map);
            n.push(&raw[cut..], true, &mut out, &mut map);
            assert_eq!(out, whole, "cut at {cut}");
        }
    }

    #[test]
    fn dirtiness_and_pending_tail() {
        assert!(!is_dirty(b"plain text 100% sure"));
        assert!(is_dirty(b"a%20b"));
        assert!(is_dirty("zero\u{200B}width".as_bytes()));
        assert!(!is_dirty("café".as_bytes()));
        assert_eq!(pending_tail(b"abc%4"), 2);
        assert_eq!(pending_tail(b"abc%"), 1);
        assert_eq!(pending_tail(b"abc%g"), 0);
        assert_eq!(pending_tail(&[b'a', 0xE2, 0x80]), 2);
    }
}
