//! The upstream side: a connector that honours static `hosts` entries, verifies TLS against the
//! system roots plus an optional extra bundle, and negotiates h2 or http/1.1 by ALPN.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls_pki_types::pem::PemObject as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::EgressError;
use crate::body::Body;
use crate::proposal::BoxFuture;

/// The pooled upstream HTTP client.
pub(crate) type UpstreamClient = Client<UpstreamConnector, Body>;

/// Builds the client TLS configuration: system roots plus `extra_ca`, our ring provider, and `alpn`.
pub(crate) fn tls_config(extra_ca: Option<&Path>, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>, EgressError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::warn!(errors = native.errors.len(), "some system root certificates could not be loaded");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "loaded system root certificates");
    if let Some(path) = extra_ca {
        let bad = |reason: String| EgressError::UpstreamCa { path: path.to_path_buf(), reason };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no certificates in bundle".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(bottle_ca::crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| EgressError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Builds a pooled client around a connector.
pub(crate) fn client(connector: UpstreamConnector) -> UpstreamClient {
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

/// Connects to `scheme://host:port`, resolving through `hosts` first, then DNS.
#[derive(Clone)]
pub(crate) struct UpstreamConnector {
    hosts: Arc<BTreeMap<String, IpAddr>>,
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
}

impl std::fmt::Debug for UpstreamConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConnector").field("hosts", &self.hosts).finish_non_exhaustive()
    }
}

impl UpstreamConnector {
    pub(crate) fn new(
        hosts: &BTreeMap<String, IpAddr>,
        tls: Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
    ) -> Self {
        let hosts = hosts.iter().map(|(k, v)| (k.trim_end_matches('.').to_ascii_lowercase(), *v)).collect();
        Self { hosts: Arc::new(hosts), tls: tokio_rustls::TlsConnector::from(tls), connect_timeout }
    }

    async fn connect(self, uri: Uri) -> io::Result<TokioIo<UpstreamStream>> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
        let host = uri.host().ok_or_else(|| invalid("upstream URI has no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addrs: Vec<SocketAddr> = if let Some(ip) = self.hosts.get(&host) {
            vec![SocketAddr::new(*ip, port)]
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else {
            tokio::net::lookup_host((host.as_str(), port)).await?.collect()
        };
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
        let mut tcp = None;
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    tcp = Some(stream);
                    break;
                }
                Ok(Err(e)) => last_error = e,
                Err(_) => last_error = io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            }
        }
        let tcp = tcp.ok_or(last_error)?;
        let _ = tcp.set_nodelay(true);
        if !https {
            return Ok(TokioIo::new(UpstreamStream::Plain(tcp)));
        }
        let name = ServerName::try_from(host).map_err(|_| invalid("invalid upstream server name"))?;
        let tls = tokio::time::timeout(self.connect_timeout, self.tls.connect(name, tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "upstream TLS handshake timed out"))??;
        Ok(TokioIo::new(UpstreamStream::Tls(Box::new(tls))))
    }
}

impl tower_service::Service<Uri> for UpstreamConnector {
    type Response = TokioIo<UpstreamStream>;
    type Error = io::Error;
    type Future = BoxFuture<'static, io::Result<Self::Response>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// A plain or TLS upstream connection.
#[derive(Debug)]
pub(crate) enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        match self {
            Self::Plain(_) => Connected::new(),
            Self::Tls(tls) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => Connected::new().negotiated_h2(),
            Self::Tls(_) => Connected::new(),
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
