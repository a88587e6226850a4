//! Outbound DLP glue: which `bottle-dlp` engine a route uses, and scanning/redacting a request head.
//!
//! The engine does the detection; this module decides what is scanned (host, path, query, and the
//! agent's own headers — not the credential the proxy is about to inject) and turns findings into
//! rule ids and locations that are safe to show and log.

use bottle_dlp::{Detectors, DlpConfig, Engine, Finding, KnownSecret, Location};
use http::HeaderMap;
use http::header::{self, HeaderName};

use crate::config::{OutboundDetector, Secrets};
use crate::policy::Route;

/// One compiled engine per detector combination, all sharing the same known secrets.
#[derive(Debug)]
pub(crate) struct DlpEngines {
    token_only: Engine,
    known_only: Engine,
    both: Engine,
}

impl DlpEngines {
    /// Known secrets are every route token the sidecar holds.
    pub(crate) fn build(secrets: &Secrets) -> Result<Self, bottle_dlp::DlpError> {
        let known: Vec<KnownSecret> =
            secrets.iter().map(|(slot, secret)| KnownSecret::new(slot.clone(), secret.expose().as_bytes())).collect();
        let make = |token_patterns, known_secrets| {
            Engine::new(&DlpConfig {
                detectors: Detectors { token_patterns, known_secrets },
                known_secrets: known.clone(),
            })
        };
        Ok(Self { token_only: make(true, false)?, known_only: make(false, true)?, both: make(true, true)? })
    }

    /// The engine for a route's `outbound_detectors`, `None` when the route disables outbound DLP.
    pub(crate) fn for_detectors(&self, detectors: &[OutboundDetector]) -> Option<&Engine> {
        let token = detectors.contains(&OutboundDetector::TokenPatterns);
        let known = detectors.contains(&OutboundDetector::KnownSecrets);
        match (token, known) {
            (true, true) => Some(&self.both),
            (true, false) => Some(&self.token_only),
            (false, true) => Some(&self.known_only),
            (false, false) => None,
        }
    }

    /// The engine used to scrub anything that goes into the audit log, whatever the route says.
    pub(crate) fn log_scrubber(&self) -> &Engine {
        &self.both
    }
}

/// A finding reduced to what may be shown: rule id, secret slot name, location. Never the value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FindingSummary {
    /// The DLP rule that matched (e.g. `github-pat`, `known-secret`).
    pub rule: String,
    /// Where it matched (`host`, `path`, `query`, ``header `x-foo` ``, `body`).
    pub location: String,
    /// Whether it is a structural problem (CR/LF/NUL) that no approval can make safe.
    pub structural: bool,
}

impl FindingSummary {
    pub(crate) fn from_finding(finding: &Finding) -> Self {
        Self { rule: finding.label(), location: finding.location.to_string(), structural: finding.must_block() }
    }
}

/// Headers whose agent-sent values are replaced by the proxy and so never leave: not scanned, because
/// flagging a placeholder or the agent's discarded credential would only produce noise.
fn replaced_headers(route: &Route) -> Vec<HeaderName> {
    let mut names = vec![header::AUTHORIZATION, header::PROXY_AUTHORIZATION];
    if let Some(p) = &route.config.placeholder
        && let Ok(name) = HeaderName::from_bytes(p.header.as_bytes())
    {
        names.retain(|n| *n != name);
    }
    names
}

/// Scans host, path, query and the agent's headers. The placeholder itself is blanked out of its
/// header first (it is not secret), so anything the agent appended to it is still scanned.
pub(crate) fn scan_head(
    engine: &Engine,
    route: &Route,
    host: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Vec<Finding> {
    let mut findings = engine.scan(host.as_bytes(), &Location::Host);
    findings.extend(engine.scan(path.as_bytes(), &Location::Path));
    if let Some(query) = query {
        findings.extend(engine.scan(query.as_bytes(), &Location::Query));
    }
    let owned = scanned_headers(route, headers);
    let pairs: Vec<(&[u8], &[u8])> = owned.iter().map(|(n, v)| (n.as_slice(), v.as_slice())).collect();
    findings.extend(engine.scan_headers(&pairs));
    findings
}

/// The header name/value pairs the outbound scan sees: the agent's own headers without those the
/// proxy replaces, the placeholder blanked out of its header.
fn scanned_headers(route: &Route, headers: &HeaderMap) -> Vec<(Vec<u8>, Vec<u8>)> {
    let skip = replaced_headers(route);
    let placeholder = route.config.placeholder.as_ref();
    headers
        .iter()
        .filter(|(name, _)| !skip.contains(name))
        .map(|(name, value)| {
            let mut value = value.as_bytes().to_vec();
            if let Some(p) = placeholder
                && name.as_str().eq_ignore_ascii_case(&p.header)
            {
                value = replace_bytes(&value, p.value.as_bytes(), b"");
            }
            (name.as_str().as_bytes().to_vec(), value)
        })
        .collect()
}

/// What a request's outbound scan covered, kept to find the bytes each finding points at.
pub(crate) struct ScannedRequest<'a> {
    pub(crate) route: &'a Route,
    pub(crate) host: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: Option<&'a [u8]>,
}

/// One salted SHA-256 per finding over (host, rule, matched bytes): what a session approval
/// remembers instead of the value. `None` when any finding's bytes cannot be located (a secret in
/// a header name, a streamed body): such a request is always asked about again.
pub(crate) fn session_keys(salt: &[u8], findings: &[Finding], request: &ScannedRequest<'_>) -> Option<Vec<[u8; 32]>> {
    use sha2::{Digest as _, Sha256};
    let mut header_groups: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (name, value) in scanned_headers(request.route, request.headers) {
        match header_groups.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            Some((_, values)) => values.extend_from_slice(&value),
            None => header_groups.push((name, value)),
        }
    }
    findings
        .iter()
        .map(|finding| {
            let input: &[u8] = match &finding.location {
                Location::Host => request.host.as_bytes(),
                Location::Path => request.path.as_bytes(),
                Location::Query => request.query?.as_bytes(),
                Location::Body => request.body?,
                Location::Header { name } => {
                    header_groups.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))?.1.as_slice()
                }
                _ => return None,
            };
            let value = input.get(finding.span.clone()).filter(|v| !v.is_empty())?;
            let mut hash = Sha256::new();
            hash.update(salt);
            hash.update(request.host.as_bytes());
            hash.update([0]);
            hash.update(finding.label().as_bytes());
            hash.update([0]);
            hash.update(value);
            Some(hash.finalize().into())
        })
        .collect()
}

/// Replaces every occurrence of `needle` in `haystack`.
pub(crate) fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// Scrubs a string for the audit log: every known secret and token pattern becomes `«REDACTED:…»`.
pub(crate) fn scrub(engine: &Engine, text: &str, location: &Location) -> String {
    let redaction = engine.redact(text.as_bytes(), location);
    String::from_utf8_lossy(&redaction.output).into_owned()
}
