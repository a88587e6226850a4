//! Codex's host credentials (`forward_host_credentials: true`): the host's `~/.codex/auth.json`
//! from a ChatGPT login is read and checked; its access token goes to the sidecar only, and the
//! agent gets a stand-in `auth.json` whose tokens carry the real expiry and account claims but no
//! signature and no secret, so Codex starts logged in and egress swaps the token on the way out.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bottle_core::Diagnostic;
use bottle_core::secret::Secret;
use serde_json::{Value, json};

/// The claims namespace Codex reads from its tokens.
const AUTH_CLAIMS: &str = "https://api.openai.com/auth";
/// The profile claims namespace.
const PROFILE_CLAIMS: &str = "https://api.openai.com/profile";
/// Marks the stand-in tokens; never a valid signature.
const STAND_IN_SIGNATURE: &str = "bot-bottle-placeholder";

/// What the launch takes from the host's login.
#[derive(Debug, Clone)]
pub struct HostAuth {
    /// The real access token: for the sidecar only.
    pub access_token: Secret,
    pub account_id: Option<String>,
    /// The access token's expiry (seconds since the epoch).
    pub expires_at: Option<i64>,
    id_claims: Value,
    access_claims: Value,
    last_refresh: Option<Value>,
    /// When the file was read (seconds since the epoch).
    read_at: i64,
}

fn bad(path: &Path, why: impl Into<String>, hint: &str) -> Diagnostic {
    Diagnostic::new(format!("cannot forward the Codex login in `{}`: {}", path.display(), why.into()))
        .key("agent_provider.forward_host_credentials")
        .hint(hint.to_owned())
}

/// The payload of a JWT, without checking its signature (the host's own file; the upstream checks).
fn claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Reads and checks `path` (the host's `~/.codex/auth.json`) at time `now` (seconds since the
/// epoch). API-key logins, expired tokens and malformed files are refused with what to do.
pub fn read_host_auth(path: &Path, now: i64) -> Result<HostAuth, Diagnostic> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad(
            path,
            e.to_string(),
            "log in on this machine with `codex login` (ChatGPT), or set `forward_host_credentials: false`",
        )
    })?;
    let relogin = "run `codex login` on this machine (ChatGPT sign-in) and start again";
    let doc: Value = serde_json::from_str(&text).map_err(|e| bad(path, format!("not JSON ({e})"), relogin))?;
    let tokens = doc.get("tokens").filter(|t| t.is_object());
    let api_key = doc.get("OPENAI_API_KEY").and_then(Value::as_str).filter(|k| !k.is_empty());
    let Some(tokens) = tokens else {
        return Err(if api_key.is_some() {
            bad(
                path,
                "it holds an API key, not a ChatGPT login",
                "API keys are not forwarded from this file: put the key in a host variable and give the bottle an \
                 `api.openai.com` route with `auth.token_ref`, or run `codex login` with ChatGPT",
            )
        } else {
            bad(path, "it has no `tokens`", relogin)
        });
    };
    let access = tokens
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad(path, "`tokens.access_token` is missing", relogin))?;
    let access_claims = claims(access).ok_or_else(|| bad(path, "`tokens.access_token` is not a JWT", relogin))?;
    let id_claims = tokens.get("id_token").and_then(Value::as_str).and_then(claims).unwrap_or_else(|| json!({}));
    let expires_at = access_claims.get("exp").and_then(Value::as_i64);
    if let Some(exp) = expires_at
        && exp <= now
    {
        return Err(bad(path, "the access token has expired", relogin));
    }
    let account_id = tokens.get("account_id").and_then(Value::as_str).map(str::to_owned).or_else(|| {
        access_claims
            .pointer(&format!("/{}/chatgpt_account_id", AUTH_CLAIMS.replace('/', "~1")))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    Ok(HostAuth {
        access_token: Secret::new(crate::apply::CODEX_SLOT, access.to_owned()),
        account_id,
        expires_at,
        id_claims,
        access_claims,
        last_refresh: doc.get("last_refresh").cloned().filter(Value::is_string),
        read_at: now,
    })
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A JWT-shaped stand-in: the kept claims, an unsigned header and a marker signature.
fn stand_in(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.{STAND_IN_SIGNATURE}")
}

/// Only the claims Codex shows or schedules by: expiry, issue time, account and plan, e-mail.
fn kept(claims: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for k in ["exp", "iat", "email", "email_verified", "sub", "aud", "iss", AUTH_CLAIMS, PROFILE_CLAIMS] {
        if let Some(v) = claims.get(k) {
            out.insert(k.to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

impl HostAuth {
    /// The access token the agent holds instead of the real one (egress's placeholder).
    pub fn placeholder(&self) -> String {
        stand_in(&kept(&self.access_claims))
    }

    /// The agent's `~/.codex/auth.json`: ChatGPT mode, stand-in tokens, no secret.
    pub fn agent_auth_json(&self) -> Vec<u8> {
        let mut tokens = json!({
            "id_token": stand_in(&kept(&self.id_claims)),
            "access_token": self.placeholder(),
            "refresh_token": STAND_IN_SIGNATURE,
        });
        if let Some(id) = &self.account_id {
            tokens["account_id"] = json!(id);
        }
        // Codex sends no credential at all without a `last_refresh`.
        let last_refresh = self.last_refresh.clone().unwrap_or_else(|| json!(rfc3339(self.read_at)));
        let doc = json!({ "OPENAI_API_KEY": null, "tokens": tokens, "last_refresh": last_refresh });
        serde_json::to_vec_pretty(&doc).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &Value) -> String {
        format!(
            "{}.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode("{\"alg\":\"RS256\"}"),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    fn write(doc: &Value) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(f.path(), doc.to_string()).expect("write");
        f
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_chatgpt_login_is_forwarded_as_a_stand_in() {
        let auth_claims = json!({"chatgpt_account_id": "acct-1", "chatgpt_plan_type": "plus"});
        let access = jwt(&json!({"exp": NOW + 3600, AUTH_CLAIMS: auth_claims, "secret_claim": "x"}));
        let id = jwt(&json!({"exp": NOW + 3600, "email": "me@example.com", AUTH_CLAIMS: auth_claims}));
        let f = write(&json!({"OPENAI_API_KEY": null, "tokens": {"access_token": access, "id_token": id,
            "refresh_token": "rt-secret", "account_id": "acct-1"}, "last_refresh": "2027-01-01T00:00:00Z"}));
        let auth = read_host_auth(f.path(), NOW).expect("accepted");
        assert_eq!(auth.access_token.expose(), access);
        assert_eq!(auth.expires_at, Some(NOW + 3600));
        let agent = String::from_utf8(auth.agent_auth_json()).expect("utf8");
        assert!(!agent.contains(&access) && !agent.contains("rt-secret") && !agent.contains("c2lnbmF0dXJl"), "{agent}");
        let doc: Value = serde_json::from_str(&agent).expect("json");
        let stand_in = doc["tokens"]["access_token"].as_str().expect("token");
        assert_eq!(stand_in, auth.placeholder());
        let c = claims(stand_in).expect("claims");
        assert_eq!(c["exp"], NOW + 3600);
        assert_eq!(c[AUTH_CLAIMS]["chatgpt_account_id"], "acct-1");
        assert!(c.get("secret_claim").is_none());
        assert_eq!(claims(doc["tokens"]["id_token"].as_str().expect("id")).expect("c")["email"], "me@example.com");
        assert_eq!(doc["tokens"]["account_id"], "acct-1");
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn api_keys_expired_and_malformed_files_are_refused() {
        let f = write(&json!({"OPENAI_API_KEY": "sk-xyz"}));
        let e = read_host_auth(f.path(), NOW).expect_err("api key").to_string();
        assert!(e.contains("API key") && !e.contains("sk-xyz"), "{e}");
        let f = write(&json!({"tokens": {"access_token": jwt(&json!({"exp": NOW - 1}))}}));
        assert!(read_host_auth(f.path(), NOW).expect_err("expired").to_string().contains("expired"));
        let f = write(&json!({"tokens": {"access_token": "not-a-jwt"}}));
        assert!(read_host_auth(f.path(), NOW).expect_err("malformed").to_string().contains("not a JWT"));
        let f = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(f.path(), "{").expect("write");
        assert!(read_host_auth(f.path(), NOW).expect_err("not json").to_string().contains("not JSON"));
        assert!(read_host_auth(Path::new("/nonexistent/auth.json"), NOW).is_err());
    }
}
