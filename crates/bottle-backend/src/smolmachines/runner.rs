//! Running `smolvm`: the [`CommandRunner`] seam, the real runner on `tokio::process`, and how an
//! exit is read (smolvm's own errors vs. the guest command's code, the early-boot retry).

use std::sync::Mutex;

use crate::Error;

/// Most bytes kept of each output stream; the rest is drained and dropped, and the result marked
/// truncated. Matches what `smolvm` itself keeps of a non-streaming exec.
pub const OUTPUT_CAP: usize = 11 << 20;

/// What a command left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit code; killed by a signal is `128 + signal`.
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Some output went past [`OUTPUT_CAP`] and was dropped.
    pub truncated: bool,
}

impl CommandOutput {
    pub fn ok(stdout: &str) -> Self {
        Self { code: 0, stdout: stdout.as_bytes().to_vec(), ..Self::default() }
    }

    pub fn failed(code: i32, stderr: &str) -> Self {
        Self { code, stderr: stderr.as_bytes().to_vec(), ..Self::default() }
    }

    /// smolvm's own error (`Error: …` on stderr, exit 1), as opposed to a guest command that exited
    /// 1 by itself.
    pub fn smolvm_error(&self) -> Option<String> {
        if self.code != 1 {
            return None;
        }
        let text = String::from_utf8_lossy(&self.stderr);
        let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
        line.strip_prefix("Error:").map(|m| m.trim().to_owned())
    }

    /// Whether this is the early-boot failure worth one retry: the guest's process killed under it
    /// (255 on 0.8.0, 137 later) while the VM was still settling.
    pub fn is_boot_race(&self) -> bool {
        matches!(self.code, 137 | 255)
    }

    /// The last `lines` lines of stderr, for an error message (smolvm writes no secret there; the
    /// commands it runs are ours).
    pub fn stderr_tail(&self, lines: usize) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Runs host commands. The real one is [`TokioRunner`]; tests record what would run.
pub trait CommandRunner: Send + Sync {
    /// Runs `argv` to completion with `stdin` (or `/dev/null`), capturing both streams up to
    /// [`OUTPUT_CAP`] each.
    fn run(&self, argv: &[String], stdin: Option<&[u8]>) -> Result<CommandOutput, Error>;
}

/// Runs `argv` and fails unless it exits 0: the error names `action` and carries smolvm's own
/// message when there is one.
pub fn run_checked(
    runner: &dyn CommandRunner,
    action: &str,
    argv: &[String],
    stdin: Option<&[u8]>,
) -> Result<CommandOutput, Error> {
    let out = runner.run(argv, stdin)?;
    if out.code == 0 {
        return Ok(out);
    }
    Err(failure(action, &out))
}

/// Like [`run_checked`], retrying once when the first attempt hit the early-boot race.
pub fn run_boot_retry(
    runner: &dyn CommandRunner,
    action: &str,
    argv: &[String],
    stdin: Option<&[u8]>,
) -> Result<CommandOutput, Error> {
    let first = runner.run(argv, stdin)?;
    if first.code == 0 {
        return Ok(first);
    }
    if first.is_boot_race() {
        tracing::debug!(action, code = first.code, "smolvm: early-boot failure, retrying once");
        std::thread::sleep(std::time::Duration::from_millis(500));
        return run_checked(runner, action, argv, stdin);
    }
    Err(failure(action, &first))
}

/// The error for a failed `smolvm` call.
pub fn failure(action: &str, out: &CommandOutput) -> Error {
    let message = out.smolvm_error().unwrap_or_else(|| {
        let tail = out.stderr_tail(5);
        if tail.is_empty() { format!("exited with {}", out.code) } else { format!("exited with {}: {tail}", out.code) }
    });
    Error::Smolvm { action: action.to_owned(), message }
}

/// The real runner: `tokio::process` on a runtime of its own, both streams read concurrently so a
/// chatty command cannot stall on a full pipe.
#[derive(Debug)]
pub struct TokioRunner {
    rt: tokio::runtime::Runtime,
}

impl TokioRunner {
    pub fn new() -> Result<Self, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Spawn { program: "the smolvm runner".into(), source })?;
        Ok(Self { rt })
    }
}

impl CommandRunner for TokioRunner {
    fn run(&self, argv: &[String], stdin: Option<&[u8]>) -> Result<CommandOutput, Error> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (program, args) = argv.split_first().ok_or_else(|| Error::Spawn {
            program: String::new(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"),
        })?;
        let spawn_err = |source| Error::Spawn { program: program.clone(), source };
        self.rt.block_on(async {
            let mut child = tokio::process::Command::new(program)
                .args(args)
                .stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(spawn_err)?;
            let input = child.stdin.take();
            let data = stdin.map(<[u8]>::to_vec);
            let feed = async move {
                if let (Some(mut pipe), Some(data)) = (input, data) {
                    // A command that exits without reading all of it is its own business.
                    let _ = pipe.write_all(&data).await;
                    let _ = pipe.shutdown().await;
                }
            };
            async fn drain(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> std::io::Result<(Vec<u8>, bool)> {
                let (mut kept, mut truncated) = (Vec::new(), false);
                let Some(mut pipe) = pipe else { return Ok((kept, truncated)) };
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = pipe.read(&mut buf).await?;
                    if n == 0 {
                        return Ok((kept, truncated));
                    }
                    let room = OUTPUT_CAP.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                    truncated |= n > room;
                }
            }
            let (stdout_pipe, stderr_pipe) = (child.stdout.take(), child.stderr.take());
            let ((), out, err) = tokio::join!(feed, drain(stdout_pipe), drain(stderr_pipe));
            let (stdout, t1) = out.map_err(spawn_err)?;
            let (stderr, t2) = err.map_err(spawn_err)?;
            let status = child.wait().await.map_err(spawn_err)?;
            use std::os::unix::process::ExitStatusExt as _;
            let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            Ok(CommandOutput { code, stdout, stderr, truncated: t1 || t2 })
        })
    }
}

/// A runner for tests: records every argv and answers from a script, in order of a predicate.
#[derive(Default)]
pub struct RecordingRunner {
    calls: Mutex<Vec<Vec<String>>>,
    #[allow(clippy::type_complexity)]
    answer: Option<Box<dyn Fn(&[String], usize) -> CommandOutput + Send + Sync>>,
}

impl std::fmt::Debug for RecordingRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingRunner").field("calls", &self.calls()).finish_non_exhaustive()
    }
}

impl RecordingRunner {
    /// Answers every call with `answer(argv, index_of_call)`.
    pub fn new(answer: impl Fn(&[String], usize) -> CommandOutput + Send + Sync + 'static) -> Self {
        Self { calls: Mutex::new(Vec::new()), answer: Some(Box::new(answer)) }
    }

    /// Every argv run so far, in order.
    pub fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl CommandRunner for RecordingRunner {
    fn run(&self, argv: &[String], _stdin: Option<&[u8]>) -> Result<CommandOutput, Error> {
        let index = {
            let mut calls = self.calls.lock().map_err(|_| Error::Spawn {
                program: argv.first().cloned().unwrap_or_default(),
                source: std::io::Error::other("recording runner poisoned"),
            })?;
            calls.push(argv.to_vec());
            calls.len() - 1
        };
        Ok(self.answer.as_ref().map_or_else(|| CommandOutput::ok(""), |a| a(argv, index)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn smolvm_errors_are_told_from_guest_exits() {
        let own = CommandOutput::failed(1, "\nError: machine 'x' is not running\n");
        assert_eq!(own.smolvm_error().as_deref(), Some("machine 'x' is not running"));
        assert_eq!(CommandOutput::failed(1, "grep: no match").smolvm_error(), None);
        assert_eq!(CommandOutput::failed(2, "Error: bad flag").smolvm_error(), None, "smolvm's errors exit 1");
        let err = failure("start machine `x`", &own).to_string();
        assert!(err.contains("start machine `x`") && err.contains("is not running"), "{err}");
    }

    #[test]
    fn retries_once_on_137_and_255_only() {
        for code in [137, 255] {
            let runner =
                RecordingRunner::new(
                    move |_, i| {
                        if i == 0 { CommandOutput::failed(code, "") } else { CommandOutput::ok("up") }
                    },
                );
            let out = run_boot_retry(&runner, "exec", &argv("smolvm machine exec --name m -- true"), None).unwrap();
            assert_eq!(out.stdout, b"up");
            assert_eq!(runner.calls().len(), 2, "{code}: one retry");
        }
        let twice = RecordingRunner::new(|_, _| CommandOutput::failed(137, ""));
        assert!(run_boot_retry(&twice, "exec", &argv("smolvm x"), None).is_err());
        assert_eq!(twice.calls().len(), 2, "never more than one retry");
        let other = RecordingRunner::new(|_, _| CommandOutput::failed(1, "Error: nope"));
        assert!(run_boot_retry(&other, "exec", &argv("smolvm x"), None).is_err());
        assert_eq!(other.calls().len(), 1, "other failures are not retried");
    }

    #[test]
    fn the_real_runner_captures_codes_streams_and_stdin() {
        let runner = TokioRunner::new().unwrap();
        let out = runner.run(&["sh".into(), "-c".into(), "cat; echo err >&2; exit 3".into()], Some(b"in")).unwrap();
        assert_eq!((out.code, out.stdout.as_slice(), out.stderr.as_slice()), (3, &b"in"[..], &b"err\n"[..]));
        let out = runner.run(&["sh".into(), "-c".into(), "kill -9 $$".into()], None).unwrap();
        assert_eq!(out.code, 137);
        assert!(matches!(runner.run(&argv("/no/such/smolvm"), None), Err(Error::Spawn { .. })));
    }

    #[test]
    fn the_real_runner_caps_output() {
        let runner = TokioRunner::new().unwrap();
        let script = format!("head -c {} /dev/zero", OUTPUT_CAP + 100_000);
        let out = runner.run(&["sh".into(), "-c".into(), script], None).unwrap();
        assert_eq!((out.code, out.stdout.len(), out.truncated), (0, OUTPUT_CAP, true));
    }
}
