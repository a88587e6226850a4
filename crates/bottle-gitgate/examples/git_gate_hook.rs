//! The pre-receive hook client as a program of its own, so the integration tests and the bench can
//! run the gate without the `bot-bottle` binary (which exposes the same client as its hidden
//! `git-gate-hook` subcommand). Usage: `git_gate_hook git-gate-hook --socket PATH`.

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let mut socket: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        if arg == "--socket" {
            socket = args.next().map(PathBuf::from);
        }
    }
    let code = match socket {
        Some(socket) => bottle_gitgate::hook::run_client(&socket),
        None => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "usage: git_gate_hook git-gate-hook --socket PATH");
            2
        }
    };
    std::process::exit(code);
}
