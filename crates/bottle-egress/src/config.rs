//! The sidecar's egress wire format: what the launcher writes and `serve` reads.
//!
//! Kept separate from the manifest types on purpose: the manifest is what a user writes, this is what
//! the proxy runs. Secret values are never part of it; routes name a `token_slot` and the values come
//! in a separate [`Secrets`] map.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything the egress proxy needs besides secrets, the CA and the listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// Audit verbosity (`0` deny/warn only, `1` + allows, `2` + headers).
    #[serde(default)]
    pub log: LogLevel,
    /// The allow-list; a host without a route is refused.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Extra PEM bundle trusted for upstream TLS on top of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ca: Option<PathBuf>,
    /// Static host → address entries that override DNS for upstream connections.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, IpAddr>,
    /// How long a `supervise` hold waits for the operator before denying.
    #[serde(default = "default_token_allow_timeout")]
    pub token_allow_timeout_secs: u64,
}

fn default_token_allow_timeout() -> u64 {
    300
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            log: LogLevel::default(),
            routes: Vec::new(),
            upstream_ca: None,
            hosts: BTreeMap::new(),
            token_allow_timeout_secs: default_token_allow_timeout(),
        }
    }
}

/// Audit log verbosity, serialized as the integers `0`, `1`, `2`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum LogLevel {
    /// Only decisions that deny or warn.
    #[default]
    Decisions,
    /// Plus one summary line per allowed request.
    Allows,
    /// Plus full request and response headers (injected values redacted).
    Full,
}

impl TryFrom<u8> for LogLevel {
    type Error = String;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            0 => Ok(Self::Decisions),
            1 => Ok(Self::Allows),
            2 => Ok(Self::Full),
            other => Err(format!("log level must be 0, 1 or 2, not {other}")),
        }
    }
}

impl From<LogLevel> for u8 {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Decisions => 0,
            LogLevel::Allows => 1,
            LogLevel::Full => 2,
        }
    }
}

/// One allowed upstream host and what may be sent to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Exact host name or IP literal, optionally `:port` (else 443 for HTTPS, 80 for HTTP).
    pub host: String,
    /// Credential injected into every request on this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// When non-empty, a request must satisfy at least one entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<MatchConfig>,
    /// DLP settings for this route.
    #[serde(default)]
    pub dlp: DlpSettings,
    /// Provider placeholder swap: the agent holds `value`, the proxy substitutes the real token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<PlaceholderConfig>,
}

/// How to inject the route's credential: `<header>: [<scheme> ]<token>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Scheme before the token, e.g. `Bearer`, `token`, `Basic`. Required for `Authorization`;
    /// optional for other headers, which then carry the bare token (e.g. `x-api-key: <token>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Name of the secret in the [`Secrets`] map.
    pub token_slot: String,
    /// The header that carries the credential; `authorization` when absent. Any value the agent
    /// sends in it is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

impl AuthConfig {
    /// `Authorization: <scheme> <token>`, the common case.
    pub fn bearer_like(scheme: impl Into<String>, token_slot: impl Into<String>) -> Self {
        Self { scheme: Some(scheme.into()), token_slot: token_slot.into(), header: None }
    }

    /// The header name as configured, defaulting to `authorization`.
    pub fn header_name(&self) -> &str {
        self.header.as_deref().unwrap_or("authorization")
    }
}

/// One alternative of a route's `matches`; every condition inside it must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Path conditions (any one must hold when non-empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathMatch>,
    /// Allowed methods, case-insensitive (any when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Header conditions (all must hold).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
}

/// A path condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathMatch {
    /// How `value` is compared with the request path.
    #[serde(rename = "type")]
    pub kind: PathMatchKind,
    /// The prefix, exact path or regex (anchored at both ends).
    pub value: String,
}

/// Path comparison kinds (Gateway API semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathMatchKind {
    /// Element-wise prefix: `/a` matches `/a` and `/a/b`, not `/ab`.
    Prefix,
    /// The whole path.
    Exact,
    /// A regex over the whole path.
    Regex,
}

/// A header condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name, case-insensitive.
    pub name: String,
    /// How the value is compared.
    #[serde(rename = "type", default = "HeaderMatchKind::default_kind")]
    pub kind: HeaderMatchKind,
    /// The expected value or regex; unused for `present`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Header comparison kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderMatchKind {
    /// Byte-exact value.
    Exact,
    /// Regex over the whole value.
    Regex,
    /// The header is present with any value.
    Present,
}

impl HeaderMatchKind {
    fn default_kind() -> Self {
        Self::Exact
    }
}

/// Per-route DLP settings; every detector is on by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlpSettings {
    /// Detectors run over everything the agent sends.
    #[serde(default = "DlpSettings::all_outbound")]
    pub outbound_detectors: Vec<OutboundDetector>,
    /// Detectors run over text responses.
    #[serde(default = "DlpSettings::all_inbound")]
    pub inbound_detectors: Vec<InboundDetector>,
    /// What an outbound finding does.
    #[serde(default)]
    pub outbound_on_match: OnMatch,
}

impl DlpSettings {
    fn all_outbound() -> Vec<OutboundDetector> {
        vec![OutboundDetector::TokenPatterns, OutboundDetector::KnownSecrets]
    }
    fn all_inbound() -> Vec<InboundDetector> {
        vec![InboundDetector::NaiveInjectionDetection]
    }
}

impl Default for DlpSettings {
    fn default() -> Self {
        Self {
            outbound_detectors: Self::all_outbound(),
            inbound_detectors: Self::all_inbound(),
            outbound_on_match: OnMatch::default(),
        }
    }
}

/// Outbound secret detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboundDetector {
    /// Well-known credential formats.
    TokenPatterns,
    /// The exact values of every route token, in common encodings.
    KnownSecrets,
}

/// Inbound response detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboundDetector {
    /// Prompt-injection marker phrases.
    NaiveInjectionDetection,
}

/// What an outbound DLP finding does to the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMatch {
    /// Hold the request and ask the operator through a [`ProposalSink`](crate::ProposalSink).
    #[default]
    Supervise,
    /// Scrub the match, re-scan, forward.
    Redact,
    /// Refuse with 403.
    Block,
}

/// Provider placeholder swap for one header of one route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceholderConfig {
    /// The header that carries the placeholder (e.g. `x-api-key` or `authorization`).
    pub header: String,
    /// The placeholder the agent holds; not secret.
    pub value: String,
}

/// A secret value whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself; only for building the outgoing header and the known-secret scanner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(«redacted»)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("«redacted»")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

/// Token slot name → secret value.
pub type Secrets = BTreeMap<String, Secret>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_secure_defaults() {
        let config: EgressConfig = serde_json::from_str(r#"{"routes":[{"host":"api.github.com"}]}"#).unwrap();
        assert_eq!(config.log, LogLevel::Decisions);
        assert_eq!(config.token_allow_timeout_secs, 300);
        let dlp = &config.routes[0].dlp;
        assert_eq!(dlp.outbound_on_match, OnMatch::Supervise);
        assert_eq!(dlp.outbound_detectors.len(), 2);
        assert_eq!(dlp.inbound_detectors, vec![InboundDetector::NaiveInjectionDetection]);
    }

    #[test]
    fn full_route_round_trips() {
        let json = r#"{"log":2,"routes":[{"host":"api.example.com:8443",
            "auth":{"scheme":"Bearer","token_slot":"GH"},
            "matches":[{"paths":[{"type":"prefix","value":"/repos/"}],"methods":["get"],
                        "headers":[{"name":"x-a","type":"present"}]}],
            "dlp":{"outbound_detectors":["known_secrets"],"inbound_detectors":[],"outbound_on_match":"redact"},
            "placeholder":{"header":"x-api-key","value":"PLACEHOLDER"}}],
            "hosts":{"api.example.com":"127.0.0.1"},"upstream_ca":"/ca.pem"}"#;
        let config: EgressConfig = serde_json::from_str(json).unwrap();
        let back: EgressConfig = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(config, back);
        assert_eq!(config.log, LogLevel::Full);
    }

    #[test]
    fn unknown_keys_and_bad_levels_are_rejected() {
        assert!(serde_json::from_str::<EgressConfig>(r#"{"log":3}"#).is_err());
        assert!(serde_json::from_str::<EgressConfig>(r#"{"routes":[{"host":"a","role":"x"}]}"#).is_err());
        assert!(
            serde_json::from_str::<EgressConfig>(
                r#"{"routes":[{"host":"a","auth":{"scheme":"Bearer","token":"literal"}}]}"#
            )
            .is_err(),
            "a literal token must never be accepted in the config file"
        );
    }

    #[test]
    fn auth_header_is_optional_and_scheme_may_be_absent() {
        let old: EgressConfig =
            serde_json::from_str(r#"{"routes":[{"host":"a","auth":{"scheme":"Bearer","token_slot":"T"}}]}"#).unwrap();
        let auth = old.routes[0].auth.as_ref().unwrap();
        assert_eq!((auth.scheme.as_deref(), auth.header_name()), (Some("Bearer"), "authorization"));
        assert_eq!(serde_json::to_string(auth).unwrap(), r#"{"scheme":"Bearer","token_slot":"T"}"#);
        let keyed: EgressConfig =
            serde_json::from_str(r#"{"routes":[{"host":"a","auth":{"header":"x-api-key","token_slot":"T"}}]}"#)
                .unwrap();
        let auth = keyed.routes[0].auth.as_ref().unwrap();
        assert_eq!((auth.scheme.as_deref(), auth.header_name()), (None, "x-api-key"));
        assert!(
            serde_json::from_str::<EgressConfig>(r#"{"routes":[{"host":"a","auth":{"token_slot":"T","hdr":"x"}}]}"#)
                .is_err()
        );
    }

    #[test]
    fn secret_never_prints() {
        let secret = Secret::new("ghp_supersecretvalue");
        let shown = format!("{secret:?} {secret}");
        assert!(!shown.contains("supersecret"));
    }
}
