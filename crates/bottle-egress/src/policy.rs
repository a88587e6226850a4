//! The egress decision logic, free of sockets: which target a request names, which route it hits,
//! whether the route's `matches` admit it, whether its head is well-formed, and how its credentials
//! are rewritten.
//!
//! Everything here is a pure function of its inputs so it can be tested table-driven and fuzzed; the
//! network layer calls it and turns a [`Denial`] into a 403/400 response and an audit line.

use std::collections::HashMap;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use regex::Regex;

use crate::config::{HeaderMatchKind, MatchConfig, PathMatchKind, RouteConfig, Secret, Secrets};

/// The magic host answered by the proxy itself.
pub const INTROSPECTION_HOST: &str = "_egress.local";

/// Which side of the proxy a failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The agent sent something malformed.
    Downstream,
    /// The upstream server failed.
    Upstream,
    /// The request was well-formed but not allowed.
    Policy,
}

impl Side {
    /// The label used in response bodies and audit lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Downstream => "downstream (agent)",
            Self::Upstream => "upstream",
            Self::Policy => "policy",
        }
    }
}

/// A refusal: rule id, human reason (never containing a secret), side and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Stable rule id, e.g. `egress.no-route`.
    pub rule: &'static str,
    /// What was wrong, for the agent and the audit log.
    pub reason: String,
    /// Who failed.
    pub side: Side,
    /// HTTP status to answer with.
    pub status: StatusCode,
}

impl Denial {
    pub(crate) fn policy(rule: &'static str, reason: impl Into<String>) -> Self {
        Self { rule, reason: reason.into(), side: Side::Policy, status: StatusCode::FORBIDDEN }
    }

    pub(crate) fn malformed(rule: &'static str, reason: impl Into<String>) -> Self {
        Self { rule, reason: reason.into(), side: Side::Downstream, status: StatusCode::BAD_REQUEST }
    }

    /// The plain-text body sent to the agent: what, why, and how to ask for access.
    pub fn body(&self, what: &str) -> String {
        let mut body = format!(
            "bot-bottle egress: blocked {what}\nreason: {} (rule `{}`)\nside: {}\n",
            self.reason,
            self.rule,
            self.side.as_str()
        );
        if self.side == Side::Policy {
            body.push_str(
                "hint: ask the operator for access with the `request-egress` tool of the \
                 bot-bottle supervise MCP server; `GET http://_egress.local/allowlist` lists \
                 the current routes\n",
            );
        }
        body
    }
}

/// URL scheme of the agent's request as the proxy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP (absolute-URI proxy request).
    Http,
    /// HTTPS (CONNECT + TLS interception).
    Https,
}

impl Scheme {
    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }

    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// A normalized request target: lower-case host without brackets or trailing dot, explicit port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Lower-case host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// The port, defaulted from the scheme when absent.
    pub port: u16,
    /// How the agent reached it.
    pub scheme: Scheme,
}

impl Target {
    /// Whether the host is an IP literal.
    pub fn is_ip(&self) -> bool {
        self.host.parse::<IpAddr>().is_ok()
    }

    /// `host:port` with brackets for IPv6, as used in URIs and the `Host` header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.authority())
    }
}

/// Splits and normalizes `host[:port]` (IPv6 in brackets); `None` port when absent.
pub fn split_host_port(authority: &str) -> Result<(String, Option<u16>), Denial> {
    let bad =
        || Denial::malformed("egress.bad-target", format!("`{}` is not a valid host[:port]", printable(authority)));
    if authority.is_empty() || authority.len() > 260 {
        return Err(bad());
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(bad)?;
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad());
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        (inside.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_owned(), Some(p)),
            Some(_) => return Err(bad()), // bare IPv6 without brackets is ambiguous
            None => (authority.to_owned(), None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let port: u16 = p.parse().map_err(|_| bad())?;
            if port == 0 {
                return Err(bad());
            }
            Some(port)
        }
    };
    let host = normalize_host(&host).ok_or_else(bad)?;
    Ok((host, port))
}

/// Lower-cases a host, strips one trailing dot and checks its characters; `None` when invalid.
pub fn normalize_host(host: &str) -> Option<String> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return None;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    let ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    ok.then(|| host.to_ascii_lowercase())
}

/// Parses the authority of a CONNECT request; the port is mandatory there.
pub fn parse_connect_target(authority: &str) -> Result<Target, Denial> {
    let (host, port) = split_host_port(authority)?;
    let port =
        port.ok_or_else(|| Denial::malformed("egress.bad-target", "CONNECT target must be host:port".to_owned()))?;
    Ok(Target { host, port, scheme: Scheme::Https })
}

/// Parses a `Host` header or `:authority` with `scheme`'s default port.
pub fn parse_authority(authority: &str, scheme: Scheme) -> Result<Target, Denial> {
    let (host, port) = split_host_port(authority)?;
    Ok(Target { host, port: port.unwrap_or(scheme.default_port()), scheme })
}

/// Inside a bumped tunnel, the request's own `Host`/`:authority` must name the CONNECT target.
///
/// Otherwise one allowed CONNECT could carry requests for any host behind the same front (domain
/// fronting) or smuggle a second target past the route check.
pub fn check_inner_authority(tunnel: &Target, inner: Option<&str>) -> Result<Target, Denial> {
    let inner = inner.ok_or_else(|| Denial::malformed("egress.missing-host", "request has no Host or :authority"))?;
    let parsed = parse_authority(inner, tunnel.scheme)?;
    if parsed.host != tunnel.host || parsed.port != tunnel.port {
        return Err(Denial::policy(
            "egress.domain-fronting",
            format!("request names host `{}` inside a tunnel to `{}`", parsed.authority(), tunnel.authority()),
        ));
    }
    Ok(parsed)
}

/// The TLS SNI, when sent, must be the CONNECT target's host.
pub fn check_sni(tunnel: &Target, sni: Option<&str>) -> Result<(), Denial> {
    match sni {
        None => Ok(()),
        Some(sni) if normalize_host(sni).as_deref() == Some(tunnel.host.as_str()) => Ok(()),
        Some(sni) => Err(Denial::policy(
            "egress.sni-mismatch",
            format!("TLS server name `{}` differs from CONNECT target `{}`", printable(sni), tunnel.host),
        )),
    }
}

/// A compiled route: the config plus parsed host/port and compiled match conditions.
#[derive(Debug)]
pub struct Route {
    /// The route as configured (serialized back by `/allowlist`).
    pub config: RouteConfig,
    /// Normalized host.
    pub host: String,
    /// Explicit port, if the route names one.
    pub port: Option<u16>,
    matches: Vec<CompiledMatch>,
}

#[derive(Debug)]
struct CompiledMatch {
    paths: Vec<CompiledPath>,
    methods: Vec<String>,
    headers: Vec<CompiledHeader>,
}

#[derive(Debug)]
enum CompiledPath {
    Prefix(String),
    Exact(String),
    Regex(Regex),
}

#[derive(Debug)]
struct CompiledHeader {
    name: HeaderName,
    test: HeaderTest,
}

#[derive(Debug)]
enum HeaderTest {
    Exact(String),
    Regex(Regex),
    Present,
}

/// Why a route table could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route `{host}`: {reason}")]
pub struct RouteError {
    /// The offending route's host as written.
    pub host: String,
    /// What is wrong.
    pub reason: String,
}

/// The compiled allow-list, looked up by exact host.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    by_key: HashMap<(String, Option<u16>), usize>,
}

impl RouteTable {
    /// Compiles `routes`; a later route for the same host and port replaces an earlier one.
    ///
    /// Every `auth.token_slot` must exist in `secrets`: a route that would send no credential is a
    /// configuration error, not a silent anonymous request.
    pub fn compile(routes: &[RouteConfig], secrets: &Secrets) -> Result<Self, RouteError> {
        let mut table = Self::default();
        for config in routes {
            let err = |reason: String| RouteError { host: config.host.clone(), reason };
            let (host, port) = split_host_port(&config.host).map_err(|d| err(d.reason))?;
            if host == INTROSPECTION_HOST {
                return Err(err("`_egress.local` is reserved for the proxy".into()));
            }
            if let Some(auth) = &config.auth {
                if !secrets.contains_key(&auth.token_slot) {
                    return Err(err(format!("token slot `{}` has no secret", auth.token_slot)));
                }
                let name = HeaderName::from_bytes(auth.header_name().as_bytes())
                    .map_err(|_| err(format!("invalid auth header `{}`", auth.header_name())))?;
                if RESERVED_AUTH_HEADERS.contains(&name.as_str()) {
                    return Err(err(format!("`{name}` cannot carry a credential")));
                }
                match &auth.scheme {
                    Some(scheme)
                        if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
                    {
                        return Err(err(format!("invalid auth scheme `{scheme}`")));
                    }
                    None if name == header::AUTHORIZATION => {
                        return Err(err("`auth.scheme` is required for the Authorization header".into()));
                    }
                    _ => {}
                }
                if auth.header.is_some() && config.placeholder.is_some() {
                    return Err(err("`auth.header` and `placeholder` cannot be combined".into()));
                }
            }
            if let Some(placeholder) = &config.placeholder {
                if config.auth.is_none() {
                    return Err(err("`placeholder` needs `auth` to know the real token".into()));
                }
                HeaderName::from_bytes(placeholder.header.as_bytes())
                    .map_err(|_| err(format!("invalid header `{}`", placeholder.header)))?;
                if placeholder.value.is_empty() {
                    return Err(err("empty placeholder value".into()));
                }
            }
            let matches = config.matches.iter().map(compile_match).collect::<Result<Vec<_>, String>>().map_err(err)?;
            let route = Route { config: config.clone(), host: host.clone(), port, matches };
            match table.by_key.get(&(host.clone(), port)) {
                Some(&index) => table.routes[index] = route,
                None => {
                    table.by_key.insert((host, port), table.routes.len());
                    table.routes.push(route);
                }
            }
        }
        Ok(table)
    }

    /// All routes, in configuration order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for `target`, or the reason there is none.
    ///
    /// A route without a port admits only the scheme's default port; a route with a port admits
    /// only that port.
    pub fn lookup(&self, target: &Target) -> Result<&Route, Denial> {
        let key_exact = (target.host.clone(), Some(target.port));
        if let Some(&i) = self.by_key.get(&key_exact) {
            return Ok(&self.routes[i]);
        }
        if target.port == target.scheme.default_port()
            && let Some(&i) = self.by_key.get(&(target.host.clone(), None))
        {
            return Ok(&self.routes[i]);
        }
        let known_host = self.routes.iter().any(|r| r.host == target.host);
        Err(if known_host {
            Denial::policy(
                "egress.port-not-allowed",
                format!("port {} is not allowed for host `{}`", target.port, target.host),
            )
        } else if target.is_ip() {
            Denial::policy(
                "egress.ip-literal",
                format!("IP literal `{}` is not allowed; routes name hosts", target.host),
            )
        } else {
            Denial::policy("egress.no-route", format!("no egress route for host `{}`", target.host))
        })
    }
}

/// Headers that frame or route the request (or are stripped as hop-by-hop) and so cannot carry an
/// injected credential.
const RESERVED_AUTH_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "cookie",
];

fn compile_match(m: &MatchConfig) -> Result<CompiledMatch, String> {
    let paths = m
        .paths
        .iter()
        .map(|p| match p.kind {
            PathMatchKind::Prefix | PathMatchKind::Exact if !p.value.starts_with('/') => {
                Err(format!("path `{}` must start with `/`", p.value))
            }
            PathMatchKind::Prefix => Ok(CompiledPath::Prefix(p.value.clone())),
            PathMatchKind::Exact => Ok(CompiledPath::Exact(p.value.clone())),
            PathMatchKind::Regex => anchored(&p.value).map(CompiledPath::Regex),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let methods = m.methods.iter().map(|method| method.to_ascii_uppercase()).collect();
    let headers = m
        .headers
        .iter()
        .map(|h| {
            let name =
                HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| format!("invalid header name `{}`", h.name))?;
            let value = || h.value.clone().ok_or_else(|| format!("header `{}` needs a value", h.name));
            let test = match h.kind {
                HeaderMatchKind::Present => HeaderTest::Present,
                HeaderMatchKind::Exact => HeaderTest::Exact(value()?),
                HeaderMatchKind::Regex => HeaderTest::Regex(anchored(&value()?)?),
            };
            Ok(CompiledHeader { name, test })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(CompiledMatch { paths, methods, headers })
}

fn anchored(pattern: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("invalid regex `{pattern}`: {e}"))
}

/// Checks a request against the route's `matches` (at least one entry must hold when present).
///
/// `path` is the URI path without the query. Paths with dot segments or encoded separators are
/// refused on routes that restrict paths: upstreams normalize them, so `/allowed/../secret` would
/// otherwise pass a prefix check and reach a path the route does not allow.
pub fn check_matches(route: &Route, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), Denial> {
    if route.matches.is_empty() {
        return Ok(());
    }
    let restricts_paths = route.matches.iter().any(|m| !m.paths.is_empty());
    if restricts_paths && !is_normalized_path(path) {
        return Err(Denial::policy("egress.path-not-normalized", "path contains dot segments or encoded separators"));
    }
    if route.matches.iter().any(|m| entry_matches(m, method, path, headers)) {
        return Ok(());
    }
    Err(Denial::policy(
        "egress.no-match",
        format!("{} {} matches none of the route's `matches` for host `{}`", method, printable(path), route.host),
    ))
}

fn entry_matches(m: &CompiledMatch, method: &Method, path: &str, headers: &HeaderMap) -> bool {
    let method_ok = m.methods.is_empty() || m.methods.iter().any(|allowed| allowed == method.as_str());
    let path_ok = m.paths.is_empty()
        || m.paths.iter().any(|p| match p {
            CompiledPath::Exact(v) => path == v,
            CompiledPath::Regex(re) => re.is_match(path),
            CompiledPath::Prefix(v) => {
                path == v
                    || (path.starts_with(v.as_str())
                        && (v.ends_with('/') || path.as_bytes().get(v.len()) == Some(&b'/')))
            }
        });
    let headers_ok = m.headers.iter().all(|h| {
        let mut values = headers.get_all(&h.name).iter();
        match &h.test {
            HeaderTest::Present => values.next().is_some(),
            HeaderTest::Exact(want) => values.any(|v| v.as_bytes() == want.as_bytes()),
            HeaderTest::Regex(re) => values.any(|v| v.to_str().is_ok_and(|s| re.is_match(s))),
        }
    });
    method_ok && path_ok && headers_ok
}

fn is_normalized_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%2e") || path.contains('\\') {
        return false;
    }
    !path.split('/').any(|seg| seg == "." || seg == "..")
}

/// Maximum total size of a request head the proxy accepts (also enforced by the HTTP parser).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Maximum number of request headers.
pub const MAX_HEADERS: usize = 128;

/// Rejects request heads that proxies and upstreams could disagree about (request smuggling) and
/// header bytes that could split a header when re-serialized.
///
/// The HTTP/1 parser already refuses obs-fold and control bytes; this re-checks on the parsed map so
/// the guarantee holds for every protocol and does not depend on a parser setting.
pub fn check_request_shape(headers: &HeaderMap) -> Result<(), Denial> {
    let te = headers.get_all(header::TRANSFER_ENCODING).iter().count();
    let cl: Vec<&HeaderValue> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    if te > 0 && !cl.is_empty() {
        return Err(Denial::malformed(
            "egress.smuggling.cl-te",
            "both Content-Length and Transfer-Encoding are present",
        ));
    }
    if cl.len() > 1 {
        return Err(Denial::malformed(
            "egress.smuggling.duplicate-content-length",
            "more than one Content-Length header",
        ));
    }
    if let Some(value) = cl.first() {
        let ok = !value.is_empty() && value.len() <= 19 && value.as_bytes().iter().all(u8::is_ascii_digit);
        if !ok {
            return Err(Denial::malformed(
                "egress.smuggling.bad-content-length",
                "Content-Length is not a plain decimal number",
            ));
        }
    }
    if te > 1 {
        return Err(Denial::malformed("egress.smuggling.transfer-encoding", "more than one Transfer-Encoding header"));
    }
    if let Some(value) = headers.get(header::TRANSFER_ENCODING)
        && !value.as_bytes().eq_ignore_ascii_case(b"chunked")
    {
        return Err(Denial::malformed("egress.smuggling.transfer-encoding", "Transfer-Encoding other than `chunked`"));
    }
    if headers.len() > MAX_HEADERS {
        return Err(Denial {
            rule: "egress.header.too-many",
            reason: format!("more than {MAX_HEADERS} headers"),
            side: Side::Downstream,
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        });
    }
    let mut total = 0_usize;
    for (name, value) in headers {
        total += name.as_str().len() + value.len() + 4;
        if let Some(bad) = structural_violation(value.as_bytes()) {
            return Err(Denial::policy("egress.header.structural", format!("header `{name}` contains {bad}")));
        }
    }
    if total > MAX_HEADER_BYTES {
        return Err(Denial {
            rule: "egress.header.too-large",
            reason: format!("request headers exceed {MAX_HEADER_BYTES} bytes"),
            side: Side::Downstream,
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        });
    }
    Ok(())
}

/// CR, LF, NUL or other control bytes (HTAB excepted) in a header value.
pub fn structural_violation(value: &[u8]) -> Option<&'static str> {
    value.iter().find_map(|&b| match b {
        b'\r' | b'\n' => Some("CR/LF"),
        0 => Some("NUL"),
        b'\t' => None,
        0x01..=0x1f | 0x7f => Some("a control byte"),
        _ => None,
    })
}

/// Headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1), plus the proxy's own.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named by `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::HOST,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// What [`rewrite_credentials`] did, for audit redaction: the names of headers carrying real secrets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Injected {
    /// Headers whose values now contain a sidecar secret.
    pub headers: Vec<HeaderName>,
}

/// Removes the agent's own credentials and puts the route's real one in.
///
/// - `Authorization` and `Proxy-Authorization` from the agent never leave the proxy.
/// - With `auth` and no `placeholder`: `<header>: [<scheme> ]<token>` is injected (`Authorization:
///   <scheme> <token>` by default); the agent's value of that header is dropped.
/// - With `placeholder`: the placeholder value inside `placeholder.header` is replaced by the token
///   (the agent sent it; nothing is added when it did not), only on this route's host.
pub fn rewrite_credentials(route: &Route, headers: &mut HeaderMap, secrets: &Secrets) -> Result<Injected, Denial> {
    let mut injected = Injected::default();
    headers.remove(header::PROXY_AUTHORIZATION);
    let Some(auth) = &route.config.auth else {
        headers.remove(header::AUTHORIZATION);
        return Ok(injected);
    };
    let secret: &Secret = secrets.get(&auth.token_slot).ok_or_else(|| {
        Denial::policy("egress.missing-secret", format!("token slot `{}` has no secret", auth.token_slot))
    })?;
    match &route.config.placeholder {
        None => {
            let name = HeaderName::from_bytes(auth.header_name().as_bytes())
                .map_err(|_| Denial::policy("egress.bad-auth-header", "invalid auth header"))?;
            // The agent's own credential never leaves, in `Authorization` or in the route's header.
            headers.remove(header::AUTHORIZATION);
            headers.remove(&name);
            let value = match &auth.scheme {
                Some(scheme) => HeaderValue::try_from(format!("{scheme} {}", secret.expose())),
                None => HeaderValue::try_from(secret.expose()),
            }
            .map_err(|_| invalid_secret(&auth.token_slot))?;
            headers.insert(name.clone(), sensitive(value));
            injected.headers.push(name);
        }
        Some(placeholder) => {
            let name = HeaderName::from_bytes(placeholder.header.as_bytes())
                .map_err(|_| Denial::policy("egress.bad-placeholder", "invalid placeholder header"))?;
            let swapped: Vec<HeaderValue> = headers
                .get_all(&name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter(|v| v.contains(placeholder.value.as_str()))
                .map(|v| {
                    HeaderValue::try_from(v.replace(placeholder.value.as_str(), secret.expose()))
                        .map(sensitive)
                        .map_err(|_| invalid_secret(&auth.token_slot))
                })
                .collect::<Result<_, _>>()?;
            // Values without the placeholder are the agent's own credentials: dropped.
            headers.remove(&name);
            if name != header::AUTHORIZATION {
                headers.remove(header::AUTHORIZATION);
            }
            if !swapped.is_empty() {
                for value in swapped {
                    headers.append(name.clone(), value);
                }
                injected.headers.push(name);
            }
        }
    }
    Ok(injected)
}

fn sensitive(mut value: HeaderValue) -> HeaderValue {
    // Keeps the value out of HPACK tables and hyper's debug output.
    value.set_sensitive(true);
    value
}

fn invalid_secret(slot: &str) -> Denial {
    Denial::policy("egress.invalid-secret", format!("secret in slot `{slot}` is not a valid header value"))
}

/// Escapes control and non-ASCII characters so agent-supplied text cannot forge log or body lines.
pub fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(200)
        .flat_map(|c| if c.is_ascii_graphic() || c == ' ' { vec![c] } else { c.escape_default().collect() })
        .collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
