//! Throughput of `bottle-dlp` on deterministic 8 MiB inputs: clean source/prose, and text dense
//! with near misses (anchors that fail verification).

use std::hint::black_box;

use bottle_dlp::{DlpConfig, Engine, KnownSecret, Location};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SIZE: usize = 8 << 20;

/// Tiny deterministic generator so inputs are identical across runs and machines.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(self.0 >> 33).unwrap_or(0) % n
    }
}

fn build(lines: &[&str], seed: u64) -> Vec<u8> {
    let mut rng = Lcg(seed);
    let mut out = Vec::with_capacity(SIZE + 256);
    while out.len() < SIZE {
        out.extend_from_slice(lines[rng.next(lines.len())].as_bytes());
        out.push(b'\n');
    }
    out.truncate(SIZE);
    out
}

/// Source code, config and prose, including common words that are anchors (`key`, `token`,
/// `://`), as real traffic does.
fn clean() -> Vec<u8> {
    build(
        &[
            "fn handle_request(req: &Request, state: &AppState) -> Result<Response, Error> {",
            "    let value = compute(input, 42).map_err(|e| Error::Upstream(e))?;",
            "    for (index, item) in items.iter().enumerate() { total += item.weight * index; }",
            "    // Retry with exponential backoff so a flaky upstream does not fail the batch.",
            "    if let Some(entry) = cache.get(&key) { return Ok(entry.clone()); }",
            "import os, sys, json  # standard library only",
            "def parse_config(path):\n    with open(path) as f:\n        return json.load(f)",
            "The quick brown fox jumps over the lazy dog while the committee reviews the proposal.",
            "Documentation lives at https://docs.example.com/guide/getting-started for new users.",
            "  timeout_seconds: 30\n  retries: 5\n  endpoint: /v1/items",
            "const sorted = entries.sort((a, b) => a.name.localeCompare(b.name));",
            "SELECT id, name, created_at FROM users WHERE active = 1 ORDER BY created_at DESC;",
            "<div class=\"container\"><p>Welcome back, please sign in to continue.</p></div>",
            "The tokenizer splits each sentence into words before the model scores them.",
            "    map.insert(key.to_string(), value); // keys are normalised to lowercase",
            "In 1998 the library moved to a new building near the river, with 40% more shelves.",
        ],
        1,
    )
}

/// Every line holds near misses: anchors whose verification must run and fail.
fn near_misses() -> Vec<u8> {
    build(
        &[
            "let key = AKIA0000; token = ghp_short; secret = None",
            "api_key = os.environ[\"API_KEY\"]  # sk-proj-x and xoxb-notatoken",
            "password = getpass()  # never hard-code; see https://user@host/path",
            "-----BEGIN CERTIFICATE----- eyJmb28iOiJiYXIifQ.e30.short AIzaShort",
            "Authorization: Bearer placeholder  Basic realm=x  npm_config_cache glpat-short",
            "    secret_key: ${{ secrets.KEY }}  token: string  key: value  pwd: $(pwd)",
            "{\"private_key\": \"REPLACE_ME\", \"token_type\": \"bearer\", \"api_key\": null}",
            "sk_test_short rk_live_x hooks.slack.com/services/ /api/webhooks/123 12345:AAshort",
        ],
        2,
    )
}

fn engine() -> Engine {
    let config = DlpConfig {
        known_secrets: vec![
            KnownSecret::new("anthropic", "sk-ant-api03-route-token-for-bench-0001"),
            KnownSecret::new("github", "ghp_routeTokenForBench000000000000000002"),
            KnownSecret::new("internal", "internal-route-token/with+symbols=3"),
        ],
        ..DlpConfig::default()
    };
    Engine::new(&config).unwrap_or_else(|e| panic!("engine: {e}"))
}

fn bench(c: &mut Criterion) {
    let engine = engine();
    let mut group = c.benchmark_group("dlp");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(20);
    for (name, input) in [("clean", clean()), ("near_miss", near_misses())] {
        group.bench_function(format!("scan/{name}"), |b| {
            b.iter(|| black_box(engine.scan(black_box(&input), &Location::Body)));
        });
        group.bench_function(format!("stream_64k/{name}"), |b| {
            b.iter(|| {
                let mut scanner = engine.stream(Location::Body);
                let mut n = 0;
                for chunk in input.chunks(64 << 10) {
                    n += scanner.feed(chunk).len();
                }
                n + scanner.finish().len()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
