//! The sidecar end to end with the supervise plane: a real rmcp client on the MCP server, the
//! control API over HTTP, curl through the real egress proxy to a local HTTPS upstream, and git
//! through the real gate to a real `sshd`.

#![expect(clippy::unwrap_used, reason = "test fixtures fail loudly on setup errors")]

mod control;
mod dlp;
mod git;
mod mcp;
mod support;
