//! What a scan reports: [`Finding`]s with the caller's [`Location`] and byte offsets.
//!
//! A finding never holds the matched bytes. The span points into the caller's own buffer, so the
//! caller decides whether to show, redact or drop them; `Debug` and `Display` can therefore never
//! leak a secret.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// How sure a rule is that a match is a real credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Confidence {
    /// Heuristic (e.g. entropy-based); expect some false positives.
    Low,
    /// Format plus context; false positives are possible but uncommon.
    Medium,
    /// A distinctive format (vendor prefix, checksum-like structure) or an exact known value.
    High,
}

impl Confidence {
    /// Lowercase name, as used in logs and audit lines.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

impl fmt::Display for Confidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a finding is a leaked secret or a malformed input that must be blocked outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    /// Something that looks like (or is) a credential.
    Secret,
    /// Input that is structurally unsafe to forward (CR/LF/NUL in a header, …). Never redactable:
    /// the request must be blocked.
    Structural,
}

/// Where the scanned bytes came from. Supplied by the caller; the engine only adds byte offsets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Location {
    /// The request's target host (authority).
    Host,
    /// The request path, without the query.
    Path,
    /// The request query string.
    Query,
    /// The values of one header name (concatenated when the header repeats).
    Header {
        /// Header name as sent (lossily decoded if it was not UTF-8).
        name: Arc<str>,
    },
    /// A request or response body.
    Body,
    /// A line added by a pushed commit (git gate). `line` is 1-based in the new file.
    File {
        /// Path of the file in the commit.
        path: Arc<str>,
        /// Line number of the first scanned line.
        line: u32,
    },
    /// Anything else; the label is shown as is.
    Other(Arc<str>),
}

impl Location {
    /// A header location.
    #[must_use]
    pub fn header(name: &str) -> Self {
        Self::Header { name: name.into() }
    }

    /// A file location for the git gate.
    #[must_use]
    pub fn file(path: &str, line: u32) -> Self {
        Self::File { path: path.into(), line }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host => f.write_str("host"),
            Self::Path => f.write_str("path"),
            Self::Query => f.write_str("query"),
            Self::Header { name } => write!(f, "header `{name}`"),
            Self::Body => f.write_str("body"),
            Self::File { path, line } => write!(f, "`{path}` line {line}"),
            Self::Other(label) => f.write_str(label),
        }
    }
}

/// The base64 alphabet of a known-secret variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Base64Alphabet {
    /// `+` and `/` (RFC 4648 §4).
    Standard,
    /// `-` and `_` (RFC 4648 §5).
    UrlSafe,
}

/// How a known secret was encoded where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Encoding {
    /// The value itself.
    Raw,
    /// Base64, with the secret starting at byte `offset` (0–2) of a 3-byte group, so it is found
    /// even in the middle of a larger base64 blob. Padding does not matter: only the characters
    /// fully determined by the secret are matched.
    Base64 {
        /// Which alphabet.
        alphabet: Base64Alphabet,
        /// Byte offset of the secret within its first 3-byte group.
        offset: u8,
    },
    /// Lowercase hex.
    HexLower,
    /// Uppercase hex.
    HexUpper,
    /// Percent-encoding of every byte outside RFC 3986's unreserved set.
    Percent,
    /// JSON string escaping.
    JsonEscaped,
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Raw => f.write_str("raw"),
            Self::Base64 { alphabet: Base64Alphabet::Standard, offset } => {
                write!(f, "base64 (offset {offset})")
            }
            Self::Base64 { alphabet: Base64Alphabet::UrlSafe, offset } => {
                write!(f, "base64url (offset {offset})")
            }
            Self::HexLower => f.write_str("hex"),
            Self::HexUpper => f.write_str("HEX"),
            Self::Percent => f.write_str("percent-encoded"),
            Self::JsonEscaped => f.write_str("json-escaped"),
        }
    }
}

/// One detection. Holds no part of the matched value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Kebab-case rule id, e.g. `aws-access-key-id`, or `known-secret`.
    pub rule_id: &'static str,
    /// One-line human description of the rule.
    pub description: &'static str,
    /// How sure the rule is.
    pub confidence: Confidence,
    /// Secret or structural problem.
    pub kind: FindingKind,
    /// Where the caller said the bytes came from.
    pub location: Location,
    /// Byte offsets of the match within the scanned input (for a stream: since its first byte).
    pub span: Range<usize>,
    /// For `known-secret` findings: the configured name of the secret (names are not secret).
    pub secret_name: Option<Arc<str>>,
    /// For `known-secret` findings: which encoding of the value matched.
    pub encoding: Option<Encoding>,
}

impl Finding {
    /// True when the finding must block the request regardless of the route's DLP mode.
    #[must_use]
    pub fn must_block(&self) -> bool {
        self.kind == FindingKind::Structural
    }

    /// The label redaction writes in place of the match: `rule-id` or `known-secret:NAME`.
    #[must_use]
    pub fn label(&self) -> String {
        match &self.secret_name {
            Some(name) => format!("{}:{name}", self.rule_id),
            None => self.rule_id.to_owned(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, {})", self.rule_id, self.description, self.confidence)?;
        if let Some(name) = &self.secret_name {
            write!(f, " `{name}`")?;
        }
        if let Some(encoding) = &self.encoding {
            write!(f, " as {encoding}")?;
        }
        write!(f, " in {} at bytes {}..{}", self.location, self.span.start, self.span.end)
    }
}

/// Identity of a finding for de-duplication: the same rule (and secret) on the same bytes.
pub(crate) type FindingKey = (&'static str, usize, usize, Option<Arc<str>>);

pub(crate) fn key_of(finding: &Finding) -> FindingKey {
    (finding.rule_id, finding.span.start, finding.span.end, finding.secret_name.clone())
}

/// Sorts by position and drops exact duplicates (same rule, secret and span).
pub(crate) fn sort_dedup(findings: &mut Vec<Finding>) {
    findings.sort_by(|a, b| {
        (a.span.start, a.span.end, a.rule_id, &a.secret_name).cmp(&(
            b.span.start,
            b.span.end,
            b.rule_id,
            &b.secret_name,
        ))
    });
    findings.dedup_by(|a, b| key_of(a) == key_of(b));
}
