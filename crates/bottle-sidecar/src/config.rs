//! The sidecar config file: which bottle, where its state lives, what to listen on, what to allow.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bottle_egress::{EgressConfig, EgressListener};
use serde::{Deserialize, Serialize};

use crate::SidecarError;

/// The file the launcher writes for one bottle's sidecar. Holds no secret values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarConfig {
    /// The bottle's slug (for logs).
    pub slug: String,
    /// Where the CA (`ca/`) and the audit log (`audit.jsonl`) live.
    pub state_dir: PathBuf,
    /// A private directory (0700) holding one file per secret slot; optional when every secret comes
    /// from the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_dir: Option<PathBuf>,
    pub listen: Listen,
    pub egress: EgressConfig,
    /// The git gate, when the bottle declares `git-gate.repos` (served on `listen.git_gate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_gate: Option<bottle_gitgate::GitGateConfig>,
    /// The supervise plane: the proposal queue, the agent's MCP server (on `listen.supervise`) and
    /// the host's control API (on `listen.control`). Without it every proposal is refused at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervise: Option<bottle_supervise::SuperviseConfig>,
}

/// Listen addresses of the sidecar's services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    pub egress: ListenAddr,
    /// Where the git gate listens; required when `git_gate` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_gate: Option<ListenAddr>,
    /// Where the agent's MCP server listens; required when `supervise` is set. A unix socket here
    /// is given to `socket_group` like the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervise: Option<ListenAddr>,
    /// Where the host's control API listens; required when `supervise` is set. Never reachable by
    /// the agent: a TCP address inside the sidecar's own network namespace (published on the
    /// host's loopback only), or a unix socket kept at mode 0600 (never given to `socket_group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ListenAddr>,
    /// For unix sockets: the group that may connect. The socket is given this group and mode 0060,
    /// so members of the group (the relay) can connect and nobody else can — not even a process
    /// that happens to share the sidecar's uid. Without it the socket keeps the umask's mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_group: Option<u32>,
}

/// `tcp:HOST:PORT` or `unix:/path/to.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

impl ListenAddr {
    pub async fn bind(&self) -> Result<EgressListener, bottle_egress::EgressError> {
        match self {
            Self::Tcp(addr) => EgressListener::bind_tcp(*addr).await,
            Self::Unix(path) => EgressListener::bind_unix(path),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = SidecarError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SidecarError::ListenAddr { value: s.to_owned() };
        if let Some(addr) = s.strip_prefix("tcp:") {
            return addr.parse().map(Self::Tcp).map_err(|_| bad());
        }
        match s.strip_prefix("unix:") {
            Some(path) if path.starts_with('/') => Ok(Self::Unix(PathBuf::from(path))),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "tcp:{a}"),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl SidecarConfig {
    pub fn read(path: &Path) -> Result<Self, SidecarError> {
        let bytes =
            std::fs::read(path).map_err(|source| SidecarError::ReadConfig { path: path.to_path_buf(), source })?;
        serde_json::from_slice(&bytes).map_err(|source| SidecarError::ParseConfig { path: path.to_path_buf(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!("tcp:127.0.0.1:9099".parse::<ListenAddr>().unwrap().to_string(), "tcp:127.0.0.1:9099");
        assert!(matches!("unix:/run/x.sock".parse::<ListenAddr>().unwrap(), ListenAddr::Unix(_)));
        for bad in ["127.0.0.1:9099", "unix:relative.sock", "tcp:nope", ""] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn supervise_keys_are_optional_and_checked() {
        let json = r#"{"slug":"s","state_dir":"/s","egress":{},
            "listen":{"egress":"unix:/run/e.sock","supervise":"unix:/run/s.sock","control":"tcp:0.0.0.0:9200"},
            "supervise":{"control_token_file":"/etc/bot-bottle/control-token"}}"#;
        let config: SidecarConfig = serde_json::from_str(json).unwrap();
        let supervise = config.supervise.unwrap();
        assert_eq!(supervise.proposal_timeout_secs, 300);
        assert_eq!(config.listen.control.unwrap().to_string(), "tcp:0.0.0.0:9200");
        let typo = r#"{"slug":"s","state_dir":"/s","egress":{},"listen":{"egress":"unix:/run/e.sock"},
            "supervise":{"control_token_file":"/t","timeout":3}}"#;
        assert!(serde_json::from_str::<SidecarConfig>(typo).is_err());
    }

    #[test]
    fn config_rejects_unknown_keys() {
        let json = r#"{"slug":"s","state_dir":"/s","listen":{"egress":"tcp:127.0.0.1:0"},"egress":{},"extra":1}"#;
        assert!(serde_json::from_str::<SidecarConfig>(json).is_err());
        let ok = r#"{"slug":"s","state_dir":"/s","listen":{"egress":"tcp:127.0.0.1:0"},"egress":{"routes":[]}}"#;
        assert!(serde_json::from_str::<SidecarConfig>(ok).is_ok());
    }
}
