//! The control API the host's `bot-bottle` uses: plain HTTP/1.1 JSON, every request behind
//! `Authorization: Bearer <token>`.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /v1/health` | `{"status":"ok"}` |
//! | `GET /v1/proposals` | pending proposals, oldest first |
//! | `GET /v1/proposals/{id}` | one pending proposal; 404 when unknown, expired or withdrawn; 409 when decided |
//! | `POST /v1/proposals/{id}/decision` | `{id, status}`; 404, 409, or 400 naming the bad field |
//! | `GET /v1/routes` | the routes in force, without secrets |
//! | `GET /v1/counters` | `{"hosts": {host: {allowed, denied, dlp_hits}}}` |
//!
//! Errors are `{"error": "…"}`. The token is compared in constant time (over SHA-256 digests, so
//! neither its value nor its length leaks through timing).

use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use bottle_egress::EgressListener;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::decision::DecideError;
use crate::httpd::{self, ResponseBody, error, json};
use crate::queue::ClaimError;
use crate::{SuperviseError, Supervisor};

/// Largest decision body.
const MAX_BODY: usize = 64 * 1024;
/// Shortest token accepted.
const MIN_TOKEN: usize = 16;

/// The control API's bearer token, kept only as its SHA-256 digest.
#[derive(Clone)]
pub struct ControlToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for ControlToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlToken(«redacted»)")
    }
}

impl ControlToken {
    /// A token from its value.
    #[must_use]
    pub fn new(value: &str) -> Self {
        Self { digest: Sha256::digest(value.as_bytes()).into() }
    }

    /// Reads the token from `path`: a regular file that only its owner may read or write (no group
    /// or other permission bits), holding at least 16 characters (one trailing newline is dropped).
    pub fn read(path: &Path) -> Result<Self, SuperviseError> {
        use std::os::unix::fs::PermissionsExt as _;
        let fail = |problem: String| SuperviseError::ControlToken { path: path.to_path_buf(), problem };
        let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        if !meta.is_file() {
            return Err(fail("is not a regular file".into()));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(fail(format!("has mode {mode:04o}; it must be 0600 (readable by its owner only)")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        let value = text.strip_suffix('\n').unwrap_or(&text);
        let value = value.strip_suffix('\r').unwrap_or(value);
        if value.len() < MIN_TOKEN || value.chars().any(char::is_whitespace) {
            return Err(fail(format!("must hold one token of at least {MIN_TOKEN} characters without spaces")));
        }
        Ok(Self::new(value))
    }

    /// Whether an `Authorization` header value carries this token.
    fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(presented) = authorization.and_then(|v| v.strip_prefix(b"Bearer ")) else { return false };
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest.iter().zip(self.digest.iter()).fold(0_u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

pub(crate) async fn serve(
    supervisor: Arc<Supervisor>,
    token: ControlToken,
    listener: EgressListener,
    shutdown: impl Future<Output = ()>,
) {
    let token = Arc::new(token);
    httpd::serve("control", listener, shutdown, move || {
        let supervisor = supervisor.clone();
        let token = token.clone();
        service_fn(move |req| {
            let supervisor = supervisor.clone();
            let token = token.clone();
            async move { Ok::<_, Infallible>(handle(&supervisor, &token, req).await) }
        })
    })
    .await;
}

async fn handle(supervisor: &Supervisor, token: &ControlToken, req: Request<Incoming>) -> Response<ResponseBody> {
    if !token.admits(req.headers().get(header::AUTHORIZATION).map(http::HeaderValue::as_bytes)) {
        let mut response = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        response.headers_mut().insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        return response;
    }
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let get = req.method() == Method::GET;
    match segments.as_slice() {
        ["v1", "health"] if get => json(StatusCode::OK, &json!({ "status": "ok" })),
        ["v1", "proposals"] if get => json(StatusCode::OK, &json!(supervisor.queue().list())),
        ["v1", "proposals", id] if get => match supervisor.queue().get(id) {
            Ok(view) => json(StatusCode::OK, &json!(view)),
            Err(e) => claim_error(&e),
        },
        ["v1", "proposals", id, "decision"] if req.method() == Method::POST => {
            let id = (*id).to_owned();
            let Some(body) = httpd::read_body(req.into_body(), MAX_BODY).await else {
                return error(StatusCode::BAD_REQUEST, &format!("`body`: unreadable or larger than {MAX_BODY} bytes"));
            };
            match supervisor.decide(&id, &body) {
                Ok(status) => json(StatusCode::OK, &json!({ "id": id, "status": status })),
                Err(DecideError::Claim(e)) => claim_error(&e),
                Err(DecideError::Invalid(e)) => error(StatusCode::BAD_REQUEST, &e.to_string()),
                Err(e @ DecideError::Apply(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            }
        }
        ["v1", "routes"] if get => json(StatusCode::OK, &json!({ "routes": supervisor.public_routes() })),
        ["v1", "counters"] if get => json(StatusCode::OK, &json!({ "hosts": supervisor.egress.counters() })),
        ["v1", "health" | "proposals" | "routes" | "counters"] | ["v1", "proposals", _] => {
            httpd::method_not_allowed("GET")
        }
        ["v1", "proposals", _, "decision"] => httpd::method_not_allowed("POST"),
        _ => error(StatusCode::NOT_FOUND, "no such endpoint; see docs/sidecar.md for the control API"),
    }
}

fn claim_error(e: &ClaimError) -> Response<ResponseBody> {
    let status = match e {
        ClaimError::NotFound(_) => StatusCode::NOT_FOUND,
        ClaimError::AlreadyDecided { .. } => StatusCode::CONFLICT,
    };
    error(status, &e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_checks() {
        let token = ControlToken::new("0123456789abcdef0123");
        assert!(token.admits(Some(b"Bearer 0123456789abcdef0123")));
        for wrong in [&b"Bearer 0123456789abcdef0124"[..], b"bearer 0123456789abcdef0123", b"0123456789abcdef0123", b""]
        {
            assert!(!token.admits(Some(wrong)));
        }
        assert!(!token.admits(None));
        assert!(!format!("{token:?}").contains("0123"));
    }

    #[test]
    fn token_file_must_be_private_and_long_enough() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(ControlToken::read(&path).unwrap_err().to_string().contains("0644"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(ControlToken::read(&path).unwrap().admits(Some(b"Bearer 0123456789abcdef0123")));
        std::fs::write(&path, "short\n").unwrap();
        assert!(ControlToken::read(&path).is_err());
        assert!(ControlToken::read(&dir.path().join("missing")).is_err());
    }
}
