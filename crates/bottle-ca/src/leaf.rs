//! The bounded in-memory cache of leaf certificates and the SNI-driven certificate resolver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::{Ca, CaError};

/// How many leaf certificates a [`Ca`] keeps by default; a bottle talks to a handful of hosts.
pub const DEFAULT_LEAF_CACHE_CAPACITY: usize = 1024;

/// One minted leaf: its certificate chain and key, and a ready server configuration presenting it.
#[derive(Debug)]
pub(crate) struct Leaf {
    pub(crate) certified_key: Arc<CertifiedKey>,
    pub(crate) server_config: Arc<ServerConfig>,
}

/// Host → leaf, evicting the least recently used entry when full.
///
/// A linear scan on eviction is fine: eviction only happens when minting, which costs far more.
#[derive(Debug)]
pub(crate) struct LeafCache {
    capacity: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    clock: u64,
    entries: HashMap<String, (Arc<Leaf>, u64)>,
}

impl LeafCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), inner: Mutex::new(CacheInner::default()) }
    }

    pub(crate) fn get_or_try_insert(
        &self,
        host: &str,
        mint: impl FnOnce() -> Result<Leaf, CaError>,
    ) -> Result<Arc<Leaf>, CaError> {
        {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            inner.clock += 1;
            let now = inner.clock;
            if let Some((leaf, used)) = inner.entries.get_mut(host) {
                *used = now;
                return Ok(leaf.clone());
            }
        }
        // Mint outside the lock so one slow signature does not stall every other handshake; two
        // racing mints for one host both produce valid leaves and the second simply wins.
        let leaf = Arc::new(mint()?);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.entries.len() >= self.capacity && !inner.entries.contains_key(host) {
            let oldest = inner.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                inner.entries.remove(&oldest);
            }
        }
        inner.clock += 1;
        let now = inner.clock;
        inner.entries.insert(host.to_owned(), (leaf.clone(), now));
        Ok(leaf)
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).entries.len()
    }
}

/// Always presents one certificate (the per-host configurations).
#[derive(Debug)]
pub(crate) struct FixedResolver(pub(crate) Arc<CertifiedKey>);

impl ResolvesServerCert for FixedResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Presents a leaf for whatever SNI name the client asks for, so one [`ServerConfig`] serves any host.
///
/// Clients that send no SNI (IP-literal targets) get `fallback_host`'s leaf when one is set, else the
/// handshake fails.
#[derive(Debug)]
pub struct SniResolver {
    ca: Arc<Ca>,
    fallback_host: Option<String>,
}

impl SniResolver {
    /// A resolver minting from `ca`, with no fallback for SNI-less clients.
    pub fn new(ca: Arc<Ca>) -> Self {
        Self { ca, fallback_host: None }
    }

    /// Sets the host whose leaf is presented to clients that send no SNI.
    #[must_use]
    pub fn with_fallback_host(mut self, host: impl Into<String>) -> Self {
        self.fallback_host = Some(host.into());
        self
    }

    /// A server configuration (ALPN h2 + http/1.1) using this resolver.
    pub fn into_server_config(self) -> Result<Arc<ServerConfig>, CaError> {
        Ok(Arc::new(crate::authority::server_config_with(Arc::new(self))?))
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = client_hello.server_name().or(self.fallback_host.as_deref())?;
        match self.ca.certified_key(host) {
            Ok(key) => Some(key),
            Err(error) => {
                tracing::warn!(host, %error, "cannot mint leaf certificate");
                None
            }
        }
    }
}

impl Ca {
    /// How many leaf certificates are cached right now.
    pub fn cached_leaf_count(&self) -> usize {
        self.leaves.len()
    }
}
