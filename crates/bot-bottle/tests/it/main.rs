//! Integration tests of the `bot-bottle` binary: one test binary, one module per area.

mod cli;
mod copy;
mod dashboard_tmux;
mod escape;
mod fixtures;
mod gitgate;
mod interactive;
mod lifecycle;
mod providers;
mod secrets;
mod sidecar;
mod smolmachines;
mod supervise_e2e;
mod supervise_tui;

use std::path::{Path, PathBuf};
use std::process::Output;

/// A command for the built binary with a clean environment: only what the test gives it.
pub fn bot_bottle() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("bot-bottle").expect("binary built");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env("BOT_BOTTLE_SLUG_SEED", "7");
    cmd
}

/// Tests that launch bottles hold this shared; a test that runs `cleanup` (which acts on every
/// bottle of the engine that is not live, whatever home it belongs to) holds it exclusively, so it
/// never removes a bottle another test is probing with its sidecar deliberately killed.
static ENGINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

pub fn engine_shared() -> std::sync::RwLockReadGuard<'static, ()> {
    ENGINE.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn engine_exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    ENGINE.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/manifests")
}

/// Exit code, stdout and stderr in one reviewable block, with `root` replaced by `[CASE]`.
pub fn transcript(out: &Output, root: &Path) -> String {
    let clean = |b: &[u8]| String::from_utf8_lossy(b).replace(&root.display().to_string(), "[CASE]");
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().map_or_else(|| "signal".into(), |c| c.to_string()),
        clean(&out.stdout),
        clean(&out.stderr)
    )
}
