//! A small, fast HTTPS upstream for `scripts/bench-egress`: HTTP/1.1 keep-alive over rustls on
//! 127.0.0.1, one runtime thread by default so it leaves the other core to the proxy under test.
//!
//! `GET` answers a short `text/plain` body; any other method drains the request body and answers its
//! length. Prints the bound port on stdout once ready.
//!
//! ```text
//! cargo run --release -p bottle-egress --example egress_upstream -- --cert up.crt --key up.key [--port 0] [--threads 1]
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::convert::Infallible;
use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

type BoxError = Box<dyn Error + Send + Sync>;

const GET_BODY: &[u8] = b"hello from the bench upstream\n";

async fn serve(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = if req.method() == Method::GET {
        Bytes::from_static(GET_BODY)
    } else {
        let mut incoming = req.into_body();
        let mut total: u64 = 0;
        while let Some(frame) = incoming.frame().await {
            match frame {
                Ok(frame) => total += frame.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => break,
            }
        }
        Bytes::from(format!("received {total} bytes\n"))
    };
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    Ok(response)
}

fn main() -> Result<(), BoxError> {
    let (mut cert, mut key, mut port, mut threads) = (None, None, 0u16, 1usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--cert" => cert = Some(PathBuf::from(value()?)),
            "--key" => key = Some(PathBuf::from(value()?)),
            "--port" => port = value()?.parse()?,
            "--threads" => threads = value()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let (cert, key) = (cert.ok_or("--cert is required")?, key.ok_or("--key is required")?);
    let certs = CertificateDer::pem_file_iter(&cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
    };
    runtime.block_on(async move {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        println!("{}", listener.local_addr()?.port());
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service_fn(serve))
                    .await;
            });
        }
    })
}
