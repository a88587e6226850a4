//! The agent's MCP tools through a real rmcp client, decided through the control API, with the
//! effect checked through the real egress proxy.

use serde_json::{Value, json};

use crate::support::*;

fn authed_api() -> Value {
    json!({"host": API_HOST, "auth": {"scheme": "Bearer", "token_slot": "API_TOKEN"}, "dlp": {"outbound_on_match": "block"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_are_listed_and_bad_arguments_are_tool_errors_naming_the_field() {
    // MCP on a unix socket, as the relay reaches it in a docker bottle.
    let world = World::new(Options { routes: vec![authed_api()], mcp_socket: true, ..Options::default() }).await;
    let client = world.mcp().await;
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(names, ["ask-supervisor", "list-egress-routes", "request-egress"]);
    let request = tools.iter().find(|t| t.name == "request-egress").unwrap();
    assert_eq!(request.input_schema["required"], json!(["host", "justification"]));

    let routes = structured(&call(&client, "list-egress-routes", json!({})).await);
    let route = &routes["routes"][0];
    assert_eq!(route["host"], json!(format!("{API_HOST}:{}", world.upstream.port)));
    assert_eq!(route["auth"], json!({"header": "authorization", "scheme": "Bearer"}));
    assert!(!routes.to_string().contains("token_slot") && !routes.to_string().contains("API_TOKEN"), "{routes}");

    for (tool, args, field) in [
        ("request-egress", json!({"justification": "x"}), "`host`"),
        ("request-egress", json!({"host": 42, "justification": "x"}), "`host`"),
        ("request-egress", json!({"host": "a.example"}), "`justification`"),
        ("request-egress", json!({"host": "*.example.com", "justification": "x"}), "`host`"),
        (
            "request-egress",
            json!({"host": "a.example", "justification": "x", "matches": [{"paths": [{"type": "glob", "value": "/"}]}]}),
            "`matches[0].paths[0].type`",
        ),
        (
            "request-egress",
            json!({"host": "a.example", "justification": "x", "matches": [{"paths": [{"type": "exact", "value": format!("/{AWS_KEY}")}]}]}),
            "`matches[0].paths[0].value`",
        ),
        (
            "request-egress",
            json!({"host": "a.example", "justification": "x", "auth": {"token_slot": "API_TOKEN"}}),
            "`auth`",
        ),
        ("ask-supervisor", json!({}), "`question`"),
        ("ask-supervisor", json!({"question": "q", "expects_reply": "yes"}), "`expects_reply`"),
        ("list-egress-routes", json!({"all": true}), "`all`"),
    ] {
        let text = error_text(&call(&client, tool, args.clone()).await);
        assert!(text.contains(field), "{tool} {args}: {text}");
        assert_no_secret("tool error", &text);
    }
    let unknown = client
        .call_tool(rmcp::model::CallToolRequestParams::new("rm-rf"))
        .await
        .expect_err("an unknown tool is a protocol error");
    assert!(unknown.to_string().contains("unknown tool"), "{unknown}");
    // Nothing was filed by the refused calls, and the server still answers.
    assert_eq!(world.control().get("/v1/proposals").await.1, json!([]));
    assert_eq!(client.list_all_tools().await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_egress_approved_modified_or_rejected_through_the_control_api() {
    let world = World::new(Options { routes: vec![authed_api()], ..Options::default() }).await;
    let control = world.control();
    let client = std::sync::Arc::new(world.mcp().await);
    let open_url = world.upstream.url(OPEN_HOST, "/anything");
    assert_eq!(world.get_status(&open_url).await, 0, "no route yet: the tunnel is refused");

    // Approved: the next request to that host goes through, without any credential.
    let host = format!("{OPEN_HOST}:{}", world.upstream.port);
    let pending = tokio::spawn({
        let client = client.clone();
        let host = host.clone();
        async move {
            call(&client, "request-egress", json!({"host": host, "justification": "the task needs its docs"})).await
        }
    });
    let proposal = control.wait_for("egress-route").await;
    assert_eq!(proposal["status"], "pending");
    assert_eq!(proposal["id"].as_str().unwrap().len(), 8);
    assert!(proposal["summary"].as_str().unwrap().contains(&host), "{proposal}");
    assert_eq!(proposal["detail"]["justification"], "the task needs its docs");
    assert_eq!(proposal["detail"]["change"], "add");
    let id = proposal["id"].as_str().unwrap();
    let (status, body) = control.decide(id, &json!({"action": "approve"})).await;
    assert_eq!((status, &body), (200, &json!({"id": id, "status": "approved"})));
    let answer = structured(&pending.await.unwrap());
    assert_eq!(answer["status"], "approved", "{answer}");
    assert!(answer["notes"].as_str().unwrap().contains("in force"), "{answer}");
    assert_eq!(world.get_status(&open_url).await, 200);
    assert!(world.upstream.seen.lock().unwrap().iter().all(|(_, _, body)| body.is_empty()));
    let (_, routes) = control.get("/v1/routes").await;
    assert!(routes["routes"].as_array().unwrap().iter().any(|r| r["host"] == json!(host)), "{routes}");

    // Modified: the operator narrows the route; only what the operator allowed goes through.
    let docs = format!("{DOCS_HOST}:{}", world.upstream.port);
    let pending = tokio::spawn({
        let client = client.clone();
        let docs = docs.clone();
        async move { call(&client, "request-egress", json!({"host": docs, "justification": "read the manual"})).await }
    });
    let id = control.wait_for("egress-route").await["id"].as_str().unwrap().to_owned();
    let edited =
        json!({"host": docs, "matches": [{"paths": [{"type": "prefix", "value": "/manual"}], "methods": ["GET"]}]});
    let (status, body) =
        control.decide(&id, &json!({"action": "modify", "route": edited, "reason": "manual only"})).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("modified")), "{body}");
    let answer = structured(&pending.await.unwrap());
    assert_eq!(answer["status"], "modified");
    assert!(answer["notes"].as_str().unwrap().contains("manual only"), "{answer}");
    assert_eq!(answer["route"]["matches"][0]["paths"][0]["value"], "/manual");
    assert_eq!(world.get_status(&world.upstream.url(DOCS_HOST, "/manual/intro")).await, 200);
    assert_eq!(world.get_status(&world.upstream.url(DOCS_HOST, "/admin")).await, 403);

    // Rejected: still refused, and the agent is told why.
    let evil = format!("{EVIL_HOST}:{}", world.upstream.port);
    let pending = tokio::spawn({
        let client = client.clone();
        async move { call(&client, "request-egress", json!({"host": evil, "justification": "trust me"})).await }
    });
    let id = control.wait_for("egress-route").await["id"].as_str().unwrap().to_owned();
    let (status, _) = control.decide(&id, &json!({"action": "reject", "reason": "not for this task"})).await;
    assert_eq!(status, 200);
    let answer = structured(&pending.await.unwrap());
    assert_eq!(answer["status"], "rejected");
    assert!(answer["notes"].as_str().unwrap().contains("not for this task"), "{answer}");
    assert_eq!(world.get_status(&world.upstream.url(EVIL_HOST, "/")).await, 0);

    // The agent sees the granted routes; the audit log has every proposal and decision.
    let routes = structured(&call(&client, "list-egress-routes", json!({})).await);
    assert_eq!(routes["routes"].as_array().unwrap().len(), 3, "{routes}");
    let audit = world.audit();
    assert_eq!(audit.matches(r#""event":"proposal""#).count(), 3, "{audit}");
    assert_eq!(audit.matches(r#""event":"proposal-decision""#).count(), 3, "{audit}");
    assert!(audit.contains(r#""action":"modify""#) && audit.contains(r#""action":"reject""#), "{audit}");
    assert_no_secret("audit", &audit);
    bottle_egress::verify_chain(&world.audit_path()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_egress_times_out_closed_and_questions_get_replies() {
    let world = World::new(Options { proposal_timeout_secs: 2, ..Options::default() }).await;
    let client = world.mcp().await;
    let evil = format!("{EVIL_HOST}:{}", world.upstream.port);
    let answer = structured(&call(&client, "request-egress", json!({"host": evil, "justification": "x"})).await);
    assert_eq!(answer["status"], "timeout", "{answer}");
    assert_eq!(world.get_status(&world.upstream.url(EVIL_HOST, "/")).await, 0);
    assert_eq!(world.control().get("/v1/proposals").await.1, json!([]));

    // A notice returns at once and waits in the queue for the operator.
    let notice = structured(
        &call(&client, "ask-supervisor", json!({"question": "fyi: tests pass", "expects_reply": false})).await,
    );
    assert_eq!(notice["status"], "delivered");
    let listed = world.control().wait_for("question").await;
    assert_eq!(listed["detail"], json!({"question": "fyi: tests pass", "expects_reply": false}));
    // A question waits for the reply.
    let control = world.control();
    let client = std::sync::Arc::new(client);
    let asking = tokio::spawn({
        let client = client.clone();
        async move { call(&client, "ask-supervisor", json!({"question": "may I delete the branch?"})).await }
    });
    let id = loop {
        let (_, list) = control.get("/v1/proposals").await;
        if let Some(q) = list.as_array().unwrap().iter().find(|p| p["detail"]["expects_reply"] == json!(true)) {
            break q["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let (status, _) = control.decide(&id, &json!({"action": "approve", "reply": "yes, it is merged"})).await;
    assert_eq!(status, 200);
    let reply = structured(&asking.await.unwrap());
    assert_eq!(reply, json!({"status": "answered", "reply": "yes, it is merged"}));
}
