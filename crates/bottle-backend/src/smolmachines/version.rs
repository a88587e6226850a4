//! Which `smolvm` is installed, and what that version gets right and wrong.
//!
//! Every fact here comes from smolvm's own release history; a wrapper must branch on them because
//! the CLI changed shape (machine names became flags in v1.0.2) and because several versions accept
//! a flag and then ignore it, which for an allow-list means an open network.

use std::fmt;

use serde::Serialize;

/// A `smolvm` release, `MAJOR.MINOR.PATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct SmolvmVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl From<SmolvmVersion> for String {
    fn from(v: SmolvmVersion) -> Self {
        v.to_string()
    }
}

impl fmt::Display for SmolvmVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The oldest version a bottle launches on: before it, `machine create --from` silently drops the
/// egress flags, so the VM's allow-list would not exist.
pub const MIN_LAUNCH: SmolvmVersion = SmolvmVersion::new(1, 8, 0);

/// The version `start --dry-run` plans against when no `smolvm` is installed.
pub const PLANNING_DEFAULT: SmolvmVersion = SmolvmVersion::new(1, 9, 3);

/// How bad a known problem of a version is for a bottle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The boundary cannot hold: launches are refused.
    Refuse,
    /// Worked around by the launcher, or caught by the self-test.
    Workaround,
}

/// One known problem of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// Fixed in this version.
    pub fixed_in: SmolvmVersion,
    pub what: &'static str,
}

impl SmolvmVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self { major, minor, patch }
    }

    /// The version in `smolvm --version`'s output (`smolvm 0.8.0`, `smolvm v1.9.3 (abc123)`): the
    /// first word that is `[v]X.Y.Z`, pre-release suffixes ignored.
    pub fn parse(output: &str) -> Option<Self> {
        output.split_whitespace().find_map(|word| {
            let word = word.strip_prefix('v').unwrap_or(word);
            let core = word.split(['-', '+']).next()?;
            let mut parts = core.split('.');
            let (major, minor, patch) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() {
                return None;
            }
            Some(Self::new(major.parse().ok()?, minor.parse().ok()?, patch.parse().ok()?))
        })
    }

    /// From v1.0.2 `create` and `delete` take `--name`; before it the name is positional (and
    /// `--name` is an error).
    pub fn names_are_flags(self) -> bool {
        self >= Self::new(1, 0, 2)
    }

    /// From v1.8.0 `create --from ARTIFACT` honours `--allow-cidr`; before it the flags are
    /// accepted and ignored.
    pub fn from_honours_egress(self) -> bool {
        self >= MIN_LAUNCH
    }

    /// Before v0.8.1 a guest process killed by a signal exits 255 instead of `128 + signal`.
    pub fn signal_exit_is_255(self) -> bool {
        self < Self::new(0, 8, 1)
    }

    /// Before v1.8.1 files unpacked from a pack belong to the host user's uid, not the image's.
    pub fn pack_ownership_lost(self) -> bool {
        self < Self::new(1, 8, 1)
    }

    /// Whether bottles may launch on this version.
    pub fn can_launch(self) -> bool {
        self >= MIN_LAUNCH
    }

    /// What is known to be wrong with this version, worst first.
    pub fn problems(self) -> Vec<Problem> {
        let all = [
            Problem {
                severity: Severity::Refuse,
                fixed_in: MIN_LAUNCH,
                what: "`machine create --from` ignores --allow-cidr: the VM would get an open network",
            },
            Problem {
                severity: Severity::Refuse,
                fixed_in: Self::new(1, 1, 3),
                what: "the TSI egress filter does not enforce the allow-list",
            },
            Problem {
                severity: Severity::Refuse,
                fixed_in: Self::new(0, 9, 0),
                what: "Linux binaries need glibc 2.39 (they do not start on Debian bookworm)",
            },
            Problem {
                severity: Severity::Workaround,
                fixed_in: Self::new(1, 8, 1),
                what: "packed files belong to the host user; the launcher runs `chown -R node:node /home/node`",
            },
            Problem {
                severity: Severity::Workaround,
                fixed_in: Self::new(0, 8, 1),
                what: "the guest terminal starts at 0x0 and never resizes; the pty bridge sets its size",
            },
            Problem {
                severity: Severity::Workaround,
                fixed_in: Self::new(0, 8, 1),
                what: "`-e KEY` without a value is dropped; the launcher always passes `-e KEY=VALUE`",
            },
        ];
        all.into_iter().filter(|p| self < p.fixed_in).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_shapes_smolvm_prints() {
        assert_eq!(SmolvmVersion::parse("smolvm 0.8.0\n"), Some(SmolvmVersion::new(0, 8, 0)));
        assert_eq!(SmolvmVersion::parse("smolvm v1.9.3 (baf4c79b)"), Some(SmolvmVersion::new(1, 9, 3)));
        assert_eq!(SmolvmVersion::parse("smolvm 1.10.0-rc.1"), Some(SmolvmVersion::new(1, 10, 0)));
        assert_eq!(SmolvmVersion::parse("smolvm"), None);
        assert_eq!(SmolvmVersion::parse("smolvm 1.2"), None);
        assert_eq!(SmolvmVersion::parse("1.2.3.4"), None);
    }

    #[test]
    fn versions_order_numerically() {
        assert!(SmolvmVersion::new(1, 10, 0) > SmolvmVersion::new(1, 9, 3));
        assert!(SmolvmVersion::new(0, 8, 0) < SmolvmVersion::new(1, 0, 2));
    }

    #[test]
    fn known_bad_versions() {
        let old = SmolvmVersion::new(0, 8, 0);
        assert!(!old.can_launch() && !old.names_are_flags() && old.signal_exit_is_255());
        assert!(old.problems().iter().any(|p| p.severity == Severity::Refuse && p.what.contains("--from")));
        assert!(!SmolvmVersion::new(1, 7, 9).can_launch());
        let good = SmolvmVersion::new(1, 8, 1);
        assert!(good.can_launch() && good.problems().is_empty());
        assert!(SmolvmVersion::new(1, 8, 0).problems().iter().all(|p| p.severity == Severity::Workaround));
    }
}
