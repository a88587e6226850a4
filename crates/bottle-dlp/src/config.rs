//! Engine configuration: which detectors run and which exact secret values to look for.

use std::fmt;
use std::str::FromStr;

/// One detector family, as named in a bottle manifest's `outbound_detectors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detector {
    /// Built-in rules for public credential formats.
    TokenPatterns,
    /// Exact values (and encodings) of secrets the sidecar holds.
    KnownSecrets,
}

impl Detector {
    /// The manifest spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenPatterns => "token_patterns",
            Self::KnownSecrets => "known_secrets",
        }
    }
}

impl FromStr for Detector {
    type Err = UnknownDetector;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "token_patterns" => Ok(Self::TokenPatterns),
            "known_secrets" => Ok(Self::KnownSecrets),
            _ => Err(UnknownDetector),
        }
    }
}

/// A detector name that is neither `token_patterns` nor `known_secrets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown DLP detector\nhint: use `token_patterns` or `known_secrets`")]
pub struct UnknownDetector;

/// Which detector families are enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detectors {
    /// Run the built-in credential-format rules.
    pub token_patterns: bool,
    /// Look for the configured known secrets.
    pub known_secrets: bool,
}

impl Default for Detectors {
    fn default() -> Self {
        Self { token_patterns: true, known_secrets: true }
    }
}

impl FromIterator<Detector> for Detectors {
    fn from_iter<I: IntoIterator<Item = Detector>>(iter: I) -> Self {
        let mut detectors = Self { token_patterns: false, known_secrets: false };
        for detector in iter {
            match detector {
                Detector::TokenPatterns => detectors.token_patterns = true,
                Detector::KnownSecrets => detectors.known_secrets = true,
            }
        }
        detectors
    }
}

/// A secret's bytes. `Debug` and `Display` never show them, so a config can be logged safely.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    /// Wraps a value.
    #[must_use]
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self(value.into())
    }

    /// The raw bytes. Named so that every use is easy to audit.
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(«redacted»)")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("«redacted»")
    }
}

/// A secret the sidecar holds (e.g. a route token), looked for verbatim and in common encodings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownSecret {
    /// Label used in findings and redactions (e.g. the route's `token_ref`). Not secret.
    pub name: String,
    /// The value.
    pub value: SecretValue,
}

impl KnownSecret {
    /// A named secret.
    #[must_use]
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self { name: name.into(), value: SecretValue::new(value) }
    }
}

/// Everything needed to build an [`crate::Engine`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DlpConfig {
    /// Enabled detector families.
    pub detectors: Detectors,
    /// Exact values to look for (used only when `detectors.known_secrets` is on).
    pub known_secrets: Vec<KnownSecret>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_value_never_prints() {
        let secret = KnownSecret::new("route", "hunter2-very-secret");
        let shown = format!("{secret:?} {}", secret.value);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("route"));
    }

    #[test]
    fn detectors_parse_from_manifest_names() {
        let detectors: Detectors = ["known_secrets".parse::<Detector>().unwrap()].into_iter().collect();
        assert!(detectors.known_secrets && !detectors.token_patterns);
        assert!("regexes".parse::<Detector>().is_err());
    }
}
