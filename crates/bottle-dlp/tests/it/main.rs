//! Integration tests for `bottle-dlp`: property tests of streaming and redaction through the
//! public API only.

#![expect(clippy::unwrap_used, reason = "tests may unwrap")]

mod properties;
