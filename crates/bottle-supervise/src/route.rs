//! Routes as the agent requests them and the operator edits them: parsed by hand from JSON so
//! every error names its field (`matches[0].paths[1].type`), checked with the proxy's own route
//! compiler, and refused when any part looks like a credential. A requested route never carries
//! credentials: those come only from the bottle's manifests.

use bottle_dlp::{Engine, Location};
use bottle_egress::policy::{INTROSPECTION_HOST, RouteTable, split_host_port};
use bottle_egress::{
    DlpSettings, HeaderMatch, HeaderMatchKind, MatchConfig, PathMatch, PathMatchKind, RouteConfig, Secrets,
};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Most `matches` entries, and most paths, methods or headers in one entry.
const MAX_ITEMS: usize = 32;
/// Longest string accepted in a route (a path, a regex, a header value).
const MAX_STRING: usize = 1024;
/// Longest justification.
pub const MAX_JUSTIFICATION: usize = 4000;

/// A route without credentials: a host and what may be sent to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteRequest {
    /// Exact host (lower-case), optionally `:port`.
    pub host: String,
    /// When non-empty, a request must satisfy at least one entry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<MatchConfig>,
}

/// A request argument or decision field that is wrong; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct FieldError {
    /// The field's path, e.g. `matches[0].paths[1].type`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Which keys an object may hold besides the route's own.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Extra {
    /// `justification` is required (the agent's `request-egress`).
    Justification,
    /// `justification` is allowed and ignored (the operator's edit of a proposal).
    AllowJustification,
}

impl RouteRequest {
    /// Parses and checks `args`; returns the route and, for [`Extra::Justification`], the
    /// justification. `scrubber` refuses any part of the route that looks like a secret.
    pub(crate) fn parse(
        args: &Map<String, Value>,
        extra: Extra,
        scrubber: &Engine,
    ) -> Result<(Self, Option<String>), FieldError> {
        for key in args.keys() {
            if !matches!(key.as_str(), "host" | "matches" | "justification") {
                return Err(FieldError::new(
                    key.as_str(),
                    "unknown field; expected `host`, `matches` and `justification`",
                ));
            }
        }
        let host = match args.get("host") {
            Some(Value::String(host)) => parse_host(host)?,
            Some(_) => return Err(FieldError::new("host", "must be a string")),
            None => return Err(FieldError::new("host", "is required")),
        };
        let matches = match args.get("matches") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                limit("matches", items.len())?;
                items
                    .iter()
                    .enumerate()
                    .map(|(i, m)| parse_match(&format!("matches[{i}]"), m))
                    .collect::<Result<_, _>>()?
            }
            Some(_) => return Err(FieldError::new("matches", "must be an array of match objects")),
        };
        let justification = match (args.get("justification"), extra) {
            (Some(Value::String(text)), Extra::Justification) if text.trim().is_empty() => {
                return Err(FieldError::new("justification", "must not be empty"));
            }
            (Some(Value::String(text)), Extra::Justification) => {
                if text.chars().count() > MAX_JUSTIFICATION {
                    return Err(FieldError::new(
                        "justification",
                        format!("is longer than {MAX_JUSTIFICATION} characters"),
                    ));
                }
                Some(text.clone())
            }
            (Some(Value::String(_)) | None, Extra::AllowJustification) => None,
            (Some(_), _) => return Err(FieldError::new("justification", "must be a string")),
            (None, Extra::Justification) => {
                return Err(FieldError::new("justification", "is required: say why the agent needs this host"));
            }
        };
        let route = Self { host, matches };
        route.check(scrubber)?;
        Ok((route, justification))
    }

    /// Compiles the route with the proxy's own rules, entry by entry so errors name the field,
    /// and refuses secret-looking material anywhere in it.
    fn check(&self, scrubber: &Engine) -> Result<(), FieldError> {
        let secret = |field: String, text: &str| -> Result<(), FieldError> {
            match scrubber.scan(text.as_bytes(), &Location::Other(field.clone().into())).first() {
                Some(finding) => Err(FieldError::new(
                    field,
                    format!(
                        "looks like it contains a secret (rule `{}`); a requested route cannot carry credentials",
                        finding.label()
                    ),
                )),
                None => Ok(()),
            }
        };
        secret("host".into(), &self.host)?;
        let compile = |field: String, m: MatchConfig| -> Result<(), FieldError> {
            let route = RouteConfig { matches: vec![m], ..self.bare() };
            RouteTable::compile(&[route], &Secrets::new()).map(|_| ()).map_err(|e| FieldError::new(field, e.reason))
        };
        for (i, m) in self.matches.iter().enumerate() {
            for (j, path) in m.paths.iter().enumerate() {
                let field = format!("matches[{i}].paths[{j}].value");
                secret(field.clone(), &path.value)?;
                compile(field, MatchConfig { paths: vec![path.clone()], ..MatchConfig::default() })?;
            }
            for (j, method) in m.methods.iter().enumerate() {
                secret(format!("matches[{i}].methods[{j}]"), method)?;
            }
            for (j, header) in m.headers.iter().enumerate() {
                secret(format!("matches[{i}].headers[{j}].name"), &header.name)?;
                if let Some(value) = &header.value {
                    secret(format!("matches[{i}].headers[{j}].value"), value)?;
                }
                let field = format!("matches[{i}].headers[{j}]");
                compile(field, MatchConfig { headers: vec![header.clone()], ..MatchConfig::default() })?;
            }
            compile(format!("matches[{i}]"), m.clone())?;
        }
        RouteTable::compile(&[self.bare()], &Secrets::new()).map_err(|e| FieldError::new("host", e.reason))?;
        Ok(())
    }

    fn bare(&self) -> RouteConfig {
        RouteConfig {
            host: self.host.clone(),
            auth: None,
            matches: self.matches.clone(),
            dlp: DlpSettings::default(),
            placeholder: None,
        }
    }

    /// The route to put in force. A new host gets no credential and every DLP detector; a
    /// replaced route keeps the manifest's credential, placeholder and DLP settings, so an agent
    /// asking for more paths neither loses nor gains a token.
    #[must_use]
    pub fn to_route(&self, current: Option<&RouteConfig>) -> RouteConfig {
        match current {
            Some(current) => RouteConfig { host: self.host.clone(), matches: self.matches.clone(), ..current.clone() },
            None => self.bare(),
        }
    }

    /// The route in force for the same host and port, if any.
    #[must_use]
    pub fn current<'a>(&self, routes: &'a [RouteConfig]) -> Option<&'a RouteConfig> {
        let key = split_host_port(&self.host).ok()?;
        routes.iter().rev().find(|r| split_host_port(&r.host).ok().as_ref() == Some(&key))
    }
}

fn limit(field: &str, len: usize) -> Result<(), FieldError> {
    if len > MAX_ITEMS {
        return Err(FieldError::new(field, format!("has more than {MAX_ITEMS} entries")));
    }
    Ok(())
}

fn parse_host(host: &str) -> Result<String, FieldError> {
    let bad = |message: String| FieldError::new("host", message);
    if host.contains('*') {
        return Err(bad("must be an exact host name; wildcards are not supported".into()));
    }
    if host.contains("://") || host.contains('/') {
        return Err(bad("must be a host name, optionally with `:port`, not a URL".into()));
    }
    let (name, port) = split_host_port(host).map_err(|d| bad(d.reason))?;
    if name == INTROSPECTION_HOST {
        return Err(bad("`_egress.local` is the proxy itself".into()));
    }
    let name = if name.contains(':') { format!("[{name}]") } else { name };
    Ok(match port {
        Some(port) => format!("{name}:{port}"),
        None => name,
    })
}

fn object<'a>(field: &str, value: &'a Value) -> Result<&'a Map<String, Value>, FieldError> {
    value.as_object().ok_or_else(|| FieldError::new(field, "must be an object"))
}

fn string(field: &str, value: Option<&Value>) -> Result<Option<String>, FieldError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() > MAX_STRING => {
            Err(FieldError::new(field, format!("is longer than {MAX_STRING} bytes")))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(FieldError::new(field, "must be a string")),
    }
}

fn known_keys(field: &str, map: &Map<String, Value>, keys: &[&str]) -> Result<(), FieldError> {
    match map.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(key) => Err(FieldError::new(
            format!("{field}.{key}"),
            format!("unknown field; expected {}", keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")),
        )),
        None => Ok(()),
    }
}

fn array<'a>(field: &str, value: Option<&'a Value>) -> Result<&'a [Value], FieldError> {
    match value {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => {
            limit(field, items.len())?;
            Ok(items)
        }
        Some(_) => Err(FieldError::new(field, "must be an array")),
    }
}

fn parse_match(field: &str, value: &Value) -> Result<MatchConfig, FieldError> {
    let map = object(field, value)?;
    known_keys(field, map, &["paths", "methods", "headers"])?;
    let paths = array(&format!("{field}.paths"), map.get("paths"))?
        .iter()
        .enumerate()
        .map(|(j, p)| {
            let field = format!("{field}.paths[{j}]");
            let map = object(&field, p)?;
            known_keys(&field, map, &["type", "value"])?;
            let kind = match string(&format!("{field}.type"), map.get("type"))?.as_deref() {
                Some("prefix") => PathMatchKind::Prefix,
                Some("exact") => PathMatchKind::Exact,
                Some("regex") => PathMatchKind::Regex,
                Some(other) => {
                    return Err(FieldError::new(
                        format!("{field}.type"),
                        format!("`{}` is not one of `prefix`, `exact`, `regex`", printable(other)),
                    ));
                }
                None => {
                    return Err(FieldError::new(format!("{field}.type"), "is required (`prefix`, `exact` or `regex`)"));
                }
            };
            let value = string(&format!("{field}.value"), map.get("value"))?
                .ok_or_else(|| FieldError::new(format!("{field}.value"), "is required"))?;
            Ok(PathMatch { kind, value })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let methods = array(&format!("{field}.methods"), map.get("methods"))?
        .iter()
        .enumerate()
        .map(|(j, m)| {
            let field = format!("{field}.methods[{j}]");
            let method = string(&field, Some(m))?.unwrap_or_default();
            if method.is_empty() || method.len() > 32 || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(FieldError::new(field, "must be an HTTP method such as `GET`"));
            }
            Ok(method.to_ascii_uppercase())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let headers = array(&format!("{field}.headers"), map.get("headers"))?
        .iter()
        .enumerate()
        .map(|(j, h)| {
            let field = format!("{field}.headers[{j}]");
            let map = object(&field, h)?;
            known_keys(&field, map, &["name", "type", "value"])?;
            let name = string(&format!("{field}.name"), map.get("name"))?
                .ok_or_else(|| FieldError::new(format!("{field}.name"), "is required"))?;
            let kind = match string(&format!("{field}.type"), map.get("type"))?.as_deref() {
                None | Some("exact") => HeaderMatchKind::Exact,
                Some("regex") => HeaderMatchKind::Regex,
                Some("present") => HeaderMatchKind::Present,
                Some(other) => {
                    return Err(FieldError::new(
                        format!("{field}.type"),
                        format!("`{}` is not one of `exact`, `regex`, `present`", printable(other)),
                    ));
                }
            };
            let value = string(&format!("{field}.value"), map.get("value"))?;
            if value.is_none() && kind != HeaderMatchKind::Present {
                return Err(FieldError::new(format!("{field}.value"), "is required unless `type` is `present`"));
            }
            Ok(HeaderMatch { name, kind, value })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MatchConfig { paths, methods, headers })
}

/// At most 64 printable characters of an agent-supplied value, for error messages.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// A route as the agent and the operator may see it: no token slot, no placeholder value, only
/// which header carries a credential and with which scheme.
#[must_use]
pub fn public_route(route: &RouteConfig) -> Value {
    let mut out = json!({ "host": route.host });
    if !route.matches.is_empty() {
        out["matches"] = json!(route.matches);
    }
    if let Some(auth) = &route.auth {
        out["auth"] = json!({ "header": auth.header_name(), "scheme": auth.scheme });
    }
    if let Some(placeholder) = &route.placeholder {
        out["placeholder"] = json!({ "header": placeholder.header });
    }
    out["dlp"] = json!(route.dlp);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubber() -> Engine {
        Engine::new(&bottle_dlp::DlpConfig::default()).unwrap()
    }

    fn parse(value: &Value) -> Result<(RouteRequest, Option<String>), FieldError> {
        RouteRequest::parse(value.as_object().unwrap(), Extra::Justification, &scrubber())
    }

    fn field_of(value: &Value) -> String {
        parse(value).unwrap_err().field
    }

    #[test]
    fn a_full_request_parses() {
        let (route, why) = parse(&json!({
            "host": "API.Example.com.:8443",
            "matches": [{"paths": [{"type": "prefix", "value": "/v1/"}], "methods": ["get"],
                         "headers": [{"name": "x-a", "type": "present"}]}],
            "justification": "docs say so"
        }))
        .unwrap();
        assert_eq!(route.host, "api.example.com:8443");
        assert_eq!(route.matches[0].methods, vec!["GET"]);
        assert_eq!(why.as_deref(), Some("docs say so"));
    }

    #[test]
    fn every_error_names_its_field() {
        let j = "because";
        assert_eq!(field_of(&json!({"justification": j})), "host");
        assert_eq!(field_of(&json!({"host": 3, "justification": j})), "host");
        assert_eq!(field_of(&json!({"host": "*.example.com", "justification": j})), "host");
        assert_eq!(field_of(&json!({"host": "https://a.example/x", "justification": j})), "host");
        assert_eq!(field_of(&json!({"host": "_egress.local", "justification": j})), "host");
        assert_eq!(field_of(&json!({"host": "a.example"})), "justification");
        assert_eq!(field_of(&json!({"host": "a.example", "justification": " "})), "justification");
        assert_eq!(field_of(&json!({"host": "a.example", "justification": j, "auth": {}})), "auth");
        assert_eq!(field_of(&json!({"host": "a.example", "justification": j, "matches": {}})), "matches");
        assert_eq!(
            field_of(
                &json!({"host": "a.example", "justification": j, "matches": [{"paths": [{"type": "glob", "value": "/"}]}]})
            ),
            "matches[0].paths[0].type"
        );
        assert_eq!(
            field_of(
                &json!({"host": "a.example", "justification": j, "matches": [{}, {"paths": [{"type": "prefix", "value": "v1"}]}]})
            ),
            "matches[1].paths[0].value"
        );
        assert_eq!(
            field_of(
                &json!({"host": "a.example", "justification": j, "matches": [{"paths": [{"type": "regex", "value": "(("}]}]})
            ),
            "matches[0].paths[0].value"
        );
        assert_eq!(
            field_of(&json!({"host": "a.example", "justification": j, "matches": [{"methods": ["GE T"]}]})),
            "matches[0].methods[0]"
        );
        assert_eq!(
            field_of(&json!({"host": "a.example", "justification": j, "matches": [{"headers": [{"name": "x"}]}]})),
            "matches[0].headers[0].value"
        );
        assert_eq!(
            field_of(&json!({"host": "a.example", "justification": j, "matches": [{"verbs": []}]})),
            "matches[0].verbs"
        );
    }

    #[test]
    fn secret_looking_parts_are_refused() {
        let err = parse(&json!({"host": "a.example", "justification": "x",
            "matches": [{"paths": [{"type": "exact", "value": "/AKIAIOSFODNN7EXAMPLE"}]}]}))
        .unwrap_err();
        assert_eq!(err.field, "matches[0].paths[0].value");
        assert!(!err.to_string().contains("AKIAIOSFODNN7EXAMPLE"), "{err}");
    }

    #[test]
    fn a_replaced_route_keeps_its_credential() {
        let (route, _) = parse(&json!({"host": "a.example", "justification": "x"})).unwrap();
        let current = RouteConfig {
            auth: Some(bottle_egress::AuthConfig::bearer_like("Bearer", "SLOT")),
            ..route.to_route(None)
        };
        assert!(route.to_route(Some(&current)).auth.is_some());
        assert!(route.to_route(None).auth.is_none());
        let shown = public_route(&current).to_string();
        assert!(shown.contains("\"scheme\":\"Bearer\"") && !shown.contains("SLOT"), "{shown}");
    }
}
