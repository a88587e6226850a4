//! Request smuggling shapes over raw TCP: on the plain listener, on the second request of a
//! kept-alive connection (sequential and pipelined), and inside a bumped CONNECT tunnel.

use std::time::Duration;

use bottle_egress::OnMatch;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::support::*;

/// Every shape the raw head check refuses, as (extra header lines, rule).
const SHAPES: &[(&str, &str)] = &[
    ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "egress.smuggling.cl-te"),
    ("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "egress.smuggling.cl-te"),
    ("Content-Length: 5\r\nContent-Length: 5\r\n", "egress.smuggling.duplicate-content-length"),
    ("Content-Length: 5\r\ncontent-length: 6\r\n", "egress.smuggling.duplicate-content-length"),
    ("Content-Length: 5, 5\r\n", "egress.smuggling.bad-content-length"),
    ("Transfer-Encoding: chunked, identity\r\n", "egress.smuggling.transfer-encoding"),
    ("Transfer-Encoding: xchunked\r\n", "egress.smuggling.transfer-encoding"),
    ("X-Folded: a\r\n b\r\n", "egress.smuggling.obs-fold"),
    ("X-Bare: a\nX-Other: b\r\n", "egress.smuggling.bare-lf"),
    ("X-Bare: a\rX-Other: b\r\n", "egress.smuggling.bare-cr"),
    ("X-Nul: a\0b\r\n", "egress.smuggling.nul"),
    ("Content-Length : 5\r\n", "egress.smuggling.header-name"),
];

/// Reads until the peer closes (or errors, or 5 s pass).
async fn read_all(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let mut out = Vec::new();
    let mut buf = [0_u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response head plus a `Content-Length` body.
async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0_u8; 1];
        stream.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0);
    let mut body = vec![0_u8; length];
    stream.read_exact(&mut body).await.unwrap();
    head + &String::from_utf8_lossy(&body)
}

fn assert_refused(answer: &str, rule: &str, context: &str) {
    assert!(answer.starts_with("HTTP/1.1 400"), "{context}: {answer:?}");
    assert!(answer.contains(rule), "{context}: want {rule}: {answer:?}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{context}: {answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_listener_refuses_each_shape_first_and_on_a_kept_alive_connection() {
    let world = World::new().await;
    let proxy = world.proxy(ProxyOptions { routes: vec![route(OPEN_HOST, 80)], ..Default::default() }).await;
    let health = "GET /health HTTP/1.1\r\nHost: _egress.local\r\n\r\n";
    for (lines, rule) in SHAPES {
        let bad = format!("POST http://{OPEN_HOST}/ HTTP/1.1\r\nHost: {OPEN_HOST}\r\n{lines}\r\nhello");

        // As the connection's first request.
        assert_refused(&raw(proxy.addr, bad.as_bytes()).await, rule, "first");

        // As the second request, after a response on the same connection.
        let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(health.as_bytes()).await.unwrap();
        let first = read_response(&mut stream).await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        stream.write_all(bad.as_bytes()).await.unwrap();
        assert_refused(&read_all(&mut stream).await, rule, "second");

        // Pipelined behind a valid request in one write: the valid one is answered first.
        let answer = raw(proxy.addr, format!("{health}{bad}{health}").as_bytes()).await;
        let (first, rest) = answer.split_at(answer.find("HTTP/1.1 400").unwrap_or(0));
        assert!(first.starts_with("HTTP/1.1 200") && first.contains("\"status\":\"ok\""), "{rule}: {answer}");
        assert_refused(rest, rule, "pipelined");
        assert_eq!(answer.matches("HTTP/1.1").count(), 2, "nothing is parsed after the refused head: {answer}");
    }
    assert_eq!(world.upstream.count(), 0);
    assert!(proxy.audit_text().contains("egress.smuggling.cl-te"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_closes_the_connection() {
    // The guard stops inspecting after a CONNECT head (the rest may be TLS), so a CONNECT that is
    // refused must not leave the connection open for an uninspected request.
    let world = World::new().await;
    let proxy = world.proxy(ProxyOptions { routes: vec![route(OPEN_HOST, 80)], ..Default::default() }).await;
    let request = format!(
        "CONNECT {EVIL_HOST}:443 HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /health HTTP/1.1\r\nHost: _egress.local\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"
    );
    let answer = raw(proxy.addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{answer}");
}

async fn send(stream: &mut (impl AsyncWrite + Unpin), bytes: &str) {
    stream.write_all(bytes.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_a_tunnel_every_head_on_the_connection_is_inspected() {
    let world = World::new().await;
    let proxy = world
        .proxy(ProxyOptions { routes: vec![authed(API_HOST, world.port(), OnMatch::Block)], ..Default::default() })
        .await;
    let host = format!("Host: {API_HOST}:{}\r\n", world.port());
    // A chunked body whose data looks like a smuggling head: it is body, and reaches the upstream.
    let fake = "GET /fake HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
    let chunked = format!(
        "POST /upload HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n{:x}\r\n{fake}\r\n0\r\n\r\n",
        fake.len()
    );
    for (lines, rule) in SHAPES {
        let bad = format!("POST /smuggle HTTP/1.1\r\n{host}{lines}\r\nhello");

        // First request in the tunnel.
        let mut tls = tunnel(&proxy, API_HOST, world.port()).await;
        send(&mut tls, &bad).await;
        assert_refused(&read_all(&mut tls).await, rule, "tunnel first");

        // Second request, after a chunked request was answered on the same connection.
        let mut tls = tunnel(&proxy, API_HOST, world.port()).await;
        send(&mut tls, &chunked).await;
        let first = read_response(&mut tls).await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        assert!(first.contains(&format!("\"body_len\":{}", 5 + fake.len())), "{first}");
        send(&mut tls, &bad).await;
        assert_refused(&read_all(&mut tls).await, rule, "tunnel second");

        // Pipelined in one write.
        let mut tls = tunnel(&proxy, API_HOST, world.port()).await;
        send(&mut tls, &format!("{chunked}{bad}GET /after HTTP/1.1\r\n{host}\r\n")).await;
        let answer = read_all(&mut tls).await;
        let (first, rest) = answer.split_at(answer.find("HTTP/1.1 400").unwrap_or(0));
        assert!(first.starts_with("HTTP/1.1 200"), "{answer}");
        assert_refused(rest, rule, "tunnel pipelined");
        assert_eq!(answer.matches("HTTP/1.1").count(), 2, "{answer}");
    }
    let seen = world.upstream.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|s| s.path == "/upload"), "only the chunked uploads arrived: {seen:?}");
    assert_eq!(seen.len(), 2 * SHAPES.len());
    assert_eq!(world.upstream.last().body, format!("hello{fake}").into_bytes());
    assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_head_inside_a_tunnel_is_cut_off() {
    let world = World::new().await;
    let limits = bottle_egress::Limits { header_read_timeout: Duration::from_secs(1), ..Default::default() };
    let proxy =
        world.proxy(ProxyOptions { routes: vec![route(API_HOST, world.port())], limits, ..Default::default() }).await;
    let mut tls = tunnel(&proxy, API_HOST, world.port()).await;
    send(&mut tls, "GET / HTTP/1.1\r\nHost: api").await;
    let started = std::time::Instant::now();
    let _ = read_all(&mut tls).await;
    assert!(started.elapsed() < Duration::from_secs(4), "the held-back head was not timed out");
}
