//! `bot-bottle selftest` (hidden): the boundary probes, run inside a bottle by the launcher before the
//! agent starts and by `doctor --bottle`. Each probe tries one way out; the exit code is 0 only when
//! every one was blocked.

use std::process::ExitCode;

use bottle_backend::selftest::{self, ProbeOptions};

use crate::cli::{Format, SelftestArgs};
use crate::printer::Printer;

pub fn run(args: &SelftestArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let options = ProbeOptions {
        extra_tcp: args.tcp.clone(),
        proxy: args.proxy,
        extra_control: args.control.clone(),
        extra_dns: args.dns.clone(),
        network_path: args.network_path,
        ..ProbeOptions::default()
    };
    let report = selftest::run_probes(&options);
    match args.format {
        Format::Json => printer.json(&report)?,
        Format::Text => {
            let escaped = report.escaped().len();
            let summary = if report.passed() {
                format!("all {} probes blocked\n", report.probes.len())
            } else {
                format!("{escaped} of {} probes escaped\n", report.probes.len())
            };
            printer.out(&format!("{}{summary}", selftest::render_table(&report)))?;
        }
    }
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::from(crate::EXIT_FAILURE) })
}
