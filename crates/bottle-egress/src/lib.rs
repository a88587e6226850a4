//! The bottle's forward proxy: TLS interception, route policy, credential injection and DLP.

pub mod config;
pub mod policy;
