//! The tamper-evident audit log: one JSON line per egress decision, hash-chained.
//!
//! Every line carries `prev`, the SHA-256 (hex) of the previous line's bytes (without its newline);
//! the first line's `prev` is 64 zeros. Editing, inserting or deleting a line breaks the chain at that
//! point, which [`verify_chain`] reports. Callers pass only scrubbed text: nothing here ever sees an
//! injected credential, and the writer re-checks with a scrubber as a second line of defence.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Forwarded.
    Allow,
    /// Forwarded with a warning.
    Warn,
    /// Refused.
    Deny,
}

/// One audit record. Fields are optional so each decision logs only what applies.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// Event kind, e.g. `request`, `connect`, `response`, `reload`.
    pub event: &'static str,
    /// The decision.
    pub decision: Decision,
    /// Rule id for deny/warn decisions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Which side failed, for denials and errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<&'static str>,
    /// Scrubbed reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Target host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Target port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Request method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Scrubbed request path (query dropped or scrubbed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Response status sent to the agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// DLP findings (rule and location only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<crate::outbound::FindingSummary>,
    /// Level 2 only: request headers as forwarded, injected values redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<Vec<(String, String)>>,
    /// Level 2 only: response headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<Vec<(String, String)>>,
    /// Milliseconds from request start to decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
    /// Git gate: the repository's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Git gate: the pushed ref updates, as `<ref> <kind> <old>..<new>` (abbreviated ids).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refs: Vec<String>,
    /// Git gate: how many new commits the push adds (all of them scanned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commits: Option<u64>,
    /// Git gate: what the upstream said (`accepted`, or its refusal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Supervise: the proposal's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposal: Option<String>,
    /// Supervise: the proposal's kind (`egress-route`, `egress-token-allow`, `git-allow`, `question`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Supervise: what was decided (`approve`, `modify`, `reject`, `timeout`, `withdrawn`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Supervise: how long an approval holds (`once`, `session`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Supervise: the proposal's one-line summary (scrubbed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Supervise: kind-specific details of a proposal or of what a decision applied (scrubbed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

impl AuditEvent {
    /// An event with only kind and decision set.
    pub fn new(event: &'static str, decision: Decision) -> Self {
        Self {
            event,
            decision,
            rule: None,
            side: None,
            reason: None,
            host: None,
            port: None,
            method: None,
            path: None,
            status: None,
            findings: Vec::new(),
            request_headers: None,
            response_headers: None,
            elapsed_ms: None,
            repo: None,
            refs: Vec::new(),
            commits: None,
            upstream: None,
            proposal: None,
            kind: None,
            action: None,
            scope: None,
            summary: None,
            detail: None,
        }
    }
}

/// Errors of the audit log itself.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Opening, reading or writing the log failed.
    #[error("cannot access audit log `{path}`")]
    Io {
        /// The log file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The chain is broken.
    #[error("audit log `{path}` is broken at line {line}: {reason}")]
    Broken {
        /// The log file.
        path: PathBuf,
        /// 1-based number of the first bad line.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// An append-only, hash-chained JSON-lines writer. One writer per file.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    state: Mutex<Writer>,
}

#[derive(Debug)]
struct Writer {
    file: File,
    prev: String,
}

impl AuditLog {
    /// Opens (or creates, mode 0600) the log at `path` and continues the chain after its last line.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io { path: path.to_path_buf(), source };
        let mut file = OpenOptions::new().create(true).read(true).append(true).mode(0o600).open(path).map_err(io)?;
        let prev = last_line_hash(&mut file).map_err(io)?;
        Ok(Self { path: path.to_path_buf(), state: Mutex::new(Writer { file, prev }) })
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event with a timestamp and the chain link. Failures are reported to `tracing`
    /// and returned; the proxy keeps serving (the decision itself has already been made).
    pub fn append(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let mut record = Map::new();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        record.insert("prev".into(), Value::String(state.prev.clone()));
        record.insert("ts_ms".into(), Value::from(unix_ms()));
        if let Ok(Value::Object(fields)) = serde_json::to_value(event) {
            record.extend(fields);
        }
        let line = Value::Object(record).to_string();
        let mut bytes = line.clone().into_bytes();
        bytes.push(b'\n');
        state.file.write_all(&bytes).map_err(|source| AuditError::Io { path: self.path.clone(), source })?;
        state.prev = sha256_hex(line.as_bytes());
        Ok(())
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hash of the file's last complete line, or the genesis value for an empty file.
fn last_line_hash(file: &mut File) -> std::io::Result<String> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(GENESIS.to_owned());
    }
    // Read a bounded tail; audit lines are small, and a longer line means the file was not ours.
    let tail_len = len.min(1 << 20);
    file.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = Vec::new();
    file.take(tail_len).read_to_end(&mut tail)?;
    let trimmed = tail.strip_suffix(b"\n").unwrap_or(&tail);
    let start = trimmed.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    Ok(sha256_hex(&trimmed[start..]))
}

/// Verifies the whole chain of the log at `path`; returns the number of lines on success, or the
/// first bad line (1-based) and why.
pub fn verify_chain(path: &Path) -> Result<usize, AuditError> {
    let file = File::open(path).map_err(|source| AuditError::Io { path: path.to_path_buf(), source })?;
    let mut prev = GENESIS.to_owned();
    let mut count = 0;
    for (index, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(|source| AuditError::Io { path: path.to_path_buf(), source })?;
        let broken = |reason: String| AuditError::Broken { path: path.to_path_buf(), line: index + 1, reason };
        let value: Value = serde_json::from_slice(&line).map_err(|_| broken("not a JSON object".into()))?;
        let claimed = value.get("prev").and_then(Value::as_str).ok_or_else(|| broken("no `prev` field".into()))?;
        if claimed != prev {
            return Err(broken("`prev` does not match the hash of the previous line".into()));
        }
        prev = sha256_hex(&line);
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(host: &str) -> AuditEvent {
        AuditEvent {
            host: Some(host.into()),
            rule: Some("egress.no-route".into()),
            ..AuditEvent::new("connect", Decision::Deny)
        }
    }

    #[test]
    fn chain_verifies_and_continues_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.append(&event("a.example")).unwrap();
        log.append(&event("b.example")).unwrap();
        drop(log);
        let log = AuditLog::open(&path).unwrap();
        log.append(&event("c.example")).unwrap();
        assert_eq!(verify_chain(&path).unwrap(), 3);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().next().unwrap().contains(GENESIS));
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn modified_deleted_or_inserted_lines_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        for host in ["a.example", "b.example", "c.example", "d.example"] {
            log.append(&event(host)).unwrap();
        }
        let original = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = original.lines().collect();

        let tampered = original.replace("b.example", "x.example");
        std::fs::write(&path, tampered).unwrap();
        let err = verify_chain(&path).unwrap_err();
        assert!(matches!(err, AuditError::Broken { line: 3, .. }), "{err}");

        let deleted = [lines[0], lines[2], lines[3]].join("\n") + "\n";
        std::fs::write(&path, deleted).unwrap();
        assert!(matches!(verify_chain(&path).unwrap_err(), AuditError::Broken { line: 2, .. }));

        let garbage = format!("{}\nnot json\n", lines[0]);
        std::fs::write(&path, garbage).unwrap();
        assert!(matches!(verify_chain(&path).unwrap_err(), AuditError::Broken { line: 2, .. }));
    }
}
