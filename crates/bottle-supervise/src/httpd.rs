//! The accept loop both servers share: HTTP/1.1 over TCP or a unix socket, a bound on how long a
//! request head may take, and a graceful stop.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bottle_egress::EgressListener;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;

/// The body type of every response.
pub(crate) type ResponseBody = BoxBody<Bytes, Infallible>;

/// Time allowed for a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time in-flight connections get after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<ResponseBody> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

/// A JSON error: `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response<ResponseBody> {
    json(status, &serde_json::json!({ "error": message }))
}

/// Accepts connections on `listener` and serves each with a service from `make` until `shutdown`
/// resolves, then gives open connections [`SHUTDOWN_GRACE`] to finish.
pub(crate) async fn serve<M, S>(
    name: &'static str,
    listener: EgressListener,
    shutdown: impl Future<Output = ()>,
    make: M,
) where
    M: Fn() -> S,
    S: Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    tracing::info!(server = name, "serving");
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener) => accepted,
        };
        match accepted {
            Ok(Stream::Tcp(stream)) => {
                let conn = builder.serve_connection(TokioIo::new(stream), make());
                let watched = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(error) = watched.await {
                        tracing::debug!(server = name, %error, "connection ended with an error");
                    }
                });
            }
            Ok(Stream::Unix(stream)) => {
                let conn = builder.serve_connection(TokioIo::new(stream), make());
                let watched = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(error) = watched.await {
                        tracing::debug!(server = name, %error, "connection ended with an error");
                    }
                });
            }
            Err(error) => {
                // Usually EMFILE; back off instead of spinning.
                tracing::warn!(server = name, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::info!(server = name, "connections still open after the grace period were dropped");
    }
    tracing::info!(server = name, "stopped");
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &EgressListener) -> std::io::Result<Stream> {
    match listener {
        EgressListener::Tcp(l) => l.accept().await.map(|(s, _)| Stream::Tcp(s)),
        EgressListener::Unix(l) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
    }
}

/// Reads a request body of at most `limit` bytes; `None` when it is larger or unreadable.
pub(crate) async fn read_body(body: Incoming, limit: usize) -> Option<Bytes> {
    http_body_util::Limited::new(body, limit).collect().await.ok().map(http_body_util::Collected::to_bytes)
}

/// `StatusCode` for "method not allowed" with the methods that are.
pub(crate) fn method_not_allowed(allowed: &'static str) -> Response<ResponseBody> {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, &format!("method not allowed; use {allowed}"));
    response.headers_mut().insert(header::ALLOW, http::HeaderValue::from_static(allowed));
    response
}
