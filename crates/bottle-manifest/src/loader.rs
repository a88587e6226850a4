//! Finding manifests on disk and resolving an agent's bottle chain.
//!
//! Scanning reads directory entries only; a file is parsed when it is used, so one broken file never
//! hides the others (it surfaces when that agent or bottle is chosen). Bottles are read from
//! `$BOT_BOTTLE_HOME/bottles/` and nowhere else: a cloned repository must not be able to point
//! credentials at a host of its choosing.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use bottle_core::ManifestName;
use bottle_core::diag::{Diagnostic, SourceLocation, did_you_mean};
use bottle_core::spec::{AgentSource, AgentSpec, BottleSpec, ManifestKind};

use crate::doc::Doc;
use crate::schema::{BottleFile, Reader};
use crate::yaml;

type Result<T> = std::result::Result<T, Diagnostic>;

/// Where manifests live for one invocation.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `$BOT_BOTTLE_HOME`.
    pub home: PathBuf,
    /// The directory the command runs in (for `./.bot-bottle/agents/`).
    pub cwd: PathBuf,
    /// Where skills live on the host (`~/.claude/skills`).
    pub skills_dir: PathBuf,
}

impl Layout {
    pub fn bottles_dir(&self) -> PathBuf {
        self.home.join("bottles")
    }

    pub fn home_agents_dir(&self) -> PathBuf {
        self.home.join("agents")
    }

    pub fn repo_dir(&self) -> PathBuf {
        self.cwd.join(".bot-bottle")
    }
}

/// An agent file found by a scan.
#[derive(Debug, Clone)]
pub struct AgentEntry {
    pub path: PathBuf,
    pub source: AgentSource,
    /// A repository agent of the same name that the home one hides.
    pub shadows: Option<PathBuf>,
}

/// A file whose name is not a valid manifest name; listed, never loaded.
#[derive(Debug, Clone)]
pub struct Misnamed {
    pub path: PathBuf,
    pub problem: Diagnostic,
}

/// The manifests that exist, by name, without having parsed any.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub layout: Layout,
    pub bottles: BTreeMap<String, PathBuf>,
    pub agents: BTreeMap<String, AgentEntry>,
    pub misnamed: Vec<Misnamed>,
}

/// A resolved bottle chain.
#[derive(Debug, Clone)]
pub struct ResolvedBottles {
    /// Bottle names in fold order: parents before children, each once.
    pub chain: Vec<String>,
    pub spec: BottleSpec,
}

/// Old single-file configurations of the original tool.
const OLD_FORMAT_FILES: [&str; 2] = ["bot-bottle.json", "claude-bottle.json"];

impl Catalog {
    /// Lists agents and bottles. Fails only on problems that make every launch unsafe or ambiguous:
    /// a bottle inside the repository, or an old-format configuration file.
    pub fn scan(layout: Layout) -> Result<Self> {
        for dir in [&layout.cwd, &layout.home] {
            for old in OLD_FORMAT_FILES {
                let p = dir.join(old);
                if p.is_file() {
                    return Err(Diagnostic::new(format!("found an old-format configuration file `{}`", p.display()))
                        .at(SourceLocation { path: p, line: 1, col: 1 })
                        .key(old)
                        .note("single-file JSON configuration was replaced by one Markdown file per agent and per bottle")
                        .hint(format!(
                            "move each bottle to `{}/<name>.md` and each agent to `{}/<name>.md` (YAML frontmatter + Markdown body), then delete the JSON file",
                            layout.bottles_dir().display(),
                            layout.home_agents_dir().display()
                        )));
                }
            }
        }
        let repo_bottles = layout.repo_dir().join("bottles");
        if let Some(first) = md_files(&repo_bottles).into_iter().next() {
            return Err(Diagnostic::new("found a bottle inside the repository's `.bot-bottle/`")
                .at(SourceLocation {
                    path: first.1,
                    line: 1,
                    col: 1,
                })
                .key(".bot-bottle/bottles")
                .note("bottles hold credentials, egress routes and git remotes, so they are read only from `$BOT_BOTTLE_HOME/bottles/`; a cloned repository could otherwise point your tokens at its own hosts")
                .hint(format!(
                    "if you trust this bottle, move it to `{}/`; otherwise delete `{}`",
                    layout.bottles_dir().display(),
                    repo_bottles.display()
                )));
        }
        let mut misnamed = Vec::new();
        let mut bottles = BTreeMap::new();
        for (stem, path) in md_files(&layout.bottles_dir()) {
            match ManifestName::parse(&stem) {
                Ok(_) => {
                    bottles.insert(stem, path);
                }
                Err(e) => misnamed.push(misnamed_entry(path, &e)),
            }
        }
        let mut agents: BTreeMap<String, AgentEntry> = BTreeMap::new();
        for (source, dir) in
            [(AgentSource::Home, layout.home_agents_dir()), (AgentSource::Repo, layout.repo_dir().join("agents"))]
        {
            for (stem, path) in md_files(&dir) {
                if let Err(e) = ManifestName::parse(&stem) {
                    misnamed.push(misnamed_entry(path, &e));
                    continue;
                }
                match agents.get_mut(&stem) {
                    // The home agent wins: a repository cannot replace an agent the user set up.
                    Some(existing) => existing.shadows = Some(path),
                    None => {
                        agents.insert(stem, AgentEntry { path, source, shadows: None });
                    }
                }
            }
        }
        Ok(Self { layout, bottles, agents, misnamed })
    }

    /// Loads and validates one agent.
    pub fn agent(&self, name: &str) -> Result<AgentSpec> {
        let Some(entry) = self.agents.get(name) else {
            let mut d = Diagnostic::new(format!("no agent named `{name}`"));
            if let Some(s) = did_you_mean(name, self.agents.keys().map(String::as_str)) {
                d = d.hint(format!("did you mean `{s}`?"));
            } else {
                d = d.hint(format!(
                    "agents are `<name>.md` files in `{}` or `./.bot-bottle/agents/`; `bot-bottle info` lists them",
                    self.layout.home_agents_dir().display()
                ));
            }
            return Err(d);
        };
        let doc = read_doc(ManifestKind::Agent, name, &entry.path)?;
        let root = yaml::parse(doc.frontmatter()).map_err(|e| doc.yaml_error(e))?;
        let file = Reader::new(&doc).agent(&root, entry.source == AgentSource::Repo)?;
        for (skill, pos) in &file.skills {
            let dir = self.layout.skills_dir.join(&skill.value);
            if !dir.is_dir() {
                return Err(doc
                    .error(*pos, skill.value.chars().count(), format!("skill `{}` not found", skill.value))
                    .key("skills")
                    .note(format!("looked for the directory `{}`", dir.display()))
                    .hint(format!(
                        "create it (with a `SKILL.md`) under `{}`, or remove the entry",
                        self.layout.skills_dir.display()
                    )));
            }
        }
        for bottle in &file.bottles {
            if !self.bottles.contains_key(&bottle.value) {
                let base = doc
                    .error(
                        pos_of(&bottle.origin.location),
                        bottle.value.chars().count(),
                        format!("agent `{name}` uses bottle `{}`, which does not exist", bottle.value),
                    )
                    .key("bottle");
                return Err(self.missing_bottle(&bottle.value, base));
            }
        }
        Ok(AgentSpec {
            name: name.to_owned(),
            source: entry.source,
            path: entry.path.clone(),
            bottles: file.bottles,
            skills: file.skills.into_iter().map(|(s, _)| s).collect(),
            git_user: file.git_user,
            prompt: doc.body.trim_start_matches(['\n', '\r']).to_owned(),
        })
    }

    /// Loads one bottle file (not its parents).
    pub fn bottle_file(&self, name: &str) -> Result<BottleFile> {
        let Some(path) = self.bottles.get(name) else {
            return Err(self.missing_bottle(name, Diagnostic::new(format!("no bottle named `{name}`"))));
        };
        let doc = read_doc(ManifestKind::Bottle, name, path)?;
        let root = yaml::parse(doc.frontmatter()).map_err(|e| doc.yaml_error(e))?;
        Reader::new(&doc).bottle(&root)
    }

    /// Resolves an ordered list of bottles, each with its `extends` ancestry, into one spec: parents
    /// folded left to right, the child last; a bottle reached twice (a diamond) is folded once.
    pub fn resolve_bottles(&self, names: &[String]) -> Result<ResolvedBottles> {
        let mut cache: HashMap<String, BottleFile> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        for name in names {
            if !self.bottles.contains_key(name) {
                return Err(self.missing_bottle(name, Diagnostic::new(format!("no bottle named `{name}`"))));
            }
            let mut stack = Vec::new();
            self.visit(name, &mut stack, &mut cache, &mut order)?;
        }
        let mut spec = BottleSpec::default();
        for name in &order {
            if let Some(file) = cache.get(name) {
                spec.merge(&file.spec);
            }
        }
        Ok(ResolvedBottles { chain: order, spec })
    }

    fn visit(
        &self,
        name: &str,
        stack: &mut Vec<String>,
        cache: &mut HashMap<String, BottleFile>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if order.iter().any(|n| n == name) {
            return Ok(());
        }
        if !cache.contains_key(name) {
            let file = self.bottle_file(name)?;
            cache.insert(name.to_owned(), file);
        }
        let parents = cache.get(name).map(|f| f.extends.clone()).unwrap_or_default();
        stack.push(name.to_owned());
        for parent in &parents {
            let at = |d: Diagnostic| {
                let loc = parent.origin.location.clone();
                let snippet =
                    fs::read_to_string(&loc.path).ok().and_then(|t| t.lines().nth(loc.line - 1).map(str::to_owned));
                let d = d.at(loc).key("extends");
                match snippet {
                    Some(line) => d.snippet(line, parent.value.chars().count()),
                    None => d,
                }
            };
            if parent.value == name {
                return Err(at(Diagnostic::new(format!("bottle `{name}` extends itself")))
                    .hint("remove its own name from `extends`"));
            }
            if let Some(i) = stack.iter().position(|n| *n == parent.value) {
                let mut chain: Vec<&str> = stack[i..].iter().map(String::as_str).collect();
                chain.push(&parent.value);
                return Err(at(Diagnostic::new(format!(
                    "bottles extend each other in a cycle: {}",
                    chain.join(" → ")
                )))
                .hint(format!("remove `{}` from the `extends` of bottle `{name}`", parent.value)));
            }
            if !self.bottles.contains_key(&parent.value) {
                let base =
                    at(Diagnostic::new(format!("bottle `{name}` extends `{}`, which does not exist", parent.value)));
                return Err(self.missing_bottle(&parent.value, base));
            }
            self.visit(&parent.value, stack, cache, order)?;
        }
        stack.pop();
        order.push(name.to_owned());
        Ok(())
    }

    /// Adds the note and hint every "no such bottle" error shares to `base`.
    fn missing_bottle(&self, name: &str, base: Diagnostic) -> Diagnostic {
        let d = base.note(format!("bottles are read only from `{}`", self.layout.bottles_dir().display()));
        match did_you_mean(name, self.bottles.keys().map(String::as_str)) {
            Some(s) => d.hint(format!("did you mean `{s}`?")),
            None => d.hint(format!("create `{}/{name}.md`", self.layout.bottles_dir().display())),
        }
    }
}

fn pos_of(loc: &SourceLocation) -> yaml::Pos {
    // Origins store file lines; Doc::error adds the frontmatter offset back, so undo it here.
    yaml::Pos { line: loc.line.saturating_sub(1), col: loc.col }
}

fn misnamed_entry(path: PathBuf, e: &bottle_core::ids::InvalidId) -> Misnamed {
    Misnamed {
        problem: Diagnostic::new(format!("{} (file `{}`)", e.message, path.display())).hint(e.hint.clone()),
        path,
    }
}

/// `*.md` files of a directory as (stem, path), sorted; a missing directory has none.
fn md_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(std::result::Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md") && p.is_file())
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_owned(), p)))
        .collect();
    out.sort();
    out
}

fn read_doc(kind: ManifestKind, name: &str, path: &Path) -> Result<Doc> {
    let text = fs::read(path).map_err(|e| {
        Diagnostic::new(format!("cannot read {kind} `{name}`: {e}")).at(SourceLocation {
            path: path.to_path_buf(),
            line: 1,
            col: 1,
        })
    })?;
    let text = String::from_utf8(text).map_err(|e| {
        Diagnostic::new(format!("{kind} `{name}` is not valid UTF-8 (byte {})", e.utf8_error().valid_up_to()))
            .at(SourceLocation { path: path.to_path_buf(), line: 1, col: 1 })
    })?;
    Doc::new(kind, name, path, text)
}
