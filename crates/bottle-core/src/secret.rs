//! A secret value that cannot leak by accident.
//!
//! `Debug`, `Display` and `Serialize` all print `«NAME»`; the only way to the bytes is
//! [`Secret::expose`], which the code that injects the value (egress, provisioning) calls by name.

use std::fmt;

/// A named secret. The name is public (it appears in plans and logs); the value never is.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    name: String,
    value: String,
}

impl Secret {
    /// Wraps `value`, which from now on is only reachable through [`Secret::expose`].
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), value: value.into() }
    }

    /// The secret's public name, e.g. the environment variable it came from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The redacted stand-in shown wherever the secret would otherwise appear: `«NAME»`.
    pub fn placeholder(&self) -> String {
        redacted(&self.name)
    }

    /// The real value. Call only where the value is injected, never where it is printed.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

/// The redacted form of a secret named `name`.
pub fn redacted(name: &str) -> String {
    format!("«{name}»")
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(«{}»)", self.name)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "«{}»", self.name)
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.placeholder())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rendering_hides_the_value() {
        let s = Secret::new("API_TOKEN", "hunter2-very-secret");
        assert_eq!(format!("{s}"), "«API_TOKEN»");
        assert_eq!(format!("{s:?}"), "Secret(«API_TOKEN»)");
        assert_eq!(format!("{s:#?}"), "Secret(«API_TOKEN»)");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"«API_TOKEN»\"");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }
}
