//! Fuzzes the egress policy: arbitrary bytes become CONNECT targets, authorities, methods, paths,
//! header lists and raw request streams for the pure policy functions over a small fixed route
//! table. Nothing may panic, and:
//! - a host absent from the table is never allowed, whatever the spelling;
//! - an allowed request leaves the proxy with the route's credential only (never the agent's);
//! - the raw head framer releases a prefix of its input plus at most the synthetic rejection.

#![no_main]

use std::sync::OnceLock;

use bottle_egress::policy::{
    self, RouteTable, Scheme, check_inner_authority, check_matches, check_request_shape, parse_authority,
    parse_connect_target, rewrite_credentials,
};
use bottle_egress::rawhead::{Framer, Refusal, SYNTHETIC_REJECTION, inspect_head};
use bottle_egress::{
    AuthConfig, DlpSettings, MatchConfig, PathMatch, PathMatchKind, PlaceholderConfig, RouteConfig, Secret, Secrets,
};
use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "route-token-FUZZ-0123456789";
const KEY: &str = "key-token-FUZZ-9876543210";
const ALLOWED: &[&str] = &["api.example.com", "git.example.com", "keyed.example.com", "10.0.0.1", "::1"];

fn secrets() -> &'static Secrets {
    static SECRETS: OnceLock<Secrets> = OnceLock::new();
    SECRETS.get_or_init(|| {
        [("TOKEN".to_owned(), Secret::new(TOKEN)), ("KEY".to_owned(), Secret::new(KEY))].into_iter().collect()
    })
}

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let base = |host: &str| RouteConfig {
            host: host.into(),
            auth: None,
            matches: Vec::new(),
            dlp: DlpSettings::default(),
            placeholder: None,
        };
        let routes = vec![
            RouteConfig {
                auth: Some(AuthConfig::bearer_like("Bearer", "TOKEN")),
                matches: vec![MatchConfig {
                    paths: vec![
                        PathMatch { kind: PathMatchKind::Prefix, value: "/v1".into() },
                        PathMatch { kind: PathMatchKind::Regex, value: "/repos/[a-z]+/[a-z]+".into() },
                    ],
                    methods: vec!["GET".into(), "post".into()],
                    headers: Vec::new(),
                }],
                ..base("api.example.com")
            },
            RouteConfig {
                auth: Some(AuthConfig::bearer_like("Bearer", "TOKEN")),
                placeholder: Some(PlaceholderConfig { header: "x-goog-api-key".into(), value: "PLACEHOLDER".into() }),
                ..base("git.example.com:8443")
            },
            RouteConfig {
                auth: Some(AuthConfig { scheme: None, token_slot: "KEY".into(), header: Some("x-api-key".into()) }),
                ..base("keyed.example.com")
            },
            base("10.0.0.1"),
            base("[::1]:9000"),
        ];
        RouteTable::compile(&routes, secrets()).expect("fixed table compiles")
    })
}

/// Splits `data` on `0xff` into up to `n` fields (lossy UTF-8, like the network layer's strings).
fn fields(data: &[u8], n: usize) -> Vec<String> {
    let mut out: Vec<String> = data.splitn(n, |&b| b == 0xff).map(|f| String::from_utf8_lossy(f).into_owned()).collect();
    out.resize(n, String::new());
    out
}

fn header_list(spec: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in spec.split('\n') {
        let Some((name, value)) = line.split_once(':') else { continue };
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            map.append(name, value);
        }
    }
    map
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else { return };
    let table = table();

    // The raw HTTP/1 head check and framer.
    if selector & 1 == 1 {
        let _ = inspect_head(data);
        let mut framer = Framer::new(selector & 2 == 2);
        let mut out = BytesMut::new();
        let step = usize::from(selector >> 2) + 1;
        let mut refused = false;
        for piece in data.chunks(step) {
            match framer.feed(piece, &mut out) {
                Ok(()) => {}
                Err(Refusal::Head(_)) => {
                    refused = true;
                    break;
                }
                Err(Refusal::Framing(_)) => break,
            }
        }
        let released = if refused {
            assert!(out.ends_with(SYNTHETIC_REJECTION), "a refused head is replaced by the synthetic request");
            &out[..out.len() - SYNTHETIC_REJECTION.len()]
        } else {
            &out[..]
        };
        // The framer only drops empty lines between messages, so what it releases never exceeds the
        // input and every released head was inspected.
        assert!(released.len() <= data.len());
        return;
    }

    let [target, authority, method, path, header_spec] = &fields(data, 5)[..] else { return };

    // CONNECT target → route lookup; a host outside the table is never allowed.
    if let Ok(t) = parse_connect_target(target) {
        if let Ok(route) = table.lookup(&t) {
            assert!(ALLOWED.contains(&route.host.as_str()), "{} allowed via {}", t.host, route.host);
            assert_eq!(route.host, t.host, "lookup is by exact host");
        }
        // Inside the tunnel, the inner authority must name the same target.
        if let Ok(inner) = check_inner_authority(&t, Some(authority)) {
            assert_eq!((inner.host.as_str(), inner.port), (t.host.as_str(), t.port));
        }
        let _ = policy::check_sni(&t, Some(authority));
    }

    // Absolute-URI authority → route → matches → credentials.
    let scheme = if selector & 2 == 2 { Scheme::Http } else { Scheme::Https };
    let Ok(t) = parse_authority(authority, scheme) else { return };
    let Ok(route) = table.lookup(&t) else { return };
    assert!(ALLOWED.contains(&t.host.as_str()) && route.host == t.host, "{} allowed", t.host);
    let Ok(method) = Method::from_bytes(method.as_bytes()) else { return };
    let mut headers = header_list(header_spec);
    let _ = check_request_shape(&headers);
    if check_matches(route, &method, path, &headers).is_err() {
        return;
    }
    let agent_auth: Vec<HeaderValue> = headers.get_all(http::header::AUTHORIZATION).iter().cloned().collect();
    let Ok(injected) = rewrite_credentials(route, &mut headers, secrets()) else { return };
    assert!(headers.get(http::header::PROXY_AUTHORIZATION).is_none());
    match &route.config.auth {
        None => assert!(headers.get(http::header::AUTHORIZATION).is_none() && injected.headers.is_empty()),
        Some(auth) if route.config.placeholder.is_none() => {
            let name = auth.header_name();
            let values: Vec<&HeaderValue> = headers.get_all(name).iter().collect();
            let secret = secrets().get(&auth.token_slot).expect("slot exists").expose();
            let want = match &auth.scheme {
                Some(scheme) => format!("{scheme} {secret}"),
                None => secret.to_owned(),
            };
            assert_eq!(values.len(), 1, "exactly the route's credential");
            assert_eq!(values[0].as_bytes(), want.as_bytes());
            if name != "authorization" {
                assert!(headers.get(http::header::AUTHORIZATION).is_none());
            }
        }
        Some(_) => {
            // Placeholder swap: no agent Authorization survives, and every injected value holds the
            // route's own token.
            for value in headers.get_all(http::header::AUTHORIZATION) {
                assert!(!agent_auth.contains(value), "agent Authorization forwarded");
            }
            for name in &injected.headers {
                for value in headers.get_all(name) {
                    assert!(value.to_str().is_ok_and(|v| v.contains(TOKEN)));
                }
            }
        }
    }
});
