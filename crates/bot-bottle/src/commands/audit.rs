//! `bot-bottle audit verify <slug|file>`: proves a bottle's audit log is the one egress wrote.
//!
//! Every line carries the SHA-256 of the line before it, so editing, inserting or deleting a line
//! breaks the chain at that point; this command names the first broken line.

use std::path::PathBuf;
use std::process::ExitCode;

use bottle_core::Diagnostic;

use crate::cli::{AuditCommand, GlobalArgs};
use crate::context::Context;
use crate::printer::Printer;

pub fn run(global: &GlobalArgs, command: &AuditCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    let AuditCommand::Verify(args) = command;
    let as_path = PathBuf::from(&args.target);
    let path = if as_path.is_file() {
        as_path
    } else {
        let ctx = Context::new(global)?;
        let path = ctx.home.state(&args.target).audit_log();
        if !path.is_file() {
            return Err(Diagnostic::new(format!("no audit log for `{}`", args.target))
                .note(format!("looked for the file `{}` and for `{}`", args.target, path.display()))
                .hint("pass a bottle slug from `bot-bottle list` or the path of an audit.jsonl")
                .into());
        }
        path
    };
    match bottle_egress::verify_chain(&path) {
        Ok(lines) => {
            printer.outln(&format!("ok: {lines} lines, chain intact ({})", path.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            printer.error(&format!("audit log `{}` is not intact: {e}", path.display()));
            Ok(ExitCode::from(crate::EXIT_FAILURE))
        }
    }
}
