//! Loopback integration tests of the egress proxy with real clients (curl, git, reqwest) against
//! local HTTPS upstreams signed by a test CA; host names are mapped with `hosts`, so no DNS is used.

#![expect(clippy::unwrap_used, reason = "test fixtures fail loudly on setup errors")]

mod git;
mod proxy;
mod smuggling;
mod support;
