//! Validated identifiers: manifest names, labels, slugs, colours and backend kinds.
//!
//! Each type can only be built through its parser, so code holding one never re-validates.

use std::fmt;
use std::str::FromStr;

/// Why an identifier was refused; the message is complete enough to print as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidId {
    pub message: String,
    pub hint: String,
}

fn invalid(message: String, hint: &str) -> InvalidId {
    InvalidId { message, hint: hint.to_owned() }
}

/// The name of an agent or bottle manifest: its file stem, `^[a-z][a-z0-9-]*$`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ManifestName(String);

impl ManifestName {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let mut chars = s.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(
                format!("`{s}` is not a valid manifest name"),
                "names are lowercase letters, digits and `-`, starting with a letter (e.g. `web-dev`)",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ManifestName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An operator-chosen label, used verbatim as the slug: it names containers, networks, volumes and
/// the state directory, so it keeps to what all of those accept.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Label(String);

/// Longest label, in bytes.
pub const MAX_LABEL_LEN: usize = 64;

impl Label {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        const HINT: &str =
            "use up to 64 of `A-Z a-z 0-9 _ . -`, starting with a letter or digit (e.g. `fix-login-bug`)";
        if s.is_empty() {
            return Err(invalid("label is empty".into(), HINT));
        }
        if s.len() > MAX_LABEL_LEN {
            return Err(invalid(format!("label is {} bytes long, the limit is {MAX_LABEL_LEN}", s.len()), HINT));
        }
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if first_ok && rest_ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(format!("label `{}` has characters a slug cannot hold", s.escape_debug()), HINT))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity of one running bottle: `<agent>-<suffix>` or a label verbatim.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Slug(String);

/// Length of the random suffix of a generated slug.
pub const SLUG_SUFFIX_LEN: usize = 6;

impl Slug {
    /// A slug from a label, verbatim.
    pub fn from_label(label: &Label) -> Self {
        Self(label.0.clone())
    }

    /// `<agent>-<suffix>`, the suffix derived from `seed` (the CLI seeds from the OS; tests fix it).
    pub fn generate(agent: &ManifestName, seed: u64) -> Self {
        const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
        let mut state = seed;
        let suffix: String = (0..SLUG_SUFFIX_LEN)
            .map(|_| {
                let n = splitmix64(&mut state);
                char::from(ALPHABET[(n % ALPHABET.len() as u64) as usize])
            })
            .collect();
        Self(format!("{agent}-{suffix}"))
    }

    /// Accepts an existing slug (from state or a command line) if it is shaped like one.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        Label::parse(s)
            .map(|l| Self(l.0))
            .map_err(|e| invalid(format!("`{}` is not a bottle slug", s.escape_debug()), &e.hint))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SplitMix64: a tiny, well-distributed step function; enough for a name suffix.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A label colour: one of the 16 ANSI palette names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Color(u8);

/// The palette, indexed like ANSI colours 0–15.
pub const COLOR_NAMES: [&str; 16] = [
    "black",
    "red",
    "green",
    "yellow",
    "blue",
    "magenta",
    "cyan",
    "white",
    "bright-black",
    "bright-red",
    "bright-green",
    "bright-yellow",
    "bright-blue",
    "bright-magenta",
    "bright-cyan",
    "bright-white",
];

impl Color {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let wanted = s.to_ascii_lowercase().replace('_', "-");
        COLOR_NAMES.iter().position(|n| *n == wanted).map(|i| Self(i as u8)).ok_or_else(|| {
            invalid(
                format!("`{}` is not a colour", s.escape_debug()),
                "choose one of black, red, green, yellow, blue, magenta, cyan, white, or their `bright-` forms",
            )
        })
    }

    /// The ANSI palette index (0–15).
    pub fn ansi_index(self) -> u8 {
        self.0
    }

    pub fn name(self) -> &'static str {
        COLOR_NAMES[usize::from(self.0)]
    }
}

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Color {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// What runs the bottle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Docker,
    Smolmachines,
    Namespaces,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [Self::Docker, Self::Smolmachines, Self::Namespaces];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Smolmachines => "smolmachines",
            Self::Namespaces => "namespaces",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|b| b.as_str() == s).ok_or_else(|| {
            invalid(format!("`{}` is not a backend", s.escape_debug()), "choose docker, smolmachines or namespaces")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_names() {
        for ok in ["a", "web-dev", "x1-2"] {
            assert!(ManifestName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1abc", "Web", "a_b", "a.b", "-a", "é"] {
            assert!(ManifestName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels() {
        assert!(Label::parse("Fix_bug-12.v2").is_ok());
        assert!(Label::parse(&"a".repeat(64)).is_ok());
        assert!(Label::parse(&"a".repeat(65)).is_err());
        for bad in ["", "-x", "a b", "a/b", "a\nb", "ä"] {
            assert!(Label::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn slug_is_deterministic_per_seed_and_varies_across_seeds() {
        let agent = ManifestName::parse("coder").unwrap();
        let a = Slug::generate(&agent, 42);
        assert_eq!(a, Slug::generate(&agent, 42));
        assert_ne!(a, Slug::generate(&agent, 43));
        assert!(a.as_str().starts_with("coder-"));
        assert_eq!(a.as_str().len(), "coder-".len() + SLUG_SUFFIX_LEN);
        assert!(Slug::parse(a.as_str()).is_ok());
    }

    #[test]
    fn colours() {
        assert_eq!(Color::parse("Bright_Red").unwrap().ansi_index(), 9);
        assert_eq!(Color::parse("cyan").unwrap().name(), "cyan");
        assert!(Color::parse("chartreuse").is_err());
    }
}
