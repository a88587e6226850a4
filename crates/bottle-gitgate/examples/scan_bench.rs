//! Bench helper for `scripts/bench-gitgate`.
//!
//! - `generate DIR [--commits N] [--mb M] [--seed S]`: a deterministic bare repository of N commits
//!   (about M MiB of file versions: code-like text, a merge every 500 commits) with a few planted
//!   secrets, listed in `DIR/planted.tsv` (`label`, commit, file or `(commit message)`, line).
//! - `scan DIR [--tip REV] [--exclude REV]…`: times the gate's scan (`Scanner::scan_range`, the code
//!   path of the pre-receive hook) and prints `elapsed_ms` and each finding as a TSV line.
//! - `serve CONFIG.json`: runs a gate from a `git_gate` config on 127.0.0.1:0, prints
//!   `listening <addr>`, and serves until stdin closes.

use std::error::Error;
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use bottle_dlp::{DlpConfig, Engine};
use bottle_gitgate::{Exclude, GitEnv, GitGate, GitGateConfig, GitGateDeps, ScanRequest, Scanner};

type Res<T> = Result<T, Box<dyn Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("generate") => generate(&args[1..]),
        Some("scan") => scan(&args[1..]),
        Some("serve") => serve(&args[1..]),
        _ => Err("usage: scan_bench generate DIR | scan DIR | serve CONFIG.json".into()),
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

// ---------------------------------------------------------------- generate

/// splitmix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n as u64)).unwrap_or(0)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn alnum(&mut self, n: usize, alphabet: &[u8]) -> String {
        (0..n).map(|_| char::from(alphabet[self.below(alphabet.len())])).collect()
    }
}

const WORDS: &[&str] = &[
    "user", "account", "order", "item", "cache", "index", "buffer", "stream", "config", "client", "server", "request",
    "response", "handler", "session", "parser", "token", "node", "graph", "queue", "worker", "task", "result", "error",
    "value", "entry", "record", "table", "query", "filter", "limit", "offset", "page", "count", "total", "name",
    "path", "file", "line", "block", "frame", "packet", "header", "body", "field", "key", "map", "list", "set", "tree",
    "root", "leaf", "child", "parent", "state", "event", "signal", "timer", "clock", "date", "price", "amount", "tax",
    "invoice", "report", "metric", "sample", "window", "batch", "chunk", "retry", "backoff", "policy", "rule", "route",
    "host", "port", "socket", "channel", "message", "payload", "schema", "version", "module", "plugin", "store",
    "load", "save", "open", "close", "read", "write", "send", "recv",
];
const TYPES: &[&str] =
    &["Vec<u8>", "String", "u64", "usize", "Option<Entry>", "HashMap<String, u32>", "Config", "Order"];
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const DIGITS: &[u8] = b"0123456789";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn code_line(rng: &mut Rng) -> String {
    let (a, b, c, d) = (rng.pick(WORDS), rng.pick(WORDS), rng.pick(WORDS), rng.pick(WORDS));
    let n = rng.below(10_000);
    match rng.below(10) {
        0 => format!("fn {a}_{b}({c}: &{}) -> Result<{}, Error> {{", rng.pick(TYPES), rng.pick(TYPES)),
        1 => format!("    // {a} the {b} before the {c} is {d}ed; see issue #{n}"),
        2 => format!("    if {a}.{b}_{c}() > {n} {{ return Err(Error::{d}); }}"),
        3 => "}".to_owned(),
        4 => format!("    {a}.insert(\"{b}_{c}\", {n});"),
        5 => format!("    let {a}_key = format!(\"{{}}-{b}\", {c}.{d});"),
        6 => format!("    for {a} in {b}.iter().filter(|x| x.{c} < {n}) {{"),
        7 => format!("        {a}_{b} += {c}.{d}_count;"),
        8 => format!("    log::debug!(\"{a} {b} took {{}} ms\", {c}.elapsed().as_millis());"),
        _ => format!("    let {a} = {b}::{c}(&{d}, {n})?;"),
    }
}

fn text_block(rng: &mut Rng, bytes: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut size = 0;
    while size < bytes {
        let line = code_line(rng);
        size += line.len() + 1;
        lines.push(line);
    }
    lines
}

/// CRC-32 (IEEE), for GitHub's token checksum.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn github_token(rng: &mut Rng) -> String {
    let body = rng.alnum(30, BASE62);
    let mut n = crc32(body.as_bytes());
    let mut check = Vec::new();
    for _ in 0..6 {
        check.push(BASE62[(n % 62) as usize]);
        n /= 62;
    }
    check.reverse();
    format!("ghp_{body}{}", String::from_utf8_lossy(&check))
}

struct Planted {
    label: &'static str,
    mark: usize,
    place: String,
    line: usize,
}

struct Gen {
    out: std::io::BufWriter<std::process::ChildStdin>,
    rng: Rng,
    files: Vec<(String, Vec<String>)>,
    mark: usize,
    time: u64,
    bytes: usize,
}

impl Gen {
    fn data(&mut self, bytes: &[u8]) -> Res<()> {
        writeln!(self.out, "data {}", bytes.len())?;
        self.out.write_all(bytes)?;
        writeln!(self.out)?;
        Ok(())
    }

    /// One commit on `branch` from `from` (a mark), optionally merging `merge`, with file writes.
    fn commit(
        &mut self,
        branch: &str,
        from: Option<usize>,
        merge: Option<usize>,
        message: &str,
        writes: &[(String, String)],
    ) -> Res<usize> {
        self.mark += 1;
        self.time += 60;
        let mark = self.mark;
        writeln!(self.out, "commit refs/heads/{branch}\nmark :{mark}")?;
        writeln!(self.out, "author Bench <bench@example.com> {} +0000", 1_700_000_000 + self.time)?;
        writeln!(self.out, "committer Bench <bench@example.com> {} +0000", 1_700_000_000 + self.time)?;
        self.data(message.as_bytes())?;
        if let Some(from) = from {
            writeln!(self.out, "from :{from}")?;
        }
        if let Some(merge) = merge {
            writeln!(self.out, "merge :{merge}")?;
        }
        for (path, content) in writes {
            writeln!(self.out, "M 100644 inline {path}")?;
            self.bytes += content.len();
            self.data(content.as_bytes())?;
        }
        Ok(mark)
    }

    fn new_file(&mut self, index: usize) -> (String, String) {
        let dir = self.rng.pick(WORDS);
        let name = format!("src/{dir}/{}_{index}.rs", self.rng.pick(WORDS));
        let size = 6_000 + self.rng.below(12_000);
        let lines = text_block(&mut self.rng, size);
        let content = lines.join("\n") + "\n";
        self.files.push((name.clone(), lines));
        (name, content)
    }

    fn edit_file(&mut self, which: usize, insert: Option<&str>) -> (String, String, usize) {
        let extra = {
            let count = 5 + self.rng.below(30);
            (0..count).map(|_| code_line(&mut self.rng)).collect::<Vec<_>>()
        };
        let remove = self.rng.below(15);
        let (name, lines) = &mut self.files[which];
        let at = if lines.is_empty() { 0 } else { self.rng.0 as usize % lines.len() };
        let end = (at + remove).min(lines.len());
        lines.splice(at..end, extra);
        let mut planted_line = 0;
        if let Some(line) = insert {
            let pos = (at + 2).min(lines.len());
            lines.insert(pos, line.to_owned());
            planted_line = pos + 1;
        }
        while lines.iter().map(|l| l.len() + 1).sum::<usize>() > 24_000 {
            lines.pop();
        }
        (name.clone(), lines.join("\n") + "\n", planted_line)
    }
}

fn generate(args: &[String]) -> Res<()> {
    let dir = PathBuf::from(args.first().ok_or("generate DIR")?);
    let commits: usize = flag(args, "--commits").unwrap_or("10000").parse()?;
    let target_mb: usize = flag(args, "--mb").unwrap_or("200").parse()?;
    let seed: u64 = flag(args, "--seed").unwrap_or("1").parse()?;
    let status = Command::new("git").args(["init", "-q", "--bare", "-b", "main"]).arg(&dir).status()?;
    if !status.success() {
        return Err("git init failed".into());
    }
    let marks = dir.join("marks");
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(&dir)
        .args(["fast-import", "--quiet"])
        .arg(format!("--export-marks={}", marks.display()))
        .stdin(Stdio::piped())
        .spawn()?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let mut g = Gen {
        out: std::io::BufWriter::with_capacity(1 << 20, stdin),
        rng: Rng(seed),
        files: Vec::new(),
        mark: 0,
        time: 0,
        bytes: 0,
    };
    // Average bytes of file versions per commit, to land near the target size.
    let per_commit = target_mb * (1 << 20) / commits.max(1);
    let mut planted: Vec<Planted> = Vec::new();
    let mut tip: Option<usize> = None;
    let mut i = 0;
    while i < commits {
        let number = i + 1;
        // A merge every 500 commits: three commits on a side branch, merged back.
        if number % 500 == 250 && i + 4 < commits {
            let fork = tip;
            let mut side_tip = fork;
            let mut side_files = Vec::new();
            for k in 0..3 {
                let file = g.new_file(number * 10 + k);
                side_tip = Some(g.commit(
                    "side",
                    side_tip,
                    None,
                    &format!("side work {number}.{k}"),
                    std::slice::from_ref(&file),
                )?);
                side_files.push(file);
            }
            let mut writes = side_files;
            if number == 8750 {
                let token = format!("glpat-{}", g.rng.alnum(20, BASE62));
                writes.push(("ops/merge.env".into(), format!("REGION=eu\nGITLAB_TOKEN={token}\n")));
                planted.push(Planted {
                    label: "gitlab-token-in-evil-merge",
                    mark: g.mark + 1,
                    place: "ops/merge.env".into(),
                    line: 2,
                });
            }
            tip = Some(g.commit("main", tip, side_tip, &format!("Merge branch 'side' ({number})"), &writes)?);
            i += 4;
            continue;
        }
        let mut writes = Vec::new();
        let mut message = format!("{} the {} {}", g.rng.pick(WORDS), g.rng.pick(WORDS), g.rng.pick(WORDS));
        let mut written = 0;
        match number {
            1500 => {
                let id = format!("AKIA{}", g.rng.alnum(16, UPPER));
                let secret = g.rng.alnum(40, B64);
                let content = format!(
                    "[default]\nregion = eu-west-1\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n"
                );
                written += content.len();
                writes.push(("config/aws.ini".to_owned(), content));
                planted.push(Planted {
                    label: "aws-key-pair-new-file",
                    mark: g.mark + 1,
                    place: "config/aws.ini".into(),
                    line: 3,
                });
            }
            3000 => {
                let token = github_token(&mut g.rng);
                let which = g.rng.below(g.files.len());
                let (name, content, line) = g.edit_file(which, Some(&format!("    let github_token = \"{token}\";")));
                written += content.len();
                planted.push(Planted {
                    label: "github-pat-modified-line",
                    mark: g.mark + 1,
                    place: name.clone(),
                    line,
                });
                writes.push((name, content));
            }
            4500 => {
                let token =
                    format!("xoxb-{}-{}-{}", g.rng.alnum(12, DIGITS), g.rng.alnum(13, DIGITS), g.rng.alnum(24, BASE62));
                let content = format!("import os\n\nSLACK_TOKEN = \"{token}\"\n\ndef notify(msg):\n    pass\n");
                written += content.len();
                writes.push(("src/notify.py".to_owned(), content));
                planted.push(Planted {
                    label: "slack-bot-token",
                    mark: g.mark + 1,
                    place: "src/notify.py".into(),
                    line: 3,
                });
            }
            6000 => {
                let key = format!("sk_live_{}", g.rng.alnum(24, BASE62));
                let content = format!("DEBUG = False\nSTRIPE_SECRET_KEY = \"{key}\"\n");
                written += content.len();
                writes.push(("billing/settings.py".to_owned(), content));
                planted.push(Planted {
                    label: "stripe-live-key",
                    mark: g.mark + 1,
                    place: "billing/settings.py".into(),
                    line: 2,
                });
            }
            7500 => {
                let body: Vec<String> = (0..25).map(|_| g.rng.alnum(64, B64)).collect();
                let content =
                    format!("-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n", body.join("\n"));
                written += content.len();
                writes.push(("deploy/id_rsa".to_owned(), content));
                planted.push(Planted {
                    label: "rsa-private-key",
                    mark: g.mark + 1,
                    place: "deploy/id_rsa".into(),
                    line: 1,
                });
            }
            9000 => {
                let token = github_token(&mut g.rng);
                message = format!("fix deploy\n\nworks with {token} for now\n");
                planted.push(Planted {
                    label: "github-pat-in-commit-message",
                    mark: g.mark + 1,
                    place: "(commit message)".into(),
                    line: 3,
                });
            }
            _ => {}
        }
        while written < per_commit || writes.is_empty() {
            let file = if g.files.is_empty() || g.rng.below(4) == 0 {
                g.new_file(number)
            } else {
                let which = g.rng.below(g.files.len());
                let (name, content, _) = g.edit_file(which, None);
                (name, content)
            };
            written += file.1.len();
            writes.retain(|(p, _)| *p != file.0);
            writes.push(file);
            if writes.len() >= 4 {
                break;
            }
        }
        tip = Some(g.commit("main", tip, None, &message, &writes)?);
        i += 1;
    }
    let bytes = g.bytes;
    g.out.flush()?;
    drop(g);
    if !child.wait()?.success() {
        return Err("git fast-import failed".into());
    }
    let marks_text = std::fs::read_to_string(&marks)?;
    let ids: std::collections::HashMap<usize, &str> = marks_text
        .lines()
        .filter_map(|l| l.strip_prefix(':')?.split_once(' ').and_then(|(m, id)| Some((m.parse().ok()?, id))))
        .collect();
    let mut tsv = String::new();
    for p in &planted {
        let id = ids.get(&p.mark).ok_or("missing mark")?;
        tsv.push_str(&format!("{}\t{id}\t{}\t{}\n", p.label, p.place, p.line));
    }
    std::fs::write(dir.join("planted.tsv"), tsv)?;
    let _ = std::fs::remove_file(&marks);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "generated {} commits, {:.1} MiB of file versions, {} planted secrets",
        commits,
        bytes as f64 / f64::from(1 << 20),
        planted.len()
    )?;
    Ok(())
}

// ---------------------------------------------------------------- scan

fn rev_parse(dir: &Path, rev: &str) -> Res<String> {
    let out = Command::new("git").arg("--git-dir").arg(dir).args(["rev-parse", "--verify", rev]).output()?;
    if !out.status.success() {
        return Err(format!("cannot resolve `{rev}`").into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

fn scan(args: &[String]) -> Res<()> {
    let dir = PathBuf::from(args.first().ok_or("scan DIR")?);
    let tip = rev_parse(&dir, flag(args, "--tip").unwrap_or("main"))?;
    let mut exclude = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if arg == "--exclude" {
            exclude.push(rev_parse(&dir, args.get(i + 1).ok_or("--exclude REV")?)?);
        }
    }
    let scanner = Scanner::new(Engine::new(&DlpConfig::default())?, 16 << 20);
    let env = GitEnv::clean(Path::new("/nonexistent"));
    let tips = vec![tip];
    let request = ScanRequest { git_dir: &dir, env: &env, tips: &tips, exclude: Exclude::Commits(&exclude) };
    let started = Instant::now();
    let report = scanner.scan_range(&request)?;
    let elapsed = started.elapsed();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "elapsed_ms\t{:.1}\tcommits\t{}\tfiles\t{}\tbytes\t{}",
        elapsed.as_secs_f64() * 1000.0,
        report.commits,
        report.files_scanned,
        report.bytes_scanned
    )?;
    for f in &report.findings {
        writeln!(out, "finding\t{}\t{}\t{}\t{}", f.rule, f.commit, f.place, f.line)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- serve

fn serve(args: &[String]) -> Res<()> {
    if std::env::var_os("BENCH_GATE_LOG").is_some() {
        tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
    }
    let path = args.first().ok_or("serve CONFIG.json")?;
    let config: GitGateConfig = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let exe = std::env::current_exe()?;
    let hook = exe.parent().ok_or("no examples dir")?.join("git_gate_hook");
    let gate = GitGate::new(&config, GitGateDeps::new(hook))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let listener = bottle_egress::EgressListener::bind_tcp("127.0.0.1:0".parse()?).await?;
        let addr = listener.local_addr().ok_or("no address")?;
        writeln!(std::io::stdout().lock(), "listening {addr}")?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut line = String::new();
            while stdin.read_line(&mut line).is_ok_and(|n| n > 0) {
                line.clear();
            }
            let _ = tx.send(());
        });
        gate.serve(listener, async move {
            let _ = rx.await;
        })
        .await?;
        Ok::<(), Box<dyn Error>>(())
    })
}
