//! The manifest fixture corpus: every valid set resolves, every invalid set fails with a message that
//! names the file, the line and the key. Each transcript is a snapshot.
//!
//! A case is a directory with `home/` (the `--home`), optional `user/` (`$HOME`, for skills), optional
//! `repo/` (the working directory when `cwd` says so), an `args` file and an optional `env` file.

use std::fs;
use std::path::Path;

use crate::{bot_bottle, fixtures_dir, transcript};

fn run_case(dir: &Path) -> std::process::Output {
    let args = fs::read_to_string(dir.join("args")).expect("args file");
    let cwd = fs::read_to_string(dir.join("cwd")).map_or_else(|_| dir.to_path_buf(), |c| dir.join(c.trim()));
    let mut cmd = bot_bottle();
    cmd.current_dir(cwd).env("HOME", dir.join("user")).arg("--home").arg(dir.join("home"));
    cmd.args(args.split_whitespace());
    if let Ok(env) = fs::read_to_string(dir.join("env")) {
        for line in env.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once('=').expect("KEY=VALUE");
            cmd.env(k, v);
        }
    }
    cmd.output().expect("runs")
}

fn cases(kind: &str) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> =
        fs::read_dir(fixtures_dir().join(kind)).expect("fixture dir").map(|e| e.expect("entry").path()).collect();
    dirs.sort();
    dirs
}

#[test]
fn corpus_is_large_enough() {
    assert!(cases("valid").len() >= 15, "need at least 15 valid fixture sets");
    assert!(cases("invalid").len() >= 30, "need at least 30 invalid fixture sets");
}

#[test]
fn valid_fixtures_resolve() {
    for dir in cases("valid") {
        let name = dir.file_name().and_then(|n| n.to_str()).expect("utf-8 name").to_owned();
        let out = run_case(&dir);
        let text = transcript(&out, &dir);
        assert!(out.status.success(), "valid fixture `{name}` failed:\n{text}");
        insta::assert_snapshot!(format!("valid__{name}"), text);
    }
}

#[test]
fn invalid_fixtures_fail_naming_file_line_and_key() {
    for dir in cases("invalid") {
        let name = dir.file_name().and_then(|n| n.to_str()).expect("utf-8 name").to_owned();
        let out = run_case(&dir);
        let text = transcript(&out, &dir);
        assert_eq!(out.status.code(), Some(2), "invalid fixture `{name}` must exit 2:\n{text}");
        assert!(names_location(&text), "invalid fixture `{name}` must name file, line and column:\n{text}");
        assert!(text.contains(" = key: "), "invalid fixture `{name}` must name the key:\n{text}");
        assert!(out.stdout.is_empty(), "invalid fixture `{name}` printed data on stdout:\n{text}");
        insta::assert_snapshot!(format!("invalid__{name}"), text);
    }
}

/// Whether some line reads `--> [CASE]/<file>.md:<line>:<col>` (or `.json`).
fn names_location(text: &str) -> bool {
    text.lines().any(|l| {
        let Some(rest) = l.trim_start().strip_prefix("--> [CASE]/") else { return false };
        let mut parts = rest.rsplitn(3, ':');
        let col = parts.next().unwrap_or("");
        let line = parts.next().unwrap_or("");
        let file = parts.next().unwrap_or("");
        (file.ends_with(".md") || file.ends_with(".json"))
            && line.parse::<u32>().is_ok_and(|n| n > 0)
            && col.parse::<u32>().is_ok_and(|n| n > 0)
    })
}
