//! Per-host traffic counters for the operator: requests allowed, requests denied, DLP hits.
//!
//! Counted from the same decisions the audit log records, whatever the log level. Host names come
//! from the agent, so the table is bounded: past [`MAX_HOSTS`] distinct hosts, the rest are counted
//! under [`OTHER_HOSTS`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;

use crate::audit::{AuditEvent, Decision};

/// Most distinct hosts counted one by one.
pub const MAX_HOSTS: usize = 4096;
/// The key that collects hosts past [`MAX_HOSTS`].
pub const OTHER_HOSTS: &str = "(other hosts)";

/// A snapshot of one host's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HostCounts {
    /// Requests forwarded (including those forwarded with a warning).
    pub allowed: u64,
    /// Requests and tunnels refused.
    pub denied: u64,
    /// Requests (or WebSocket messages) in which outbound DLP found something.
    pub dlp_hits: u64,
}

#[derive(Debug, Default)]
struct HostCounters {
    allowed: AtomicU64,
    denied: AtomicU64,
    dlp_hits: AtomicU64,
}

/// The live counters of one proxy.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    hosts: RwLock<HashMap<String, Arc<HostCounters>>>,
}

impl Counters {
    /// Counts one audit decision; events that are not about a request, a tunnel or a WebSocket
    /// message (reloads, streamed-response notes) are not counted, so no request counts twice.
    pub(crate) fn record(&self, event: &AuditEvent) {
        let Some(host) = event.host.as_deref() else { return };
        let (allowed, denied, dlp) = match event.event {
            "request" => {
                (event.decision != Decision::Deny, event.decision == Decision::Deny, !event.findings.is_empty())
            }
            "connect" | "tls" => (false, event.decision == Decision::Deny, false),
            "websocket" => (false, false, true),
            _ => return,
        };
        let counters = self.host(host);
        if allowed {
            counters.allowed.fetch_add(1, Ordering::Relaxed);
        }
        if denied {
            counters.denied.fetch_add(1, Ordering::Relaxed);
        }
        if dlp {
            counters.dlp_hits.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn host(&self, host: &str) -> Arc<HostCounters> {
        if let Some(found) = self.hosts.read().unwrap_or_else(PoisonError::into_inner).get(host) {
            return found.clone();
        }
        let mut hosts = self.hosts.write().unwrap_or_else(PoisonError::into_inner);
        let key = if hosts.len() >= MAX_HOSTS && !hosts.contains_key(host) { OTHER_HOSTS } else { host };
        hosts.entry(key.to_owned()).or_default().clone()
    }

    /// Every host's counts, sorted by host.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, HostCounts> {
        self.hosts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(host, c)| {
                let counts = HostCounts {
                    allowed: c.allowed.load(Ordering::Relaxed),
                    denied: c.denied.load(Ordering::Relaxed),
                    dlp_hits: c.dlp_hits.load(Ordering::Relaxed),
                };
                (host.clone(), counts)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &'static str, decision: Decision, host: &str) -> AuditEvent {
        AuditEvent { host: Some(host.to_owned()), ..AuditEvent::new(kind, decision) }
    }

    #[test]
    fn requests_tunnels_and_hits_are_counted_per_host() {
        let counters = Counters::default();
        counters.record(&event("request", Decision::Allow, "a.example"));
        counters.record(&event("request", Decision::Warn, "a.example"));
        counters.record(&event("connect", Decision::Deny, "b.example"));
        let mut hit = event("request", Decision::Deny, "a.example");
        hit.findings.push(crate::FindingSummary { rule: "r".into(), location: "body".into(), structural: false });
        counters.record(&hit);
        counters.record(&event("reload", Decision::Warn, "a.example"));
        counters.record(&AuditEvent::new("request", Decision::Allow));
        let snapshot = counters.snapshot();
        assert_eq!(snapshot["a.example"], HostCounts { allowed: 2, denied: 1, dlp_hits: 1 });
        assert_eq!(snapshot["b.example"], HostCounts { allowed: 0, denied: 1, dlp_hits: 0 });
        assert_eq!(snapshot.len(), 2);
    }

    #[test]
    fn the_table_is_bounded() {
        let counters = Counters::default();
        for i in 0..MAX_HOSTS + 10 {
            counters.record(&event("connect", Decision::Deny, &format!("h{i}.example")));
        }
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.len(), MAX_HOSTS + 1);
        assert_eq!(snapshot[OTHER_HOSTS].denied, 10);
    }
}
