//! Known secrets: the exact values the sidecar holds, and every encoding an agent might use to
//! smuggle one out, compiled into one Aho-Corasick automaton.
//!
//! Base64 needs care: a secret embedded in a larger blob starts at byte offset 0, 1 or 2 of a
//! 3-byte group, and each offset encodes it differently. For each offset we keep only the
//! characters whose 6 bits all come from the secret; that core is a substring of every base64
//! text containing the secret at that alignment, padded or not, standard or (separately)
//! url-safe alphabet.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

use crate::config::KnownSecret;
use crate::error::DlpError;
use crate::finding::{Base64Alphabet, Encoding};

/// Shorter values would make base64 cores of a handful of characters: too many false positives.
pub const MIN_SECRET_LEN: usize = 8;

/// One pattern of the automaton.
#[derive(Debug, Clone)]
pub(crate) struct Variant {
    /// Index into [`KnownSecrets::names`].
    pub(crate) secret: usize,
    pub(crate) encoding: Encoding,
    /// Length of the encoded form.
    pub(crate) len: usize,
}

/// The known-secret variants (matched by the engine's prefilter, in one automaton group).
#[derive(Clone)]
pub(crate) struct KnownSecrets {
    /// The encoded forms, in the order of `variants`; searched by the engine's prefilter.
    pub(crate) patterns: Vec<Vec<u8>>,
    pub(crate) variants: Vec<Variant>,
    pub(crate) names: Vec<Arc<str>>,
    /// Longest pattern, which bounds how much a stream must carry over.
    pub(crate) max_len: usize,
}

// Manual: the patterns are the secrets' encodings.
impl std::fmt::Debug for KnownSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownSecrets").field("names", &self.names).field("variants", &self.variants.len()).finish()
    }
}

/// Base64 characters fully determined by `secret` when it starts at byte `offset` of a group.
fn base64_core(secret: &[u8], offset: usize, alphabet: Base64Alphabet) -> Vec<u8> {
    let mut aligned = vec![0u8; offset];
    aligned.extend_from_slice(secret);
    let encoded = match alphabet {
        Base64Alphabet::Standard => STANDARD_NO_PAD.encode(&aligned),
        Base64Alphabet::UrlSafe => URL_SAFE_NO_PAD.encode(&aligned),
    };
    // Character i holds bits [6i, 6i + 6); keep those inside the secret's bits.
    let first = (8 * offset).div_ceil(6);
    let end = (8 * (offset + secret.len())) / 6;
    encoded.as_bytes()[first..end].to_vec()
}

fn hex(secret: &[u8], upper: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper { b"0123456789ABCDEF" } else { b"0123456789abcdef" };
    secret.iter().flat_map(|&b| [digits[usize::from(b >> 4)], digits[usize::from(b & 15)]]).collect()
}

fn percent(secret: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(secret.len() * 3);
    for &b in secret {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'%',
                b"0123456789ABCDEF"[usize::from(b >> 4)],
                b"0123456789ABCDEF"[usize::from(b & 15)],
            ]);
        }
    }
    out
}

fn json_escaped(secret: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(secret.len() + 8);
    for &b in secret {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1F => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out
}

/// Every encoded form of `secret` that the automaton should contain, without duplicates.
pub(crate) fn variants_of(secret: &[u8]) -> Vec<(Vec<u8>, Encoding)> {
    let mut out: Vec<(Vec<u8>, Encoding)> = vec![(secret.to_vec(), Encoding::Raw)];
    for alphabet in [Base64Alphabet::Standard, Base64Alphabet::UrlSafe] {
        for offset in 0..3u8 {
            out.push((base64_core(secret, usize::from(offset), alphabet), Encoding::Base64 { alphabet, offset }));
        }
    }
    out.push((hex(secret, false), Encoding::HexLower));
    out.push((hex(secret, true), Encoding::HexUpper));
    out.push((percent(secret), Encoding::Percent));
    out.push((json_escaped(secret), Encoding::JsonEscaped));
    // Identical byte strings would report the same span twice; keep the first (simplest) label.
    let mut seen: Vec<Vec<u8>> = Vec::with_capacity(out.len());
    out.retain(|(bytes, _)| {
        if seen.contains(bytes) {
            false
        } else {
            seen.push(bytes.clone());
            true
        }
    });
    out
}

impl KnownSecrets {
    /// Validates the secrets and builds one automaton over all their variants.
    /// Returns `None` when there is nothing to look for.
    pub(crate) fn build(secrets: &[KnownSecret]) -> Result<Option<Self>, DlpError> {
        if secrets.is_empty() {
            return Ok(None);
        }
        let mut names: Vec<Arc<str>> = Vec::with_capacity(secrets.len());
        let mut patterns = Vec::new();
        let mut variants = Vec::new();
        for (index, secret) in secrets.iter().enumerate() {
            if secret.name.is_empty() {
                return Err(DlpError::EmptySecretName);
            }
            if names.iter().any(|n| **n == *secret.name) {
                return Err(DlpError::DuplicateSecretName { name: secret.name.clone() });
            }
            if secret.value.expose().len() < MIN_SECRET_LEN {
                return Err(DlpError::SecretTooShort { name: secret.name.clone(), min: MIN_SECRET_LEN });
            }
            names.push(secret.name.as_str().into());
            for (bytes, encoding) in variants_of(secret.value.expose()) {
                variants.push(Variant { secret: index, encoding, len: bytes.len() });
                patterns.push(bytes);
            }
        }
        let max_len = patterns.iter().map(Vec::len).max().unwrap_or(0);
        Ok(Some(Self { patterns, variants, names, max_len }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    const SECRET: &[u8] = b"route-token-\xfb\xff-value-123";

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        memchr::memmem::find(hay, needle).is_some()
    }

    #[test]
    fn base64_core_is_found_at_every_alignment_and_padding() {
        let variants = variants_of(SECRET);
        for prefix_len in 0..6 {
            let mut blob = b"prefix".to_vec()[..prefix_len].to_vec();
            blob.extend_from_slice(SECRET);
            blob.extend_from_slice(b"suffix!");
            for encoded in [STANDARD.encode(&blob), URL_SAFE.encode(&blob), STANDARD_NO_PAD.encode(&blob)] {
                assert!(variants.iter().any(|(v, _)| contains(encoded.as_bytes(), v)), "prefix {prefix_len}");
            }
        }
        // Also the secret alone, with padding.
        assert!(variants.iter().any(|(v, _)| contains(STANDARD.encode(SECRET).as_bytes(), v)));
    }

    #[test]
    fn other_encodings() {
        let variants = variants_of(b"a\"b/c d\\e\nf00");
        let by = |e: Encoding| variants.iter().find(|(_, enc)| *enc == e).map(|(v, _)| v.clone());
        assert_eq!(by(Encoding::Percent).unwrap(), b"a%22b%2Fc%20d%5Ce%0Af00");
        assert_eq!(by(Encoding::JsonEscaped).unwrap(), b"a\\\"b/c d\\\\e\\nf00");
        assert_eq!(by(Encoding::HexLower).unwrap(), hex(b"a\"b/c d\\e\nf00", false));
        // An all-alphanumeric secret's percent/JSON forms equal the raw one and are dropped.
        let plain = variants_of(b"abcdefgh12");
        assert!(plain.iter().all(|(_, e)| !matches!(e, Encoding::Percent | Encoding::JsonEscaped)));
    }

    #[test]
    fn rejects_bad_configs() {
        assert!(matches!(KnownSecrets::build(&[KnownSecret::new("", "abcdefghijkl")]), Err(DlpError::EmptySecretName)));
        assert!(matches!(KnownSecrets::build(&[KnownSecret::new("a", "short")]), Err(DlpError::SecretTooShort { .. })));
        assert!(matches!(
            KnownSecrets::build(&[KnownSecret::new("a", "abcdefghijkl"), KnownSecret::new("a", "mnopqrstuvwx")]),
            Err(DlpError::DuplicateSecretName { .. })
        ));
        let err = KnownSecrets::build(&[KnownSecret::new("a", "zq7")]).unwrap_err();
        assert!(!err.to_string().contains("zq7"), "never echoes the value");
    }
}
