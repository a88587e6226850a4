//! `bot-bottle sidecar` as a real process: a local HTTPS upstream (OpenSSL certificate, Python
//! server), curl as the agent, signals for reload and shutdown, and the audit chain it leaves behind.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SECRET: &str = "sidecar-upstream-secret-5e1f0c2d9b";

const UPSTREAM: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("auth=" + self.headers.get("Authorization", "-")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(args: &[&str], dir: &Path) {
    let ok = Command::new("openssl").args(args).current_dir(dir).stderr(Stdio::null()).status().expect("openssl runs");
    assert!(ok.success(), "openssl {args:?}");
}

/// A test CA and a leaf for `upstream.test` signed by it (the CA is what egress trusts upstream).
fn upstream(dir: &Path) -> (Kill, u16, PathBuf) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "1", "-subj", "/CN=test upstream CA", "-keyout", "ca.key", "-out", "ca.crt"],
        ]
        .concat(),
        dir,
    );
    openssl(&[&["req"][..], &ec, &["-subj", "/CN=upstream.test", "-keyout", "up.key", "-out", "up.csr"]].concat(), dir);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:upstream.test\nbasicConstraints=critical,CA:FALSE\n")
        .expect("ext");
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "up.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "up.crt",
        ],
        dir,
    );
    let (cert, key) = (dir.join("up.crt"), dir.join("up.key"));
    let mut child = Command::new("python3")
        .args(["-c", UPSTREAM])
        .arg(&cert)
        .arg(&key)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("port line");
    (Kill(child), line.trim().parse().expect("port"), dir.join("ca.crt"))
}

fn write_config(path: &Path, state: &Path, secrets: &Path, port: u16, ca: &Path, routes: bool) {
    let routes = if routes {
        serde_json::json!([{"host": format!("upstream.test:{port}"), "auth": {"scheme": "Bearer", "token_slot": "UP_TOKEN"}}])
    } else {
        serde_json::json!([])
    };
    let config = serde_json::json!({
        "slug": "sidecar-test",
        "state_dir": state,
        "secrets_dir": secrets,
        "listen": {"egress": "tcp:127.0.0.1:0"},
        "egress": {"log": 1, "routes": routes, "upstream_ca": ca, "hosts": {"upstream.test": "127.0.0.1"}},
    });
    std::fs::write(path, serde_json::to_vec_pretty(&config).expect("json")).expect("write config");
}

/// Starts the sidecar and waits for its "egress listening" line; returns the child, the address and a
/// channel of every later stderr line.
fn start_sidecar(config: &Path) -> (Kill, String, mpsc::Receiver<String>) {
    let mut child = Kill(
        Command::new(assert_cmd::cargo::cargo_bin("bot-bottle"))
            .args(["sidecar", "--config"])
            .arg(config)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sidecar spawns"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else { continue };
        if line.contains("egress listening") {
            let v: serde_json::Value = serde_json::from_str(&line).expect("json log line");
            let addr = v["fields"]["addr"].as_str().expect("addr field").to_owned();
            return (child, addr, rx);
        }
        seen.push(line);
    }
    panic!("sidecar did not start listening: {seen:#?}");
}

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl").args(["-sS", "--max-time", "10"]).args(args).output().expect("curl runs");
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn sidecar_injects_denies_reloads_stops_and_leaves_a_verifiable_audit_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (state, secrets) = (tmp.path().join("state"), tmp.path().join("secrets"));
    std::fs::create_dir_all(&secrets).expect("mkdir");
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::write(secrets.join("UP_TOKEN"), SECRET).expect("secret");
    let (_up, port, up_ca) = upstream(tmp.path());
    let config = tmp.path().join("sidecar.json");
    write_config(&config, &state, &secrets, port, &up_ca, true);
    let (mut sidecar, addr, logs) = start_sidecar(&config);
    let proxy = format!("http://{addr}");
    let bottle_ca = state.join("ca/ca.crt");
    let ca = bottle_ca.to_str().expect("utf-8");
    let url = format!("https://upstream.test:{port}/x");

    // The agent's own credential is replaced by the real one.
    let (body, err) = curl(&["--proxy", &proxy, "--cacert", ca, "-H", "Authorization: Bearer placeholder", &url]);
    assert_eq!(body, format!("auth=Bearer {SECRET}"), "{err}");

    // A host without a route is refused before any TLS, with a reason.
    let (code, _) =
        curl(&["--proxy", &proxy, "--cacert", ca, "-o", "/dev/null", "-w", "%{http_connect}", "https://other.test/"]);
    assert_eq!(code, "403");

    let (health, _) =
        curl(&["--proxy", &proxy, "-o", "/dev/null", "-w", "%{http_code}", "http://_egress.local/health"]);
    assert_eq!(health, "200");
    let (allowlist, _) = curl(&["--proxy", &proxy, "http://_egress.local/allowlist"]);
    assert!(allowlist.contains("upstream.test") && !allowlist.contains(SECRET), "{allowlist}");

    // SIGHUP re-reads the routes: with none left, the same request is refused.
    write_config(&config, &state, &secrets, port, &up_ca, false);
    let pid = sidecar.0.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _) = curl(&["--proxy", &proxy, "--cacert", ca, "-o", "/dev/null", "-w", "%{http_connect}", &url]);
        if code == "403" {
            break;
        }
        assert!(Instant::now() < deadline, "routes were not reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }

    // SIGTERM: a clean exit.
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = sidecar.0.wait().expect("wait");
    assert!(status.success(), "sidecar exited with {status}");
    let logs: Vec<String> = logs.try_iter().collect();
    assert!(!logs.join("\n").contains(SECRET), "a log line holds the secret");

    // The audit log holds no secret and verifies; an edited line is detected.
    let audit = state.join("audit.jsonl");
    let text = std::fs::read_to_string(&audit).expect("audit log");
    assert!(text.lines().count() >= 2 && !text.contains(SECRET));
    let verify = |path: &Path| crate::bot_bottle().args(["audit", "verify"]).arg(path).output().expect("runs");
    let ok = verify(&audit);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let tampered = text.replacen("\"deny\"", "\"allow\"", 1);
    assert_ne!(tampered, text, "expected a deny line to tamper with");
    std::fs::write(&audit, tampered).expect("write");
    let bad = verify(&audit);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not intact"));
}

#[test]
fn sidecar_refuses_to_start_without_its_secret_or_its_port() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (state, secrets) = (tmp.path().join("state"), tmp.path().join("secrets"));
    std::fs::create_dir_all(&secrets).expect("mkdir");
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let config = tmp.path().join("sidecar.json");
    write_config(&config, &state, &secrets, 443, Path::new("/etc/ssl/certs/ca-certificates.crt"), true);
    let out = crate::bot_bottle().args(["sidecar", "--config"]).arg(&config).timeout(Duration::from_secs(20)).output();
    let out = out.expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("secret `UP_TOKEN` is missing"));

    // A port already taken: the sidecar exits non-zero instead of serving nothing.
    std::fs::write(secrets.join("UP_TOKEN"), SECRET).expect("secret");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).expect("read")).expect("json");
    v["listen"]["egress"] = format!("tcp:{}", taken.local_addr().expect("addr")).into();
    std::fs::File::create(&config).and_then(|mut f| f.write_all(v.to_string().as_bytes())).expect("write");
    let out = crate::bot_bottle().args(["sidecar", "--config"]).arg(&config).timeout(Duration::from_secs(20)).output();
    let out = out.expect("runs");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
}
