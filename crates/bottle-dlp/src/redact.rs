//! Redaction: replace matched bytes with `«REDACTED:label»` (the proxy's `redact` mode, and logs),
//! then re-scan to report whether anything secret-looking survived.

use crate::engine::Engine;
use crate::finding::{Finding, FindingKind, Location};

/// The result of [`Engine::redact`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    /// The input with every secret finding replaced.
    pub output: Vec<u8>,
    /// What was replaced (spans refer to the original input).
    pub findings: Vec<Finding>,
    /// A re-scan of `output` still finds something (e.g. two halves joined into a new match, or a
    /// structural finding, which redaction never fixes): the caller should block instead.
    pub residue: bool,
}

/// Replaces the spans of secret findings in `input` with `«REDACTED:label»`. Overlapping spans are
/// merged and labelled by the earliest (then longest) finding. Structural findings are ignored:
/// they cannot be made safe by rewriting.
#[must_use]
pub fn redact_findings(input: &[u8], findings: &[Finding]) -> Vec<u8> {
    let mut spans: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.kind == FindingKind::Secret && f.span.start < f.span.end && f.span.end <= input.len())
        .collect();
    spans.sort_by(|a, b| a.span.start.cmp(&b.span.start).then(b.span.end.cmp(&a.span.end)));
    let mut out = Vec::with_capacity(input.len());
    let mut copied = 0;
    let mut iter = spans.into_iter().peekable();
    while let Some(first) = iter.next() {
        let start = first.span.start.max(copied);
        let mut end = first.span.end;
        while let Some(next) = iter.peek() {
            if next.span.start >= end {
                break;
            }
            end = end.max(next.span.end);
            iter.next();
        }
        if end <= copied {
            continue;
        }
        out.extend_from_slice(&input[copied..start]);
        out.extend_from_slice(format!("«REDACTED:{}»", first.label()).as_bytes());
        copied = end;
    }
    out.extend_from_slice(&input[copied..]);
    out
}

impl Engine {
    /// Scans `input`, redacts every secret finding, and re-scans the result.
    #[must_use]
    pub fn redact(&self, input: &[u8], location: &Location) -> Redaction {
        let findings = self.scan(input, location);
        let output = redact_findings(input, &findings);
        let residue = !self.scan(&output, location).is_empty();
        Redaction { output, findings, residue }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DlpConfig, KnownSecret};

    #[test]
    fn replaces_matches_and_keeps_the_rest() {
        let engine = Engine::new(&DlpConfig {
            known_secrets: vec![KnownSecret::new("route", "abcdefgh12345678")],
            ..DlpConfig::default()
        })
        .unwrap();
        let input = b"id=AKIAIOSFODNN7EXAMPLE&t=abcdefgh12345678&q=1";
        let r = engine.redact(input, &Location::Query);
        assert_eq!(
            String::from_utf8(r.output).unwrap(),
            "id=«REDACTED:aws-access-key-id»&t=«REDACTED:known-secret:route»&q=1"
        );
        assert!(!r.residue);
        assert_eq!(r.findings.len(), 2);
    }

    #[test]
    fn overlapping_findings_merge() {
        let engine = Engine::new(&DlpConfig::default()).unwrap();
        let input = b"aws_secret_access_key = \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"\n";
        let r = engine.redact(input, &Location::Body);
        let text = String::from_utf8(r.output).unwrap();
        assert_eq!(text.matches("REDACTED").count(), 1, "{text}");
        assert!(!text.contains("wJalr"));
        assert!(!r.residue);
    }
}
