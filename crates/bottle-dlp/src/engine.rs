//! The [`Engine`]: compiled rules and known secrets, shared cheaply across threads, and the lane
//! scanner that whole-buffer, header and streaming scans all run on.
//!
//! A *lane* is a byte sequence with an offset map back to the caller's raw input: the raw bytes
//! themselves, or their normalised view. Both lanes run the same scan; findings from either are
//! reported in raw offsets and de-duplicated. Each anchor is evaluated in a window that depends
//! only on its position, never on where a chunk happened to end, which is what makes streaming
//! results identical to whole-buffer results.

use std::ops::Range;
use std::sync::Arc;

use crate::config::DlpConfig;
use crate::error::DlpError;
use crate::finding::{Confidence, Finding, FindingKind, Location, sort_dedup};
use crate::known::KnownSecrets;
use crate::literals::Literals;
use crate::normalize::{self, OffsetMap};
use crate::rules::{CompiledRule, RULES, Window};
use crate::stream::StreamScanner;

/// Rule id of known-secret findings.
pub const KNOWN_SECRET_RULE_ID: &str = "known-secret";
const KNOWN_SECRET_DESCRIPTION: &str = "value of a secret held by the sidecar";

/// Inputs are searched in blocks this big, so the several literal searchers and the
/// normalisation check read each byte from cache rather than from memory.
const BLOCK: usize = 64 << 10;

/// Slack for the normaliser's 3-byte look-ahead, so a window never ends on a byte the streaming
/// normaliser might still rewrite.
const NORMALIZER_SLACK: usize = 4;

/// Per anchor literal: the rules it triggers.
#[derive(Debug)]
struct Anchor {
    len: usize,
    rules: Vec<usize>,
}

/// The `token_patterns` detector: anchor literals plus compiled rules.
#[derive(Debug)]
struct TokenRules {
    literals: Vec<&'static str>,
    anchors: Vec<Anchor>,
    rules: Vec<CompiledRule>,
}

impl TokenRules {
    fn build() -> Result<Self, DlpError> {
        let rules = RULES.iter().map(CompiledRule::compile).collect::<Result<Vec<_>, _>>()?;
        let mut literals: Vec<&'static str> = Vec::new();
        let mut anchors: Vec<Anchor> = Vec::new();
        for (index, rule) in RULES.iter().enumerate() {
            for &literal in rule.anchors {
                // One automaton pattern per distinct literal, shared by every rule that uses it.
                if let Some(pos) = literals.iter().position(|&l| l == literal) {
                    anchors[pos].rules.push(index);
                } else {
                    literals.push(literal);
                    anchors.push(Anchor { len: literal.len(), rules: vec![index] });
                }
            }
        }
        Ok(Self { literals, anchors, rules })
    }

    fn anchor_count(&self) -> usize {
        self.anchors.len()
    }
}

/// Teddy's pattern limit; beyond it a prefilter group falls back to a slower automaton.
const TEDDY_MAX: usize = 64;

#[derive(Debug)]
struct Inner {
    token: Option<TokenRules>,
    known: Option<KnownSecrets>,
    /// One prefilter over the rule anchors (ids `0..anchor_count`) and the known-secret variants
    /// (ids from `anchor_count`), so clean text is read by as few SIMD passes as possible.
    prefilter: Literals,
    anchor_count: usize,
    /// An anchor at lane offset `a` is evaluated only once bytes up to `a + horizon` are present
    /// (or the input ended): every window it may use then lies inside the buffer.
    horizon: usize,
    /// Bytes a stream keeps before its next unevaluated anchor (longest look-behind plus one
    /// byte for the edge check).
    keep_before: usize,
}

/// One lane's bytes for one scan step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LaneInput<'a> {
    /// Bytes; `buf[0]` is at lane offset `base`.
    pub(crate) buf: &'a [u8],
    pub(crate) base: usize,
    /// The input ends with `buf`.
    pub(crate) is_final: bool,
    /// Lane → raw offsets; `None` for the raw lane.
    pub(crate) map: Option<&'a OffsetMap>,
}

/// The compiled secret-detection engine. Immutable; clone it freely (an `Arc` bump) and share it
/// across threads.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

// Manual: the derived form would print the known-secret automaton's patterns, i.e. the secrets.
impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("token_patterns", &self.inner.token.as_ref().map(|t| t.rules.len()))
            .field("known_secrets", &self.inner.known.as_ref().map(|k| &k.names))
            .field("carry_capacity", &self.carry_capacity())
            .finish()
    }
}

impl Engine {
    /// Builds an engine from a configuration.
    ///
    /// # Errors
    /// A known secret with an empty, duplicate or too short (< 8 bytes) value or name, or an
    /// automaton that cannot be built.
    pub fn new(config: &DlpConfig) -> Result<Self, DlpError> {
        let token = if config.detectors.token_patterns { Some(TokenRules::build()?) } else { None };
        let known = if config.detectors.known_secrets {
            KnownSecrets::build(&config.known_secrets)?
        } else {
            // Still validate, so a config error is not hidden by a disabled detector.
            KnownSecrets::build(&config.known_secrets)?;
            None
        };
        let rule_reach = token.as_ref().map_or(0, |t| {
            t.anchors.iter().flat_map(|a| a.rules.iter().map(move |&r| a.len + RULES[r].after + 1)).max().unwrap_or(0)
        });
        let known_reach = known.as_ref().map_or(0, |k| k.max_len);
        let anchor_literals: &[&str] = token.as_ref().map_or(&[], |t| &t.literals);
        let anchor_count = anchor_literals.len();
        let mut patterns: Vec<Vec<u8>> = anchor_literals.iter().map(|l| l.as_bytes().to_vec()).collect();
        patterns.extend(known.as_ref().map_or(&[][..], |k| &k.patterns).iter().cloned());
        // Known-secret variants are long and distinctive like vendor prefixes: share that group
        // (one pass fewer) while it fits Teddy, else give them their own.
        let distinctive = patterns[..anchor_count].iter().filter(|p| crate::rules::anchor_group(p) == 1).count();
        let known_group = if distinctive + (patterns.len() - anchor_count) <= TEDDY_MAX { 1 } else { 2 };
        let prefilter = Literals::grouped(patterns, |id, literal| {
            if id < anchor_count { crate::rules::anchor_group(literal) } else { known_group }
        })
        .map_err(|source| DlpError::Automaton { what: "prefilter", source })?;
        let keep_before = token.as_ref().map_or(0, |t| t.rules.iter().map(|r| r.rule.before).max().unwrap_or(0)) + 1;
        Ok(Self {
            inner: Arc::new(Inner {
                token,
                known,
                prefilter,
                anchor_count,
                horizon: rule_reach.max(known_reach) + NORMALIZER_SLACK,
                keep_before,
            }),
        })
    }

    /// Scans one complete input (a host, path, query, body or git line).
    #[must_use]
    pub fn scan(&self, input: &[u8], location: &Location) -> Vec<Finding> {
        let mut out = Vec::new();
        let raw = LaneInput { buf: input, base: 0, is_final: true, map: None };
        let mut dirty = false;
        let mut from = 0;
        while from < input.len() {
            let limit = (from + BLOCK).min(input.len());
            self.scan_range(raw, from, limit, location, &mut out);
            // Two bytes of overlap so an escape cut by the block boundary is seen.
            dirty = dirty || normalize::is_dirty(&input[from..(limit + 2).min(input.len())]);
            from = limit;
        }
        // The normalised view is only worth a second pass if normalising changes something.
        if dirty {
            let (view, map) = normalize::normalize_all(input);
            let lane = LaneInput { buf: &view, base: 0, is_final: true, map: Some(&map) };
            self.scan_lane(lane, 0, location, &mut out);
        }
        sort_dedup(&mut out);
        out
    }

    /// Starts a streaming scan (e.g. of a request body) with bounded memory.
    #[must_use]
    pub fn stream(&self, location: Location) -> StreamScanner {
        StreamScanner::new(self.clone(), location)
    }

    /// Upper bound on the bytes a [`StreamScanner`] keeps between chunks, per view.
    #[must_use]
    pub fn carry_capacity(&self) -> usize {
        self.inner.horizon + self.inner.keep_before
    }

    /// Number of distinct rule anchor literals in the prefilter.
    #[must_use]
    pub fn anchor_count(&self) -> usize {
        self.inner.token.as_ref().map_or(0, TokenRules::anchor_count)
    }

    pub(crate) fn keep_before(&self) -> usize {
        self.inner.keep_before
    }

    /// Evaluates every anchor and known-secret hit in `lane` that starts at or after `from` and
    /// whose windows are complete. Returns the lane offset of the first hit left for later.
    pub(crate) fn scan_lane(
        &self,
        lane: LaneInput<'_>,
        from: usize,
        location: &Location,
        out: &mut Vec<Finding>,
    ) -> usize {
        let end = lane.base + lane.buf.len();
        let limit = if lane.is_final { end } else { end.saturating_sub(self.inner.horizon) };
        if limit <= from {
            return from;
        }
        let mut block = from;
        while block < limit {
            let block_end = (block + BLOCK).min(limit);
            self.scan_range(lane, block, block_end, location, out);
            block = block_end;
        }
        limit
    }

    /// Evaluates the hits starting in `from..limit` (lane offsets); their windows must be
    /// complete in `lane` (or cut by its final end).
    fn scan_range(&self, lane: LaneInput<'_>, from: usize, limit: usize, location: &Location, out: &mut Vec<Finding>) {
        let end = lane.base + lane.buf.len();
        let to_raw = |span: Range<usize>| match lane.map {
            Some(map) => map.raw_start(span.start)..map.raw_end(span.end - 1),
            None => span,
        };
        let mut spans = Vec::new();
        let anchor_count = self.inner.anchor_count;
        self.inner.prefilter.for_each(lane.buf, from - lane.base, limit - lane.base, |pattern, start| {
            let anchor = lane.base + start;
            if pattern >= anchor_count {
                if let Some(known) = &self.inner.known {
                    let variant = &known.variants[pattern - anchor_count];
                    out.push(Finding {
                        rule_id: KNOWN_SECRET_RULE_ID,
                        description: KNOWN_SECRET_DESCRIPTION,
                        confidence: Confidence::High,
                        kind: FindingKind::Secret,
                        location: location.clone(),
                        span: to_raw(anchor..anchor + variant.len),
                        secret_name: Some(known.names[variant.secret].clone()),
                        encoding: Some(variant.encoding),
                    });
                }
                return;
            }
            let Some(token) = &self.inner.token else { return };
            let info = &token.anchors[pattern];
            let anchor_end = anchor + info.len;
            for &index in &info.rules {
                let compiled = &token.rules[index];
                let rule = compiled.rule;
                // One byte past the longest match, to see the token's trailing edge.
                let reach = anchor_end + rule.after + 1;
                let window = Window {
                    buf: lane.buf,
                    base: lane.base,
                    lo: anchor.saturating_sub(rule.before).max(lane.base),
                    hi: reach.min(end),
                    anchor,
                    anchor_end,
                    at_eof: lane.is_final && reach >= end,
                };
                spans.clear();
                let rule = compiled.eval(&window, &mut spans);
                for span in spans.drain(..).filter(|s| s.start < s.end) {
                    out.push(Finding {
                        rule_id: rule.id,
                        description: rule.description,
                        confidence: rule.confidence,
                        kind: FindingKind::Secret,
                        location: location.clone(),
                        span: to_raw(span),
                        secret_name: None,
                        encoding: None,
                    });
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KnownSecret;

    fn engine() -> Engine {
        Engine::new(&DlpConfig::default()).unwrap()
    }

    #[test]
    fn engine_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Engine>();
        let e = engine();
        let clone = e.clone();
        assert!(Arc::ptr_eq(&e.inner, &clone.inner));
    }

    #[test]
    fn anchor_groups_fit_the_fast_simd_prefilter() {
        // Teddy's fast (slim, 256-bit) form handles up to 32 literals per searcher.
        let e = engine();
        let literals = &e.inner.token.as_ref().unwrap().literals;
        for group in 0..2 {
            let n = literals.iter().filter(|l| crate::rules::anchor_group(l.as_bytes()) == group).count();
            assert!(n <= 32, "group {group} has {n} anchors");
        }
        assert_eq!(e.anchor_count(), literals.len());
    }

    #[test]
    fn clean_text_has_no_findings() {
        let text = b"fn main() {\n    let key = map.get(&name);\n    println!(\"{key:?}\");\n}\n";
        assert!(engine().scan(text, &Location::Body).is_empty());
    }

    #[test]
    fn finds_evasions_in_the_normalised_view() {
        let token = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
        let e = engine();
        let zero_width: String = token.chars().flat_map(|c| [c, '\u{200B}']).collect();
        let percent = token.replace('_', "%5F");
        let confusable = token.replace('A', "\u{0410}").replace('0', "\u{FF10}");
        for evasion in [zero_width, percent, confusable] {
            let found = e.scan(evasion.as_bytes(), &Location::Query);
            assert_eq!(found.len(), 1, "{evasion:?}: {found:?}");
            assert_eq!(found[0].rule_id, "github-personal-access-token");
            assert_eq!(found[0].span.start, 0);
            assert!(found[0].span.end >= evasion.len() - 3);
        }
    }

    #[test]
    fn known_secrets_in_every_encoding() {
        use base64::Engine as _;
        let secret = b"s3cr3t-route-token/with+odd=chars";
        let config = DlpConfig {
            known_secrets: vec![KnownSecret::new("anthropic-route", secret.to_vec())],
            ..DlpConfig::default()
        };
        let e = Engine::new(&config).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut hex = String::new();
        for b in secret {
            hex.push_str(&format!("{b:02X}"));
        }
        let encodings = [
            String::from_utf8(secret.to_vec()).unwrap(),
            b64.encode(secret),
            b64.encode([b"x".as_slice(), secret].concat()),
            url.encode([b"xy".as_slice(), secret, b"tail"].concat()),
            hex.clone(),
            hex.to_lowercase(),
            "s3cr3t-route-token%2Fwith%2Bodd%3Dchars".to_owned(),
            "s3cr3t-route-token%2fwith%2bodd%3dchars".to_owned(),
            "s3cr3t-route-token\\/with+odd=chars".to_owned().replace("\\/", "/"),
        ];
        for encoded in encodings {
            let found = e.scan(encoded.as_bytes(), &Location::Body);
            assert!(found.iter().any(|f| f.secret_name.as_deref() == Some("anthropic-route")), "{encoded}");
            let shown = format!("{found:?} {}", found[0]);
            assert!(!shown.contains("s3cr3t"), "{shown}");
        }
    }

    #[test]
    fn debug_never_shows_secret_values() {
        let config =
            DlpConfig { known_secrets: vec![KnownSecret::new("route", "zq-value-0123456789")], ..DlpConfig::default() };
        let e = Engine::new(&config).unwrap();
        let mut stream = e.stream(Location::Body);
        let _ = stream.feed(b"prefix zq-value-0123456789 and more");
        let shown = format!("{e:?} {stream:?}");
        assert!(shown.contains("route"), "{shown}");
        assert!(!shown.contains("zq-value") && !shown.contains("prefix"), "{shown}");
    }

    #[test]
    fn disabled_detectors_find_nothing() {
        let config = DlpConfig {
            detectors: crate::Detectors { token_patterns: false, known_secrets: false },
            known_secrets: vec![KnownSecret::new("t", "abcdefgh12345678")],
        };
        let e = Engine::new(&config).unwrap();
        assert!(e.scan(b"abcdefgh12345678 AKIAIOSFODNN7EXAMPLE", &Location::Body).is_empty());
    }
}
