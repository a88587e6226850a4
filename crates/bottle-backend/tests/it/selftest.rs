//! The boundary probes for real: on the host's network they find the ways out a test opens (so a
//! broken boundary fails the self-test), and inside an empty network namespace — what a
//! `network=none` agent has — every one of them is blocked.
//!
//! The namespace half re-runs this test binary under `unshare --net --mount` (as root; otherwise inside
//! a user namespace too), brings `lo` up, mounts a fresh sysfs so `/sys/class/net` shows the new
//! namespace, and hides the host's `/run` (its engine sockets) under a tmpfs. Where `unshare` is
//! missing or not permitted that half is skipped, saying why.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bottle_backend::selftest::{ProbeOptions, SelfTestReport, render_table, run_probes};

/// Set in the re-run child: where it writes its report.
const CHILD_REPORT_ENV: &str = "BOT_BOTTLE_SELFTEST_CHILD_REPORT";

/// A stand-in egress proxy on 127.0.0.1 that answers every request with `status`, then closes.
fn fake_proxy(status: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds a loopback port");
    let addr = listener.local_addr().expect("local addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut head = Vec::new();
                let mut chunk = [0u8; 512];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = "this host is not on the bottle's allow-list\n";
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

fn outcome<'r>(report: &'r SelfTestReport, name: &str) -> &'r bottle_backend::selftest::ProbeOutcome {
    report
        .probes
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no probe {name}:\n{}", render_table(report)))
}

#[test]
fn probes_report_the_ways_out_a_host_offers() {
    // A host service anyone can reach, and a proxy that lets everything through.
    let service = TcpListener::bind("127.0.0.1:0").expect("binds");
    let service_addr = service.local_addr().expect("addr");
    let open_proxy = fake_proxy("200 Connection established");
    let opts = ProbeOptions {
        egress_port: open_proxy.port(),
        control_port: service_addr.port(),
        extra_tcp: vec![service_addr],
        ..ProbeOptions::default()
    };

    let started = Instant::now();
    let report = run_probes(&opts);
    let took = started.elapsed();
    let table = render_table(&report);

    assert!(!report.passed(), "the host's network must fail the self-test:\n{table}");
    let escaped: Vec<&str> = report.escaped().iter().map(|p| p.name.as_str()).collect();
    let service_probe = format!("tcp {service_addr}");
    let control_probe = format!("control {service_addr}");
    for name in
        [service_probe.as_str(), control_probe.as_str(), "proxy connect selftest.invalid:443", "proxy get metadata"]
    {
        assert!(escaped.contains(&name), "{name} should have escaped:\n{table}");
    }
    assert_eq!(outcome(&report, &service_probe).detail, "connected");
    assert_eq!(
        outcome(&report, "proxy connect selftest.invalid:443").detail,
        "proxy answered 200 Connection established: tunnel open"
    );
    // The host has interfaces besides lo and a default route.
    assert!(escaped.contains(&"interfaces"), "{table}");
    assert!(took < Duration::from_secs(8), "probes run at once, not one after another: took {took:?}\n{table}");
}

#[test]
fn a_missing_or_mute_proxy_fails_the_self_test() {
    // Nothing listens: no proof the proxy is the way out.
    let closed = TcpListener::bind("127.0.0.1:0").expect("binds").local_addr().expect("addr").port();
    let report = run_probes(&ProbeOptions { egress_port: closed, ..ProbeOptions::default() });
    let connect = outcome(&report, "proxy connect selftest.invalid:443");
    assert!(!connect.blocked, "{}", render_table(&report));
    assert!(connect.detail.starts_with("egress proxy unreachable: connect 127.0.0.1:"), "{}", connect.detail);
    assert!(!outcome(&report, "proxy get metadata").blocked);

    // Something listens but closes without a word (a relay whose sidecar is gone).
    let mute = TcpListener::bind("127.0.0.1:0").expect("binds");
    let mute_port = mute.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in mute.incoming() {
            drop(stream);
        }
    });
    let report = run_probes(&ProbeOptions { egress_port: mute_port, ..ProbeOptions::default() });
    let connect = outcome(&report, "proxy connect selftest.invalid:443");
    assert!(!connect.blocked, "{}", render_table(&report));
    // The request may still be in flight when the close comes, so writing it can fail too.
    assert!(
        connect.detail == "egress proxy closed the connection without answering"
            || connect.detail.starts_with("egress proxy did not answer: "),
        "{}",
        connect.detail
    );
}

/// The child half of [`every_probe_is_blocked_in_an_empty_network_namespace`]; does nothing unless
/// that test started it inside the namespace.
#[test]
fn netns_child() {
    let Some(report_path) = std::env::var_os(CHILD_REPORT_ENV) else { return };
    let proxy = fake_proxy("403 Forbidden");
    let report = run_probes(&ProbeOptions { egress_port: proxy.port(), ..ProbeOptions::default() });
    std::fs::write(report_path, serde_json::to_vec(&report).expect("serialises")).expect("writes the report");
}

#[test]
fn every_probe_is_blocked_in_an_empty_network_namespace() {
    let namespaces = match isolating_unshare() {
        Ok(flags) => flags,
        Err(why) => {
            eprintln!("skipped: cannot make an isolated network namespace here: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let report_path = dir.path().join("report.json");
    let exe = std::env::current_exe().expect("test binary path");
    let started = Instant::now();
    let output = Command::new("unshare")
        .args(namespaces)
        .args(["sh", "-c", ISOLATE])
        .arg(&exe)
        .args(["selftest::netns_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_REPORT_ENV, &report_path)
        .output()
        .expect("runs unshare");
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "the namespaced run failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: SelfTestReport =
        serde_json::from_slice(&std::fs::read(&report_path).expect("the child wrote a report")).expect("parses");
    let table = render_table(&report);
    assert!(report.passed(), "every probe must be blocked in an empty namespace:\n{table}");
    assert!(report.probes.len() >= 18, "{table}");
    assert_eq!(outcome(&report, "interfaces").detail, "only lo");
    assert_eq!(outcome(&report, "routes").detail, "none but loopback");
    assert_eq!(outcome(&report, "proxy connect selftest.invalid:443").detail, "proxy answered 403 Forbidden");
    assert_eq!(outcome(&report, "proxy get metadata").detail, "proxy answered 403 Forbidden");
    assert!(outcome(&report, "tcp 1.1.1.1:443").detail.starts_with("connect: "), "{table}");
    assert!(took < Duration::from_secs(8), "an isolated run fails fast: took {took:?}\n{table}");
}

/// Runs inside the new namespaces, then execs the test binary (`$0`) with its arguments.
const ISOLATE: &str = r#"set -e
ip link set lo up
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /run
if [ ! -L /var/run ]; then mount -t tmpfs tmpfs /var/run; fi
exec "$0" "$@""#;

/// The `unshare` flags that give this process an empty network namespace it can set up: plain as
/// root, inside a user namespace otherwise. `Err` says why neither works.
fn isolating_unshare() -> Result<&'static [&'static str], String> {
    if !Path::new("/proc/self/ns/net").exists() {
        return Err("no network namespaces in this kernel".into());
    }
    const CHOICES: [&[&str]; 2] = [&["--net", "--mount"], &["--user", "--map-root-user", "--net", "--mount"]];
    let mut failures = Vec::new();
    for flags in CHOICES {
        let output = Command::new("unshare")
            .args(flags)
            .args(["sh", "-c", "ip link set lo up && mount -t sysfs sysfs /sys && mount -t tmpfs tmpfs /run"])
            .output()
            .map_err(|e| format!("cannot run `unshare`: {e}"))?;
        if output.status.success() {
            return Ok(flags);
        }
        failures.push(format!(
            "`unshare {}` failed ({}): {}",
            flags.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Err(failures.join("; "))
}
