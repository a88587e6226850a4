//! Fuzzes the DLP engine: arbitrary bytes are scanned whole and in chunks; the streamed findings
//! must equal the whole-buffer findings (as a set, and without duplicates), spans must lie in the
//! input, and redaction and header validation must not panic.

#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use bottle_dlp::{DlpConfig, Engine, Finding, KnownSecret, Location, validate_header};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-secret/0123+456789";

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let config = DlpConfig {
            known_secrets: vec![KnownSecret::new("fuzz", SECRET)],
            ..DlpConfig::default()
        };
        Engine::new(&config).expect("fuzz config is valid")
    })
}

type Key = (&'static str, usize, usize, Option<String>);

fn keys(findings: &[Finding]) -> BTreeSet<Key> {
    findings
        .iter()
        .map(|f| (f.rule_id, f.span.start, f.span.end, f.secret_name.as_deref().map(str::to_owned)))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    // First byte picks the chunking; the rest is the input.
    let Some((&seed, input)) = data.split_first() else { return };
    let engine = engine();

    let whole = engine.scan(input, &Location::Body);
    for finding in &whole {
        assert!(finding.span.start <= finding.span.end && finding.span.end <= input.len());
    }

    let mut scanner = engine.stream(Location::Body);
    let mut streamed = Vec::new();
    let mut rest = input;
    let mut size = usize::from(seed % 64) + 1;
    while !rest.is_empty() {
        let n = size.min(rest.len());
        streamed.extend(scanner.feed(&rest[..n]));
        rest = &rest[n..];
        // Vary chunk sizes deterministically (1..=61) so boundaries land everywhere.
        size = size * 7 % 61 + 1;
    }
    streamed.extend(scanner.finish());
    let streamed_keys = keys(&streamed);
    assert_eq!(streamed_keys.len(), streamed.len(), "stream reported a finding twice");
    assert_eq!(streamed_keys, keys(&whole), "stream and whole-buffer scans differ");

    let redaction = engine.redact(input, &Location::Body);
    assert!(!redaction.output.windows(SECRET.len()).any(|w| w == SECRET), "known secret survived redaction");

    let (name, value) = input.split_at(input.len() / 2);
    let _ = validate_header(name, value);
    let _ = engine.scan_header_values(name, &[value, name]);
});
