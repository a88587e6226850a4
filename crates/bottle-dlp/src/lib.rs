//! `bottle-dlp`: the secret-detection engine behind bot-bottle's egress proxy (outbound requests)
//! and git gate (added lines of pushed commits).
//!
//! Pure: no I/O, no threads, no network. Build one [`Engine`] from a [`DlpConfig`], share it
//! (it is an `Arc`), and scan with [`Engine::scan`], [`Engine::scan_headers`], [`Engine::stream`]
//! or [`Engine::redact`].
//!
//! Two detector families:
//! - `token_patterns`: built-in rules for public credential formats ([`rules`]), evaluated only
//!   around literal anchors found by one Aho-Corasick pass;
//! - `known_secrets`: exact values the sidecar holds, in raw, base64 (std/url, any alignment),
//!   hex, percent and JSON-escaped form, in one Aho-Corasick automaton.
//!
//! Every input is scanned raw and, when it contains anything to normalise, in a normalised view
//! (percent-decoded, zero-width characters removed, look-alike letters mapped to ASCII).
//! Findings carry byte spans into the caller's input and never the matched value.
//!
//! Invariants (each has a test): no type in this crate prints a secret (`Finding`, `SecretValue`,
//! `Engine` and `StreamScanner` debug output included); a streamed scan reports exactly the
//! whole-buffer findings, once each, whatever the chunking; a stream carries at most
//! [`Engine::carry_capacity`] bytes per view; the crate does no I/O and spawns nothing.
//!
//! ```
//! use bottle_dlp::{DlpConfig, Engine, KnownSecret, Location};
//!
//! let config = DlpConfig {
//!     known_secrets: vec![KnownSecret::new("github-route", "route-token-0123456789")],
//!     ..DlpConfig::default()
//! };
//! let engine = Engine::new(&config).unwrap();
//! let found = engine.scan(b"q=1&t=route-token-0123456789", &Location::Query);
//! assert_eq!(found[0].secret_name.as_deref(), Some("github-route"));
//! // Findings never carry the value.
//! assert!(!format!("{found:?}").contains("route-token"));
//! ```

mod config;
mod engine;
mod error;
mod finding;
mod header;
mod known;
mod literals;
mod normalize;
mod redact;
mod rules;
mod stream;

pub use config::{Detector, Detectors, DlpConfig, KnownSecret, SecretValue, UnknownDetector};
pub use engine::{Engine, KNOWN_SECRET_RULE_ID};
pub use error::DlpError;
pub use finding::{Base64Alphabet, Confidence, Encoding, Finding, FindingKind, Location};
pub use header::{HEADER_NAME_RULE_ID, HEADER_VALUE_RULE_ID, validate_header};
pub use known::MIN_SECRET_LEN;
pub use redact::{Redaction, redact_findings};
pub use rules::{RuleInfo, rules};
pub use stream::StreamScanner;
