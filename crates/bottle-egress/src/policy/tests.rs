//! Table-driven tests of the pure policy: targets, routes, matches, request shapes, credentials.

use http::header::{AUTHORIZATION, HeaderMap, HeaderValue, PROXY_AUTHORIZATION};
use http::{Method, StatusCode};

use super::*;
use crate::config::{
    AuthConfig, HeaderMatch, HeaderMatchKind, MatchConfig, PathMatch, PathMatchKind, PlaceholderConfig, RouteConfig,
    Secret, Secrets,
};

fn route(host: &str) -> RouteConfig {
    RouteConfig {
        host: host.into(),
        auth: None,
        matches: Vec::new(),
        dlp: crate::config::DlpSettings::default(),
        placeholder: None,
    }
}

fn secrets() -> Secrets {
    [("GH".to_owned(), Secret::new("ghp_realtoken123"))].into_iter().collect()
}

fn table(routes: &[RouteConfig]) -> RouteTable {
    RouteTable::compile(routes, &secrets()).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    map
}

#[test]
fn host_lookup_table() {
    let t = table(&[route("api.github.com"), route("internal.test:8443"), route("10.1.2.3"), route("[::1]:9000")]);
    let https = |a: &str| parse_connect_target(a).unwrap();
    let http = |a: &str| parse_authority(a, Scheme::Http).unwrap();
    // (target, expected rule or None for allowed)
    let cases: Vec<(Target, Option<&str>)> = vec![
        (https("api.github.com:443"), None),
        (https("API.GitHub.com.:443"), None),
        (http("api.github.com"), None),
        (http("api.github.com:80"), None),
        (https("api.github.com:8443"), Some("egress.port-not-allowed")),
        (http("api.github.com:443"), Some("egress.port-not-allowed")),
        (https("github.com:443"), Some("egress.no-route")),
        (https("evil-api.github.com:443"), Some("egress.no-route")),
        (https("api.github.com.evil.com:443"), Some("egress.no-route")),
        (https("internal.test:8443"), None),
        (https("internal.test:443"), Some("egress.port-not-allowed")),
        (https("10.1.2.3:443"), None),
        (https("10.1.2.4:443"), Some("egress.ip-literal")),
        (https("[::1]:9000"), None),
        (https("[::2]:443"), Some("egress.ip-literal")),
        (https("169.254.169.254:80"), Some("egress.ip-literal")),
    ];
    for (target, want) in cases {
        let got = t.lookup(&target).err().map(|d| d.rule);
        assert_eq!(got, want, "{target}");
    }
}

#[test]
fn malformed_targets_table() {
    for bad in [
        "",
        "api.github.com",
        "api.github.com:",
        "api.github.com:0",
        "api.github.com:65536",
        "api.github.com:+443",
        "::1:443",
        "[nothex]:443",
        "a..b:443",
        "a b:443",
        "a/b:443",
        "a\r\nb:443",
        "user@host:443",
    ] {
        let err = parse_connect_target(bad).unwrap_err();
        assert_eq!(err.rule, "egress.bad-target", "{bad:?}");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(!err.reason.contains('\n'), "reason must be printable");
    }
}

#[test]
fn inner_authority_must_equal_tunnel_target() {
    let tunnel = parse_connect_target("api.github.com:443").unwrap();
    for (inner, ok) in [
        (Some("api.github.com"), true),
        (Some("API.GITHUB.COM:443"), true),
        (Some("api.github.com:8443"), false),
        (Some("evil.com"), false),
        (Some("api.github.com.evil.com"), false),
        (None, false),
    ] {
        let result = check_inner_authority(&tunnel, inner);
        assert_eq!(result.is_ok(), ok, "{inner:?}");
    }
    assert_eq!(check_inner_authority(&tunnel, Some("evil.com")).unwrap_err().rule, "egress.domain-fronting");
    assert!(check_sni(&tunnel, Some("api.github.com")).is_ok());
    assert!(check_sni(&tunnel, None).is_ok());
    assert_eq!(check_sni(&tunnel, Some("evil.com")).unwrap_err().rule, "egress.sni-mismatch");
}

fn matched_route() -> RouteConfig {
    RouteConfig {
        matches: vec![
            MatchConfig {
                paths: vec![
                    PathMatch { kind: PathMatchKind::Prefix, value: "/repos/acme".into() },
                    PathMatch { kind: PathMatchKind::Exact, value: "/user".into() },
                ],
                methods: vec!["get".into(), "HEAD".into()],
                headers: Vec::new(),
            },
            MatchConfig {
                paths: vec![PathMatch { kind: PathMatchKind::Regex, value: "/upload/[0-9]+".into() }],
                methods: vec!["POST".into()],
                headers: vec![
                    HeaderMatch { name: "X-Token-Kind".into(), kind: HeaderMatchKind::Exact, value: Some("ci".into()) },
                    HeaderMatch { name: "x-trace".into(), kind: HeaderMatchKind::Present, value: None },
                ],
            },
        ],
        ..route("api.github.com")
    }
}

#[test]
fn matches_table() {
    let t = table(&[matched_route(), route("free.example")]);
    let r = &t.routes()[0];
    let free = &t.routes()[1];
    let ci = headers(&[("x-token-kind", "ci"), ("x-trace", "1")]);
    let cases: Vec<(&Route, Method, &str, HeaderMap, Option<&str>)> = vec![
        (r, Method::GET, "/repos/acme", HeaderMap::new(), None),
        (r, Method::GET, "/repos/acme/x/pulls", HeaderMap::new(), None),
        (r, Method::HEAD, "/user", HeaderMap::new(), None),
        (r, Method::GET, "/repos/acmecorp", HeaderMap::new(), Some("egress.no-match")),
        (r, Method::GET, "/user/keys", HeaderMap::new(), Some("egress.no-match")),
        (r, Method::POST, "/repos/acme", HeaderMap::new(), Some("egress.no-match")),
        (r, Method::DELETE, "/user", HeaderMap::new(), Some("egress.no-match")),
        (r, Method::POST, "/upload/42", ci.clone(), None),
        (r, Method::POST, "/upload/42x", ci.clone(), Some("egress.no-match")),
        (r, Method::POST, "/x/upload/42", ci, Some("egress.no-match")),
        (r, Method::POST, "/upload/42", headers(&[("x-token-kind", "ci")]), Some("egress.no-match")),
        (r, Method::POST, "/upload/42", headers(&[("x-token-kind", "CI"), ("x-trace", "")]), Some("egress.no-match")),
        (r, Method::GET, "/repos/acme/../../orgs/evil", HeaderMap::new(), Some("egress.path-not-normalized")),
        (r, Method::GET, "/repos/acme/%2e%2e/x", HeaderMap::new(), Some("egress.path-not-normalized")),
        (r, Method::GET, "/repos/acme%2F..%2Fevil", HeaderMap::new(), Some("egress.path-not-normalized")),
        (free, Method::DELETE, "/anything/../at/all", HeaderMap::new(), None),
    ];
    for (route, method, path, hdrs, want) in cases {
        let got = check_matches(route, &method, path, &hdrs).err().map(|d| d.rule);
        assert_eq!(got, want, "{method} {path}");
    }
}

fn keyed(header: Option<&str>, scheme: Option<&str>) -> RouteConfig {
    RouteConfig {
        auth: Some(AuthConfig {
            scheme: scheme.map(str::to_owned),
            token_slot: "GH".into(),
            header: header.map(str::to_owned),
        }),
        ..route("a.example")
    }
}

#[test]
fn credential_goes_into_a_named_header_bare_or_with_a_scheme() {
    let t = table(&[keyed(Some("X-Api-Key"), None)]);
    let mut h = headers(&[("x-api-key", "sk-agent-own"), ("x-api-key", "second"), ("authorization", "Bearer agent")]);
    let injected = rewrite_credentials(&t.routes()[0], &mut h, &secrets()).unwrap();
    assert_eq!(injected.headers, vec![HeaderName::from_static("x-api-key")]);
    let values: Vec<_> = h.get_all("x-api-key").iter().collect();
    assert_eq!(values, vec!["ghp_realtoken123"], "bare token, the agent's values dropped");
    assert!(values[0].is_sensitive());
    assert!(h.get(AUTHORIZATION).is_none());

    let t = table(&[keyed(Some("x-token"), Some("Token"))]);
    let mut h = HeaderMap::new();
    rewrite_credentials(&t.routes()[0], &mut h, &secrets()).unwrap();
    assert_eq!(h.get("x-token").unwrap(), "Token ghp_realtoken123");

    let t = table(&[keyed(Some("Authorization"), Some("Bearer"))]);
    let mut h = headers(&[("authorization", "Bearer agent")]);
    rewrite_credentials(&t.routes()[0], &mut h, &secrets()).unwrap();
    assert_eq!(h.get_all(AUTHORIZATION).iter().collect::<Vec<_>>(), vec!["Bearer ghp_realtoken123"]);
}

#[test]
fn bad_route_configs_are_rejected() {
    let with_auth =
        |slot: &str| RouteConfig { auth: Some(AuthConfig::bearer_like("Bearer", slot)), ..route("a.example") };
    let mut bad_regex = matched_route();
    bad_regex.matches[1].paths[0].value = "(".into();
    let placeholder_without_auth = RouteConfig {
        placeholder: Some(PlaceholderConfig { header: "x-api-key".into(), value: "PH".into() }),
        ..route("a.example")
    };
    for (config, needle) in [
        (with_auth("MISSING"), "has no secret"),
        (bad_regex, "invalid regex"),
        (placeholder_without_auth, "needs `auth`"),
        (route("_egress.local"), "reserved"),
        (route("bad host"), "not a valid"),
        (keyed(None, None), "is required"),
        (keyed(Some("content-length"), None), "cannot carry"),
        (keyed(Some("bad header"), None), "invalid auth header"),
        (keyed(Some("x-api-key"), Some("")), "invalid auth scheme"),
    ] {
        let err = RouteTable::compile(&[config], &secrets()).unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
    assert!(RouteTable::compile(&[with_auth("GH")], &secrets()).is_ok());
}

#[test]
fn later_route_for_same_host_wins() {
    let t = table(&[matched_route(), route("api.github.com")]);
    assert_eq!(t.routes().len(), 1);
    let r = t.lookup(&parse_connect_target("api.github.com:443").unwrap()).unwrap();
    assert!(check_matches(r, &Method::DELETE, "/x", &HeaderMap::new()).is_ok());
}

#[test]
fn smuggling_shapes_table() {
    let cases: Vec<(HeaderMap, Option<&str>)> = vec![
        (headers(&[("content-length", "5")]), None),
        (headers(&[("transfer-encoding", "chunked")]), None),
        (headers(&[("content-length", "5"), ("transfer-encoding", "chunked")]), Some("egress.smuggling.cl-te")),
        (
            headers(&[("content-length", "5"), ("content-length", "5")]),
            Some("egress.smuggling.duplicate-content-length"),
        ),
        (
            headers(&[("content-length", "5"), ("content-length", "6")]),
            Some("egress.smuggling.duplicate-content-length"),
        ),
        (headers(&[("content-length", "+5")]), Some("egress.smuggling.bad-content-length")),
        (headers(&[("content-length", "5, 5")]), Some("egress.smuggling.bad-content-length")),
        (headers(&[("transfer-encoding", "gzip, chunked")]), Some("egress.smuggling.transfer-encoding")),
        (
            headers(&[("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")]),
            Some("egress.smuggling.transfer-encoding"),
        ),
    ];
    for (hdrs, want) in cases {
        let got = check_request_shape(&hdrs).err().map(|d| d.rule);
        assert_eq!(got, want, "{hdrs:?}");
    }
}

#[test]
fn structural_and_size_limits() {
    // The header type itself cannot hold NUL or control bytes; the byte-level check covers raw
    // values the parser hands over before they become a `HeaderValue` (and DLP findings).
    assert!(HeaderValue::from_bytes(b"a\0b").is_err());
    assert!(HeaderValue::from_bytes(b"a\r\nb").is_err());
    assert_eq!(structural_violation(b"a\0b"), Some("NUL"));
    assert_eq!(structural_violation(b"a\x1bb"), Some("a control byte"));
    assert_eq!(structural_violation(b"a\tb"), None);
    assert_eq!(structural_violation(b"a\r\nb"), Some("CR/LF"));

    let mut many = HeaderMap::new();
    for i in 0..=MAX_HEADERS {
        many.insert(HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(), HeaderValue::from_static("1"));
    }
    assert_eq!(check_request_shape(&many).unwrap_err().status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let mut big = HeaderMap::new();
    big.insert("x-big", HeaderValue::from_str(&"a".repeat(MAX_HEADER_BYTES)).unwrap());
    assert_eq!(check_request_shape(&big).unwrap_err().rule, "egress.header.too-large");
}

#[test]
fn credentials_are_stripped_and_injected() {
    let t = table(&[
        RouteConfig { auth: Some(AuthConfig::bearer_like("token", "GH")), ..route("api.github.com") },
        route("anon.example"),
    ]);
    let mut h = headers(&[
        ("authorization", "Bearer agent-own-credential"),
        ("authorization", "Basic second"),
        ("proxy-authorization", "Basic cHJveHk="),
    ]);
    let injected = rewrite_credentials(&t.routes()[0], &mut h, &secrets()).unwrap();
    assert_eq!(injected.headers, vec![AUTHORIZATION]);
    let values: Vec<_> = h.get_all(AUTHORIZATION).iter().collect();
    assert_eq!(values, vec!["token ghp_realtoken123"]);
    assert!(values[0].is_sensitive());
    assert!(h.get(PROXY_AUTHORIZATION).is_none());

    let mut h = headers(&[("authorization", "Bearer agent-own-credential")]);
    let injected = rewrite_credentials(&t.routes()[1], &mut h, &secrets()).unwrap();
    assert!(injected.headers.is_empty());
    assert!(h.get(AUTHORIZATION).is_none());
}

#[test]
fn placeholder_is_swapped_only_in_its_header() {
    let t = table(&[RouteConfig {
        auth: Some(AuthConfig::bearer_like("Bearer", "GH")),
        placeholder: Some(PlaceholderConfig { header: "x-api-key".into(), value: "PLACEHOLDER-KEY".into() }),
        ..route("api.anthropic.com")
    }]);
    let mut h = headers(&[
        ("x-api-key", "PLACEHOLDER-KEY"),
        ("x-other", "PLACEHOLDER-KEY"),
        ("authorization", "Bearer agent-own"),
    ]);
    let injected = rewrite_credentials(&t.routes()[0], &mut h, &secrets()).unwrap();
    assert_eq!(injected.headers.len(), 1);
    assert_eq!(h.get("x-api-key").unwrap(), "ghp_realtoken123");
    assert_eq!(h.get("x-other").unwrap(), "PLACEHOLDER-KEY");
    assert!(h.get(AUTHORIZATION).is_none());

    // An agent value that is not the placeholder is its own credential: dropped, not forwarded.
    let mut h = headers(&[("x-api-key", "sk-agent-own")]);
    let injected = rewrite_credentials(&t.routes()[0], &mut h, &secrets()).unwrap();
    assert!(injected.headers.is_empty());
    assert!(h.get("x-api-key").is_none());
}

#[test]
fn hop_by_hop_headers_are_removed() {
    let mut h = headers(&[
        ("connection", "keep-alive, x-secret-hop"),
        ("x-secret-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("te", "trailers"),
        ("host", "a"),
        ("x-kept", "1"),
    ]);
    strip_hop_by_hop(&mut h);
    assert_eq!(h.len(), 1);
    assert!(h.contains_key("x-kept"));
}

#[test]
fn denial_body_explains_and_hints() {
    let d = Denial::policy("egress.no-route", "no egress route for host `x`");
    let body = d.body("CONNECT x:443");
    assert!(body.contains("blocked CONNECT x:443"));
    assert!(body.contains("egress.no-route"));
    assert!(body.contains("request-egress"));
    assert!(body.contains("side: policy"));
    let m = Denial::malformed("egress.bad-target", "bad");
    assert!(!m.body("x").contains("hint:"));
}

#[test]
fn printable_escapes_control_characters() {
    assert_eq!(printable("a\r\nb"), "a\\r\\nb");
    assert!(printable(&"x".repeat(500)).ends_with('…'));
}
