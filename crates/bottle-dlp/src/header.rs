//! Header checks: structural validation (request smuggling, log injection) and secret scanning of
//! a header's values, concatenated so a secret split across repeated headers is still found.

use std::sync::Arc;

use crate::engine::Engine;
use crate::finding::{Confidence, Finding, FindingKind, Location, sort_dedup};

/// Rule id for a header name that is not an RFC 9110 token.
pub const HEADER_NAME_RULE_ID: &str = "header-name-invalid";
/// Rule id for a control character (other than HTAB) in a header value.
pub const HEADER_VALUE_RULE_ID: &str = "header-value-control-char";

/// Shown instead of a header name that is malformed or itself contains a secret, so the finding's
/// location never carries the bytes it is warning about.
const UNPRINTABLE_NAME: &str = "«unprintable header name»";

/// RFC 9110 `tchar`.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn structural(rule_id: &'static str, description: &'static str, location: Location, at: usize) -> Finding {
    Finding {
        rule_id,
        description,
        confidence: Confidence::High,
        kind: FindingKind::Structural,
        location,
        span: at..at + 1,
        secret_name: None,
        encoding: None,
    }
}

fn name_is_valid(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().copied().all(is_token_char)
}

/// Checks one header for bytes that must never be forwarded: a name that is not a token, or a
/// value with CR, LF, NUL or any other control character except HTAB. Findings are
/// [`FindingKind::Structural`] and must block. Value spans are offsets within `value`; a name
/// finding's span is the offending byte's offset within the name.
#[must_use]
pub fn validate_header(name: &[u8], value: &[u8]) -> Vec<Finding> {
    validate_at(name, value, 0, &header_location(name))
}

fn header_location(name: &[u8]) -> Location {
    if name_is_valid(name) {
        Location::Header { name: Arc::from(String::from_utf8_lossy(name).as_ref()) }
    } else {
        Location::Header { name: UNPRINTABLE_NAME.into() }
    }
}

fn validate_at(name: &[u8], value: &[u8], offset: usize, location: &Location) -> Vec<Finding> {
    let mut out = Vec::new();
    if !name_is_valid(name) {
        let at = name.iter().position(|&b| !is_token_char(b)).unwrap_or(0);
        out.push(structural(
            HEADER_NAME_RULE_ID,
            "header name is empty or has a byte outside RFC 9110 token characters",
            location.clone(),
            at,
        ));
    }
    if let Some(at) = value.iter().position(|&b| (b < 0x20 && b != b'\t') || b == 0x7F) {
        out.push(structural(
            HEADER_VALUE_RULE_ID,
            "header value contains CR, LF, NUL or another control character",
            location.clone(),
            offset + at,
        ));
    }
    out
}

impl Engine {
    /// Validates and scans all values of one header name. Values are scanned as one
    /// concatenation (no separator), so spans are offsets within `values.concat()`. A secret in
    /// the name itself is reported with a placeholder location name, never the name.
    #[must_use]
    pub fn scan_header_values(&self, name: &[u8], values: &[&[u8]]) -> Vec<Finding> {
        let name_findings = self.scan(name, &Location::Header { name: UNPRINTABLE_NAME.into() });
        let location = if name_findings.is_empty() {
            header_location(name)
        } else {
            Location::Header { name: UNPRINTABLE_NAME.into() }
        };
        let mut out: Vec<Finding> = name_findings
            .into_iter()
            // Offsets of a name finding refer to the name; mark them so they are not read as
            // value offsets.
            .map(|f| Finding { span: 0..0, ..f })
            .collect();
        let mut offset = 0;
        for value in values {
            out.extend(validate_at(name, value, offset, &location));
            offset += value.len();
        }
        out.extend(self.scan(&values.concat(), &location));
        sort_dedup(&mut out);
        out
    }

    /// Validates and scans a request's headers, grouping repeated names case-insensitively (so
    /// a secret split over two `X-Foo` headers is found).
    #[must_use]
    pub fn scan_headers(&self, headers: &[(&[u8], &[u8])]) -> Vec<Finding> {
        // (lowercased name, name as first sent, values in order)
        type Group<'h> = (Vec<u8>, &'h [u8], Vec<&'h [u8]>);
        let mut groups: Vec<Group<'_>> = Vec::new();
        for &(name, value) in headers {
            let lower = name.to_ascii_lowercase();
            match groups.iter_mut().find(|(key, _, _)| *key == lower) {
                Some((_, _, values)) => values.push(value),
                None => groups.push((lower, name, vec![value])),
            }
        }
        groups.iter().flat_map(|(_, name, values)| self.scan_header_values(name, values)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DlpConfig, KnownSecret};

    #[test]
    fn control_characters_block() {
        for value in [&b"a\r\nX-Injected: 1"[..], b"a\0b", b"a\x1bb", b"a\x7f"] {
            let found = validate_header(b"X-Test", value);
            assert_eq!(found.len(), 1, "{value:?}");
            assert!(found[0].must_block());
            assert_eq!(found[0].rule_id, HEADER_VALUE_RULE_ID);
        }
        assert!(validate_header(b"X-Test", b"tab\tis fine").is_empty());
        let bad_name = validate_header(b"X-Te\r\nst", b"v");
        assert_eq!(bad_name[0].rule_id, HEADER_NAME_RULE_ID);
        assert!(!format!("{}", bad_name[0]).contains("X-Te"));
    }

    #[test]
    fn secret_split_across_repeated_headers() {
        let config =
            DlpConfig { known_secrets: vec![KnownSecret::new("route", "split-me-0123456789")], ..DlpConfig::default() };
        let engine = Engine::new(&config).unwrap();
        let headers: [(&[u8], &[u8]); 3] = [(b"X-Part", b"split-me-"), (b"Accept", b"*/*"), (b"x-part", b"0123456789")];
        let found = engine.scan_headers(&headers);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].span, 0..19);
        assert_eq!(found[0].location, Location::header("X-Part"));
    }

    #[test]
    fn secret_in_header_name_is_not_echoed() {
        let engine = Engine::new(&DlpConfig::default()).unwrap();
        let name = b"X-ghp_0123456789abcdefghijABCDEFGHIJ012345";
        let found = engine.scan_header_values(name, &[b"1"]);
        assert_eq!(found.len(), 1);
        assert!(!format!("{found:?}").contains("ghp_"));
    }
}
