//! `git ls-remote` and `git clone` over HTTPS through the proxy, against `git http-backend` run as a
//! CGI behind the test upstream.

use std::path::Path;
use std::process::Stdio;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use tokio::io::AsyncWriteExt as _;

use crate::support::*;

/// Runs `git http-backend` for one request (CGI/1.1) and turns its output into a response.
pub async fn http_backend(root: &Path, parts: &http::request::Parts, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or(""))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("GIT_PROTOCOL", parts.headers.get("git-protocol").and_then(|v| v.to_str().ok()).unwrap_or(""))
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("git http-backend starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&body).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.stdout.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (head_end, sep) = split.expect("CGI output has a header block");
    let head = String::from_utf8_lossy(&out.stdout[..head_end]).into_owned();
    let mut response = Response::builder();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        if name.eq_ignore_ascii_case("status") {
            let code: u16 = value.trim().split(' ').next().unwrap().parse().unwrap();
            response = response.status(code);
        } else {
            response = response.header(name.trim(), value.trim());
        }
    }
    response.body(Full::new(Bytes::from(out.stdout[head_end + sep..].to_vec()))).unwrap()
}

fn git(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

async fn run_git(proxy: &Proxy, cwd: &Path, args: &[&str]) -> Output {
    let out = tokio::process::Command::new("git")
        .arg("-c")
        .arg(format!("http.proxy={}", proxy.url()))
        .arg("-c")
        .arg(format!("http.sslCAInfo={}", proxy.ca_pem.display()))
        .args(args)
        .current_dir(cwd)
        .env("GIT_TERMINAL_PROMPT", "0")
        // The environment may point git at the system bundle, which would override `http.sslCAInfo`.
        .env("GIT_SSL_CAINFO", &proxy.ca_pem)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .output()
        .await
        .unwrap();
    let output = Output {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_no_secret("git stdout", &output.stdout);
    assert_no_secret("git stderr", &output.stderr);
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_ls_remote_and_clone_over_https_through_the_proxy() {
    let repos = tempfile::tempdir().unwrap();
    let work = repos.path().join("work");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("README"), "hello\n").unwrap();
    git(&work, &["add", "README"]);
    git(&work, &["commit", "-q", "-m", "init"]);
    git(repos.path(), &["clone", "-q", "--bare", "work", "repo.git"]);

    let world = World::with_git(Some(repos.path().to_path_buf())).await;
    let mut route = route(GIT_HOST, world.port());
    route.auth = Some(bottle_egress::AuthConfig::bearer_like("Basic", "API_TOKEN"));
    let proxy = world.proxy(ProxyOptions { routes: vec![route], ..ProxyOptions::default() }).await;
    let url = format!("https://{GIT_HOST}:{}/repo.git", world.port());

    let out = run_git(&proxy, repos.path(), &["ls-remote", &url]).await;
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(out.stdout.contains("refs/heads/main"), "{}", out.stdout);
    assert_eq!(world.upstream.last().header("authorization"), vec![format!("Basic {ROUTE_TOKEN}")]);

    let out = run_git(&proxy, repos.path(), &["clone", "-q", &url, "cloned"]).await;
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(repos.path().join("cloned/README")).unwrap(), "hello\n");

    let denied = format!("https://{EVIL_HOST}:{}/repo.git", world.port());
    let out = run_git(&proxy, repos.path(), &["ls-remote", &denied]).await;
    assert_ne!(out.status, 0);
    assert_logs_clean();
    assert_no_secret("audit log", &proxy.audit_text());
}
