//! The load client of `scripts/bench-egress`: keep-alive HTTPS over HTTP/1.1, either straight to the
//! upstream or through an HTTP proxy (one `CONNECT`, one TLS handshake per connection, then many
//! requests on it). Prints one JSON object with requests/s and latency percentiles.
//!
//! ```text
//! cargo run --release -p bottle-egress --example egress_load -- \
//!     --url https://upstream.test:8443/ --ca ca.crt [--proxy 127.0.0.1:9099 | --connect 127.0.0.1] \
//!     [--concurrency 1] [--duration 5] [--warmup 1] [--requests N] [--method GET] [--body-bytes 0] \
//!     [--threads 1] [--label name]
//! ```
//!
//! Only requests that start after the warm-up are counted. A connection that fails is counted as an
//! error and reopened.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Debug, Clone)]
struct Args {
    url: Uri,
    proxy: Option<String>,
    connect: Option<String>,
    ca: Vec<PathBuf>,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    requests: Option<u64>,
    method: Method,
    body_bytes: usize,
    threads: usize,
    label: String,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut a = Args {
        url: Uri::from_static("https://localhost/"),
        proxy: None,
        connect: None,
        ca: Vec::new(),
        concurrency: 1,
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        requests: None,
        method: Method::GET,
        body_bytes: 0,
        threads: 1,
        label: String::new(),
    };
    let secs = |v: String| -> Result<Duration, BoxError> { Ok(Duration::from_secs_f64(v.parse()?)) };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => a.url = value()?.parse()?,
            "--proxy" => a.proxy = Some(value()?),
            "--connect" => a.connect = Some(value()?),
            "--ca" => a.ca.push(PathBuf::from(value()?)),
            "--concurrency" => a.concurrency = value()?.parse()?,
            "--duration" => a.duration = secs(value()?)?,
            "--warmup" => a.warmup = secs(value()?)?,
            "--requests" => a.requests = Some(value()?.parse()?),
            "--method" => a.method = value()?.parse()?,
            "--body-bytes" => a.body_bytes = value()?.parse()?,
            "--threads" => a.threads = value()?.parse()?,
            "--label" => a.label = value()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if a.url.scheme_str() != Some("https") || a.url.host().is_none() {
        return Err("--url must be https://HOST[:PORT]/PATH".into());
    }
    if a.ca.is_empty() {
        return Err("--ca is required (the CA the client trusts)".into());
    }
    a.concurrency = a.concurrency.max(1);
    Ok(a)
}

fn tls_connector(args: &Args) -> Result<tokio_rustls::TlsConnector, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    for path in &args.ca {
        for cert in CertificateDer::pem_file_iter(path)? {
            roots.add(cert?)?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// TCP (+ CONNECT) + TLS + HTTP/1.1 handshake: one keep-alive connection.
async fn open(args: &Args, tls: &tokio_rustls::TlsConnector) -> Result<SendRequest<Full<Bytes>>, BoxError> {
    let host = args.url.host().ok_or("no host")?.to_owned();
    let port = args.url.port_u16().unwrap_or(443);
    let dial = match (&args.proxy, &args.connect) {
        (Some(proxy), _) => proxy.clone(),
        (None, Some(ip)) => format!("{ip}:{port}"),
        (None, None) => format!("{host}:{port}"),
    };
    let mut tcp = TcpStream::connect(dial).await?;
    tcp.set_nodelay(true)?;
    if args.proxy.is_some() {
        let connect = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n");
        tcp.write_all(connect.as_bytes()).await?;
        // The proxy sends nothing after its response head until our ClientHello, so reading in
        // chunks cannot swallow TLS bytes.
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 512];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await?;
            if n == 0 || head.len() > 16 * 1024 {
                return Err("proxy closed the connection during CONNECT".into());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let status = head.split(|b| *b == b' ').nth(1).unwrap_or_default();
        if status != b"200" {
            let line = String::from_utf8_lossy(&head);
            return Err(format!("CONNECT refused: {}", line.lines().next().unwrap_or_default()).into());
        }
    }
    let tls = tls.connect(ServerName::try_from(host)?, tcp).await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

#[derive(Debug, Default)]
struct ConnResult {
    latencies_us: Vec<u64>,
    errors: u64,
    connects: u64,
    connect_us: u64,
    first_error: Option<String>,
}

async fn one_request(
    send: &mut SendRequest<Full<Bytes>>,
    args: &Args,
    authority: &str,
    path: &str,
    body: &Bytes,
) -> Result<(), BoxError> {
    send.ready().await?;
    let mut builder = Request::builder().method(args.method.clone()).uri(path).header(header::HOST, authority);
    if !body.is_empty() {
        builder = builder.header(header::CONTENT_TYPE, "text/plain");
    }
    let response = send.send_request(builder.body(Full::new(body.clone()))?).await?;
    let status = response.status();
    response.into_body().collect().await?;
    if status != StatusCode::OK {
        return Err(format!("status {status}").into());
    }
    Ok(())
}

async fn run_connection(
    args: Arc<Args>,
    tls: tokio_rustls::TlsConnector,
    body: Bytes,
    measure_from: Instant,
    deadline: Instant,
    budget: Arc<AtomicU64>,
) -> ConnResult {
    let mut result = ConnResult::default();
    let authority = args.url.authority().map(|a| a.as_str().to_owned()).unwrap_or_default();
    let path = args.url.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut send = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if now >= measure_from
            && budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1)).is_err()
        {
            break;
        }
        if send.is_none() {
            let started = Instant::now();
            match open(&args, &tls).await {
                Ok(s) => {
                    result.connects += 1;
                    result.connect_us += u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    send = Some(s);
                }
                Err(error) => {
                    result.errors += 1;
                    result.first_error.get_or_insert_with(|| error.to_string());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some(s) = send.as_mut() else { continue };
        let started = Instant::now();
        match one_request(s, &args, &authority, &path, &body).await {
            Ok(()) if started >= measure_from => {
                result.latencies_us.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            Ok(()) => {}
            Err(error) => {
                result.errors += 1;
                result.first_error.get_or_insert_with(|| error.to_string());
                send = None;
            }
        }
    }
    result
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn main() -> Result<(), BoxError> {
    let args = Arc::new(parse_args()?);
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?
    };
    let tls = tls_connector(&args)?;
    // Plain text without anything secret-looking: DLP scans it fully and finds nothing.
    let line = b"The quick brown fox jumps over the lazy dog; lorem ipsum dolor sit amet, 0123456789.\n";
    let body: Bytes = line.iter().copied().cycle().take(args.body_bytes).collect::<Vec<u8>>().into();

    let results = runtime.block_on(async {
        let start = Instant::now();
        let measure_from = start + args.warmup;
        let deadline = measure_from + args.duration;
        let budget = Arc::new(AtomicU64::new(args.requests.unwrap_or(u64::MAX)));
        let tasks: Vec<_> = (0..args.concurrency)
            .map(|_| {
                tokio::spawn(run_connection(
                    args.clone(),
                    tls.clone(),
                    body.clone(),
                    measure_from,
                    deadline,
                    budget.clone(),
                ))
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await?);
        }
        let measured = Instant::now().saturating_duration_since(measure_from);
        Ok::<_, BoxError>((results, measured))
    });
    let (results, measured) = results?;

    let mut latencies: Vec<u64> = results.iter().flat_map(|r| r.latencies_us.iter().copied()).collect();
    latencies.sort_unstable();
    let errors: u64 = results.iter().map(|r| r.errors).sum();
    let connects: u64 = results.iter().map(|r| r.connects).sum();
    let connect_us: u64 = results.iter().map(|r| r.connect_us).sum();
    let first_error = results.iter().find_map(|r| r.first_error.clone());
    let secs = measured.as_secs_f64().max(1e-9);
    let count = latencies.len() as f64;
    let mean_ms = if latencies.is_empty() { 0.0 } else { latencies.iter().sum::<u64>() as f64 / count / 1000.0 };
    let out = serde_json::json!({
        "label": args.label,
        "via": args.proxy.as_deref().unwrap_or("direct"),
        "method": args.method.as_str(),
        "body_bytes": args.body_bytes,
        "concurrency": args.concurrency,
        "seconds": secs,
        "requests": latencies.len(),
        "errors": errors,
        "first_error": first_error,
        "rps": count / secs,
        "mib_per_s": count * args.body_bytes as f64 / secs / (1024.0 * 1024.0),
        "latency_ms": {
            "mean": mean_ms,
            "p50": percentile(&latencies, 50.0),
            "p90": percentile(&latencies, 90.0),
            "p99": percentile(&latencies, 99.0),
            "max": percentile(&latencies, 100.0),
        },
        "connects": connects,
        "connect_ms_mean": if connects == 0 { 0.0 } else { connect_us as f64 / connects as f64 / 1000.0 },
    });
    println!("{out}");
    if latencies.is_empty() {
        return Err(format!("no successful request ({})", first_error.unwrap_or_default()).into());
    }
    Ok(())
}
