//! `bot-bottle completions <shell>`: a completion script on stdout.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::printer::Printer;

pub fn run(args: &CompletionsArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "bot-bottle", &mut buf);
    printer.out(&String::from_utf8_lossy(&buf))?;
    Ok(ExitCode::SUCCESS)
}
