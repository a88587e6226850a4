//! The control API: the token, the error statuses, routes and counters; and a sidecar restart
//! failing a held request closed.

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_required_and_errors_are_404_409_400() {
    let world = World::new(Options {
        routes: vec![json!({"host": API_HOST, "auth": {"scheme": "Bearer", "token_slot": "API_TOKEN"}})],
        ..Options::default()
    })
    .await;
    let control = world.control();
    let http = control.client();
    for request in [
        http.get(control.url("/v1/health")),
        http.get(control.url("/v1/proposals")).bearer_auth("control-token-PLANTED-0123456789abcdeX"),
        http.get(control.url("/v1/routes")).header("authorization", CONTROL_TOKEN),
        http.post(control.url("/v1/proposals/00000000/decision")).body(r#"{"action":"approve"}"#),
    ] {
        let (status, body) = control.send(request).await;
        assert_eq!(status, 401, "{body}");
        assert!(body["error"].is_string(), "{body}");
    }
    assert_eq!(control.get("/v1/health").await, (200, json!({"status": "ok"})));
    assert_eq!(control.get("/v1/proposals").await, (200, json!([])));
    assert_eq!(control.get("/v1/proposals/00000000").await.0, 404);
    assert_eq!(control.decide("00000000", &json!({"action": "approve"})).await.0, 404);
    assert_eq!(control.get("/v1/nothing").await.0, 404);
    assert_eq!(control.send(http.delete(control.url("/v1/proposals")).bearer_auth(CONTROL_TOKEN)).await.0, 405);

    // Routes show no secret; counters count what egress did.
    let (status, routes) = control.get("/v1/routes").await;
    assert_eq!(status, 200);
    assert_eq!(routes["routes"][0]["auth"], json!({"header": "authorization", "scheme": "Bearer"}));
    assert!(!routes.to_string().contains("API_TOKEN"), "{routes}");
    assert_eq!(world.get_status(&world.upstream.url(API_HOST, "/ok")).await, 200);
    assert_eq!(world.get_status(&world.upstream.url(EVIL_HOST, "/")).await, 0);
    let (_, counters) = control.get("/v1/counters").await;
    assert_eq!(counters["hosts"][API_HOST], json!({"allowed": 1, "denied": 0, "dlp_hits": 0}), "{counters}");
    assert_eq!(counters["hosts"][EVIL_HOST]["denied"], 1, "{counters}");

    // A pending question: malformed decisions are 400 and name the field; a second decision is 409.
    let client = world.mcp().await;
    let asking = tokio::spawn(async move { call(&client, "ask-supervisor", json!({"question": "ok?"})).await });
    let proposal = control.wait_for("question").await;
    let id = proposal["id"].as_str().unwrap();
    let (status, one) = control.get(&format!("/v1/proposals/{id}")).await;
    assert_eq!(status, 200);
    for key in ["id", "kind", "created_at", "summary", "detail", "status"] {
        assert_eq!(one[key], proposal[key], "{key}");
    }
    let post = |body: &'static str| {
        http.post(control.url(&format!("/v1/proposals/{id}/decision"))).bearer_auth(CONTROL_TOKEN).body(body)
    };
    for (body, field) in [
        ("not json", "`body`"),
        (r#"{"action":"maybe"}"#, "`action`"),
        (r#"{"action":"reject"}"#, "`reason`"),
        (r#"{"action":"modify","route":{"host":"a.example"}}"#, "`action`"),
        (r#"{"action":"approve","scope":"forever"}"#, "`scope`"),
        (r#"{"action":"approve","extra":1}"#, "`extra`"),
    ] {
        let (status, answer) = control.send(post(body)).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(field), "{body}: {answer}");
    }
    let (status, answer) = control.decide(id, &json!({"action": "reject", "reason": "no"})).await;
    assert_eq!((status, answer), (200, json!({"id": id, "status": "rejected"})));
    assert_eq!(control.decide(id, &json!({"action": "approve"})).await.0, 409);
    assert_eq!(control.get(&format!("/v1/proposals/{id}")).await.0, 409);
    let reply = structured(&asking.await.unwrap());
    assert_eq!(reply["status"], "rejected");
    assert_no_secret("audit", &world.audit());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_restart_fails_a_held_request_closed() {
    let route = json!({"host": API_HOST, "auth": {"scheme": "Bearer", "token_slot": "API_TOKEN"}, "dlp": {"outbound_on_match": "supervise"}});
    let mut world = World::new(Options { routes: vec![route], ..Options::default() }).await;
    let url = world.upstream.url(API_HOST, "/upload");
    let held = {
        let args = ["-X", "POST", "--data", &format!("key={AWS_KEY}"), "-o", "/dev/null", "-w", "%{http_code}", &url]
            .map(str::to_owned);
        let curl_world = (world.addrs.egress, world.bottle_ca());
        tokio::spawn(async move {
            tokio::process::Command::new("curl")
                .args(["-sS", "--max-time", "60", "--proxy", &format!("http://{}", curl_world.0), "--cacert"])
                .arg(&curl_world.1)
                .args(&args)
                .output()
                .await
                .unwrap()
        })
    };
    world.control().wait_for("egress-token-allow").await;
    world.restart().await;
    let out = held.await.unwrap();
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success() || code != "200", "the held request must not succeed: {code}");
    assert_eq!(world.upstream.count(), 0, "nothing reached the upstream");
    // The new sidecar starts with an empty queue and continues the audit chain.
    assert_eq!(world.control().get("/v1/proposals").await, (200, json!([])));
    bottle_egress::verify_chain(&world.audit_path()).unwrap();
    assert_no_secret("audit", &world.audit());
}
