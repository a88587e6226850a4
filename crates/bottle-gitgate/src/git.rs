//! Running git: a clean environment (no user or system config, no inherited secrets), timeouts,
//! and a registry of child processes so a timed-out scan can be killed from another thread.

use std::ffi::{OsStr, OsString};
use std::io::Read as _;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The environment every git process runs with. Built from scratch: the sidecar's own environment
/// may hold secrets and user configuration that must not reach git, ssh or the hook.
#[derive(Clone, PartialEq, Eq)]
pub struct GitEnv {
    vars: Vec<(OsString, OsString)>,
}

// Manual: values may include paths the agent should never see; names are enough for debugging.
impl std::fmt::Debug for GitEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.vars.iter().map(|(k, _)| k)).finish()
    }
}

impl GitEnv {
    /// `PATH` from this process (or a standard one), `HOME` set to `home`, the C locale, no system or
    /// global git configuration, no terminal prompts, no replace objects, no system attributes.
    #[must_use]
    pub fn clean(home: &Path) -> Self {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        let mut env = Self { vars: Vec::new() };
        env.set("PATH", path);
        env.set("HOME", home);
        env.set("LC_ALL", "C");
        env.set("GIT_CONFIG_NOSYSTEM", "1");
        env.set("GIT_CONFIG_GLOBAL", "/dev/null");
        env.set("GIT_ATTR_NOSYSTEM", "1");
        env.set("GIT_TERMINAL_PROMPT", "0");
        env.set("GIT_NO_REPLACE_OBJECTS", "1");
        env
    }

    /// Sets (or replaces) one variable.
    pub fn set(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) {
        let key = key.as_ref();
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_owned(), value.as_ref().to_owned()));
    }

    /// This environment plus one variable.
    #[must_use]
    pub fn with(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.set(key, value);
        self
    }

    /// The value of `key`, if set.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&OsStr> {
        self.vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_os_str())
    }

    /// A `git` command with this environment and nothing else.
    pub(crate) fn std_git(&self) -> Command {
        let mut cmd = Command::new("git");
        cmd.env_clear().envs(self.vars.iter().map(|(k, v)| (k, v))).stdin(Stdio::null());
        cmd
    }

    /// The async twin of [`GitEnv::std_git`]; the child is killed when the future is dropped.
    pub(crate) fn tokio_git(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("git");
        cmd.env_clear().envs(self.vars.iter().map(|(k, v)| (k, v))).stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }
}

/// A git process that could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `git` could not be started.
    #[error("cannot run `git {what}`: {source}")]
    Spawn {
        /// The subcommand.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// It ran longer than allowed and was killed.
    #[error("`git {what}` did not finish within {secs} s")]
    Timeout {
        /// The subcommand.
        what: String,
        /// The limit.
        secs: u64,
    },
    /// It exited unsuccessfully.
    #[error("`git {what}` failed: {stderr}")]
    Failed {
        /// The subcommand.
        what: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// Reading or writing its pipes failed.
    #[error("talking to `git {what}` failed: {source}")]
    Io {
        /// The subcommand.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The scan was cancelled (its time ran out).
    #[error("cancelled")]
    Cancelled,
}

/// Captured output of a finished process.
#[derive(Debug)]
pub(crate) struct Captured {
    pub(crate) success: bool,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: String,
}

/// Runs an async git command to completion with a timeout, capturing output.
pub(crate) async fn run_async(
    mut cmd: tokio::process::Command,
    what: &str,
    timeout: Duration,
) -> Result<Captured, RunError> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().map_err(|source| RunError::Spawn { what: what.to_owned(), source })?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(Captured {
            success: out.status.success(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        }),
        Ok(Err(source)) => Err(RunError::Io { what: what.to_owned(), source }),
        Err(_) => Err(RunError::Timeout { what: what.to_owned(), secs: timeout.as_secs() }),
    }
}

/// Like [`run_async`], but a non-zero exit is an error carrying stderr.
pub(crate) async fn run_ok(cmd: tokio::process::Command, what: &str, timeout: Duration) -> Result<Vec<u8>, RunError> {
    let out = run_async(cmd, what, timeout).await?;
    if out.success { Ok(out.stdout) } else { Err(RunError::Failed { what: what.to_owned(), stderr: out.stderr }) }
}

/// The children of one scan, so a watchdog can kill them all.
#[derive(Debug, Clone, Default)]
pub(crate) struct Procs {
    inner: Arc<Mutex<ProcsInner>>,
}

#[derive(Debug, Default)]
struct ProcsInner {
    children: Vec<Option<Child>>,
    cancelled: bool,
}

/// A started child: its pipes, its stderr collector and its slot in the registry.
pub(crate) struct Started {
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) stdout: ChildStdout,
    stderr: std::thread::JoinHandle<String>,
    slot: usize,
    what: String,
}

impl Procs {
    /// Kills every running child; later spawns fail with [`RunError::Cancelled`].
    pub(crate) fn cancel(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.cancelled = true;
        for child in inner.children.iter_mut().flatten() {
            let _ = child.kill();
        }
    }

    fn is_cancelled(&self) -> bool {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).cancelled
    }

    /// Spawns `cmd` with piped stdout and stderr (and stdin when `with_stdin`).
    pub(crate) fn spawn(&self, mut cmd: Command, what: &str, with_stdin: bool) -> Result<Started, RunError> {
        if with_stdin {
            cmd.stdin(Stdio::piped());
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.cancelled {
            return Err(RunError::Cancelled);
        }
        let mut child = cmd.spawn().map_err(|source| RunError::Spawn { what: what.to_owned(), source })?;
        let stdin = child.stdin.take();
        let io_err = |what: &str| RunError::Io { what: what.to_owned(), source: std::io::ErrorKind::BrokenPipe.into() };
        let stdout = child.stdout.take().ok_or_else(|| io_err(what))?;
        let mut stderr_pipe = child.stderr.take().ok_or_else(|| io_err(what))?;
        let stderr = std::thread::spawn(move || {
            let mut text = Vec::new();
            // Bounded: a runaway stderr must not grow without limit.
            let _ = (&mut stderr_pipe).take(64 << 10).read_to_end(&mut text);
            let _ = std::io::copy(&mut stderr_pipe, &mut std::io::sink());
            String::from_utf8_lossy(&text).trim().to_owned()
        });
        inner.children.push(Some(child));
        Ok(Started { stdin, stdout, stderr, slot: inner.children.len() - 1, what: what.to_owned() })
    }

    /// Waits for a started child (its stdout must have been read to the end or dropped).
    pub(crate) fn finish(&self, started: Started) -> Result<(), RunError> {
        let Started { stdin, stdout, stderr, slot, what } = started;
        drop(stdin);
        drop(stdout);
        let child = self.inner.lock().unwrap_or_else(PoisonError::into_inner).children[slot].take();
        let status = match child {
            Some(mut child) => child.wait().map_err(|source| RunError::Io { what: what.clone(), source })?,
            None => return Err(RunError::Cancelled),
        };
        let stderr = stderr.join().unwrap_or_default();
        if self.is_cancelled() {
            return Err(RunError::Cancelled);
        }
        if status.success() { Ok(()) } else { Err(RunError::Failed { what, stderr }) }
    }

    /// Runs a command to completion and returns its stdout.
    pub(crate) fn output(&self, cmd: Command, what: &str) -> Result<Vec<u8>, RunError> {
        let mut started = self.spawn(cmd, what, false)?;
        let mut out = Vec::new();
        started.stdout.read_to_end(&mut out).map_err(|source| RunError::Io { what: what.to_owned(), source })?;
        self.finish(started)?;
        Ok(out)
    }
}

/// Quotes `value` for a POSIX shell (single quotes, with `'` spelled `'\''`).
pub(crate) fn shell_quote(value: &OsStr) -> String {
    let text = value.to_string_lossy();
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// True for a full hex object id (SHA-1 or SHA-256).
pub(crate) fn is_oid(text: &str) -> bool {
    (text.len() == 40 || text.len() == 64) && text.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// True for the all-zero id git uses for "no object".
pub(crate) fn is_zero_oid(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b == b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote(OsStr::new("/a b/c")), "'/a b/c'");
        assert_eq!(shell_quote(OsStr::new("it's")), r"'it'\''s'");
    }

    #[test]
    fn oids() {
        assert!(is_oid("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_oid("0123456789ABCDEF0123456789abcdef01234567"));
        assert!(!is_oid("--all"));
        assert!(is_zero_oid("0000000000000000000000000000000000000000"));
    }

    #[test]
    fn clean_env_drops_inherited_variables() {
        let env = GitEnv::clean(Path::new("/nonexistent")).with("GIT_DIR", "/x");
        assert_eq!(env.get("GIT_DIR"), Some(OsStr::new("/x")));
        assert_eq!(env.get("GIT_CONFIG_GLOBAL"), Some(OsStr::new("/dev/null")));
        let out = env.std_git().arg("--version").output().unwrap();
        assert!(out.status.success());
    }
}
