//! One manifest file being read: its text, its frontmatter, and how to point at a spot in it.

use std::path::{Path, PathBuf};

use bottle_core::diag::{Diagnostic, SourceLocation};
use bottle_core::spec::{ManifestKind, Origin};

use crate::yaml::{Key, Node, NodeKind, Pos, YamlError};

/// A manifest file split into frontmatter and body, with enough context to place errors.
#[derive(Debug)]
pub struct Doc {
    pub kind: ManifestKind,
    pub name: String,
    pub path: PathBuf,
    text: String,
    /// Zero-based line index of the first frontmatter line within the file.
    front_start: usize,
    front: String,
    pub body: String,
}

impl Doc {
    /// Splits `text` into YAML frontmatter between `---` lines and the Markdown body. A file
    /// without frontmatter is all body.
    pub fn new(kind: ManifestKind, name: &str, path: &Path, text: String) -> Result<Self, Diagnostic> {
        let text = text.strip_prefix('\u{feff}').map(str::to_owned).unwrap_or(text);
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let is_fence = |l: &str| l.trim_end_matches(['\n', '\r']).trim_end() == "---";
        let (front_start, front, body) = if lines.first().is_some_and(|l| is_fence(l)) {
            let close = lines
                .iter()
                .enumerate()
                .skip(1)
                .find(|(_, l)| is_fence(l) || l.trim_end_matches(['\n', '\r']).trim_end() == "...")
                .map(|(i, _)| i);
            let Some(close) = close else {
                return Err(Diagnostic::new(format!("frontmatter of {kind} `{name}` is never closed"))
                    .at(SourceLocation { path: path.to_path_buf(), line: 1, col: 1 })
                    .snippet("---", 3)
                    .key("(frontmatter)")
                    .hint("end the YAML frontmatter with a line holding only `---`"));
            };
            (1, lines[1..close].concat(), lines[close + 1..].concat())
        } else {
            (0, String::new(), text.clone())
        };
        Ok(Self { kind, name: name.to_owned(), path: path.to_path_buf(), text, front_start, front, body })
    }

    pub fn frontmatter(&self) -> &str {
        &self.front
    }

    /// Where `pos` (relative to the frontmatter) is in the file.
    pub fn location(&self, pos: Pos) -> SourceLocation {
        SourceLocation { path: self.path.clone(), line: pos.line + self.front_start, col: pos.col }
    }

    pub fn origin(&self, pos: Pos) -> Origin {
        Origin { kind: self.kind, name: self.name.clone(), location: self.location(pos) }
    }

    fn line_text(&self, file_line: usize) -> Option<&str> {
        self.text.lines().nth(file_line.checked_sub(1)?)
    }

    /// An error at `pos` showing the source line with a caret `span` characters wide.
    pub fn error(&self, pos: Pos, span: usize, message: impl Into<String>) -> Diagnostic {
        let loc = self.location(pos);
        let mut d = Diagnostic::new(message);
        if let Some(line) = self.line_text(loc.line) {
            d = d.snippet(line, span);
        }
        d.at(loc)
    }

    /// An error at `pos` that does not show the line, for places that may hold a secret.
    pub fn error_hidden(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(message).at(self.location(pos))
    }

    /// An error at a key.
    pub fn key_error(&self, key: &Key, message: impl Into<String>) -> Diagnostic {
        self.error(key.pos, key.name.chars().count(), message)
    }

    /// An error at a value, underlining a scalar's width.
    pub fn value_error(&self, node: &Node, message: impl Into<String>) -> Diagnostic {
        let span = match &node.kind {
            NodeKind::Scalar { text, quoted } => text.chars().count() + if *quoted { 2 } else { 0 },
            _ => 1,
        };
        self.error(node.pos, span, message)
    }

    pub fn yaml_error(&self, e: YamlError) -> Diagnostic {
        let mut d = self.error(e.pos, 1, format!("{} in {} `{}`", e.message, self.kind, self.name));
        d = d.key(e.key.unwrap_or_else(|| "(frontmatter)".to_owned()));
        if let Some(h) = e.hint {
            d = d.hint(h);
        }
        d
    }
}
