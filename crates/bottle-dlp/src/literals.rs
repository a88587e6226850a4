//! Finds every occurrence of a set of literals, overlapping ones included, as fast as possible.
//!
//! `aho-corasick` only uses its SIMD "Teddy" searcher for leftmost match semantics, and
//! overlapping search needs standard semantics, which falls back to a byte-at-a-time automaton
//! (~5× slower on clean text). So we drive the packed Teddy searcher directly: it reports the
//! leftmost position where *some* literal starts; we check which literals start there (only those
//! that are a prefix of the reported one, or have it as a prefix) and resume one byte later. That
//! enumerates exactly the (literal, position) pairs an overlapping search would.
//!
//! Teddy fingerprints the first (up to) 4 bytes of each literal, and its false-positive rate grows
//! with short or common literals and with more than 32 of them (it then switches to a slower
//! "fat" layout). So callers can split literals into groups, each with its own searcher: common
//! words in one, distinctive vendor prefixes in another. Above Teddy's pattern limit a group falls
//! back to the automaton.

use aho_corasick::packed::{Config, MatchKind as PackedKind, Searcher};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Input, MatchKind, Span};

#[derive(Debug, Clone)]
enum Finder {
    Packed(Searcher),
    Automaton(AhoCorasick),
}

/// One searcher over a subset of the literals.
#[derive(Debug, Clone)]
struct Part {
    finder: Finder,
    /// Local pattern id → global id.
    ids: Vec<usize>,
    /// Local id → local ids of literals that can start at the same position (prefix relation).
    related: Vec<Vec<usize>>,
}

/// A compiled literal set.
#[derive(Clone)]
pub(crate) struct Literals {
    parts: Vec<Part>,
    patterns: Vec<Vec<u8>>,
    max_len: usize,
}

// Manual: for known secrets the literals are the secrets' encodings.
impl std::fmt::Debug for Literals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Literals").field("count", &self.patterns.len()).field("max_len", &self.max_len).finish()
    }
}

impl Part {
    fn new(patterns: &[Vec<u8>], ids: Vec<usize>) -> Result<Self, aho_corasick::BuildError> {
        let local: Vec<&[u8]> = ids.iter().map(|&id| patterns[id].as_slice()).collect();
        let packed = Config::new().match_kind(PackedKind::LeftmostFirst).builder().extend(&local).build();
        let finder = match packed {
            Some(searcher) => Finder::Packed(searcher),
            None => Finder::Automaton(AhoCorasickBuilder::new().match_kind(MatchKind::Standard).build(&local)?),
        };
        let related = local
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (0..local.len()).filter(|&j| j != i && (p.starts_with(local[j]) || local[j].starts_with(p))).collect()
            })
            .collect();
        Ok(Self { finder, ids, related })
    }
}

impl Literals {
    /// One searcher over all `patterns`.
    #[cfg(test)]
    pub(crate) fn new(patterns: Vec<Vec<u8>>) -> Result<Self, aho_corasick::BuildError> {
        Self::grouped(patterns, |_, _| 0)
    }

    /// One searcher per distinct `group(id, literal)` value.
    pub(crate) fn grouped(
        patterns: Vec<Vec<u8>>,
        group: impl Fn(usize, &[u8]) -> usize,
    ) -> Result<Self, aho_corasick::BuildError> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (id, pattern) in patterns.iter().enumerate() {
            let g = group(id, pattern);
            if groups.len() <= g {
                groups.resize(g + 1, Vec::new());
            }
            groups[g].push(id);
        }
        let parts = groups
            .into_iter()
            .filter(|ids| !ids.is_empty())
            .map(|ids| Part::new(&patterns, ids))
            .collect::<Result<Vec<_>, _>>()?;
        let max_len = patterns.iter().map(Vec::len).max().unwrap_or(0);
        Ok(Self { parts, patterns, max_len })
    }

    /// Calls `found(pattern_id, start)` for every occurrence in `hay` starting in `from..limit`
    /// (in no particular order).
    pub(crate) fn for_each(&self, hay: &[u8], from: usize, limit: usize, mut found: impl FnMut(usize, usize)) {
        let end = hay.len().min(limit.saturating_add(self.max_len));
        if from >= end {
            return;
        }
        for part in &self.parts {
            match &part.finder {
                Finder::Packed(searcher) => {
                    let mut pos = from;
                    while pos < end {
                        let Some(hit) = searcher.find_in(hay, Span { start: pos, end }) else { break };
                        let start = hit.start();
                        if start >= limit {
                            break;
                        }
                        let reported = hit.pattern().as_usize();
                        found(part.ids[reported], start);
                        for &local in &part.related[reported] {
                            let id = part.ids[local];
                            if hay[start..end].starts_with(&self.patterns[id]) {
                                found(id, start);
                            }
                        }
                        pos = start + 1;
                    }
                }
                Finder::Automaton(automaton) => {
                    for hit in automaton.find_overlapping_iter(Input::new(hay).span(from..end)) {
                        if hit.start() < limit {
                            found(part.ids[hit.pattern().as_usize()], hit.start());
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(lits: &Literals, hay: &[u8]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        lits.for_each(hay, 0, hay.len(), |id, at| out.push((id, at)));
        out.sort_unstable();
        out
    }

    fn patterns(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|p| p.as_bytes().to_vec()).collect()
    }

    #[test]
    fn packed_and_automaton_agree_on_overlaps() {
        let pats = patterns(&["abc", "bcde", "abcd", "cd", "zzz", "abcdx"]);
        let packed = Literals::new(pats.clone()).unwrap();
        assert!(packed.parts.iter().all(|p| matches!(p.finder, Finder::Packed(_))));
        let automaton = Literals {
            parts: vec![Part {
                finder: Finder::Automaton(AhoCorasickBuilder::new().build(&pats).unwrap()),
                ids: (0..pats.len()).collect(),
                related: vec![Vec::new(); pats.len()],
            }],
            ..packed.clone()
        };
        let hay = b"xxabcdabcdx zzzz abc";
        let expected = vec![(0, 2), (0, 6), (0, 17), (2, 2), (2, 6), (3, 4), (3, 8), (4, 12), (4, 13), (5, 6)];
        assert_eq!(all(&packed, hay), expected);
        assert_eq!(all(&automaton, hay), expected);
    }

    #[test]
    fn many_patterns_fall_back_to_the_automaton() {
        let pats: Vec<Vec<u8>> = (0..200).map(|i| format!("pattern-{i:03}").into_bytes()).collect();
        let lits = Literals::new(pats).unwrap();
        assert!(matches!(lits.parts[0].finder, Finder::Automaton(_)));
        assert_eq!(all(&lits, b"..pattern-123.."), vec![(123, 2)]);
    }

    #[test]
    fn respects_from_and_limit() {
        let lits = Literals::new(patterns(&["ab", "abcd"])).unwrap();
        let mut out = Vec::new();
        lits.for_each(b"abcdabcdab", 1, 6, |id, at| out.push((id, at)));
        out.sort_unstable();
        assert_eq!(out, vec![(0, 4), (1, 4)]);
    }
}
