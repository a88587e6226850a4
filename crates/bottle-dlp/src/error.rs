//! The crate's one error type: everything that can go wrong while building an [`crate::Engine`].
//!
//! Scanning itself never fails; only configuration can be invalid.

/// Why an [`crate::Engine`] could not be built from a [`crate::DlpConfig`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DlpError {
    /// A known secret has an empty name; names label findings and redactions.
    #[error("known secret has an empty name")]
    EmptySecretName,
    /// Two known secrets share a name, so findings could not tell them apart.
    #[error("known secret `{name}` is listed twice")]
    DuplicateSecretName {
        /// The repeated name.
        name: String,
    },
    /// A known secret is too short to be matched without drowning in false positives
    /// (its base64 forms would be only a few characters long).
    #[error(
        "known secret `{name}` is shorter than {min} bytes\nhint: DLP cannot match very short values reliably; use a longer token"
    )]
    SecretTooShort {
        /// The secret's name (never its value).
        name: String,
        /// The minimum accepted length in bytes.
        min: usize,
    },
    /// The multi-pattern automaton could not be built (pattern set too large).
    #[error("cannot build the `{what}` automaton")]
    Automaton {
        /// Which automaton failed.
        what: &'static str,
        /// The underlying builder error.
        #[source]
        source: aho_corasick::BuildError,
    },
    /// A built-in rule's regex failed to compile: a bug in this crate, caught by its tests.
    #[error("built-in rule `{rule_id}` has an invalid regex")]
    RuleRegex {
        /// The rule whose regex is broken.
        rule_id: &'static str,
        /// The regex compiler's error.
        #[source]
        source: regex::Error,
    },
}
