//! Requests held by a `supervise` route's DLP hit, decided through the control API.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

fn supervised() -> Value {
    json!({"host": API_HOST, "auth": {"scheme": "Bearer", "token_slot": "API_TOKEN"}, "dlp": {"outbound_on_match": "supervise"}})
}

/// Starts a POST carrying `body` through the proxy; resolves to (curl exit code, HTTP status).
fn post(world: &World, path: &str, body: String) -> tokio::task::JoinHandle<(i32, String)> {
    let (egress, ca, url) = (world.addrs.egress, world.bottle_ca(), world.upstream.url(API_HOST, path));
    tokio::spawn(async move {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "90", "--proxy", &format!("http://{egress}"), "--cacert"])
            .arg(&ca)
            .args(["-X", "POST", "--data-binary", &body, "-o", "/dev/null", "-w", "%{http_code}", &url])
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_dlp_hit_is_approved_once_denied_or_approved_for_the_session() {
    let world = World::new(Options { routes: vec![supervised()], ..Options::default() }).await;
    let control = world.control();

    // Approved once: that request goes through.
    let held = post(&world, "/v1/upload", format!("key={AWS_KEY}"));
    let proposal = control.wait_for("egress-token-allow").await;
    let detail = &proposal["detail"];
    assert_eq!(
        (detail["host"].as_str(), detail["method"].as_str(), detail["path"].as_str()),
        (Some(API_HOST), Some("POST"), Some("/v1/upload"))
    );
    assert_eq!(detail["findings"][0], json!({"rule": "aws-access-key-id", "location": "body"}), "{proposal}");
    assert!(proposal["summary"].as_str().unwrap().contains("aws-access-key-id"), "{proposal}");
    let id = proposal["id"].as_str().unwrap();
    assert_eq!(control.decide(id, &json!({"action": "approve"})).await.0, 200);
    assert_eq!(held.await.unwrap().1, "200");
    assert_eq!(world.upstream.count(), 1);

    // Denied: 403, and the upstream never sees it.
    let held = post(&world, "/v1/upload", format!("key={AWS_KEY}"));
    let id = control.wait_for("egress-token-allow").await["id"].as_str().unwrap().to_owned();
    assert_eq!(control.decide(&id, &json!({"action": "reject", "reason": "that is a real key"})).await.0, 200);
    assert_eq!(held.await.unwrap().1, "403");
    assert_eq!(world.upstream.count(), 1);

    // Approved for the session: later requests with the same value pass without asking.
    let held = post(&world, "/v1/upload", format!("key={AWS_KEY}"));
    let id = control.wait_for("egress-token-allow").await["id"].as_str().unwrap().to_owned();
    assert_eq!(control.decide(&id, &json!({"action": "approve", "scope": "session"})).await.0, 200);
    assert_eq!(held.await.unwrap().1, "200");
    assert_eq!(post(&world, "/v2/other", format!("again {AWS_KEY}")).await.unwrap().1, "200");
    assert_eq!(world.upstream.count(), 3);
    assert_eq!(control.get("/v1/proposals").await.1, json!([]));

    let (_, counters) = control.get("/v1/counters").await;
    assert_eq!(counters["hosts"][API_HOST], json!({"allowed": 3, "denied": 1, "dlp_hits": 4}), "{counters}");
    let audit = world.audit();
    assert_eq!(audit.matches(r#""kind":"egress-token-allow""#).count(), 6, "{audit}");
    assert!(audit.contains(r#""scope":"session""#) && audit.contains("dlp.session-allowed"), "{audit}");
    assert_no_secret("audit", &audit);
    bottle_egress::verify_chain(&world.audit_path()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_survives_a_slow_human() {
    let world =
        World::new(Options { routes: vec![supervised()], proposal_timeout_secs: 45, ..Options::default() }).await;
    let control = world.control();
    let started = Instant::now();
    let held = post(&world, "/slow", format!("key={AWS_KEY}"));
    let id = control.wait_for("egress-token-allow").await["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert!(!held.is_finished(), "the agent's request is still held open");
    let (status, listed) = control.get(&format!("/v1/proposals/{id}")).await;
    assert_eq!(status, 200);
    assert!(listed["age_secs"].as_u64().unwrap() >= 30, "{listed}");
    assert_eq!(control.decide(&id, &json!({"action": "approve"})).await.0, 200);
    let (code, http) = held.await.unwrap();
    assert_eq!((code, http.as_str()), (0, "200"));
    assert!(started.elapsed() >= Duration::from_secs(31));
    assert_eq!(world.upstream.count(), 1);
}
