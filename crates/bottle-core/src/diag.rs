//! User-facing diagnostics: one error, where it is, the key it concerns, and what to do about it.
//!
//! Every error a user can cause through a file or a flag becomes a [`Diagnostic`]. It renders in the
//! compiler-like form users already read fluently:
//!
//! ```text
//! unknown key `envv` in bottle `dev`
//!   --> /home/me/.bot-bottle/bottles/dev.md:3:1
//!    |
//!  3 | envv:
//!    | ^^^^
//!    = key: envv
//! hint: did you mean `env`?
//! ```

use std::fmt;
use std::path::PathBuf;

/// A position in a file, 1-based like every editor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceLocation {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.col)
    }
}

/// One problem, rendered for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
    /// Where, when the problem comes from a file.
    pub location: Option<SourceLocation>,
    /// The source line at `location`, shown with a caret. Left empty where the line could hold a
    /// secret (env values), so a diagnostic never echoes one.
    pub snippet: Option<String>,
    /// Width of the caret underline.
    pub span_len: usize,
    /// The dotted key path, e.g. `egress.routes[1].host`.
    pub key: Option<String>,
    /// Extra facts (a cycle's chain, the other definition of a duplicate).
    pub notes: Vec<String>,
    /// What the user can do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            location: None,
            snippet: None,
            span_len: 1,
            key: None,
            notes: Vec::new(),
            hint: None,
        }
    }

    pub fn at(mut self, location: SourceLocation) -> Self {
        self.location = Some(location);
        self
    }

    pub fn snippet(mut self, line: impl Into<String>, span_len: usize) -> Self {
        self.snippet = Some(line.into());
        self.span_len = span_len.max(1);
        self
    }

    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        let gutter = self.location.as_ref().map_or(1, |l| l.line.to_string().len());
        let pad = " ".repeat(gutter);
        if let Some(loc) = &self.location {
            write!(f, "\n{pad}--> {loc}")?;
            if let Some(line) = &self.snippet {
                let line = line.trim_end();
                let caret_at = loc.col.saturating_sub(1);
                // Columns count characters; the caret must sit under the same character.
                let lead: String = line.chars().take(caret_at).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
                write!(f, "\n{pad} |")?;
                write!(f, "\n{} | {line}", loc.line)?;
                write!(f, "\n{pad} | {lead}{}", "^".repeat(self.span_len))?;
            }
        }
        if let Some(key) = &self.key {
            write!(f, "\n{pad} = key: {key}")?;
        }
        for note in &self.notes {
            write!(f, "\n{pad} = note: {note}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// Several diagnostics reported together (e.g. every broken file of one resolution).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
                write!(f, "error: ")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The closest candidate to `word`, for "did you mean" hints. Only reasonably close ones count.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates {
        let score = similarity(word, candidate);
        if score >= 0.7 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// Jaro–Winkler similarity (0..=1), case-insensitive, with `_` and `-` treated alike: `git_gate`
/// should suggest `git-gate`.
fn similarity(a: &str, b: &str) -> f64 {
    let norm =
        |s: &str| -> Vec<char> { s.chars().map(|c| if c == '_' { '-' } else { c.to_ascii_lowercase() }).collect() };
    let (a, b) = (norm(a), norm(b));
    if a == b {
        return 1.0;
    }
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let window = (a.len().max(b.len()) / 2).saturating_sub(1);
    let mut a_hit = vec![false; a.len()];
    let mut b_hit = vec![false; b.len()];
    let mut matches = 0usize;
    for (i, ca) in a.iter().enumerate() {
        let lo = i.saturating_sub(window);
        let hi = (i + window + 1).min(b.len());
        for j in lo..hi {
            if !b_hit[j] && b[j] == *ca {
                a_hit[i] = true;
                b_hit[j] = true;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let a_matched = a.iter().zip(&a_hit).filter(|(_, h)| **h).map(|(c, _)| c);
    let b_matched = b.iter().zip(&b_hit).filter(|(_, h)| **h).map(|(c, _)| c);
    let transpositions = a_matched.zip(b_matched).filter(|(x, y)| x != y).count() / 2;
    let m = matches as f64;
    let jaro = (m / a.len() as f64 + m / b.len() as f64 + (m - transpositions as f64) / m) / 3.0;
    let prefix = a.iter().zip(&b).take(4).take_while(|(x, y)| x == y).count() as f64;
    jaro + prefix * 0.1 * (1.0 - jaro)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_snippet_key_and_hint() {
        let d = Diagnostic::new("unknown key `envv` in bottle `dev`")
            .at(SourceLocation { path: "/h/bottles/dev.md".into(), line: 3, col: 1 })
            .snippet("envv:", 4)
            .key("envv")
            .hint("did you mean `env`?");
        assert_eq!(
            d.to_string(),
            "unknown key `envv` in bottle `dev`\n --> /h/bottles/dev.md:3:1\n  |\n3 | envv:\n  | ^^^^\n  = key: envv\nhint: did you mean `env`?"
        );
    }

    #[test]
    fn suggestions_are_close_or_absent() {
        let keys = ["env", "extends", "agent_provider", "git-gate", "egress"];
        assert_eq!(did_you_mean("envv", keys), Some("env"));
        assert_eq!(did_you_mean("git_gate", keys), Some("git-gate"));
        assert_eq!(did_you_mean("extend", keys), Some("extends"));
        assert_eq!(did_you_mean("egres", keys), Some("egress"));
        assert_eq!(did_you_mean("zzzzzz", keys), None);
    }
}
