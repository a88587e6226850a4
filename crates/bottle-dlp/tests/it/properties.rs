//! Property tests: streaming with random chunk sizes equals a whole-buffer scan, and redaction
//! removes every known-secret occurrence.

use base64::Engine as _;
use bottle_dlp::{DlpConfig, Engine, Finding, KnownSecret, Location};
use proptest::prelude::*;

const SECRET: &str = "rt-Zm9vYmFy-0123456789-route";

fn engine() -> Engine {
    Engine::new(&DlpConfig { known_secrets: vec![KnownSecret::new("route", SECRET)], ..DlpConfig::default() }).unwrap()
}

/// Pieces that exercise every code path: tokens, near misses, encodings and evasions.
fn fragment() -> impl Strategy<Value = String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    prop_oneof![
        "[ -~]{0,40}",
        "[a-z ]{0,20}",
        Just(" AKIAIOSFODNN7EXAMPLE ".to_owned()),
        Just("ghp_0123456789abcdefghijABCDEFGHIJ012345".to_owned()),
        Just("g\u{200B}hp_0123456789abcdefghijABCDEFGHIJ012345".to_owned()),
        Just("%67hp_0123456789abcdefghijABCDEFGHIJ012345".to_owned()),
        Just("api_key = \"q8Zt3Lw9Vx2Rk7Yp5Nm1\"\n".to_owned()),
        Just("password: Tr0ub4dor-3xQ\n".to_owned()),
        Just("https://u:s3cr3tP4ss@h/".to_owned()),
        Just(
            "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8w\n-----END PRIVATE KEY-----\n".to_owned()
        ),
        Just("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fwpMeJf36P".to_owned()),
        Just(SECRET.to_owned()),
        Just(b64.encode(format!("xy{SECRET}z"))),
        Just(SECRET.replace('-', "%2D")),
        Just("\u{0410}KIA\u{FF29}OSFODNN7EXAMPLE".to_owned()),
        Just("%".to_owned()),
        Just("%4".to_owned()),
        Just("\u{200B}".to_owned()),
        Just("é".to_owned()),
    ]
}

fn keys(findings: &[Finding]) -> Vec<(String, usize, usize, Option<String>)> {
    let mut keys: Vec<_> = findings
        .iter()
        .map(|f| (f.rule_id.to_owned(), f.span.start, f.span.end, f.secret_name.as_deref().map(str::to_owned)))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn streamed(engine: &Engine, input: &[u8], sizes: &[usize]) -> Vec<Finding> {
    let mut scanner = engine.stream(Location::Body);
    let mut found = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        found.extend(scanner.feed(&rest[..n]));
        rest = &rest[n..];
        i += 1;
    }
    found.extend(scanner.finish());
    found
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn streaming_equals_whole_buffer(
        parts in prop::collection::vec(fragment(), 0..12),
        sizes in prop::collection::vec(1usize..64, 1..8),
    ) {
        let engine = engine();
        let input = parts.concat();
        let whole = engine.scan(input.as_bytes(), &Location::Body);
        let stream = streamed(&engine, input.as_bytes(), &sizes);
        // No duplicates from chunk boundaries …
        prop_assert_eq!(keys(&stream).len(), stream.len());
        // … and the same findings.
        prop_assert_eq!(keys(&stream), keys(&whole));
    }

    #[test]
    fn redaction_removes_every_known_secret(
        parts in prop::collection::vec(fragment(), 0..12),
    ) {
        let engine = engine();
        let input = parts.concat();
        let redaction = engine.redact(input.as_bytes(), &Location::Body);
        let output = redaction.output;
        prop_assert!(memchr::memmem::find(&output, SECRET.as_bytes()).is_none());
        let rescan = engine.scan(&output, &Location::Body);
        prop_assert!(
            rescan.iter().all(|f| f.secret_name.is_none()),
            "known secret survived: {:?}", rescan
        );
        if rescan.is_empty() {
            prop_assert!(!redaction.residue);
        }
    }
}

#[test]
fn big_chunks_and_bounded_carry() {
    let engine = engine();
    let mut body = "lorem ipsum dolor sit amet ".repeat(10_000);
    body.insert_str(123_457, SECRET);
    let mut scanner = engine.stream(Location::Body);
    let mut found = Vec::new();
    for chunk in body.as_bytes().chunks(4096) {
        found.extend(scanner.feed(chunk));
        assert!(scanner.buffered_len() <= engine.carry_capacity() + 4096);
    }
    found.extend(scanner.finish());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].span, 123_457..123_457 + SECRET.len());
}
