//! The relay that gives a `network=none` agent its services: it listens on loopback TCP ports inside
//! the agent and forwards every connection, byte for byte, to a unix socket the sidecar serves in a
//! volume both containers mount.
//!
//! It knows nothing of HTTP: whatever the agent sends reaches the sidecar unchanged, and the sidecar
//! decides. It fails closed — when the socket cannot be reached (sidecar gone, not up yet) the
//! client's connection is closed, never answered or routed elsewhere. The number of connections in
//! flight is bounded so a runaway agent cannot exhaust the relay's descriptors; a connection over the
//! limit is closed at once. Logs carry addresses and byte counts, never payloads.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Connections in flight across all mappings unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// How long a connect to the unix socket may take before the client is dropped; a live sidecar
/// accepts in microseconds, so anything slower is a dead or wedged one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One forwarding: `LISTEN=SOCKET`, e.g. `127.0.0.1:9099=/run/bot-bottle/sock/egress.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayMap {
    /// The TCP address to listen on.
    pub listen: SocketAddr,
    /// The unix socket each connection is forwarded to.
    pub target: PathBuf,
}

/// Why a `--map` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayMapError {
    #[error("`{0}` is not `ADDR:PORT=/path/to.sock`")]
    Shape(String),
    #[error("`{0}` is not a TCP address (expected e.g. `127.0.0.1:9099`)")]
    Address(String),
    #[error("`{0}` is not an absolute socket path")]
    Path(String),
}

impl FromStr for RelayMap {
    type Err = RelayMapError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (listen, target) = s.split_once('=').ok_or_else(|| RelayMapError::Shape(s.to_owned()))?;
        let listen = listen.parse().map_err(|_| RelayMapError::Address(listen.to_owned()))?;
        let target = PathBuf::from(target);
        // A relative path would resolve against whatever directory the relay happens to start in.
        if !target.is_absolute() {
            return Err(RelayMapError::Path(target.display().to_string()));
        }
        Ok(Self { listen, target })
    }
}

/// A relay whose listeners are bound; [`Relay::serve`] forwards until told to stop.
#[derive(Debug)]
pub struct Relay {
    listeners: Vec<(TcpListener, PathBuf)>,
    permits: Arc<Semaphore>,
}

impl Relay {
    /// Binds every mapping's address. Any address that cannot be bound fails the whole relay, so it
    /// never runs with some services missing.
    pub async fn bind(maps: &[RelayMap], max_connections: usize) -> std::io::Result<Self> {
        let mut listeners = Vec::with_capacity(maps.len());
        for map in maps {
            let listener = TcpListener::bind(map.listen)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", map.listen)))?;
            listeners.push((listener, map.target.clone()));
        }
        Ok(Self { listeners, permits: Arc::new(Semaphore::new(max_connections.max(1))) })
    }

    /// The bound addresses, in mapping order (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|(l, _)| l.local_addr().ok()).collect()
    }

    /// Accepts and forwards until `shutdown` completes. Connections already forwarding are left to
    /// finish on their own tasks.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let mut loops = JoinSet::new();
        for (listener, target) in self.listeners {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, target = %target.display(), "relay listening");
            }
            loops.spawn(accept_loop(listener, Arc::new(target), Arc::clone(&self.permits)));
        }
        tokio::select! {
            () = shutdown => {}
            // The loops only end if the runtime is going away; nothing to wait for then.
            _ = async { while loops.join_next().await.is_some() {} } => {}
        }
        loops.abort_all();
    }
}

async fn accept_loop(listener: TcpListener, target: Arc<PathBuf>, permits: Arc<Semaphore>) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning; the listener stays usable.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing the new connection");
            drop(client);
            continue;
        };
        let target = Arc::clone(&target);
        tokio::spawn(async move {
            forward(client, peer, &target).await;
            drop(permit);
        });
    }
}

async fn forward(mut client: TcpStream, peer: SocketAddr, target: &Path) {
    let upstream = tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(target)).await;
    let mut upstream = match upstream {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            // Fail closed: the client sees its connection closed, nothing else.
            tracing::warn!(%peer, target = %target.display(), %error, "service socket unreachable; closing");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, target = %target.display(), "service socket connect timed out; closing");
            return;
        }
    };
    // Small request/response exchanges (proxy CONNECT, health) should not wait on Nagle.
    let _ = client.set_nodelay(true);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((sent, received)) => tracing::debug!(%peer, sent, received, "connection closed"),
        Err(error) => tracing::debug!(%peer, %error, "connection ended with an error"),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::UnixListener;

    use super::*;

    /// A unix echo server in `dir`, returning the socket path.
    fn echo_server(dir: &Path) -> PathBuf {
        let path = dir.join("echo.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        path
    }

    async fn start(target: &Path, max: usize) -> SocketAddr {
        let map = RelayMap { listen: "127.0.0.1:0".parse().unwrap(), target: target.to_owned() };
        let relay = Relay::bind(&[map], max).await.unwrap();
        let addr = relay.local_addrs()[0];
        tokio::spawn(relay.serve(std::future::pending()));
        addr
    }

    /// Reads until EOF, with a deadline so a relay that forgets to close fails the test.
    async fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await.unwrap().unwrap_or(0);
        buf
    }

    #[test]
    fn parses_maps() {
        let m: RelayMap = "127.0.0.1:9099=/run/bot-bottle/sock/egress.sock".parse().unwrap();
        assert_eq!(m.listen, "127.0.0.1:9099".parse().unwrap());
        assert_eq!(m.target, Path::new("/run/bot-bottle/sock/egress.sock"));
        assert!(matches!("127.0.0.1:9099".parse::<RelayMap>(), Err(RelayMapError::Shape(_))));
        assert!(matches!("localhost:9099=/x.sock".parse::<RelayMap>(), Err(RelayMapError::Address(_))));
        assert!(matches!("127.0.0.1:9099=x.sock".parse::<RelayMap>(), Err(RelayMapError::Path(_))));
    }

    #[tokio::test]
    async fn forwards_bytes_both_ways_and_half_close() {
        let dir = tempfile::tempdir().unwrap();
        let addr = start(&echo_server(dir.path()), 8).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        c.write_all(&payload).await.unwrap();
        // Half-close: the echo server sees EOF, finishes, and the relay passes its EOF back.
        c.shutdown().await.unwrap();
        assert_eq!(read_to_eof(&mut c).await, payload);
    }

    #[tokio::test]
    async fn missing_socket_closes_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let addr = start(&dir.path().join("absent.sock"), 8).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let _ = c.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(read_to_eof(&mut c).await.is_empty());
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_closed() {
        let dir = tempfile::tempdir().unwrap();
        let addr = start(&echo_server(dir.path()), 1).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        first.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        let mut second = TcpStream::connect(addr).await.unwrap();
        assert!(read_to_eof(&mut second).await.is_empty(), "the second connection is over the limit");

        drop(first);
        // The permit comes back once the relay notices the close; retry briefly.
        for _ in 0..50 {
            let mut third = TcpStream::connect(addr).await.unwrap();
            if third.write_all(b"pong").await.is_ok()
                && third.shutdown().await.is_ok()
                && read_to_eof(&mut third).await == b"pong"
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the permit was never released");
    }

    #[tokio::test]
    async fn a_busy_address_fails_the_bind() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let map = RelayMap { listen: taken.local_addr().unwrap(), target: "/x.sock".into() };
        let err = Relay::bind(&[map], 1).await.unwrap_err();
        assert!(err.to_string().contains("cannot listen on"), "{err}");
    }
}
