//! The one place that writes to stdout (data) and stderr (messages).
//!
//! Data goes to stdout; warnings, progress and errors to stderr. A closed stdout (`| head`) is not an
//! error. Colour only on a terminal and never with `NO_COLOR`.

use std::io::{self, IsTerminal, Write};

/// Output settings from the global flags.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub quiet: bool,
    pub verbose: u8,
    color_out: bool,
    color_err: bool,
}

/// Stdout went away (broken pipe): stop quietly with success.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout closed")
    }
}

impl std::error::Error for StdoutClosed {}

impl Printer {
    pub fn new(quiet: bool, verbose: u8) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            quiet,
            verbose,
            color_out: !no_color && io::stdout().is_terminal(),
            color_err: !no_color && io::stderr().is_terminal(),
        }
    }

    /// Writes data to stdout.
    pub fn out(&self, text: &str) -> anyhow::Result<()> {
        let mut out = io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
            other => Ok(other?),
        }
    }

    /// Writes data plus a newline.
    pub fn outln(&self, text: &str) -> anyhow::Result<()> {
        self.out(&format!("{text}\n"))
    }

    /// Serialises `value` as pretty JSON on stdout.
    pub fn json<T: serde::Serialize>(&self, value: &T) -> anyhow::Result<()> {
        self.outln(&serde_json::to_string_pretty(value)?)
    }

    /// A warning on stderr (suppressed by `-q`).
    pub fn warn(&self, text: &str) {
        if !self.quiet {
            let label = self.paint_err("warning", "33;1");
            err_line(&format!("{label}: {text}"));
        }
    }

    /// A progress line on stderr (suppressed by `-q`).
    pub fn step(&self, text: &str) {
        if !self.quiet {
            let arrow = self.paint_err("==>", "36;1");
            err_line(&format!("{arrow} {text}"));
        }
    }

    /// An error on stderr (never suppressed).
    pub fn error(&self, text: &str) {
        let label = self.paint_err("error", "31;1");
        err_line(&format!("{label}: {text}"));
    }

    /// Wraps `text` in an SGR colour when stdout is a colour terminal.
    pub fn paint(&self, text: &str, sgr: &str) -> String {
        paint(self.color_out, text, sgr)
    }

    fn paint_err(&self, text: &str, sgr: &str) -> String {
        paint(self.color_err, text, sgr)
    }
}

fn paint(enabled: bool, text: &str, sgr: &str) -> String {
    if enabled { format!("\x1b[{sgr}m{text}\x1b[0m") } else { text.to_owned() }
}

#[expect(clippy::print_stderr, reason = "the printer owns the terminal")]
fn err_line(text: &str) {
    eprintln!("{text}");
}
