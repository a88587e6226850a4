//! The git gate's pre-receive hook client as a program of its own, for the sidecar's integration
//! tests (the `bot-bottle` binary exposes the same client as its hidden `git-gate-hook`).
//! Usage: `git_gate_hook git-gate-hook --socket PATH`.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let socket = args.iter().position(|a| a == "--socket").and_then(|i| args.get(i + 1));
    let code = match socket {
        Some(socket) => bottle_gitgate::hook::run_client(std::path::Path::new(socket)),
        None => 2,
    };
    std::process::exit(code);
}
