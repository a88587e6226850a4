//! `bot-bottle pty-bridge` (hidden): keeps a terminal in a bottle the size of this one.
//!
//! smolvm has shipped versions whose guest terminal starts at 0x0 and never follows the host
//! window. The bridge runs the interactive command as its child on this terminal, and at start and
//! on every `SIGWINCH` applies this terminal's size to the guest's ptys through a side channel: a
//! second `smolvm machine exec` running `stty -F /dev/pts/N cols C rows R`. It is self-contained and
//! run by absolute path, so it works from any directory (a tmux pane's), and it does nothing
//! without a terminal.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::PtyBridgeArgs;

pub fn run(args: &PtyBridgeArgs) -> anyhow::Result<ExitCode> {
    let (program, rest) = args.command.split_first().context("no command to run")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    let code = rt.block_on(async {
        // The child gets the terminal's Ctrl-C and Ctrl-\; the bridge must outlive them to report
        // the child's exit.
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let mut quit = signal(SignalKind::quit()).context("cannot watch SIGQUIT")?;
        let mut winch = signal(SignalKind::window_change()).context("cannot watch SIGWINCH")?;
        let mut child = tokio::process::Command::new(program)
            .args(rest)
            .spawn()
            .with_context(|| format!("cannot run `{program}`"))?;
        let tty = size().is_some();
        // The guest's pty appears once the exec is up; apply the size soon after start, and again.
        let mut startup = std::pin::pin!(tokio::time::sleep(Duration::from_millis(400)));
        let mut startup_left = if tty { 3 } else { 0 };
        let status = loop {
            tokio::select! {
                status = child.wait() => break status.context("cannot wait for the command")?,
                _ = int.recv() => {},
                _ = quit.recv() => {},
                _ = winch.recv(), if tty => apply(args).await,
                () = &mut startup, if startup_left > 0 => {
                    startup_left -= 1;
                    apply(args).await;
                    startup.set(tokio::time::sleep(Duration::from_millis(800)));
                }
            }
        };
        use std::os::unix::process::ExitStatusExt as _;
        anyhow::Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    })?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// This terminal's (rows, cols).
fn size() -> Option<(u16, u16)> {
    use terminal_size::{Height, Width, terminal_size_of};
    [terminal_size_of(std::io::stdin()), terminal_size_of(std::io::stdout()), terminal_size_of(std::io::stderr())]
        .into_iter()
        .flatten()
        .map(|(Width(w), Height(h))| (h, w))
        .find(|&(h, w)| h > 0 && w > 0)
}

/// The side-channel command that sets `rows`×`cols` on every pty matching `args.target`.
pub fn side_channel(args: &PtyBridgeArgs, rows: u16, cols: u16) -> Vec<String> {
    let script = format!(
        "for p in {}; do [ -c \"$p\" ] && stty -F \"$p\" cols {cols} rows {rows} 2>/dev/null; done; exit 0",
        args.target
    );
    let mut argv = match (&args.smolvm, &args.machine) {
        (Some(smolvm), Some(machine)) => {
            vec![smolvm.clone(), "machine".into(), "exec".into(), "--name".into(), machine.clone(), "--".into()]
        }
        _ => Vec::new(),
    };
    argv.extend(["sh".into(), "-c".into(), script]);
    argv
}

async fn apply(args: &PtyBridgeArgs) {
    let Some((rows, cols)) = size() else { return };
    let argv = side_channel(args, rows, cols);
    let result = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    // A resize that cannot be applied leaves the old size; it must never disturb the session.
    let _ = tokio::time::timeout(Duration::from_secs(10), result).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(smolvm: Option<&str>, machine: Option<&str>) -> PtyBridgeArgs {
        PtyBridgeArgs {
            smolvm: smolvm.map(str::to_owned),
            machine: machine.map(str::to_owned),
            local: smolvm.is_none(),
            target: "/dev/pts/[0-9]*".into(),
            command: vec!["true".into()],
        }
    }

    #[test]
    fn the_side_channel_is_an_exec_in_the_machine() {
        let argv = side_channel(&args(Some("/opt/smolvm"), Some("bot-bottle-x")), 40, 120);
        assert_eq!(argv[..6], ["/opt/smolvm", "machine", "exec", "--name", "bot-bottle-x", "--"]);
        assert!(argv[8].contains("stty -F \"$p\" cols 120 rows 40"), "{}", argv[8]);
        let local = side_channel(&args(None, None), 1, 2);
        assert_eq!(local[..2], ["sh", "-c"]);
    }
}
