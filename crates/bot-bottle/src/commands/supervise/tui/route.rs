//! Egress routes as the operator sees and edits them: YAML text (written by hand here, read with
//! the manifest crate's strict parser), the shape check run before a modified route is sent, the
//! line diff the detail pane shows, and the `$EDITOR` round trip of `m`.
//!
//! The shape is the sidecar's wire route: `host` plus optional `matches`, each match with `paths`
//! (`{type: prefix|exact|regex, value}`), `methods` and `headers` (`{name, type, value}`).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bottle_manifest::yaml::{self, NodeKind};
use serde_json::{Map, Value};

/// HTTP methods a match may name.
const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"];

/// `value` as block-style YAML, one line per scalar, ending in a newline (empty for `null`).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Null => {}
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

/// The route an `egress-route` proposal asks for, as the operator edits it: its `host` and
/// `matches` (the proposal's detail carries them at the top, beside `justification`, `current` and
/// the resulting `proposed` route).
pub fn requested(detail: &Value) -> Value {
    let mut route = Map::new();
    for key in ["host", "matches"] {
        match detail.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) if items.is_empty() => {}
            Some(value) => {
                route.insert(key.to_owned(), value.clone());
            }
        }
    }
    Value::Object(route)
}

/// Keys written first, in this order, so a route reads as it is documented; others follow sorted.
const KEY_ORDER: [&str; 8] = ["host", "matches", "paths", "methods", "headers", "name", "type", "value"];

fn write_map(out: &mut String, map: &Map<String, Value>, indent: usize) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by_key(|(k, _)| (KEY_ORDER.iter().position(|o| o == k).unwrap_or(KEY_ORDER.len()), k.as_str()));
    for (key, value) in entries {
        out.push_str(&" ".repeat(indent));
        out.push_str(&string(key));
        out.push(':');
        write_value(out, value, indent);
    }
}

fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            // A mapping item starts on the dash's line: `- type: prefix`.
            Value::Object(map) if !map.is_empty() => {
                let mut nested = String::new();
                write_map(&mut nested, map, indent + 2);
                out.push(' ');
                out.push_str(nested.trim_start());
            }
            other => write_value(out, other, indent),
        }
    }
}

/// The rest of a `key:` or `-` line: an inline scalar, or a newline and the nested block.
fn write_value(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, indent + 2);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string plain when YAML reads it back as the same string, else double-quoted (a JSON string
/// is a valid YAML double-quoted scalar).
fn string(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-^$()[]{}+?*\\|=,;~".contains(c))
        && !s.starts_with(|c: char| "-?[]{}*&!|>~,".contains(c))
        && yaml::is_bool(s).is_none()
        && !matches!(s, "null" | "Null" | "NULL")
        && s.parse::<f64>().is_err();
    if plain { s.to_owned() } else { serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}")) }
}

/// Reads YAML text into JSON: unquoted booleans and integers become JSON ones, everything else a
/// string. The manifest parser refuses anchors, aliases, tags and duplicate keys here too.
pub fn parse(text: &str) -> Result<Value, String> {
    let node = yaml::parse(text).map_err(|e| format!("line {}: {}", e.pos.line, e.message))?;
    Ok(to_json(&node))
}

fn to_json(node: &yaml::Node) -> Value {
    match &node.kind {
        NodeKind::Null => Value::Null,
        NodeKind::Scalar { text, quoted: true } => Value::String(text.clone()),
        NodeKind::Scalar { text, quoted: false } => {
            if let Some(b) = yaml::is_bool(text) {
                Value::Bool(b)
            } else if let Ok(n) = text.parse::<i64>() {
                Value::from(n)
            } else {
                Value::String(text.clone())
            }
        }
        NodeKind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        NodeKind::Map(entries) => Value::Object(entries.iter().map(|(k, v)| (k.name.clone(), to_json(v))).collect()),
    }
}

/// Checks that `route` is a route the sidecar can apply: a mapping with a `host` (a DNS name or IP
/// literal, optional port) and well-formed `matches`. Keys other than those two are allowed only
/// when `original` (the route the agent asked for) has them too.
pub fn validate(route: &Value, original: &Value) -> Result<(), String> {
    let Value::Object(map) = route else {
        return Err(format!("the route must be a mapping with `host` and `matches`, not {}", type_name(route)));
    };
    for key in map.keys() {
        if key != "host" && key != "matches" && original.get(key).is_none() {
            return Err(format!("unknown key `{key}`; a route has `host` and `matches`"));
        }
    }
    let host = match map.get("host") {
        None => return Err("`host` is required".into()),
        Some(Value::String(h)) if !h.trim().is_empty() => h,
        Some(other) => return Err(format!("`host` must be a host name, not {}", type_name(other))),
    };
    bottle_manifest::schema::parse_route_host(host)
        .map_err(|hint| format!("`host` is `{host}`, which is not a host: {hint}"))?;
    match map.get("matches") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) => {
            items.iter().enumerate().try_for_each(|(i, m)| validate_match(m, &format!("matches[{i}]")))
        }
        Some(other) => Err(format!("`matches` must be a list, not {}", type_name(other))),
    }
}

fn validate_match(m: &Value, at: &str) -> Result<(), String> {
    let map = mapping(m, at)?;
    if let Some(key) = map.keys().find(|k| !["paths", "methods", "headers"].contains(&k.as_str())) {
        return Err(format!("unknown key `{at}.{key}`; a match has `paths`, `methods` and `headers`"));
    }
    for (key, value) in map {
        let at = format!("{at}.{key}");
        let Value::Array(items) = value else {
            return Err(format!("`{at}` must be a list, not {}", type_name(value)));
        };
        for (i, item) in items.iter().enumerate() {
            let at = format!("{at}[{i}]");
            match key.as_str() {
                "paths" => validate_path(item, &at)?,
                "methods" => {
                    let method = text(item, &at)?.to_ascii_uppercase();
                    if !METHODS.contains(&method.as_str()) {
                        return Err(format!("`{at}` is `{method}`, which is not an HTTP method"));
                    }
                }
                _ => validate_header(item, &at)?,
            }
        }
    }
    Ok(())
}

fn validate_path(item: &Value, at: &str) -> Result<(), String> {
    let map = mapping(item, at)?;
    check_keys(map, &["type", "value"], at)?;
    let kind = map.get("type").ok_or_else(|| format!("`{at}` has no `type` (prefix, exact or regex)"))?;
    let kind = text(kind, &format!("{at}.type"))?;
    let value = map.get("value").ok_or_else(|| format!("`{at}` has no `value`"))?;
    let value = text(value, &format!("{at}.value"))?;
    match kind {
        "regex" => Ok(()),
        "prefix" | "exact" if value.starts_with('/') => Ok(()),
        "prefix" | "exact" => Err(format!("`{at}.value` is `{value}`, which does not start with `/`")),
        other => Err(format!("`{at}.type` is `{other}`; use `prefix`, `exact` or `regex`")),
    }
}

fn validate_header(item: &Value, at: &str) -> Result<(), String> {
    let map = mapping(item, at)?;
    check_keys(map, &["name", "type", "value"], at)?;
    let name = map.get("name").ok_or_else(|| format!("`{at}` has no `name`"))?;
    text(name, &format!("{at}.name"))?;
    let kind = match map.get("type") {
        None => "exact",
        Some(kind) => text(kind, &format!("{at}.type"))?,
    };
    match (kind, map.get("value")) {
        ("present", _) => Ok(()),
        ("exact" | "regex", Some(value)) => text(value, &format!("{at}.value")).map(drop),
        ("exact" | "regex", None) => Err(format!("`{at}` has no `value` (or use `type: present`)")),
        (other, _) => Err(format!("`{at}.type` is `{other}`; use `exact`, `regex` or `present`")),
    }
}

fn mapping<'v>(value: &'v Value, at: &str) -> Result<&'v Map<String, Value>, String> {
    value.as_object().ok_or_else(|| format!("`{at}` must be a mapping, not {}", type_name(value)))
}

fn check_keys(map: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), String> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(format!("unknown key `{at}.{key}`; expected one of `{}`", allowed.join("`, `"))),
        None => Ok(()),
    }
}

fn text<'v>(value: &'v Value, at: &str) -> Result<&'v str, String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Ok(s),
        Value::String(_) => Err(format!("`{at}` is empty")),
        other => Err(format!("`{at}` must be a string, not {}", type_name(other))),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// One line of a route diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffLine {
    Same(String),
    Removed(String),
    Added(String),
}

/// The line diff from `old` to `new` (longest common subsequence; routes are a few dozen lines).
pub fn diff(old: &str, new: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // lcs[i][j]: the common length of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(DiffLine::Same(a[i].to_owned()));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(DiffLine::Removed(a[i].to_owned()));
            i += 1;
        } else {
            out.push(DiffLine::Added(b[j].to_owned()));
            j += 1;
        }
    }
    out
}

/// How an edit ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Edited {
    /// The file was emptied or saved unchanged.
    Cancelled,
    /// A route that passed [`validate`], and the text it came from (re-opened if the bottle
    /// refuses it).
    Route { route: Value, text: String },
}

/// The `$EDITOR` round trip: writes `text` (with a comment header and `error`, if any, at the top)
/// to a private temporary `.yaml` file, runs `editor` on it, and reads it back. An invalid route
/// re-opens the file with the problem at the top; an emptied or unchanged file cancels.
pub fn edit(
    text: &str,
    original: &Value,
    what: &str,
    error: Option<&str>,
    mut editor: impl FnMut(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<Edited> {
    let dir = PrivateDir::create()?;
    let path = dir.0.join("route.yaml");
    let mut body = text.to_owned();
    let mut error = error.map(str::to_owned);
    loop {
        let header = header(what, error.as_deref());
        let written = format!("{header}{body}");
        write_private(&path, &written)?;
        editor(&path)?;
        let saved = fs::read_to_string(&path).context("cannot read the edited route back")?;
        if saved == written {
            return Ok(Edited::Cancelled);
        }
        body = strip_header(&saved, &header);
        if body.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
            return Ok(Edited::Cancelled);
        }
        match parse(&body).and_then(|route| validate(&route, original).map(|()| route)) {
            Ok(route) => return Ok(Edited::Route { route, text: body }),
            Err(e) => error = Some(e),
        }
    }
}

fn header(what: &str, error: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(error) = error {
        for (i, line) in error.lines().enumerate() {
            out.push_str(if i == 0 { "# error: " } else { "#        " });
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("#\n");
    }
    out.push_str(&format!("# {what}\n"));
    out.push_str("# Save to approve the route as edited; empty the file or leave it unchanged to cancel.\n");
    out
}

/// The saved text without the header lines this edit wrote (lines the operator added stay).
fn strip_header(saved: &str, header: &str) -> String {
    let ours: Vec<&str> = header.lines().collect();
    let mut lines = saved.lines().peekable();
    let mut k = 0;
    while let Some(line) = lines.peek() {
        match ours[k..].iter().position(|h| h == line) {
            Some(at) => {
                k += at + 1;
                lines.next();
            }
            None => break,
        }
    }
    let rest: Vec<&str> = lines.collect();
    let mut out = rest.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

/// A 0700 directory under the system temp dir, removed on drop.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn create() -> anyhow::Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        let name = format!("bot-bottle-route-{}-{:016x}", std::process::id(), rand::random::<u64>());
        let dir = std::env::temp_dir().join(name);
        fs::DirBuilder::new().mode(0o700).create(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route() -> Value {
        json!({
            "host": "api.example.com",
            "matches": [
                {"paths": [{"type": "prefix", "value": "/v1/"}, {"type": "regex", "value": "^/x/[0-9]+$"}],
                 "methods": ["GET", "POST"],
                 "headers": [{"name": "x-trace", "type": "present"}]}
            ]
        })
    }

    #[test]
    fn yaml_round_trips_through_the_manifest_parser() {
        let text = to_yaml(&route());
        insta::assert_snapshot!(text, @r#"
        host: api.example.com
        matches:
          - paths:
              - type: prefix
                value: /v1/
              - type: regex
                value: ^/x/[0-9]+$
            methods:
              - GET
              - POST
            headers:
              - name: x-trace
                type: present
        "#);
        assert_eq!(parse(&text).unwrap(), route());
        for tricky in ["true", "null", "12", "1.5", "a: b", "# no", "- x", "", "it's", "{x}", "tab\there", "ü"] {
            let v = json!({"host": tricky, "matches": [], "x": {}});
            assert_eq!(parse(&to_yaml(&v)).unwrap()["host"], json!(tricky), "{tricky}");
        }
    }

    #[test]
    fn validation_names_the_key_that_is_wrong() {
        let original = route();
        let check = |v: Value| validate(&v, &original).err().unwrap_or_default();
        assert_eq!(check(route()), "");
        assert_eq!(check(json!({"host": "a.example"})), "");
        assert_eq!(check(json!({"matches": []})), "`host` is required");
        assert_eq!(check(json!({"host": " "})), "`host` must be a host name, not a string");
        assert!(check(json!({"host": "https://a.example/x"})).starts_with("`host` is `https://a.example/x`"));
        assert_eq!(check(json!([1])), "the route must be a mapping with `host` and `matches`, not a list");
        assert_eq!(
            check(json!({"host": "a.example", "auth": {}})),
            "unknown key `auth`; a route has `host` and `matches`"
        );
        assert_eq!(
            check(json!({"host": "a.example", "matches": [{"paths": [{"type": "prefix", "value": "v1"}]}]})),
            "`matches[0].paths[0].value` is `v1`, which does not start with `/`"
        );
        assert_eq!(
            check(json!({"host": "a.example", "matches": [{"paths": [{"value": "/v1"}]}]})),
            "`matches[0].paths[0]` has no `type` (prefix, exact or regex)"
        );
        assert_eq!(
            check(json!({"host": "a.example", "matches": [{"methods": ["FETCH"]}]})),
            "`matches[0].methods[0]` is `FETCH`, which is not an HTTP method"
        );
        assert_eq!(
            check(json!({"host": "a.example", "matches": [{"headers": [{"name": "x"}]}]})),
            "`matches[0].headers[0]` has no `value` (or use `type: present`)"
        );
        assert_eq!(
            check(json!({"host": "a.example", "matches": [{"path": []}]})),
            "unknown key `matches[0].path`; a match has `paths`, `methods` and `headers`"
        );
    }

    #[test]
    fn diff_marks_removed_and_added_lines() {
        let d = diff("host: a\nmatches:\n  - x\n", "host: a\nmatches:\n  - y\n  - x\n");
        assert_eq!(
            d,
            [
                DiffLine::Same("host: a".into()),
                DiffLine::Same("matches:".into()),
                DiffLine::Added("  - y".into()),
                DiffLine::Same("  - x".into()),
            ]
        );
        assert_eq!(diff("a\n", "b\n"), [DiffLine::Removed("a".into()), DiffLine::Added("b".into())]);
    }

    /// An editor that applies the next scripted rewrite to the file and records what it saw.
    fn scripted(rewrites: Vec<fn(&str) -> String>, seen: &mut Vec<String>) -> impl FnMut(&Path) -> anyhow::Result<()> {
        let mut rewrites = rewrites.into_iter();
        move |path: &Path| {
            let text = fs::read_to_string(path)?;
            seen.push(text.clone());
            let rewrite = rewrites.next().expect("editor opened more often than scripted");
            fs::write(path, rewrite(&text))?;
            Ok(())
        }
    }

    #[test]
    fn an_invalid_edit_reopens_with_the_error_and_a_fixed_one_returns_the_route() {
        let original = route();
        let mut seen = Vec::new();
        let edited = edit(
            &to_yaml(&original),
            &original,
            "route for `api.example.com`",
            None,
            scripted(
                vec![|t| t.replace("host: api.example.com", "hostt: api.example.com"), |t| {
                    t.replace("hostt: api.example.com", "host: api.example.com").replace("/v1/", "/v2/")
                }],
                &mut seen,
            ),
        )
        .unwrap();
        let Edited::Route { route, text } = edited else { panic!("cancelled") };
        assert_eq!(route["matches"][0]["paths"][0]["value"], "/v2/");
        assert!(!text.contains('#'), "the header is not part of the route text: {text}");
        assert!(seen[0].starts_with("# route for `api.example.com`\n"), "{}", seen[0]);
        assert!(
            seen[1].starts_with("# error: unknown key `hostt`; a route has `host` and `matches`\n#\n# route for"),
            "{}",
            seen[1]
        );
        assert_eq!(seen[1].matches("# route for").count(), 1, "the header is not repeated: {}", seen[1]);
    }

    #[test]
    fn an_emptied_or_unchanged_file_cancels() {
        let original = route();
        let text = to_yaml(&original);
        let mut seen = Vec::new();
        assert_eq!(
            edit(&text, &original, "r", None, scripted(vec![str::to_owned], &mut seen)).unwrap(),
            Edited::Cancelled
        );
        assert_eq!(
            edit(&text, &original, "r", None, scripted(vec![|_| String::new()], &mut seen)).unwrap(),
            Edited::Cancelled
        );
        let only_comments = |t: &str| t.lines().filter(|l| l.starts_with('#')).collect::<Vec<_>>().join("\n");
        assert_eq!(
            edit(&text, &original, "r", None, scripted(vec![only_comments], &mut seen)).unwrap(),
            Edited::Cancelled
        );
        // Unchanged after an error is giving up, too.
        let broken = |t: &str| t.replace("host:", "host: [");
        assert_eq!(
            edit(&text, &original, "r", None, scripted(vec![broken, str::to_owned], &mut seen)).unwrap(),
            Edited::Cancelled
        );
    }

    #[test]
    fn a_yaml_syntax_error_names_its_line() {
        let err = parse("host: a\nmatches: [\n").unwrap_err();
        assert!(err.starts_with("line "), "{err}");
    }
}
