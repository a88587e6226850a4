//! The agent's MCP server: three tools over streamable HTTP at `/mcp`.
//!
//! - `list-egress-routes` — the routes in force (no secrets: a credential shows as its header and
//!   scheme only);
//! - `request-egress` — asks for a new or changed route; blocks until the operator decides and
//!   returns `{status: approved|modified|rejected|timeout, notes}`;
//! - `ask-supervisor` — a question (waits for the reply) or a notice (`expects_reply: false`,
//!   returns at once).
//!
//! Arguments are checked by hand: a wrong one is a tool error that names the field, never a
//! protocol error or a crash. A call the client cancels (or whose connection drops) withdraws its
//! proposal.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bottle_egress::EgressListener;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, JsonObject, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use tower_service::Service as _;

use crate::Supervisor;
use crate::httpd::{self, error};
use crate::queue::{NewProposal, ProposalKind, Verdict, one_line};
use crate::route::{Extra, FieldError, RouteRequest, public_route};

/// The path the MCP endpoint is served at.
pub const MCP_PATH: &str = "/mcp";
/// Longest question.
const MAX_QUESTION: usize = 8000;

const LIST_ROUTES: &str = "list-egress-routes";
const REQUEST_EGRESS: &str = "request-egress";
const ASK_SUPERVISOR: &str = "ask-supervisor";

/// One MCP session's handler; every session shares the supervisor.
#[derive(Debug, Clone)]
struct SuperviseMcp {
    supervisor: Arc<Supervisor>,
}

pub(crate) async fn serve(supervisor: Arc<Supervisor>, listener: EgressListener, shutdown: impl Future<Output = ()>) {
    let stop = CancellationToken::new();
    let config = StreamableHttpServerConfig::default().with_cancellation_token(stop.child_token());
    let service: StreamableHttpService<SuperviseMcp, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(SuperviseMcp { supervisor: supervisor.clone() }),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let shutdown = async move {
        shutdown.await;
        // Ends open sessions and streams, so waiting tool calls are withdrawn.
        stop.cancel();
    };
    httpd::serve("mcp", listener, shutdown, move || {
        let service = service.clone();
        service_fn(move |req: Request<Incoming>| {
            let mut service = service.clone();
            async move {
                if req.uri().path() != MCP_PATH {
                    return Ok::<_, Infallible>(error(StatusCode::NOT_FOUND, "the MCP endpoint is `/mcp`"));
                }
                service.call(req).await
            }
        })
    })
    .await;
}

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

fn route_matches_schema() -> Value {
    json!({
        "type": "array",
        "description": "Optional. When given, a request must satisfy at least one entry; every condition inside an entry must hold. Omit to allow every path and method.",
        "items": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "paths": {
                    "type": "array",
                    "description": "Any one must hold.",
                    "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["type", "value"],
                        "properties": {
                            "type": {"type": "string", "enum": ["prefix", "exact", "regex"],
                                     "description": "`prefix` matches whole path segments (`/a` matches `/a` and `/a/b`, not `/ab`); `regex` is anchored at both ends."},
                            "value": {"type": "string", "description": "The path (starting with `/`) or regex."}
                        }
                    }
                },
                "methods": {"type": "array", "items": {"type": "string"}, "description": "Allowed HTTP methods; any when absent."},
                "headers": {
                    "type": "array",
                    "description": "All must hold.",
                    "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "type": {"type": "string", "enum": ["exact", "regex", "present"], "default": "exact"},
                            "value": {"type": "string", "description": "Required unless `type` is `present`."}
                        }
                    }
                }
            }
        }
    })
}

/// The three tools with their input schemas.
fn tools() -> Vec<Tool> {
    let read_only = ToolAnnotations::new().read_only(true);
    vec![
        Tool::new(
            LIST_ROUTES,
            "List the egress routes in force for this bottle: which hosts the agent may reach and \
             which paths, methods and headers each allows. Credentials are never shown; a route that \
             injects one shows its header and scheme.",
            schema(json!({"type": "object", "properties": {}, "additionalProperties": false})),
        )
        .with_annotations(read_only),
        Tool::new(
            REQUEST_EGRESS,
            "Ask the human operator for access to a host (a new route) or for a change to an existing \
             route. Blocks until the operator decides (or the request times out) and returns \
             `{status: approved|modified|rejected|timeout, notes}`. An approved route is in force at \
             once for the rest of this bottle's life. A requested route never carries credentials.",
            schema(json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["host", "justification"],
                "properties": {
                    "host": {"type": "string", "description": "Exact host name or IP, optionally `host:port` (no wildcards, no URL)."},
                    "matches": route_matches_schema(),
                    "justification": {"type": "string", "description": "Why the task needs this access; the operator reads it."}
                }
            })),
        ),
        Tool::new(
            ASK_SUPERVISOR,
            "Ask the human operator a question, or tell them something. With `expects_reply` (the \
             default) the call waits for the operator's reply; with `expects_reply: false` it returns \
             at once with an acknowledgement.",
            schema(json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["question"],
                "properties": {
                    "question": {"type": "string", "description": "The question or notice, in plain text."},
                    "expects_reply": {"type": "boolean", "default": true, "description": "Wait for an answer (default) or only notify."}
                }
            })),
        ),
    ]
}

impl ServerHandler for SuperviseMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("bot-bottle-supervise", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "The bottle's supervisor. Use `list-egress-routes` to see where you may connect, \
                 `request-egress` to ask the operator for a host you are refused (the call waits for \
                 the decision), and `ask-supervisor` to ask or tell the operator something.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let result = match request.name.as_ref() {
            LIST_ROUTES => self.list_routes(&args),
            REQUEST_EGRESS => self.request_egress(&args, &context.ct).await,
            ASK_SUPERVISOR => self.ask(&args, &context.ct).await,
            other => {
                return Err(ErrorData::invalid_params(
                    format!(
                        "unknown tool `{}`; the tools are `{LIST_ROUTES}`, `{REQUEST_EGRESS}`, `{ASK_SUPERVISOR}`",
                        one_line(other, 64)
                    ),
                    None,
                ));
            }
        };
        Ok(result.unwrap_or_else(|e| invalid(&e)).into())
    }
}

/// A tool error naming the argument.
fn invalid(error: &FieldError) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!("invalid argument {error}"))])
}

impl SuperviseMcp {
    fn list_routes(&self, args: &Map<String, Value>) -> Result<CallToolResult, FieldError> {
        if let Some(key) = args.keys().next() {
            return Err(FieldError::new(key.as_str(), "unknown field; this tool takes no arguments"));
        }
        Ok(CallToolResult::structured(json!({ "routes": self.supervisor.public_routes() })))
    }

    async fn request_egress(
        &self,
        args: &Map<String, Value>,
        cancelled: &CancellationToken,
    ) -> Result<CallToolResult, FieldError> {
        let queue = self.supervisor.queue();
        let (route, justification) = RouteRequest::parse(args, Extra::Justification, queue.scrubber())?;
        let justification = queue.scrub(&justification.unwrap_or_default());
        let routes = self.supervisor.egress.routes();
        let current = route.current(&routes);
        let change = if current.is_some() { "change route" } else { "new route" };
        let proposal = NewProposal {
            kind: ProposalKind::EgressRoute,
            summary: format!("{change} `{}`: {}", route.host, one_line(&justification, 120)),
            detail: json!({
                "host": route.host,
                "matches": route.matches,
                "justification": justification,
                "change": if current.is_some() { "replace" } else { "add" },
                "current": current.map(public_route),
                "proposed": public_route(&route.to_route(current)),
            }),
            route: Some(route.clone()),
        };
        let verdict = tokio::select! {
            verdict = queue.submit(proposal) => verdict,
            () = cancelled.cancelled() => Verdict::Rejected { reason: "the request was cancelled".into() },
        };
        let timeout = queue.timeout().as_secs();
        let (notes, applied) = match &verdict {
            Verdict::Approved { reason, .. } => (
                with_reason(
                    format!("approved: the route for `{}` is in force for the rest of this bottle's life", route.host),
                    reason.as_deref(),
                ),
                Some(&route),
            ),
            Verdict::Modified { route: edited, reason } => (
                with_reason(
                    format!(
                        "approved with changes: the operator's route for `{}` is in force for the rest of this \
                         bottle's life; see `route`",
                        edited.host
                    ),
                    reason.as_deref(),
                ),
                Some(edited),
            ),
            Verdict::Rejected { reason } => (format!("rejected: {reason}"), None),
            Verdict::TimedOut => (format!("no decision within {timeout} s; the request was rejected"), None),
        };
        let mut result = json!({ "status": verdict.status(), "notes": notes });
        if let Some(applied) = applied {
            let routes = self.supervisor.egress.routes();
            if let Some(route) = applied.current(&routes) {
                result["route"] = public_route(route);
            }
        }
        Ok(CallToolResult::structured(result))
    }

    async fn ask(
        &self,
        args: &Map<String, Value>,
        cancelled: &CancellationToken,
    ) -> Result<CallToolResult, FieldError> {
        if let Some(key) = args.keys().find(|k| !matches!(k.as_str(), "question" | "expects_reply")) {
            return Err(FieldError::new(key.as_str(), "unknown field; expected `question` and `expects_reply`"));
        }
        let question = match args.get("question") {
            Some(Value::String(q)) if q.trim().is_empty() => {
                return Err(FieldError::new("question", "must not be empty"));
            }
            Some(Value::String(q)) if q.chars().count() > MAX_QUESTION => {
                return Err(FieldError::new("question", format!("is longer than {MAX_QUESTION} characters")));
            }
            Some(Value::String(q)) => q.clone(),
            Some(_) => return Err(FieldError::new("question", "must be a string")),
            None => return Err(FieldError::new("question", "is required")),
        };
        let expects_reply = match args.get("expects_reply") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(FieldError::new("expects_reply", "must be `true` or `false`")),
        };
        let queue = self.supervisor.queue();
        let question = queue.scrub(&question);
        let proposal = NewProposal {
            kind: ProposalKind::Question,
            summary: format!("{}: {}", if expects_reply { "question" } else { "notice" }, one_line(&question, 160)),
            detail: json!({ "question": question, "expects_reply": expects_reply }),
            route: None,
        };
        if !expects_reply {
            let result = match queue.notify(proposal) {
                Some(id) => json!({ "status": "delivered", "reply": "the operator has been notified", "id": id }),
                None => {
                    json!({ "status": "rejected", "reply": "too many proposals are waiting; the notice was dropped" })
                }
            };
            return Ok(CallToolResult::structured(result));
        }
        let verdict = tokio::select! {
            verdict = queue.submit(proposal) => verdict,
            () = cancelled.cancelled() => Verdict::Rejected { reason: "the question was cancelled".into() },
        };
        let result = match verdict {
            Verdict::Approved { reply, reason, .. } => json!({
                "status": "answered",
                "reply": reply.or(reason).unwrap_or_else(|| "acknowledged (no reply text)".into()),
            }),
            Verdict::Modified { .. } => json!({ "status": "answered", "reply": "acknowledged (no reply text)" }),
            Verdict::Rejected { reason } => {
                json!({ "status": "rejected", "reply": format!("the operator declined: {reason}") })
            }
            Verdict::TimedOut => json!({
                "status": "timeout",
                "reply": format!("no answer within {} s", queue.timeout().as_secs()),
            }),
        };
        Ok(CallToolResult::structured(result))
    }
}

fn with_reason(text: String, reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!("{text} (operator: {reason})"),
        None => text,
    }
}
