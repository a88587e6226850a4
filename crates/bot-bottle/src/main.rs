//! `bot-bottle`: the command-line entry point.
//!
//! Parses arguments, dispatches to `commands/<verb>.rs`, and turns errors into messages and exit
//! codes: 0 success, 1 a check or operation failed, 2 a bad input (flag, manifest, plan).

mod backends;
mod cli;
mod commands;
mod context;
mod control;
mod picker;
mod printer;
mod terminal;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::printer::{Printer, StdoutClosed};

/// Exit status for an operation that ran and failed.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status for input that was refused (flags, manifests, plans).
pub const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let printer = Printer::new(cli.global.quiet, cli.global.verbose);
    let result = match cli.command {
        Command::Info(args) => commands::info::run(&cli.global, &args, &printer),
        Command::Start(args) => commands::start::run(&cli.global, &args, &printer),
        Command::List(args) => commands::bottles::list(&cli.global, &args, &printer),
        Command::Exec(args) => commands::bottles::exec(&cli.global, &args, &printer),
        Command::Attach(args) => commands::bottles::attach(&cli.global, &args, &printer),
        Command::Cp(args) => commands::cp::run(&cli.global, &args, &printer),
        Command::Stop(args) => commands::bottles::stop(&cli.global, &args, &printer),
        Command::Cleanup(args) => commands::bottles::cleanup(&cli.global, &args, &printer),
        Command::Supervise(args) => commands::supervise::run(&cli.global, &args, &printer),
        Command::Dashboard => commands::dashboard::run(&cli.global, &printer),
        Command::Doctor(args) => commands::doctor::run(&cli.global, &args, &printer),
        Command::Image(command) => commands::image::run(&command, &printer),
        Command::Completions(args) => commands::completions::run(&args, &printer),
        Command::Audit(command) => commands::audit::run(&cli.global, &command, &printer),
        Command::Sidecar(args) => commands::sidecar::run(&args),
        Command::Relay(args) => commands::relay::run(&args),
        Command::Selftest(args) => commands::selftest::run(&args, &printer),
        Command::PtyBridge(args) => commands::pty_bridge::run(&args),
        Command::GitGateHook(args) => {
            Ok(ExitCode::from(u8::try_from(bottle_gitgate::hook::run_client(&args.socket)).unwrap_or(1)))
        }
    };
    match result {
        Ok(code) => code,
        Err(err) if err.is::<StdoutClosed>() => ExitCode::SUCCESS,
        Err(err) => {
            let usage = err.is::<bottle_core::Diagnostic>() || err.is::<bottle_core::diag::Diagnostics>();
            // `{:#}` prints anyhow's whole chain ("context: cause") on one line per link.
            printer.error(&format!("{err:#}"));
            ExitCode::from(if usage { EXIT_USAGE } else { EXIT_FAILURE })
        }
    }
}
