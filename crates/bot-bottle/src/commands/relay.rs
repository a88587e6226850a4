//! `bot-bottle relay --map 127.0.0.1:9099=/run/bot-bottle/sock/egress.sock …` (hidden): runs inside a
//! `network=none` agent container, as a user other than the agent, and forwards loopback TCP ports
//! to the sidecar's unix sockets (logic in `bottle_backend::relay`).
//!
//! Logs are JSON lines on stderr (`BOT_BOTTLE_LOG` sets the filter) and never carry payloads.
//! SIGTERM or SIGINT stops it with exit 0; it usually runs as the container's PID 1, where a signal
//! without a handler would be ignored.

use std::process::ExitCode;

use anyhow::Context as _;
use bottle_backend::relay::Relay;

use crate::cli::RelayArgs;

pub fn run(args: &RelayArgs) -> anyhow::Result<ExitCode> {
    super::init_daemon_logs();
    // One thread: the relay only copies bytes, and it shares the agent's pids and memory limits.
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let stop = super::stop_signal()?;
        let relay = Relay::bind(&args.maps, args.max_connections).await?;
        relay.serve(stop).await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
