//! Table tests of the raw head check and the stream framer.

use bytes::BytesMut;

use super::*;

fn rule(head: &str) -> Option<&'static str> {
    inspect_head(head.as_bytes()).err().map(|d| d.rule)
}

#[test]
fn head_shapes_table() {
    let p = "POST http://a.example/ HTTP/1.1\r\nHost: a.example\r\n";
    let cases: Vec<(String, Option<&str>)> = vec![
        (format!("{p}\r\n"), None),
        (format!("{p}Content-Length: 5\r\n\r\n"), None),
        (format!("{p}transfer-encoding: Chunked\r\n\r\n"), None),
        (format!("{p}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), Some("egress.smuggling.cl-te")),
        (format!("{p}transfer-encoding: chunked\r\ncontent-LENGTH: 5\r\n\r\n"), Some("egress.smuggling.cl-te")),
        (
            format!("{p}Content-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            Some("egress.smuggling.duplicate-content-length"),
        ),
        (
            format!("{p}Content-Length: 5\r\ncontent-length: 6\r\n\r\n"),
            Some("egress.smuggling.duplicate-content-length"),
        ),
        (format!("{p}Content-Length: 5, 5\r\n\r\n"), Some("egress.smuggling.bad-content-length")),
        (format!("{p}Content-Length: +5\r\n\r\n"), Some("egress.smuggling.bad-content-length")),
        (format!("{p}Content-Length: 99999999999999999999\r\n\r\n"), Some("egress.smuggling.bad-content-length")),
        (format!("{p}Transfer-Encoding: gzip, chunked\r\n\r\n"), Some("egress.smuggling.transfer-encoding")),
        (format!("{p}Transfer-Encoding: chunked, gzip\r\n\r\n"), Some("egress.smuggling.transfer-encoding")),
        (format!("{p}Transfer-Encoding: identity\r\n\r\n"), Some("egress.smuggling.transfer-encoding")),
        (
            format!("{p}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some("egress.smuggling.transfer-encoding"),
        ),
        (
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned(),
            Some("egress.smuggling.transfer-encoding"),
        ),
        (format!("{p}X-A: a\r\n b\r\n\r\n"), Some("egress.smuggling.obs-fold")),
        (format!("{p}X-A: a\r\n\tb\r\n\r\n"), Some("egress.smuggling.obs-fold")),
        (format!("{p}Content-Length : 5\r\n\r\n"), Some("egress.smuggling.header-name")),
        (format!("{p}X-A: a\nX-B: b\r\n\r\n"), Some("egress.smuggling.bare-lf")),
        (format!("{p}X-A: a\rX-B: b\r\n\r\n"), Some("egress.smuggling.bare-cr")),
        (format!("{p}X-A: a\0b\r\n\r\n"), Some("egress.smuggling.nul")),
        (format!("{p}X-A: a\x01b\r\n\r\n"), Some("egress.smuggling.control-byte")),
        (format!("{p}no colon\r\n\r\n"), Some("egress.smuggling.header-line")),
        ("GET  / HTTP/1.1\r\n\r\n".to_owned(), Some("egress.smuggling.request-line")),
        ("GET / HTTP/2.0\r\n\r\n".to_owned(), Some("egress.smuggling.version")),
        ("CONNECT a:443 HTTP/1.1\r\nContent-Length: 3\r\n\r\n".to_owned(), Some("egress.smuggling.connect-body")),
        ("CONNECT a:443 HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_owned(), None),
    ];
    for (head, want) in cases {
        assert_eq!(rule(&head), want, "{head:?}");
    }
}

#[test]
fn facts_and_limits() {
    let facts = inspect_head(b"CONNECT a:443 HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(facts, HeadFacts { framing: Framing::None, may_switch: true });
    let facts = inspect_head(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\n").unwrap();
    assert_eq!(facts, HeadFacts { framing: Framing::Length(2), may_switch: true });
    let facts = inspect_head(b"GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n").unwrap();
    assert!(!facts.may_switch, "hyper upgrades only HTTP/1.1");
    let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
    let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
    assert_eq!(inspect_head(head.as_bytes()).unwrap_err().status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

/// Feeds `input` in pieces of `step` bytes; returns what hyper would get and the first refusal.
fn run(input: &[u8], step: usize, allow_h2: bool) -> (Vec<u8>, Option<Refusal>) {
    let mut framer = Framer::new(allow_h2);
    let mut out = BytesMut::new();
    for piece in input.chunks(step) {
        if let Err(refusal) = framer.feed(piece, &mut out) {
            return (out.to_vec(), Some(refusal));
        }
    }
    (out.to_vec(), None)
}

#[test]
fn framer_follows_keep_alive_messages_and_refuses_a_later_head() {
    // The chunk data holds a fake smuggling head: it is body, and must not be taken for a head.
    let fake = "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
    let first = format!(
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n{:X}\r\n{fake}\r\n0\r\nx-trailer: t\r\n\r\n",
        fake.len()
    );
    let second = "GET /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    let bad = "GET /b HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let stream = format!("{first}\r\n{second}{bad}GET /c HTTP/1.1\r\n\r\n");
    for step in [1, 2, 3, 7, 64, 4096] {
        let (out, refusal) = run(stream.as_bytes(), step, false);
        let Some(Refusal::Head(denial)) = refusal else { panic!("step {step}: {refusal:?}") };
        assert_eq!(denial.rule, "egress.smuggling.cl-te");
        // The fake head inside the chunk data was body, not a head; the blank line between messages is
        // dropped; the refused head and everything after it never reach hyper.
        let want = format!("{first}{second}").into_bytes();
        let mut want = want;
        want.extend_from_slice(SYNTHETIC_REJECTION);
        assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&want), "step {step}");
    }
}

#[test]
fn framer_passes_tunnels_h2_and_refuses_broken_chunks() {
    let connect =
        b"CONNECT a:443 HTTP/1.1\r\n\r\n\x16\x03\x01 GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
    assert_eq!(run(connect, 5, false), (connect.to_vec(), None));
    let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12\x04\0\0\0\0\0";
    assert_eq!(run(h2, 3, true), (h2.to_vec(), None));
    assert!(matches!(run(h2, 3, false).1, Some(Refusal::Head(_))), "no h2 on the plain listener");
    for body in ["5 \r\nhello\r\n0\r\n\r\n", "5\nhello\r\n0\r\n\r\n", "5\r\nhelloX\r\n", "g\r\n", "0\r\nx\n"] {
        let stream = format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        assert!(matches!(run(stream.as_bytes(), 1, false).1, Some(Refusal::Framing(_))), "{body:?}");
    }
    let two = b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n";
    assert_eq!(run(two, 100, false), (two.to_vec(), None), "pipelined bodiless heads are all released");
    let held = run(b"GET / HTTP/1.1\r\nHost: a\r\n", 4, false);
    assert_eq!(held, (Vec::new(), None), "an incomplete head is held back");
    let big = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(MAX_HEADER_BYTES));
    let Some(Refusal::Head(denial)) = run(big.as_bytes(), 1000, false).1 else { panic!() };
    assert_eq!(denial.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let bare_lf = run(b"GET / HTTP/1.1\nHost: a\n\n", 100, false).1;
    assert!(matches!(bare_lf, Some(Refusal::Head(d)) if d.rule == "egress.smuggling.bare-lf"));
}
