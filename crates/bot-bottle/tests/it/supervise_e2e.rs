//! The supervise plane in a real bottle: the agent asks for a route over MCP (the call holds), the
//! operator sees it with `supervise --once`, decides with `approve`/`reject`, the agent's call
//! returns the decision, the route is (or is not) in force in egress, and `history` keeps it. The
//! control API is not reachable from the agent.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::lifecycle::{Home, images_ready, leftovers};

const SCRIPT: &str = include_str!("../fixtures/scripts/mcp-request-egress.sh");

/// Waits for the one pending proposal and returns its id.
fn pending_id(home: &Home) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = home.cmd().args(["supervise", "--once", "--format", "json"]).output().expect("runs");
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(id) = list.get(0).and_then(|p| p["id"].as_str()) {
            assert_eq!(list[0]["kind"], "egress-route", "{list}");
            return id.to_owned();
        }
        assert!(Instant::now() < deadline, "no proposal appeared: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn an_agent_request_is_held_decided_by_the_operator_and_applied() {
    images_ready();
    let _engine = crate::engine_shared();
    let home = Home::new();
    let slug = format!("sv-{}", std::process::id());
    let out = home.cmd().args(["start", "demo", "--yes", "--detach", "--label", &slug]).output().expect("runs");
    assert!(out.status.success(), "start: {}", String::from_utf8_lossy(&out.stderr));
    let request = |host: &str| {
        home.spawnable()
            .args(["exec", &slug, "--", "bash", "-c", SCRIPT, "_", host])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawns")
    };
    let via_proxy = |url: &str| {
        let out = home.cmd().args(["exec", &slug, "--", "curl", "-sS", "-m", "8", url]).output().expect("runs");
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };

    // Approve: the call returns `approved` and egress routes the host from then on.
    assert!(via_proxy("http://example.org/").contains("egress.no-route"), "no route before the approval");
    let call = request("example.org");
    let id = pending_id(&home);
    let out = home.cmd().args(["supervise", "approve", &id]).output().expect("runs");
    assert!(out.status.success(), "approve: {}", String::from_utf8_lossy(&out.stderr));
    let answer = call.wait_with_output().expect("waits");
    let answer = String::from_utf8_lossy(&answer.stdout);
    assert!(answer.contains(r#""status":"approved""#), "{answer}");
    let after = via_proxy("http://example.org/");
    assert!(!after.contains("egress.no-route"), "the approved route is in force: {after}");

    // Reject with a reason: the agent sees it, and the host stays refused.
    let call = request("example.net");
    let id = pending_id(&home);
    let out = home.cmd().args(["supervise", "reject", &id, "--reason", "not for this task"]).output().expect("runs");
    assert!(out.status.success(), "reject: {}", String::from_utf8_lossy(&out.stderr));
    let answer = call.wait_with_output().expect("waits");
    let answer = String::from_utf8_lossy(&answer.stdout);
    assert!(answer.contains(r#""status":"rejected""#) && answer.contains("not for this task"), "{answer}");
    assert!(via_proxy("http://example.net/").contains("egress.no-route"));

    // The host keeps the history; the agent cannot reach the control API.
    let out = home.cmd().args(["supervise", "history", "--format", "json"]).output().expect("runs");
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let actions: Vec<&str> = history.as_array().expect("array").iter().filter_map(|r| r["action"].as_str()).collect();
    assert_eq!(actions, ["approve", "reject"]);
    let out = home
        .cmd()
        .args(["exec", &slug, "--", "curl", "-sS", "-m", "3", "http://127.0.0.1:9200/v1/health"])
        .output()
        .expect("runs");
    assert!(!out.status.success(), "the control API answered inside the bottle");
    let token = std::fs::read_to_string(home.state(&slug).join("control-token")).expect("token");
    let out = home.cmd().args(["supervise", "--once"]).output().expect("runs");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(token.trim()));

    let out = home.cmd().args(["stop", &slug]).output().expect("runs");
    assert!(out.status.success());
    assert_eq!(leftovers(&slug), Vec::<String>::new());
}
