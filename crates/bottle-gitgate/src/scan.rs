//! The push scan: what a range of commits adds — the added lines of every changed text file, every
//! new file name, every commit message and author/committer identity, annotated tag messages — run
//! through the DLP engine, each finding placed at a commit, a file and a line.
//!
//! Two passes keep it fast on long ranges:
//! 1. **Fast path.** `git rev-list` lists the new commits, one `git diff-tree --stdin -r -M -c` stream
//!    lists every path each of them changes (merges as combined diffs: only paths that differ from
//!    every parent), and one `git cat-file --batch` stream delivers each new file version and commit
//!    once. Each version is scanned whole, so a multi-line secret or an assignment split from its
//!    keyword is still seen. Clean versions — nearly all of them — cost one scan and nothing else.
//! 2. **Precise path**, only for versions with findings: each commit that introduced the version is
//!    diffed line by line against every parent's version of the file (found through rename
//!    detection), and a finding counts only if it touches a line that is new against *every* parent.
//!    So a secret already in the upstream's history is not flagged again when a later commit edits
//!    the file, and a merge is blamed only for its own content (an "evil merge"), not for what it
//!    merely brings in from a side already scanned or already upstream.
//!
//! Binary files (a NUL in the first 8000 bytes, git's own test; attributes are ignored because the
//! pusher controls them) and files above the size cap are not scanned and are reported as skipped.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bottle_dlp::{Engine, Finding, Location};

use crate::git::{GitEnv, Procs, RunError, is_oid, is_zero_oid};

/// git's binary test: a NUL byte in the first 8000 bytes.
const BINARY_PROBE: usize = 8000;
/// Markers that, on the line of a finding, ask for an operator's approval instead of a refusal.
pub const ALLOW_MARKERS: &[&[u8]] = &[b"bot-bottle:allow", b"gitleaks:allow"];
/// Longest a line diff of one flagged file may take before it settles for a coarser (still
/// conservative: more lines count as added) answer.
const DIFF_DEADLINE: Duration = Duration::from_secs(2);
/// Gitlink (submodule) mode: the "blob" is a commit id in another repository.
const GITLINK_MODE: &str = "160000";

/// Scans commit ranges for secrets. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Scanner {
    engine: Engine,
    max_file_bytes: u64,
}

/// What to scan: the commits reachable from `tips` but not from `exclude`, in the repository
/// `git_dir`, with `env` (e.g. a receive-pack quarantine's object directories).
#[derive(Debug, Clone, Copy)]
pub struct ScanRequest<'a> {
    /// The repository (a bare mirror in the gate).
    pub git_dir: &'a Path,
    /// The environment for every git process; `GIT_DIR` is set from `git_dir`.
    pub env: &'a GitEnv,
    /// New tips: commit ids, or annotated tags (their messages are scanned and they are peeled).
    pub tips: &'a [String],
    /// What is already known and not scanned.
    pub exclude: Exclude<'a>,
}

/// The commits a scan leaves out.
#[derive(Debug, Clone, Copy)]
pub enum Exclude<'a> {
    /// Everything reachable from any ref of the repository (`--not --all`): what the upstream has.
    AllRefs,
    /// Everything reachable from these commit ids.
    Commits(&'a [String]),
}

/// The result of a scan. Holds no secret: paths shown in it are redacted when they contain one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// New commits scanned.
    pub commits: usize,
    /// Distinct file versions scanned.
    pub files_scanned: usize,
    /// Bytes of file content scanned.
    pub bytes_scanned: u64,
    /// Findings on added content, oldest commit first.
    pub findings: Vec<PushFinding>,
    /// File versions that were not scanned (binary or too large).
    pub skipped: Vec<SkippedFile>,
}

/// One finding, placed. Never the value, never the line's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushFinding {
    /// The rule's label: its id, or `known-secret:NAME`.
    pub rule: String,
    /// The commit (or annotated tag) that adds it (full id).
    pub commit: String,
    /// Where in the commit.
    pub place: Place,
    /// 1-based line (in the file or the message); 0 for a file name.
    pub line: u32,
    /// The line carries an inline allow marker (`bot-bottle:allow` or `gitleaks:allow`).
    pub allow_marker: bool,
}

/// Where a finding is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Place {
    /// Content of a file (path, redacted if it holds a secret itself).
    File(String),
    /// The name of a file the commit adds (redacted).
    FileName(String),
    /// The commit message.
    CommitMessage,
    /// The author or committer name or email.
    CommitIdentity,
    /// An annotated tag's message or tagger.
    TagMessage,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "`{path}`"),
            Self::FileName(path) => write!(f, "file name `{path}`"),
            Self::CommitMessage => f.write_str("commit message"),
            Self::CommitIdentity => f.write_str("commit author/committer"),
            Self::TagMessage => f.write_str("tag message"),
        }
    }
}

/// A file version that was not scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    /// Its path (redacted).
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Why.
    pub reason: SkipReason,
}

/// Why a file was not scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// git would call it binary.
    Binary,
    /// Larger than the scan cap.
    TooLarge,
}

/// A scan that could not complete. A push whose scan fails is refused.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A git process failed.
    #[error(transparent)]
    Git(#[from] RunError),
    /// git's output was not what the scanner expects.
    #[error("unexpected output from `git {what}`")]
    Parse {
        /// The subcommand.
        what: &'static str,
    },
    /// A tip is not a full object id.
    #[error("`{0}` is not an object id")]
    BadTip(String),
}

/// One path a commit changes, from `diff-tree --raw`.
#[derive(Debug, Clone)]
struct Change {
    /// Index into the commit list.
    commit: usize,
    /// The file's version in each parent (`None`: absent there).
    parents: Vec<Option<Arc<str>>>,
    /// The new version.
    blob: Arc<str>,
    /// The new path (raw bytes).
    path: Vec<u8>,
    /// The path is new against every parent (added, copied or renamed to).
    added_path: bool,
    /// The new version is a file of ours (not a submodule's commit).
    content: bool,
}

/// A new commit: id and raw object (headers and message) once read.
#[derive(Debug)]
struct Commit {
    id: Arc<str>,
}

/// File versions with findings, by blob id.
type FlaggedVersions = HashMap<Arc<str>, Flagged>;

/// File versions not scanned: blob id, size, why.
type SkippedVersions = Vec<(Arc<str>, u64, SkipReason)>;

/// A blob version with findings, kept for the precise pass.
#[derive(Debug)]
struct Flagged {
    content: Vec<u8>,
    findings: Vec<Finding>,
}

impl Scanner {
    /// A scanner using `engine`; file versions above `max_file_bytes` are skipped.
    #[must_use]
    pub fn new(engine: Engine, max_file_bytes: u64) -> Self {
        Self { engine, max_file_bytes }
    }

    /// The engine, e.g. to redact other text the same way.
    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Scans the range. Blocking: runs git processes and reads their output on this thread.
    ///
    /// # Errors
    /// A git process fails or prints something unexpected, or a tip is not an object id.
    pub fn scan_range(&self, request: &ScanRequest<'_>) -> Result<ScanReport, ScanError> {
        self.scan_range_with(request, &Procs::default())
    }

    /// [`Scanner::scan_range`] with a process registry a watchdog can cancel.
    pub(crate) fn scan_range_with(&self, request: &ScanRequest<'_>, procs: &Procs) -> Result<ScanReport, ScanError> {
        let env = request.env.clone().with("GIT_DIR", request.git_dir);
        for tip in request.tips {
            if !is_oid(tip) {
                return Err(ScanError::BadTip(tip.clone()));
            }
        }
        if let Exclude::Commits(commits) = request.exclude
            && let Some(bad) = commits.iter().find(|c| !is_oid(c))
        {
            return Err(ScanError::BadTip(bad.clone()));
        }
        let mut report = ScanReport::default();
        let mut run = Run { scanner: self, env: &env, procs, report: &mut report };
        let Tips { commits: commit_tips, loose } = run.peel_tips(request.tips)?;
        let commits = run.new_commits(&commit_tips, request.exclude)?;
        run.report.commits = commits.len();
        let (changes, flagged) =
            if commits.is_empty() { (Vec::new(), HashMap::new()) } else { run.changes_and_objects(&commits)? };
        run.scan_file_names(&commits, &changes);
        if !flagged.is_empty() {
            run.place_findings(&commits, &changes, &flagged)?;
        }
        for (blob, path) in loose {
            run.scan_loose(&blob, &path)?;
        }
        // Oldest commit first, as the pusher wrote them; tag findings last.
        let order: HashMap<&str, usize> = commits.iter().rev().enumerate().map(|(i, c)| (&*c.id, i)).collect();
        report.findings.sort_by_key(|f| order.get(f.commit.as_str()).copied().unwrap_or(usize::MAX));
        Ok(report)
    }

    /// The engine's findings, with overlapping ones reduced to the most confident (a token inside
    /// `KEY = '…'` is one secret, not a token and an assignment).
    fn scan(&self, input: &[u8], location: &Location) -> Vec<Finding> {
        let mut kept: Vec<Finding> = Vec::new();
        for finding in self.engine.scan(input, location) {
            let overlapping =
                kept.iter().position(|k| k.span.start < finding.span.end && finding.span.start < k.span.end);
            match overlapping {
                Some(at) if kept[at].confidence < finding.confidence => kept[at] = finding,
                Some(_) => {}
                None => kept.push(finding),
            }
        }
        kept
    }

    /// The rule labels of what `name` (a ref name, say) contains, overlapping findings counted once.
    #[must_use]
    pub fn findings_in_name(&self, name: &str) -> Vec<String> {
        self.scan(name.as_bytes(), &Location::Other("name".into())).iter().map(Finding::label).collect()
    }

    /// `text` with anything secret-looking replaced by `«REDACTED:rule»` (or wholly replaced when
    /// redaction leaves something behind).
    #[must_use]
    pub fn redact_name(&self, text: &str) -> String {
        self.display_path(text.as_bytes())
    }

    /// A path as shown to people: lossy UTF-8 with any secret in it replaced.
    fn display_path(&self, path: &[u8]) -> String {
        let location = Location::Other("file name".into());
        let redaction = self.engine.redact(path, &location);
        if redaction.residue {
            return "«redacted path»".to_owned();
        }
        String::from_utf8_lossy(&redaction.output).into_owned()
    }
}

/// Tips sorted by what they point at: commits, and blobs reachable only through a tag (with a path
/// to show).
struct Tips {
    commits: Vec<String>,
    loose: Vec<(String, Vec<u8>)>,
}

/// Receives an object's content and findings from [`Run::cat_file_stream`].
type Keep<'a> = &'a mut dyn FnMut(&str, Vec<u8>, Vec<Finding>);

/// One scan's state.
struct Run<'s, 'r> {
    scanner: &'s Scanner,
    env: &'s GitEnv,
    procs: &'s Procs,
    report: &'r mut ScanReport,
}

impl Run<'_, '_> {
    fn git(&self) -> std::process::Command {
        self.env.std_git()
    }

    /// Sorts tips into commits and "loose" trees or blobs (a tag may point at either); scans the
    /// messages of annotated tags on the way.
    fn peel_tips(&mut self, tips: &[String]) -> Result<Tips, ScanError> {
        let mut commits = Vec::new();
        let mut loose = Vec::new();
        let mut pending: Vec<String> = tips.to_vec();
        let mut seen = HashSet::new();
        // Tags of tags are legal; the depth bound only stops a cycle of corrupt objects.
        for _ in 0..8 {
            pending.retain(|id| seen.insert(id.clone()));
            if pending.is_empty() {
                break;
            }
            let objects = self.cat_file_small(&pending)?;
            pending = Vec::new();
            for (id, kind, body) in objects {
                match kind.as_str() {
                    "commit" => commits.push(id),
                    "tag" => {
                        let (target, message_start) = tag_target(&body).ok_or(ScanError::Parse { what: "cat-file" })?;
                        self.scan_text(&body[message_start..], &id, &Place::TagMessage);
                        for line in body[..message_start].split(|&b| b == b'\n') {
                            if let Some(tagger) = line.strip_prefix(b"tagger ") {
                                self.scan_text(ident_of(tagger), &id, &Place::TagMessage);
                            }
                        }
                        pending.push(target);
                    }
                    "tree" => {
                        for (blob, path) in self.ls_tree(&id)? {
                            loose.push((blob, path));
                        }
                    }
                    "blob" => loose.push((id.clone(), format!("(object {})", short(&id)).into_bytes())),
                    _ => return Err(ScanError::Parse { what: "cat-file" }),
                }
            }
        }
        Ok(Tips { commits, loose })
    }

    /// `git rev-list` of the range, newest first.
    fn new_commits(&self, tips: &[String], exclude: Exclude<'_>) -> Result<Vec<Commit>, ScanError> {
        if tips.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = self.git();
        // Newest first: git stores recent versions whole and older ones as deltas against them, so
        // reading file versions in this order keeps its delta cache warm (a third less CPU).
        cmd.args(["rev-list", "--topo-order"]).args(tips).arg("--not");
        match exclude {
            Exclude::AllRefs => {
                cmd.arg("--all");
            }
            Exclude::Commits(commits) => {
                cmd.args(commits);
            }
        }
        let out = self.procs.output(cmd, "rev-list")?;
        let text = std::str::from_utf8(&out).map_err(|_| ScanError::Parse { what: "rev-list" })?;
        text.lines()
            .map(
                |line| {
                    if is_oid(line) {
                        Ok(Commit { id: line.into() })
                    } else {
                        Err(ScanError::Parse { what: "rev-list" })
                    }
                },
            )
            .collect()
    }

    /// The fast path, pipelined: `diff-tree` lists what each commit changes while `cat-file`
    /// already streams the commits and each new file version (first sighting, in commit order, which
    /// keeps git's delta chains warm) to this thread for scanning. Returns the changes and the
    /// versions with findings.
    fn changes_and_objects(&mut self, commits: &[Commit]) -> Result<(Vec<Change>, FlaggedVersions), ScanError> {
        let mut cat = self.git();
        cat.args(["cat-file", "--batch", "--buffer"]);
        let mut cat = self.procs.spawn(cat, "cat-file", true)?;
        let mut diff = self.git();
        diff.args(["diff-tree", "--stdin", "-r", "-M", "-c", "--raw", "-z", "--no-abbrev", "--root"]);
        let mut diff = self.procs.spawn(diff, "diff-tree", true)?;
        let ids: Vec<String> = commits.iter().map(|c| c.id.to_string()).collect();
        let diff_feeder = feed_lines(diff.stdin.take(), ids.clone());
        let cat_stdin = cat.stdin.take();
        let diff_stdout = &mut diff.stdout;
        let index: HashMap<&str, usize> = commits.iter().enumerate().map(|(i, c)| (&*c.id, i)).collect();
        let result = std::thread::scope(|scope| {
            let parser =
                scope.spawn(move || -> Result<Vec<Change>, ScanError> {
                    let io = |source| ScanError::Git(RunError::Io { what: "cat-file".into(), source });
                    let mut to_cat = cat_stdin.map(|stdin| std::io::BufWriter::with_capacity(1 << 16, stdin));
                    let mut send = |id: &str| -> Result<(), ScanError> {
                        if let Some(out) = to_cat.as_mut() {
                            out.write_all(id.as_bytes()).and_then(|()| out.write_all(b"\n")).map_err(io)?;
                        }
                        Ok(())
                    };
                    for id in &ids {
                        send(id)?;
                    }
                    let reader = BufReader::with_capacity(1 << 16, diff_stdout);
                    let mut sent: HashSet<Arc<str>> = HashSet::new();
                    let changes = parse_diff_tree(reader, &index, |blob| {
                        if sent.insert(Arc::clone(blob)) { send(blob) } else { Ok(()) }
                    })?;
                    if let Some(mut out) = to_cat {
                        out.flush().map_err(io)?;
                    }
                    Ok(changes)
                });
            let scanned = self.scan_stream(commits, &mut cat.stdout);
            if scanned.is_err() {
                // Unblock the parser (it may be writing to a cat-file nobody reads any more).
                self.procs.cancel();
            }
            let changes = parser.join().unwrap_or(Err(ScanError::Parse { what: "diff-tree" }));
            Ok::<_, ScanError>((changes?, scanned?))
        });
        let _ = diff_feeder.join();
        let (changes, (flagged, skipped)) = result?;
        self.procs.finish(diff)?;
        self.procs.finish(cat)?;
        let mut first_path: HashMap<&str, &[u8]> = HashMap::new();
        for change in &changes {
            first_path.entry(&change.blob).or_insert(&change.path);
        }
        for (blob, size, reason) in skipped {
            let path = first_path.get(&*blob).copied().unwrap_or_default();
            self.skip(path, size, reason);
        }
        Ok((changes, flagged))
    }

    /// Reads `cat-file --batch` output to its end: scans commit messages and file versions.
    fn scan_stream(
        &mut self,
        commits: &[Commit],
        stdout: &mut std::process::ChildStdout,
    ) -> Result<(FlaggedVersions, SkippedVersions), ScanError> {
        let location = Location::Other("file".into());
        let commit_index: HashMap<&str, usize> = commits.iter().enumerate().map(|(i, c)| (&*c.id, i)).collect();
        let max = self.scanner.max_file_bytes;
        let io = |source| RunError::Io { what: "cat-file".into(), source };
        let mut reader = BufReader::with_capacity(1 << 20, stdout);
        let mut buffer: Vec<u8> = Vec::new();
        let mut flagged = HashMap::new();
        let mut skipped = Vec::new();
        while !reader.fill_buf().map_err(io)?.is_empty() {
            let (id, kind, size) = read_header(&mut reader)?;
            if size > max {
                std::io::copy(&mut (&mut reader).take(size), &mut std::io::sink()).map_err(io)?;
                read_newline(&mut reader)?;
                skipped.push((Arc::from(id.as_str()), size, SkipReason::TooLarge));
                continue;
            }
            let len = usize::try_from(size).map_err(|_| ScanError::Parse { what: "cat-file" })?;
            buffer.clear();
            buffer.resize(len, 0);
            reader.read_exact(&mut buffer).map_err(io)?;
            read_newline(&mut reader)?;
            match kind.as_str() {
                "commit" => {
                    if let Some(&index) = commit_index.get(id.as_str()) {
                        self.scan_commit(&commits[index].id, &buffer);
                    }
                }
                "blob" if is_binary(&buffer) => skipped.push((Arc::from(id.as_str()), size, SkipReason::Binary)),
                "blob" => {
                    self.report.files_scanned += 1;
                    self.report.bytes_scanned += size;
                    let findings = self.scanner.scan(&buffer, &location);
                    if !findings.is_empty() {
                        flagged
                            .insert(Arc::from(id.as_str()), Flagged { content: std::mem::take(&mut buffer), findings });
                    }
                }
                _ => {}
            }
        }
        Ok((flagged, skipped))
    }

    /// New file names, scanned as text of their own.
    fn scan_file_names(&mut self, commits: &[Commit], changes: &[Change]) {
        let location = Location::Other("file name".into());
        let mut seen: HashSet<(&[u8], usize)> = HashSet::new();
        for change in changes.iter().filter(|c| c.added_path) {
            if !seen.insert((&change.path, change.commit)) {
                continue;
            }
            for finding in self.scanner.scan(&change.path, &location) {
                self.report.findings.push(PushFinding {
                    rule: finding.label(),
                    commit: commits[change.commit].id.to_string(),
                    place: Place::FileName(self.scanner.display_path(&change.path)),
                    line: 0,
                    allow_marker: false,
                });
            }
        }
    }

    fn skip(&mut self, path: &[u8], size: u64, reason: SkipReason) {
        let path = self.scanner.display_path(path);
        self.report.skipped.push(SkippedFile { path, size, reason });
    }

    /// Commit message and identities of one raw commit object.
    fn scan_commit(&mut self, id: &str, raw: &[u8]) {
        let (headers, message) = split_object(raw);
        for line in headers.split(|&b| b == b'\n') {
            let ident = line.strip_prefix(b"author ").or_else(|| line.strip_prefix(b"committer "));
            if let Some(ident) = ident {
                self.scan_text(ident_of(ident), id, &Place::CommitIdentity);
            }
        }
        self.scan_text(message, id, &Place::CommitMessage);
    }

    /// Scans a whole text (a message) whose every line is new.
    fn scan_text(&mut self, text: &[u8], commit: &str, place: &Place) {
        let location = Location::Other("message".into());
        let findings = self.scanner.scan(text, &location);
        if findings.is_empty() {
            return;
        }
        let lines = LineIndex::new(text);
        for finding in findings {
            let (first, last) = lines.lines_of(&finding);
            let line = if matches!(place, Place::CommitIdentity) { 0 } else { first };
            self.report.findings.push(PushFinding {
                rule: finding.label(),
                commit: commit.to_owned(),
                place: place.clone(),
                line,
                allow_marker: lines.has_marker(text, first, last),
            });
        }
    }

    /// The precise path: for each flagged version, the commits that introduced it and the lines
    /// they added.
    fn place_findings(
        &mut self,
        commits: &[Commit],
        changes: &[Change],
        flagged: &HashMap<Arc<str>, Flagged>,
    ) -> Result<(), ScanError> {
        let relevant: Vec<&Change> = changes.iter().filter(|c| c.content && flagged.contains_key(&c.blob)).collect();
        let parent_blobs: Vec<String> = {
            let mut set: Vec<String> =
                relevant.iter().flat_map(|c| c.parents.iter().flatten().map(ToString::to_string)).collect();
            set.sort_unstable();
            set.dedup();
            set
        };
        let mut parents: HashMap<String, Vec<u8>> = HashMap::new();
        if !parent_blobs.is_empty() {
            self.cat_file_stream(parent_blobs, |_, _, _, _, _| Some(Vec::new()), u64::MAX, &mut |id, content, _| {
                parents.insert(id.to_owned(), content);
            })?;
        }
        let mut placed: HashSet<(String, usize, u32, Place)> = HashSet::new();
        for change in relevant {
            let Some(version) = flagged.get(&change.blob) else { continue };
            let lines = LineIndex::new(&version.content);
            let added = added_lines(&version.content, &lines, &change.parents, &parents);
            let path = self.scanner.display_path(&change.path);
            for finding in &version.findings {
                let (first, last) = lines.lines_of(finding);
                let Some(line) = (first..=last).find(|l| added.contains(*l)) else { continue };
                let key = (finding.label(), change.commit, line, Place::File(path.clone()));
                if !placed.insert(key) {
                    continue;
                }
                self.report.findings.push(PushFinding {
                    rule: finding.label(),
                    commit: commits[change.commit].id.to_string(),
                    place: Place::File(path.clone()),
                    line,
                    allow_marker: lines.has_marker(&version.content, first, last),
                });
            }
        }
        Ok(())
    }

    /// A blob reachable only through a tag (or a tagged tree): every line is new.
    fn scan_loose(&mut self, blob: &str, path: &[u8]) -> Result<(), ScanError> {
        let max = self.scanner.max_file_bytes;
        let mut hits: Vec<(Vec<u8>, Vec<Finding>)> = Vec::new();
        let location = Location::Other("file".into());
        self.cat_file_stream(
            vec![blob.to_owned()],
            |run, _, _, size, content| {
                let Some(content) = content else {
                    run.skip(path, size, SkipReason::TooLarge);
                    return None;
                };
                if is_binary(content) {
                    run.skip(path, size, SkipReason::Binary);
                    return None;
                }
                run.report.files_scanned += 1;
                run.report.bytes_scanned += size;
                let findings = run.scanner.scan(content, &location);
                (!findings.is_empty()).then_some(findings)
            },
            max,
            &mut |_, content, findings| hits.push((content, findings)),
        )?;
        let shown = self.scanner.display_path(path);
        for (content, findings) in hits {
            let lines = LineIndex::new(&content);
            for finding in findings {
                let (first, last) = lines.lines_of(&finding);
                self.report.findings.push(PushFinding {
                    rule: finding.label(),
                    commit: blob.to_owned(),
                    place: Place::File(shown.clone()),
                    line: first,
                    allow_marker: lines.has_marker(&content, first, last),
                });
            }
        }
        Ok(())
    }

    /// `git ls-tree -r -z` of a tagged tree: (blob, path).
    fn ls_tree(&self, tree: &str) -> Result<Vec<(String, Vec<u8>)>, ScanError> {
        let mut cmd = self.git();
        cmd.args(["ls-tree", "-r", "-z", "--full-tree", tree]);
        let out = self.procs.output(cmd, "ls-tree")?;
        let mut blobs = Vec::new();
        for entry in out.split(|&b| b == 0).filter(|e| !e.is_empty()) {
            let tab = entry.iter().position(|&b| b == b'\t').ok_or(ScanError::Parse { what: "ls-tree" })?;
            let meta = std::str::from_utf8(&entry[..tab]).map_err(|_| ScanError::Parse { what: "ls-tree" })?;
            let fields: Vec<&str> = meta.split(' ').collect();
            if fields.len() == 3 && fields[1] == "blob" {
                blobs.push((fields[2].to_owned(), entry[tab + 1..].to_vec()));
            }
        }
        Ok(blobs)
    }

    /// Reads small objects whole: (id, type, content).
    fn cat_file_small(&self, ids: &[String]) -> Result<Vec<(String, String, Vec<u8>)>, ScanError> {
        let mut out = Vec::new();
        let mut cmd = self.git();
        cmd.args(["cat-file", "--batch"]);
        let mut started = self.procs.spawn(cmd, "cat-file", true)?;
        let writer = feed_lines(started.stdin.take(), ids.to_vec());
        let mut reader = BufReader::new(&mut started.stdout);
        for _ in ids {
            let (id, kind, size) = read_header(&mut reader)?;
            let mut content = vec![0; usize::try_from(size).map_err(|_| ScanError::Parse { what: "cat-file" })?];
            reader.read_exact(&mut content).map_err(|source| RunError::Io { what: "cat-file".into(), source })?;
            read_newline(&mut reader)?;
            out.push((id, kind, content));
        }
        drop(reader);
        let _ = writer.join();
        self.procs.finish(started)?;
        Ok(out)
    }

    /// Streams objects through `cat-file --batch`. `visit(run, id, type, size, content)` sees each
    /// object's content (`None` when larger than `max`) and returns findings to keep it; `keep`
    /// then receives the content and the findings.
    fn cat_file_stream(
        &mut self,
        ids: Vec<String>,
        mut visit: impl FnMut(&mut Self, &str, &str, u64, Option<&[u8]>) -> Option<Vec<Finding>>,
        max: u64,
        keep: Keep<'_>,
    ) -> Result<(), ScanError> {
        let count = ids.len();
        let mut cmd = self.git();
        cmd.args(["cat-file", "--batch", "--buffer"]);
        let mut started = self.procs.spawn(cmd, "cat-file", true)?;
        let writer = feed_lines(started.stdin.take(), ids);
        let io = |source| RunError::Io { what: "cat-file".into(), source };
        let mut reader = BufReader::with_capacity(1 << 20, &mut started.stdout);
        let mut buffer: Vec<u8> = Vec::new();
        for _ in 0..count {
            let (id, kind, size) = read_header(&mut reader)?;
            if size > max {
                std::io::copy(&mut (&mut reader).take(size), &mut std::io::sink()).map_err(io)?;
                read_newline(&mut reader)?;
                visit(self, &id, &kind, size, None);
                continue;
            }
            let len = usize::try_from(size).map_err(|_| ScanError::Parse { what: "cat-file" })?;
            buffer.clear();
            buffer.resize(len, 0);
            reader.read_exact(&mut buffer).map_err(io)?;
            read_newline(&mut reader)?;
            if let Some(findings) = visit(self, &id, &kind, size, Some(&buffer)) {
                keep(&id, std::mem::take(&mut buffer), findings);
            }
        }
        drop(reader);
        let _ = writer.join();
        self.procs.finish(started)?;
        Ok(())
    }
}

/// Parses `diff-tree --stdin -r -c --raw -z` output into changes; `on_blob` sees each new file
/// version as soon as it is parsed.
fn parse_diff_tree(
    mut reader: impl std::io::BufRead,
    index: &HashMap<&str, usize>,
    mut on_blob: impl FnMut(&Arc<str>) -> Result<(), ScanError>,
) -> Result<Vec<Change>, ScanError> {
    let mut changes = Vec::new();
    let mut current: Option<usize> = None;
    let mut token = Vec::new();
    let mut interned: HashMap<Vec<u8>, Arc<str>> = HashMap::new();
    let parse = || ScanError::Parse { what: "diff-tree" };
    loop {
        token.clear();
        let n = reader.read_until(0, &mut token).map_err(|source| RunError::Io { what: "diff-tree".into(), source })?;
        if n == 0 {
            break;
        }
        if token.last() == Some(&0) {
            token.pop();
        }
        let text = token.trim_ascii();
        if text.is_empty() {
            continue;
        }
        if text[0] != b':' {
            let id = std::str::from_utf8(text).map_err(|_| parse())?;
            current = Some(*index.get(id).ok_or_else(parse)?);
            continue;
        }
        let commit = current.ok_or_else(parse)?;
        let meta = std::str::from_utf8(text).map_err(|_| parse())?;
        let colons = meta.bytes().take_while(|&b| b == b':').count();
        let fields: Vec<&str> = meta[colons..].split(' ').collect();
        // `colons` parents: that many modes and ids, plus the result's, plus the status.
        if fields.len() != 2 * (colons + 1) + 1 {
            return Err(parse());
        }
        let status = fields[2 * (colons + 1)];
        let new_mode = fields[colons];
        let mut intern = |oid: &str| -> Arc<str> {
            interned.entry(oid.as_bytes().to_vec()).or_insert_with(|| Arc::from(oid)).clone()
        };
        let parents: Vec<Option<Arc<str>>> = (0..colons)
            .map(|i| {
                let oid = fields[colons + 1 + i];
                (!is_zero_oid(oid) && fields[i] != GITLINK_MODE).then(|| intern(oid))
            })
            .collect();
        let blob = fields[2 * colons + 1];
        let two_paths = colons == 1 && (status.starts_with('R') || status.starts_with('C'));
        let mut path = read_z(&mut reader)?;
        if two_paths {
            path = read_z(&mut reader)?;
        }
        let added_path = if colons == 1 { two_paths || status == "A" } else { status.bytes().all(|b| b == b'A') };
        if is_zero_oid(blob) {
            continue;
        }
        let blob = intern(blob);
        if new_mode == GITLINK_MODE {
            // A submodule: no content of ours to scan, but a new name is still scanned.
            if added_path {
                changes.push(Change { commit, parents: Vec::new(), blob, path, added_path, content: false });
            }
            continue;
        }
        on_blob(&blob)?;
        changes.push(Change { commit, parents, blob, path, added_path, content: true });
    }
    Ok(changes)
}

/// Writes `lines` to a child's stdin on a thread (the child's output is read meanwhile).
fn feed_lines(stdin: Option<std::process::ChildStdin>, lines: Vec<String>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Some(stdin) = stdin else { return };
        let mut out = std::io::BufWriter::with_capacity(1 << 16, stdin);
        for line in lines {
            if out.write_all(line.as_bytes()).and_then(|()| out.write_all(b"\n")).is_err() {
                return;
            }
        }
        let _ = out.flush();
    })
}

/// One NUL-terminated token of `diff-tree -z` output.
fn read_z(reader: &mut impl std::io::BufRead) -> Result<Vec<u8>, ScanError> {
    let mut token = Vec::new();
    reader.read_until(0, &mut token).map_err(|source| RunError::Io { what: "diff-tree".into(), source })?;
    if token.pop() != Some(0) {
        return Err(ScanError::Parse { what: "diff-tree" });
    }
    Ok(token)
}

/// `<id> <type> <size>\n` of `cat-file --batch`.
fn read_header(reader: &mut impl std::io::BufRead) -> Result<(String, String, u64), ScanError> {
    let parse = || ScanError::Parse { what: "cat-file" };
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|source| RunError::Io { what: "cat-file".into(), source })?;
    let mut fields = line.trim_end().split(' ');
    let (Some(id), Some(kind), Some(size), None) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
        return Err(parse());
    };
    let size = size.parse().map_err(|_| parse())?;
    Ok((id.to_owned(), kind.to_owned(), size))
}

fn read_newline(reader: &mut impl std::io::Read) -> Result<(), ScanError> {
    let mut nl = [0u8; 1];
    reader.read_exact(&mut nl).map_err(|source| RunError::Io { what: "cat-file".into(), source })?;
    if nl[0] == b'\n' { Ok(()) } else { Err(ScanError::Parse { what: "cat-file" }) }
}

/// git's test for binary content.
fn is_binary(content: &[u8]) -> bool {
    memchr_zero(&content[..content.len().min(BINARY_PROBE)])
}

fn memchr_zero(bytes: &[u8]) -> bool {
    bytes.contains(&0)
}

/// Headers and message of a raw commit or tag object.
fn split_object(raw: &[u8]) -> (&[u8], &[u8]) {
    match raw.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&raw[..at], &raw[at + 2..]),
        None => (raw, &[]),
    }
}

/// The `name <email>` part of an `author`/`committer`/`tagger` header value (without the date).
fn ident_of(value: &[u8]) -> &[u8] {
    match value.iter().rposition(|&b| b == b'>') {
        Some(end) => &value[..=end],
        None => value,
    }
}

/// Target id and message offset of a raw tag object.
fn tag_target(raw: &[u8]) -> Option<(String, usize)> {
    let (headers, message) = split_object(raw);
    let target = headers.split(|&b| b == b'\n').find_map(|line| line.strip_prefix(b"object "))?;
    let target = std::str::from_utf8(target).ok()?;
    if !is_oid(target) {
        return None;
    }
    Some((target.to_owned(), raw.len() - message.len()))
}

/// An abbreviated id for messages.
pub(crate) fn short(id: &str) -> &str {
    &id[..id.len().min(10)]
}

/// Line starts of a text, for turning byte spans into 1-based line numbers.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &[u8]) -> Self {
        let mut starts = vec![0];
        starts.extend(text.iter().enumerate().filter(|&(_, &b)| b == b'\n').map(|(i, _)| i + 1));
        if starts.len() > 1 && starts.last() == Some(&text.len()) {
            starts.pop();
        }
        Self { starts }
    }

    /// 1-based line containing byte `offset`.
    fn line_of(&self, offset: usize) -> u32 {
        let index = self.starts.partition_point(|&s| s <= offset).max(1);
        u32::try_from(index).unwrap_or(u32::MAX)
    }

    /// First and last line a finding touches.
    fn lines_of(&self, finding: &Finding) -> (u32, u32) {
        let first = self.line_of(finding.span.start);
        let last = self.line_of(finding.span.end.saturating_sub(1).max(finding.span.start));
        (first, last)
    }

    /// Bytes of 1-based line `line` (without its newline).
    fn line<'t>(&self, text: &'t [u8], line: u32) -> &'t [u8] {
        let index = usize::try_from(line).unwrap_or(usize::MAX).saturating_sub(1);
        let Some(&start) = self.starts.get(index) else { return &[] };
        let end = self.starts.get(index + 1).map_or(text.len(), |&next| next.saturating_sub(1));
        let line = &text[start..end.max(start)];
        line.strip_suffix(b"\n").unwrap_or(line)
    }

    /// Whether any of lines `first..=last` carries an allow marker.
    fn has_marker(&self, text: &[u8], first: u32, last: u32) -> bool {
        (first..=last).any(|l| {
            let line = self.line(text, l);
            ALLOW_MARKERS.iter().any(|m| line.windows(m.len()).any(|w| w == *m))
        })
    }
}

/// Lines of `new` (1-based) that are added against every parent version: a parent without the file
/// makes every line added against it.
fn added_lines(
    new: &[u8],
    index: &LineIndex,
    parents: &[Option<Arc<str>>],
    contents: &HashMap<String, Vec<u8>>,
) -> LineSet {
    let new_lines: Vec<&[u8]> =
        (1..=index.starts.len()).map(|l| index.line(new, u32::try_from(l).unwrap_or(u32::MAX))).collect();
    let mut result: Option<LineSet> = None;
    let sides: Vec<Option<&Vec<u8>>> = if parents.is_empty() {
        vec![None]
    } else {
        parents.iter().map(|p| p.as_ref().and_then(|id| contents.get(&**id))).collect()
    };
    for side in sides {
        let set = match side {
            None => LineSet::All,
            Some(old) => {
                let old_index = LineIndex::new(old);
                let old_lines: Vec<&[u8]> = (1..=old_index.starts.len())
                    .map(|l| old_index.line(old, u32::try_from(l).unwrap_or(u32::MAX)))
                    .collect();
                let ops = similar::capture_diff_slices_deadline(
                    similar::Algorithm::Myers,
                    &old_lines,
                    &new_lines,
                    Some(Instant::now() + DIFF_DEADLINE),
                );
                let mut lines = HashSet::new();
                for op in ops {
                    for (tag, range) in op.iter_changes_new_ranges() {
                        if tag {
                            lines.extend(range.map(|i| u32::try_from(i + 1).unwrap_or(u32::MAX)));
                        }
                    }
                }
                LineSet::Some(lines)
            }
        };
        result = Some(match result {
            None => set,
            Some(prev) => prev.intersect(set),
        });
    }
    result.unwrap_or(LineSet::All)
}

/// A set of 1-based line numbers, or all of them.
#[derive(Debug)]
enum LineSet {
    All,
    Some(HashSet<u32>),
}

impl LineSet {
    fn contains(&self, line: u32) -> bool {
        match self {
            Self::All => true,
            Self::Some(set) => set.contains(&line),
        }
    }

    fn intersect(self, other: Self) -> Self {
        match (self, other) {
            (Self::All, x) | (x, Self::All) => x,
            (Self::Some(a), Self::Some(b)) => Self::Some(a.intersection(&b).copied().collect()),
        }
    }
}

/// New-side ranges of a diff op, tagged `true` when inserted.
trait NewRanges {
    fn iter_changes_new_ranges(&self) -> Vec<(bool, std::ops::Range<usize>)>;
}

impl NewRanges for similar::DiffOp {
    fn iter_changes_new_ranges(&self) -> Vec<(bool, std::ops::Range<usize>)> {
        match *self {
            Self::Insert { new_index, new_len, .. } | Self::Replace { new_index, new_len, .. } => {
                vec![(true, new_index..new_index + new_len)]
            }
            Self::Equal { new_index, len, .. } => vec![(false, new_index..new_index + len)],
            Self::Delete { .. } => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index() {
        let text = b"one\ntwo\nthree\n";
        let idx = LineIndex::new(text);
        assert_eq!(idx.starts, vec![0, 4, 8]);
        assert_eq!(idx.line_of(0), 1);
        assert_eq!(idx.line_of(5), 2);
        assert_eq!(idx.line_of(8), 3);
        assert_eq!(idx.line(text, 2), b"two");
        assert_eq!(idx.line(text, 3), b"three");
        let no_trailing = b"a\nb";
        let idx = LineIndex::new(no_trailing);
        assert_eq!(idx.line(no_trailing, 2), b"b");
        assert_eq!(LineIndex::new(b"").starts, vec![0]);
    }

    #[test]
    fn added_lines_against_one_and_two_parents() {
        let old = b"a\nb\nc\n".to_vec();
        let new = b"a\nX\nb\nc\nY\n";
        let idx = LineIndex::new(new);
        let mut contents = HashMap::new();
        contents.insert("p1".to_owned(), old);
        let set = added_lines(new, &idx, &[Some("p1".into())], &contents);
        let lines: Vec<u32> = (1..=5).filter(|&l| set.contains(l)).collect();
        assert_eq!(lines, vec![2, 5]);
        // Second parent already has Y: only X is new against both.
        contents.insert("p2".to_owned(), b"a\nb\nc\nY\n".to_vec());
        let set = added_lines(new, &idx, &[Some("p1".into()), Some("p2".into())], &contents);
        let lines: Vec<u32> = (1..=5).filter(|&l| set.contains(l)).collect();
        assert_eq!(lines, vec![2]);
        // A parent without the file: everything is added against it.
        let set = added_lines(new, &idx, &[None], &contents);
        assert!(set.contains(1) && set.contains(5));
    }

    #[test]
    fn markers_and_binary() {
        let text = b"x = 1\nkey = 'v' # gitleaks:allow\n";
        let idx = LineIndex::new(text);
        assert!(idx.has_marker(text, 2, 2));
        assert!(!idx.has_marker(text, 1, 1));
        assert!(is_binary(b"ab\0cd"));
        assert!(!is_binary(b"plain text"));
        let mut late = vec![b'a'; BINARY_PROBE];
        late.push(0);
        assert!(!is_binary(&late));
    }

    #[test]
    fn objects() {
        let raw = b"tree t\nauthor A U <a@x> 1 +0000\ncommitter C <c@x> 2 +0000\n\nsubject\n\nbody\n";
        let (headers, message) = split_object(raw);
        assert!(headers.ends_with(b"+0000"));
        assert_eq!(message, b"subject\n\nbody\n");
        assert_eq!(ident_of(b"A U <a@x> 1 +0000"), b"A U <a@x>");
        let tag = b"object 0123456789abcdef0123456789abcdef01234567\ntype commit\ntag v1\n\nmsg\n";
        let (target, at) = tag_target(tag).unwrap();
        assert_eq!(target, "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(&tag[at..], b"msg\n");
    }
}
