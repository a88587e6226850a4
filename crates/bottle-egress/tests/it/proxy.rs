//! The proxy end to end: injection, denials, DLP modes, inbound scan, smuggling, introspection,
//! reloads, unix sockets and the audit chain.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bottle_egress::{
    EgressListener, InboundDetector, Limits, MatchConfig, OnMatch, PathMatch, PathMatchKind, ProposalDecision,
    verify_chain,
};

use crate::support::*;

/// A token-pattern secret the DLP engine knows (AWS's documented example access key id).
const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_injected_token_and_agent_credential_never_arrives() {
    let world = World::new().await;
    let proxy = world
        .proxy(ProxyOptions { routes: vec![authed(API_HOST, world.port(), OnMatch::Block)], ..Default::default() })
        .await;
    let out = curl(
        &proxy,
        &[
            "-H",
            &format!("Authorization: Bearer {AGENT_CREDENTIAL}"),
            "-H",
            &format!("Proxy-Authorization: Basic {AGENT_CREDENTIAL}"),
            &world.api_url("/v1/things?x=1"),
        ],
    )
    .await;
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(out.stdout.contains("\"path\":\"/v1/things?x=1\""), "{}", out.stdout);
    let seen = world.upstream.last();
    assert_eq!(seen.header("authorization"), vec![format!("Bearer {ROUTE_TOKEN}")]);
    assert!(seen.header("proxy-authorization").is_empty());
    assert!(seen.headers.iter().all(|(_, v)| !v.contains(AGENT_CREDENTIAL)), "{:?}", seen.headers);
    assert_logs_clean();
    assert_no_secret("audit", &proxy.audit_text());
    assert!(proxy.audit_text().contains("«injected»"), "level 2 logs headers with the injected value redacted");
    assert_eq!(verify_chain(&proxy.audit).unwrap(), proxy.audit_text().lines().count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_credential_in_a_named_header_replaces_the_agents_value() {
    let world = World::new().await;
    let mut keyed = authed(API_HOST, world.port(), OnMatch::Block);
    keyed.auth = Some(bottle_egress::AuthConfig {
        scheme: None,
        token_slot: "API_TOKEN".into(),
        header: Some("x-api-key".into()),
    });
    let proxy = world.proxy(ProxyOptions { routes: vec![keyed], ..Default::default() }).await;
    let out = curl(
        &proxy,
        &["-H", &format!("x-api-key: {AGENT_CREDENTIAL}"), "-H", "Authorization: Bearer agent", &world.api_url("/k")],
    )
    .await;
    assert_eq!(out.status, 0, "{}", out.stderr);
    let seen = world.upstream.last();
    assert_eq!(seen.header("x-api-key"), vec![ROUTE_TOKEN]);
    assert!(seen.header("authorization").is_empty());
    assert!(seen.headers.iter().all(|(_, v)| !v.contains(AGENT_CREDENTIAL)), "{:?}", seen.headers);
    assert_no_secret("audit", &proxy.audit_text());
    assert!(proxy.audit_text().contains("«injected»"));
    assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_speaks_h2_through_the_bump_to_an_h2_upstream() {
    let world = World::new().await;
    let proxy = world
        .proxy(ProxyOptions { routes: vec![authed(API_HOST, world.port(), OnMatch::Block)], ..Default::default() })
        .await;
    let client = proxy.reqwest();
    for _ in 0..3 {
        let response = client
            .get(world.api_url("/h2"))
            .header("authorization", format!("token {AGENT_CREDENTIAL}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        let _ = response.text().await.unwrap();
    }
    let seen = world.upstream.last();
    assert_eq!(seen.version, "HTTP/2.0");
    assert_eq!(seen.header("authorization"), vec![format!("Bearer {ROUTE_TOKEN}")]);
    assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_hosts_get_403_with_an_explanation() {
    let world = World::new().await;
    let proxy = world.proxy(ProxyOptions { routes: vec![route(OPEN_HOST, world.port())], ..Default::default() }).await;

    // curl sees the refused CONNECT; no TLS is attempted.
    let out = curl(&proxy, &[&format!("https://{EVIL_HOST}:{}/", world.port())]).await;
    assert_ne!(out.status, 0);
    assert!(out.stderr.contains("403"), "{}", out.stderr);

    // The body says what, why and how to ask.
    let answer =
        raw(proxy.addr, format!("CONNECT {EVIL_HOST}:{} HTTP/1.1\r\nHost: x\r\n\r\n", world.port()).as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("egress.no-route") && answer.contains("request-egress"), "{answer}");

    // Wrong port for an allowed host, an IP literal, plain HTTP to a denied host.
    let answer = raw(proxy.addr, format!("CONNECT {OPEN_HOST}:1 HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await;
    assert!(answer.contains("egress.port-not-allowed"), "{answer}");
    let answer = raw(proxy.addr, b"CONNECT 169.254.169.254:443 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.contains("egress.ip-literal"), "{answer}");
    let out = curl(&proxy, &["-i", &format!("http://{EVIL_HOST}/")]).await;
    assert!(out.stdout.starts_with("HTTP/1.1 403"), "{}", out.stdout);
    assert!(out.stdout.contains("no egress route for host `evil.test.local`"), "{}", out.stdout);

    // Domain fronting: the tunnel is to an allowed host, the request names another one.
    let out =
        curl(&proxy, &["-i", "-H", &format!("Host: {EVIL_HOST}"), &format!("https://{OPEN_HOST}:{}/", world.port())])
            .await;
    assert!(out.stdout.contains("HTTP/2 403"), "{}", out.stdout);
    assert!(out.stdout.contains("egress.domain-fronting"), "{}", out.stdout);
    assert_eq!(world.upstream.count(), 0, "nothing reached the upstream");

    let audit = proxy.audit_text();
    assert!(audit.contains("egress.no-route") && audit.contains("egress.domain-fronting"), "{audit}");
    verify_chain(&proxy.audit).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_restrict_methods_and_paths() {
    let world = World::new().await;
    let mut r = route(OPEN_HOST, world.port());
    r.matches = vec![MatchConfig {
        paths: vec![PathMatch { kind: PathMatchKind::Prefix, value: "/allowed".into() }],
        methods: vec!["get".into()],
        headers: Vec::new(),
    }];
    let proxy = world.proxy(ProxyOptions { routes: vec![r], ..Default::default() }).await;
    let client = proxy.reqwest();
    let base = format!("https://{OPEN_HOST}:{}", world.port());
    assert_eq!(client.get(format!("{base}/allowed/x")).send().await.unwrap().status(), 200);
    let denied = client.post(format!("{base}/allowed/x")).send().await.unwrap();
    assert_eq!(denied.status(), 403);
    assert!(denied.text().await.unwrap().contains("egress.no-match"));
    assert_eq!(client.get(format!("{base}/allowedX")).send().await.unwrap().status(), 403);
    assert_eq!(world.upstream.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlp_block_refuses_secrets_anywhere_in_the_request() {
    let world = World::new().await;
    let proxy = world
        .proxy(ProxyOptions { routes: vec![authed(API_HOST, world.port(), OnMatch::Block)], ..Default::default() })
        .await;
    let client = proxy.reqwest();
    let cases = [
        client.post(world.api_url("/upload")).body(format!("data={ROUTE_TOKEN}")),
        client.get(world.api_url(&format!("/q?leak={OTHER_TOKEN}"))),
        client.get(world.api_url(&format!("/p/{AWS_KEY}"))),
        client.get(world.api_url("/h")).header("x-leak", AWS_KEY),
        // base64 of the route token
        client.get(world.api_url("/h")).header("x-leak", "cm91dGV0b2tlbi1QTEFOVEVELTlmOGU3ZDZjNWI0YTMyMTA="),
    ];
    for request in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403);
        let body = response.text().await.unwrap();
        assert!(body.contains("dlp.block"), "{body}");
        assert_no_secret("denial body", &body);
    }
    assert_eq!(world.upstream.count(), 0);
    assert_logs_clean();
    assert_no_secret("audit", &proxy.audit_text());
    verify_chain(&proxy.audit).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlp_redact_scrubs_and_forwards() {
    let world = World::new().await;
    let proxy = world
        .proxy(ProxyOptions { routes: vec![authed(API_HOST, world.port(), OnMatch::Redact)], ..Default::default() })
        .await;
    let client = proxy.reqwest();
    let response = client
        .post(world.api_url(&format!("/r?k={AWS_KEY}&keep=1")))
        .header("x-note", format!("k={ROUTE_TOKEN}"))
        .body(format!("{{\"key\":\"{AWS_KEY}\",\"other\":\"{OTHER_TOKEN}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = world.upstream.last();
    let body = String::from_utf8(seen.body.clone()).unwrap();
    assert!(!body.contains(AWS_KEY) && !body.contains(OTHER_TOKEN), "{body}");
    assert!(body.contains("REDACTED"), "{body}");
    assert!(!seen.path.contains(AWS_KEY) && seen.path.contains("keep=1"), "{}", seen.path);
    assert!(seen.header("x-note").iter().all(|v| !v.contains(ROUTE_TOKEN)));
    // The real credential is still injected where it belongs.
    assert_eq!(seen.header("authorization"), vec![format!("Bearer {ROUTE_TOKEN}")]);
    assert!(proxy.audit_text().contains("dlp.redacted"));
    assert_no_secret("audit", &proxy.audit_text());
    assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlp_supervise_asks_the_sink_and_fails_closed() {
    for (answer, expect) in [
        (Some(ProposalDecision::Approve), 200),
        (Some(ProposalDecision::Deny { reason: "not today".into() }), 403),
        (None, 403), // never answers: the timeout denies
    ] {
        let world = World::new().await;
        let sink = Arc::new(FixedSink { answer: answer.clone(), received: Mutex::new(Vec::new()) });
        let proxy = world
            .proxy(ProxyOptions {
                routes: vec![authed(API_HOST, world.port(), OnMatch::Supervise)],
                sink: Some(sink.clone()),
                token_allow_timeout_secs: 1,
                ..Default::default()
            })
            .await;
        let response =
            proxy.reqwest().post(world.api_url("/s")).body(format!("leak {ROUTE_TOKEN}")).send().await.unwrap();
        assert_eq!(response.status(), expect, "{answer:?}");
        let body = response.text().await.unwrap();
        assert_no_secret("response", &body);
        let proposals = sink.received.lock().unwrap().clone();
        assert_eq!(proposals.len(), 1);
        assert_eq!(proposals[0].kind, "egress-token-allow");
        assert_no_secret("proposal", &format!("{:?}", proposals[0]));
        assert_eq!(world.upstream.count(), usize::from(expect == 200));
        if expect == 403 {
            assert!(body.contains("dlp.supervise-denied"), "{body}");
        }
    }
    // The default sink denies at once.
    let world = World::new().await;
    let proxy = world
        .proxy(ProxyOptions { routes: vec![authed(API_HOST, world.port(), OnMatch::Supervise)], ..Default::default() })
        .await;
    let response = proxy.reqwest().post(world.api_url("/s")).body(format!("leak {ROUTE_TOKEN}")).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_and_a_late_secret_aborts_the_upload() {
    let world = World::new().await;
    let limits = Limits { max_buffered_body: 64 * 1024, ..Limits::default() };
    let proxy = world
        .proxy(ProxyOptions {
            routes: vec![authed(API_HOST, world.port(), OnMatch::Redact)],
            limits,
            ..Default::default()
        })
        .await;
    let client = proxy.reqwest();
    let clean = "a".repeat(1024 * 1024);
    let response = client.post(world.api_url("/big")).body(clean.clone()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(world.upstream.last().body.len(), clean.len());

    let mut dirty = clean;
    dirty.push_str(ROUTE_TOKEN);
    dirty.push_str(&"b".repeat(10));
    let response = client.post(world.api_url("/big2")).body(dirty).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("dlp.stream-block"));
    let seen = world.upstream.seen.lock().unwrap().clone();
    let big2: Vec<_> = seen.iter().filter(|s| s.path == "/big2").collect();
    assert!(
        big2.iter().all(|s| !String::from_utf8_lossy(&s.body).contains(ROUTE_TOKEN) && s.body.len() < 1024 * 1024),
        "the aborted upload never delivers the secret, nor the whole body"
    );
    assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_injection_blocks_high_and_warns_medium() {
    let world = World::new().await;
    let mut skip = route(OPEN_HOST, world.port());
    skip.dlp.inbound_detectors = Vec::new();
    let mut scanned = route(API_HOST, world.port());
    scanned.dlp.inbound_detectors = vec![InboundDetector::NaiveInjectionDetection];
    let proxy = world.proxy(ProxyOptions { routes: vec![scanned, skip], ..Default::default() }).await;
    let client = proxy.reqwest();
    let high = client.get(world.api_url("/inject-high")).send().await.unwrap();
    assert_eq!(high.status(), 403);
    assert!(high.text().await.unwrap().contains("inbound.prompt-injection"));
    let medium = client.get(world.api_url("/inject-medium")).send().await.unwrap();
    assert_eq!(medium.status(), 200);
    assert!(medium.headers().get("x-bot-bottle-warning").is_some());
    assert_eq!(world.upstream.last().header("accept-encoding"), vec!["identity"]);
    let skipped = client.get(format!("https://{OPEN_HOST}:{}/inject-high", world.port())).send().await.unwrap();
    assert_eq!(skipped.status(), 200, "route opted out of inbound scanning");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_and_slowloris_are_refused() {
    let world = World::new().await;
    let limits = Limits { header_read_timeout: Duration::from_secs(1), ..Limits::default() };
    let proxy = world.proxy(ProxyOptions { routes: vec![route(OPEN_HOST, 80)], limits, ..Default::default() }).await;
    let head = format!("POST http://{OPEN_HOST}/ HTTP/1.1\r\nHost: {OPEN_HOST}\r\n");
    // hyper would normalize these two (Transfer-Encoding wins; identical lengths collapse); the raw
    // head check in front of it refuses them instead (more shapes in `smuggling.rs`).
    for request in [
        format!("{head}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        format!("{head}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
    ] {
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    let cases: Vec<(String, &str)> = vec![
        (format!("{head}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello"), "HTTP/1.1 400"),
        (format!("{head}X-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n"), "HTTP/1.1 400"),
        (format!("{head}X-Nul: a\0b\r\nContent-Length: 0\r\n\r\n"), "HTTP/1.1 400"),
        (format!("{head}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"), "HTTP/1.1 400"),
        (format!("{head}X-Big: {}\r\n\r\n", "a".repeat(100 * 1024)), "HTTP/1.1 431"),
    ];
    for (request, want) in cases {
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert!(answer.starts_with(want), "{request:?} → {answer:?}");
    }

    // Slowloris: an unfinished head is cut off by the header read timeout.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "connection was not closed");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_local_lists_routes_without_secrets() {
    let world = World::new().await;
    let proxy = world
        .proxy(ProxyOptions { routes: vec![authed(API_HOST, world.port(), OnMatch::Block)], ..Default::default() })
        .await;
    let out = curl(&proxy, &["http://_egress.local/allowlist"]).await;
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["routes"][0]["host"], format!("{API_HOST}:{}", world.port()));
    assert_eq!(json["routes"][0]["auth"]["token_slot"], "API_TOKEN");
    let out = curl(&proxy, &["https://_egress.local/health"]).await;
    assert!(out.stdout.contains("\"status\":\"ok\""), "{} {}", out.stdout, out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlp_session_approval_lets_the_same_value_to_the_same_host_through() {
    let world = World::new().await;
    let sink = Arc::new(FixedSink { answer: Some(ProposalDecision::ApproveSession), received: Mutex::new(Vec::new()) });
    let mut open = route(OPEN_HOST, world.port());
    open.dlp.outbound_on_match = OnMatch::Supervise;
    let proxy = world
        .proxy(ProxyOptions {
            routes: vec![authed(API_HOST, world.port(), OnMatch::Supervise), open],
            sink: Some(sink.clone()),
            ..Default::default()
        })
        .await;
    let client = proxy.reqwest();
    let post = |url: String, body: String| {
        let client = client.clone();
        async move { client.post(url).body(body).send().await.unwrap().status() }
    };
    let asked = || sink.received.lock().unwrap().len();
    assert_eq!(post(world.api_url("/a"), format!("leak {ROUTE_TOKEN}")).await, 200);
    assert_eq!(asked(), 1);
    // The same value to the same host, elsewhere in the request: not asked again.
    assert_eq!(post(world.api_url("/b"), format!("again {ROUTE_TOKEN} here")).await, 200);
    assert_eq!(asked(), 1);
    // Another value, or the same value to another host: asked again.
    assert_eq!(post(world.api_url("/c"), format!("other {OTHER_TOKEN}")).await, 200);
    assert_eq!(asked(), 2);
    assert_eq!(post(format!("https://{OPEN_HOST}:{}/d", world.port()), format!("leak {ROUTE_TOKEN}")).await, 200);
    assert_eq!(asked(), 3);
    let audit = proxy.audit_text();
    assert!(audit.contains("dlp.session-allowed") && audit.contains("dlp.supervise-approved-session"), "{audit}");
    assert_no_secret("audit", &audit);
    assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_routes_are_atomic_survive_reloads_and_traffic_is_counted() {
    let world = World::new().await;
    let proxy = world
        .proxy(ProxyOptions {
            routes: vec![route(OPEN_HOST, world.port()), authed(GIT_HOST, world.port(), OnMatch::Block)],
            ..Default::default()
        })
        .await;
    let client = proxy.reqwest();
    // No route: the tunnel itself is refused.
    assert!(client.get(world.api_url("/")).send().await.is_err());

    assert_eq!(proxy.handle.grant_route(route(API_HOST, world.port())).unwrap(), None);
    assert_eq!(client.get(world.api_url("/")).send().await.unwrap().status(), 200);
    // A reload of the configured routes keeps what was granted.
    proxy.handle.replace_routes(&[route(OPEN_HOST, world.port())]).unwrap();
    assert_eq!(client.get(world.api_url("/x")).send().await.unwrap().status(), 200);
    // Granting the same host again replaces its route.
    let narrowed = bottle_egress::RouteConfig {
        matches: vec![MatchConfig {
            paths: vec![PathMatch { kind: PathMatchKind::Prefix, value: "/only".into() }],
            ..MatchConfig::default()
        }],
        ..route(API_HOST, world.port())
    };
    assert!(proxy.handle.grant_route(narrowed).unwrap().is_some());
    assert_eq!(client.get(world.api_url("/x")).send().await.unwrap().status(), 403);
    assert_eq!(client.get(world.api_url("/only/y")).send().await.unwrap().status(), 200);
    // A route that does not compile changes nothing.
    let mut bad = route(EVIL_HOST, world.port());
    bad.auth = Some(bottle_egress::AuthConfig::bearer_like("Bearer", "NOPE"));
    assert!(proxy.handle.grant_route(bad).is_err());
    assert_eq!(proxy.handle.routes().len(), 2);

    let blocked = client.post(world.api_url("/only/z")).body(AWS_KEY).send().await.unwrap();
    assert_eq!(blocked.status(), 403);
    let _ = client.get(format!("https://{EVIL_HOST}:{}/", world.port())).send().await;
    let counters = proxy.handle.counters();
    let api = counters[API_HOST];
    assert_eq!((api.allowed, api.denied, api.dlp_hits), (3, 3, 1), "{counters:?}");
    assert_eq!(counters[EVIL_HOST].denied, 1, "{counters:?}");
    verify_chain(&proxy.audit).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_routes_atomically() {
    let world = World::new().await;
    let proxy = world.proxy(ProxyOptions { routes: vec![route(OPEN_HOST, world.port())], ..Default::default() }).await;
    let client = proxy.reqwest();
    let open = format!("https://{OPEN_HOST}:{}/", world.port());
    assert_eq!(client.get(&open).send().await.unwrap().status(), 200);

    proxy.handle.replace_routes(&[route(API_HOST, world.port())]).unwrap();
    // Same client, maybe the same tunnel: the request is still judged by the new table.
    assert_eq!(client.get(&open).send().await.unwrap().status(), 403);
    assert_eq!(client.get(world.api_url("/")).send().await.unwrap().status(), 200);

    // A broken table is refused and the old one stays.
    let mut bad = route(API_HOST, world.port());
    bad.auth = Some(bottle_egress::AuthConfig::bearer_like("Bearer", "NOPE"));
    assert!(proxy.handle.replace_routes(&[bad]).is_err());
    assert_eq!(client.get(world.api_url("/")).send().await.unwrap().status(), 200);
    verify_chain(&proxy.audit).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_listener_serves_connect() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let world = World::new().await;
    let (egress, ca_pem, _) = egress(
        world.dir.path(),
        &world.upstream_ca.pem_path,
        ProxyOptions { routes: vec![authed(API_HOST, world.port(), OnMatch::Block)], ..Default::default() },
    );
    let socket = world.dir.path().join("egress.sock");
    let listener = EgressListener::bind_unix(&socket).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(egress.serve(listener, async {
        let _ = stopped.await;
    }));

    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    stream
        .write_all(format!("CONNECT {API_HOST}:{} HTTP/1.1\r\nHost: x\r\n\r\n", world.port()).as_bytes())
        .await
        .unwrap();
    let mut head = [0_u8; 19];
    stream.read_exact(&mut head).await.unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    let mut rest = Vec::new();
    while !rest.ends_with(b"\r\n\r\n") {
        let mut b = [0_u8; 1];
        stream.read_exact(&mut b).await.unwrap();
        rest.push(b[0]);
    }
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&ca_pem).unwrap();
    use rustls::pki_types::pem::PemObject as _;
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(bottle_ca::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = connector.connect(API_HOST.try_into().unwrap(), stream).await.unwrap();
    tls.write_all(
        format!("GET /unix HTTP/1.1\r\nHost: {API_HOST}:{}\r\nConnection: close\r\n\r\n", world.port()).as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(world.upstream.last().header("authorization"), vec![format!("Bearer {ROUTE_TOKEN}")]);
    drop(stop);
    server.await.unwrap().unwrap();
}

fn masked_text_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x11_u8, 0x22, 0x33, 0x44];
    let mut frame = vec![0x81, 0x80 | u8::try_from(payload.len()).unwrap()];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_frames_from_the_agent_are_scanned() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let world = World::new().await;
    let proxy = world
        .proxy(ProxyOptions { routes: vec![authed(API_HOST, world.port(), OnMatch::Block)], ..Default::default() })
        .await;
    let mut tls = tunnel(&proxy, API_HOST, world.port()).await;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {API_HOST}:{}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        world.port()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0_u8; 1];
        tls.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    let seen = world.upstream.last();
    assert_eq!(seen.header("authorization"), vec![format!("Bearer {ROUTE_TOKEN}")]);
    assert!(seen.header("sec-websocket-extensions").is_empty(), "compression is stripped");

    // A clean frame is relayed (the upstream echoes it back, still masked).
    let clean = masked_text_frame(b"hello");
    tls.write_all(&clean).await.unwrap();
    let mut echo = vec![0_u8; clean.len()];
    tls.read_exact(&mut echo).await.unwrap();
    assert_eq!(echo, clean);

    // A frame carrying the route token closes the connection instead.
    tls.write_all(&masked_text_frame(format!("leak {ROUTE_TOKEN}").as_bytes())).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "relay closed");
    assert!(rest.is_empty(), "nothing was echoed");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(proxy.audit_text().contains("dlp.websocket-block"));
    assert_no_secret("audit", &proxy.audit_text());
}
