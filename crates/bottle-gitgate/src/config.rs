//! The gate's wire configuration (the `git_gate` part of the sidecar config) and its validation.
//!
//! Everything here is data the launcher writes: repository names, upstream URLs, the path of each
//! private key (never the key), the pinned host keys and the push policy. Validation is pure; the
//! only file it looks at is the identity file's metadata.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The git gate's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitGateConfig {
    /// The upstream repositories the agent may reach, each under `http://<gate>/<name>.git`.
    pub repos: Vec<RepoConfig>,
    /// Where the bare mirrors live (created with mode 0700). The gate also keeps its private files
    /// (pinned host keys, the hook socket) in `.gate/` there.
    pub mirrors_dir: PathBuf,
    /// Size limits and timeouts.
    #[serde(default)]
    pub limits: GateLimits,
}

/// One upstream repository.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// `<name>` in `http://<gate>/<name>.git`; also the mirror's directory name.
    pub name: String,
    /// The upstream: `ssh://[user@]host[:port]/path.git` or `[user@]host:path.git`.
    pub url: String,
    /// The private key used for the upstream, readable by the sidecar only. Its path is never shown
    /// to the agent and its contents are never read by the gate (only `ssh` reads it).
    pub identity_file: PathBuf,
    /// The pinned `known_hosts` key line(s) of the upstream host: `ssh-ed25519 AAAA…` or
    /// `host ssh-ed25519 AAAA…`, one per line. Empty → every fetch and push of this repository is
    /// refused (no trust on first use).
    pub host_key: String,
    /// Ref globs the agent may push to, e.g. `refs/heads/agent/*` (`*` matches any run of
    /// characters, `/` included). Empty → any ref, except that the upstream's default branch can
    /// never be deleted or rewound, and nothing can be deleted.
    #[serde(default)]
    pub push_refs: Vec<String>,
}

// Manual: keeps the identity path out of logs that print a whole config.
impl std::fmt::Debug for RepoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("identity_file", &"«identity»")
            .field("host_key", &self.host_key)
            .field("push_refs", &self.push_refs)
            .finish()
    }
}

/// Size limits and timeouts. Every field has a default, so `{}` is a valid value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateLimits {
    /// Largest request body accepted from the agent, after gzip decoding (default 512 MiB).
    pub max_request_bytes: u64,
    /// Longest a single git command (fetch, upload-pack, the upstream push, …) may run, in
    /// seconds (default 300).
    pub git_timeout_secs: u64,
    /// How long a push waits for an operator's answer to a proposal, in seconds (default 300);
    /// no answer in time is a refusal.
    pub proposal_timeout_secs: u64,
    /// Files (blob versions) larger than this are not scanned and are reported as skipped, like
    /// binary files (default 16 MiB).
    pub max_scan_file_bytes: u64,
    /// At most this many findings are listed in a refusal (the count is always complete; default 50).
    pub max_listed_findings: usize,
    /// A push refreshes the mirror first only if the last refresh is older than this, in seconds
    /// (default 300; 0 = before every push). Fetches and clones always refresh. A push does not need
    /// a fresh mirror to be safe — the upstream push is the authority on fast-forwards and leases,
    /// and the mirror holds everything the agent can have fetched — so this only trades an SSH
    /// round trip per push against earlier "fetch first" errors.
    pub push_refresh_secs: u64,
}

impl Default for GateLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: 512 << 20,
            git_timeout_secs: 300,
            proposal_timeout_secs: 300,
            max_scan_file_bytes: 16 << 20,
            max_listed_findings: 50,
            push_refresh_secs: 300,
        }
    }
}

/// Why a repository's configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The name cannot be used in a URL path and a directory name.
    #[error(
        "git-gate repo name `{0}` is invalid\nhint: use letters, digits, `.`, `_` and `-`, starting with a letter or digit, without a `.git` suffix"
    )]
    Name(String),
    /// Two repositories share a name.
    #[error("git-gate repo `{0}` is configured twice")]
    Duplicate(String),
    /// The URL is not an SSH URL the gate can use.
    #[error(
        "git-gate repo `{name}`: upstream URL is not usable: {reason}\nhint: use `ssh://user@host[:port]/path.git` or `user@host:path.git`"
    )]
    Url {
        /// The repository.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A `host_key` line is not a known_hosts key line.
    #[error(
        "git-gate repo `{name}`: `host_key` line {line} is not a known_hosts key line: {reason}\nhint: paste the line from `ssh-keyscan <host>`, e.g. `ssh-ed25519 AAAA…`"
    )]
    HostKey {
        /// The repository.
        name: String,
        /// 1-based line of `host_key`.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A `push_refs` entry is not a full ref glob.
    #[error(
        "git-gate repo `{name}`: push_refs entry `{pattern}` is invalid: {reason}\nhint: use full ref names such as `refs/heads/agent/*`"
    )]
    PushRef {
        /// The repository.
        name: String,
        /// The entry.
        pattern: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The identity file is missing or unsafe. The message names the repository, not the path.
    #[error("git-gate repo `{name}`: identity file {problem}")]
    Identity {
        /// The repository.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// A limit is zero.
    #[error("git-gate limit `{0}` must be greater than zero")]
    Limit(&'static str),
}

/// Key types OpenSSH accepts in known_hosts.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// One pinned key: type and base64 blob, without the host field (the gate pins it to an alias).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostKey {
    pub(crate) key_type: String,
    pub(crate) blob: String,
}

/// Parses `host_key`: one key per non-empty line, optional leading host field, optional comment.
pub(crate) fn parse_host_keys(name: &str, text: &str) -> Result<Vec<HostKey>, ConfigError> {
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason| ConfigError::HostKey { name: name.to_owned(), line: index + 1, reason };
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields[0].starts_with('@') {
            return Err(bad("markers such as `@cert-authority` are not supported"));
        }
        let at = if KEY_TYPES.contains(&fields[0]) { 0 } else { 1 };
        let (Some(&key_type), Some(&blob)) = (fields.get(at), fields.get(at + 1)) else {
            return Err(bad("expected `[host] <key-type> <base64-key>`"));
        };
        if !KEY_TYPES.contains(&key_type) {
            return Err(bad("unknown key type"));
        }
        let base64ish =
            blob.len() >= 16 && blob.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=');
        if !base64ish {
            return Err(bad("the key is not base64"));
        }
        keys.push(HostKey { key_type: key_type.to_owned(), blob: blob.to_owned() });
    }
    Ok(keys)
}

/// Checks a repository name.
pub(crate) fn validate_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.ends_with(".git")
        && !name.ends_with('.');
    if ok { Ok(()) } else { Err(ConfigError::Name(name.to_owned())) }
}

/// Checks that `url` is an SSH URL and nothing git would treat as another transport or an option.
pub(crate) fn validate_url(name: &str, url: &str) -> Result<(), ConfigError> {
    let bad = |reason| ConfigError::Url { name: name.to_owned(), reason };
    if url.is_empty() {
        return Err(bad("it is empty"));
    }
    if url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(bad("it contains spaces or control characters"));
    }
    let host = if let Some(rest) = url.strip_prefix("ssh://") {
        let (authority, path) = rest.split_once('/').ok_or_else(|| bad("it has no path"))?;
        if path.is_empty() {
            return Err(bad("it has no path"));
        }
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(|| bad("an IPv6 host is missing its `]`"))?;
            (host, after.strip_prefix(':'))
        } else {
            match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            }
        };
        if port.is_some_and(|p| p.parse::<u16>().is_err()) {
            return Err(bad("the port is not a number"));
        }
        host
    } else {
        if url.contains("://") || url.contains("::") {
            return Err(bad("only SSH is supported"));
        }
        let (authority, path) = url.split_once(':').ok_or_else(|| bad("it is neither `ssh://…` nor `host:path`"))?;
        if authority.contains('/') {
            return Err(bad("it looks like a local path"));
        }
        if path.is_empty() {
            return Err(bad("it has no path"));
        }
        authority.rsplit_once('@').map_or(authority, |(_, h)| h)
    };
    if host.is_empty() {
        return Err(bad("it has no host"));
    }
    if host.starts_with('-') || url.starts_with('-') {
        return Err(bad("a host cannot start with `-`"));
    }
    Ok(())
}

/// A `push_refs` glob: `*` matches any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefGlob {
    parts: Vec<String>,
}

impl RefGlob {
    pub(crate) fn parse(name: &str, pattern: &str) -> Result<Self, ConfigError> {
        let bad = |reason| ConfigError::PushRef { name: name.to_owned(), pattern: pattern.to_owned(), reason };
        if !pattern.starts_with("refs/") {
            return Err(bad("it does not start with `refs/`"));
        }
        if pattern.bytes().any(|b| b.is_ascii_control() || b" ~^:?[\\".contains(&b)) || pattern.contains("..") {
            return Err(bad("it contains characters a ref name cannot have"));
        }
        Ok(Self { parts: pattern.split('*').map(str::to_owned).collect() })
    }

    pub(crate) fn matches(&self, refname: &str) -> bool {
        let [first, middle @ .., last] = self.parts.as_slice() else {
            return self.parts.first().is_some_and(|p| p == refname);
        };
        let Some(mut rest) = refname.strip_prefix(first.as_str()) else { return false };
        for part in middle {
            match rest.find(part.as_str()) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last.as_str())
    }
}

/// Checks the identity file without reading it: it exists, is a regular file, and is not readable
/// by group or others (ssh refuses such keys).
pub(crate) fn check_identity(name: &str, path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    let problem = |problem: String| ConfigError::Identity { name: name.to_owned(), problem };
    let meta = std::fs::metadata(path).map_err(|e| problem(format!("cannot be used: {}", e.kind())))?;
    if !meta.is_file() {
        return Err(problem("is not a regular file".to_owned()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(problem(format!(
            "is accessible by other users (mode {mode:04o}); ssh refuses such keys\nhint: make it mode 0600"
        )));
    }
    Ok(())
}

/// A repository's parsed host keys and push globs.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) keys: Vec<HostKey>,
    pub(crate) globs: Vec<RefGlob>,
}

/// Validates every repository and the limits. Returns the parsed parts, in config order.
pub(crate) fn validate(config: &GitGateConfig) -> Result<Vec<Checked>, ConfigError> {
    let limits = &config.limits;
    for (value, label) in [
        (limits.max_request_bytes, "max_request_bytes"),
        (limits.git_timeout_secs, "git_timeout_secs"),
        (limits.proposal_timeout_secs, "proposal_timeout_secs"),
        (limits.max_scan_file_bytes, "max_scan_file_bytes"),
    ] {
        if value == 0 {
            return Err(ConfigError::Limit(label));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for repo in &config.repos {
        validate_name(&repo.name)?;
        if !seen.insert(repo.name.as_str()) {
            return Err(ConfigError::Duplicate(repo.name.clone()));
        }
        validate_url(&repo.name, &repo.url)?;
        let keys = parse_host_keys(&repo.name, &repo.host_key)?;
        check_identity(&repo.name, &repo.identity_file)?;
        let globs = repo.push_refs.iter().map(|p| RefGlob::parse(&repo.name, p)).collect::<Result<Vec<_>, _>>()?;
        out.push(Checked { keys, globs });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["up", "my-repo", "a.b_c", "R2"] {
            validate_name(good).unwrap();
        }
        for bad in ["", ".hidden", "-x", "a/b", "x.git", "a b", "..", "a.", "ä"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        for good in [
            "ssh://git@example.com/org/repo.git",
            "ssh://git@example.com:2222/org/repo.git",
            "ssh://example.com/repo",
            "ssh://git@[::1]:2222/repo.git",
            "git@example.com:org/repo.git",
            "example.com:/srv/repo.git",
        ] {
            validate_url("r", good).unwrap();
        }
        for bad in [
            "",
            "https://example.com/repo.git",
            "file:///srv/repo.git",
            "/srv/repo.git",
            "./repo",
            "ext::sh -c touch% /tmp/x",
            "ssh://-oProxyCommand=x/repo",
            "-oProxyCommand=x:repo",
            "ssh://git@example.com",
            "ssh://git@example.com:x/repo",
            "git@example.com:",
            "ssh://git@example.com/a b",
        ] {
            assert!(validate_url("r", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_keys() {
        let keys = parse_host_keys(
            "r",
            "# pinned\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n[h]:22 ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== comment\n",
        )
        .unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].key_type, "ssh-rsa");
        assert!(parse_host_keys("r", "").unwrap().is_empty());
        assert!(parse_host_keys("r", "@cert-authority * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA").is_err());
        assert!(parse_host_keys("r", "host ssh-dss AAAAB3NzaC1kc3MAAACBAP").is_err());
        assert!(parse_host_keys("r", "ssh-ed25519").is_err());
        assert!(parse_host_keys("r", "ssh-ed25519 not!base64!at!all!!!").is_err());
    }

    #[test]
    fn globs() {
        let g = RefGlob::parse("r", "refs/heads/agent/*").unwrap();
        assert!(g.matches("refs/heads/agent/x"));
        assert!(g.matches("refs/heads/agent/x/y"));
        assert!(!g.matches("refs/heads/agents"));
        assert!(!g.matches("refs/heads/main"));
        let exact = RefGlob::parse("r", "refs/heads/main").unwrap();
        assert!(exact.matches("refs/heads/main"));
        assert!(!exact.matches("refs/heads/main2"));
        let mid = RefGlob::parse("r", "refs/heads/*-wip").unwrap();
        assert!(mid.matches("refs/heads/a-wip"));
        assert!(!mid.matches("refs/heads/a-wip2"));
        let two = RefGlob::parse("r", "refs/*/bot/*").unwrap();
        assert!(two.matches("refs/heads/bot/1"));
        assert!(!two.matches("refs/heads/bo/1"));
        assert!(RefGlob::parse("r", "heads/*").is_err());
        assert!(RefGlob::parse("r", "refs/heads/[ab]").is_err());
    }

    #[test]
    fn limits_default_and_deny_unknown() {
        let config: GitGateConfig = serde_json::from_str(r#"{"repos":[],"mirrors_dir":"/m"}"#).unwrap();
        assert_eq!(config.limits, GateLimits::default());
        assert!(serde_json::from_str::<GitGateConfig>(r#"{"repos":[],"mirrors_dir":"/m","x":1}"#).is_err());
        assert!(serde_json::from_str::<GitGateConfig>(r#"{"repos":[],"mirrors_dir":"/m","limits":{"y":1}}"#).is_err());
    }

    #[test]
    fn debug_hides_identity_path() {
        let repo = RepoConfig {
            name: "r".into(),
            url: "git@h:r.git".into(),
            identity_file: "/secret/place/id_ed25519".into(),
            host_key: String::new(),
            push_refs: vec![],
        };
        assert!(!format!("{repo:?}").contains("/secret/place"));
    }
}
