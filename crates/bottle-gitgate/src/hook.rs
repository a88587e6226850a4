//! The pre-receive hook: a tiny client that hands a push to the gate and relays its verdict.
//!
//! The gate installs one `pre-receive` script for every mirror (`core.hooksPath`), which runs
//! `<bot-bottle> git-gate-hook --socket <gate's private socket>`. That command calls [`run_client`]:
//! it reads the ref updates git gives the hook on stdin, takes the quarantine variables git sets
//! (`GIT_DIR`, `GIT_OBJECT_DIRECTORY`, `GIT_ALTERNATE_OBJECT_DIRECTORIES`, `GIT_QUARANTINE_PATH`) and
//! the push id the gate gave receive-pack, sends them as one JSON line, prints every message the
//! gate streams back to stderr (git shows them to the pusher as `remote: …`), and exits with the
//! gate's verdict. All policy lives in the gate; the client decides nothing and fails closed.
//!
//! Wire format, gate → client: lines `m <text>` (a message) and one final `x <code>` (the exit code).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The variable receive-pack passes to the hook with the gate's id for this push.
pub const PUSH_ID_ENV: &str = "BOT_BOTTLE_GITGATE_PUSH";
/// Variables the client forwards.
pub(crate) const FORWARDED_ENV: &[&str] =
    &["GIT_DIR", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH", PUSH_ID_ENV];
/// Largest hook request (ref updates of a huge push still fit easily).
pub(crate) const MAX_REQUEST: u64 = 32 << 20;

/// What the client sends.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HookRequest {
    /// The hook's working directory (relative `GIT_DIR` is resolved against it).
    pub(crate) cwd: String,
    /// The forwarded variables that were set.
    pub(crate) env: BTreeMap<String, String>,
    /// The hook's stdin: `<old> <new> <ref>` lines.
    pub(crate) updates: String,
}

/// Runs the hook client: returns the process exit code (0 only when the gate accepted the push).
#[must_use]
pub fn run_client(socket: &Path) -> i32 {
    match client(socket) {
        Ok(code) => code,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "git-gate: the push could not be checked ({error}); refusing it");
            1
        }
    }
}

fn client(socket: &Path) -> std::io::Result<i32> {
    let mut stream = UnixStream::connect(socket)?;
    let mut updates = String::new();
    std::io::stdin().take(MAX_REQUEST).read_to_string(&mut updates)?;
    let env =
        FORWARDED_ENV.iter().filter_map(|&key| std::env::var(key).ok().map(|value| (key.to_owned(), value))).collect();
    let cwd = std::env::current_dir()?.to_string_lossy().into_owned();
    let request = HookRequest { cwd, env, updates };
    let mut line = serde_json::to_vec(&request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut stderr = std::io::stderr().lock();
    for line in BufReader::new(stream).lines() {
        let line = line?;
        if let Some(text) = line.strip_prefix("m ") {
            let _ = writeln!(stderr, "{text}");
        } else if line == "m" {
            let _ = writeln!(stderr);
        } else if let Some(code) = line.strip_prefix("x ") {
            return Ok(code.trim().parse().unwrap_or(1));
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the gate closed the connection without a verdict"))
}

/// Frames one message for the client (each line separately).
pub(crate) fn message_frames(text: &str) -> String {
    text.lines().map(|l| if l.is_empty() { "m\n".to_owned() } else { format!("m {l}\n") }).collect()
}

/// Frames the verdict.
pub(crate) fn exit_frame(code: i32) -> String {
    format!("x {code}\n")
}

/// The `pre-receive` script the gate installs.
pub(crate) fn script(hook_program: &Path, socket: &Path) -> String {
    format!(
        "#!/bin/sh\n# Installed by the bot-bottle git gate: every push is checked by the gate before it is accepted.\nexec {} git-gate-hook --socket {}\n",
        crate::git::shell_quote(hook_program.as_os_str()),
        crate::git::shell_quote(socket.as_os_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(message_frames("a\n\nb"), "m a\nm\nm b\n");
        assert_eq!(exit_frame(1), "x 1\n");
    }

    #[test]
    fn script_quotes_paths() {
        let s = script(Path::new("/opt/bot bottle/bin"), Path::new("/m/.gate/hook.sock"));
        assert!(s.contains("exec '/opt/bot bottle/bin' git-gate-hook --socket '/m/.gate/hook.sock'"));
    }

    #[test]
    fn client_reports_a_missing_gate() {
        let dir = tempfile::tempdir().unwrap();
        let err = client(&dir.path().join("none.sock")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
