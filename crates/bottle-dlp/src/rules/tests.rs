//! One true positive and at least one near miss per built-in rule.

use crate::{DlpConfig, Engine, Location};

use super::RULES;

/// Deterministic pseudo-random characters from `charset` (tests must not depend on real tokens).
fn chars(charset: &[u8], n: usize, seed: u64) -> String {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let idx = usize::try_from(state >> 33).unwrap() % charset.len();
            char::from(charset[idx])
        })
        .collect()
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const HEX: &[u8] = b"0123456789abcdef";

fn an(n: usize) -> String {
    chars(ALNUM, n, n as u64)
}

/// (rule id, true positives, near misses that must not fire this rule).
fn cases() -> Vec<(&'static str, Vec<String>, Vec<String>)> {
    vec![
        (
            "aws-access-key-id",
            vec!["id: AKIAIOSFODNN7EXAMPLE\n".into(), "ASIAY34FZKBOKMUTVV7A".into()],
            vec!["AKIA0123456789ABCDEF".into(), "AKIAIOSFODNN7EXAMPLEX".into(), "xAKIAIOSFODNN7EXAMPLE".into()],
        ),
        (
            "aws-secret-access-key",
            vec![
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
                "\"SecretAccessKey\": \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"".into(),
            ],
            vec!["aws_secret_access_key = wJalrXUtnFEMI/K7MDENG".into()],
        ),
        (
            "gcp-api-key",
            vec![format!("key=AIza{}&x", chars(B64URL, 35, 1))],
            vec![format!("AIza{} ", chars(B64URL, 30, 1))],
        ),
        (
            "gcp-service-account-key",
            vec![format!(
                "{{\"type\": \"service_account\", \"private_key\": \"-----BEGIN PRIVATE KEY-----\\n{}\\n-----END PRIVATE KEY-----\\n\"}}",
                chars(B64, 120, 2)
            )],
            vec!["{\"private_key\": \"REPLACE_ME\"}".into()],
        ),
        (
            "azure-storage-account-key",
            vec![format!(
                "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={}==;EndpointSuffix=core.windows.net",
                chars(B64, 86, 3)
            )],
            vec!["AccountKey=abc123==;".into()],
        ),
        (
            "azure-shared-access-key",
            vec![format!("Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={}=", chars(B64, 43, 4))],
            vec![format!("SharedAccessKey={}=", chars(B64, 20, 4))],
        ),
        ("github-personal-access-token", vec![format!("ghp_{}", an(36))], vec![format!("ghp_{} ", an(35)), format!("xghp_{}", an(36))]),
        ("github-oauth-token", vec![format!("(gho_{})", an(36))], vec![format!("gho_{}", an(37))]),
        ("github-user-to-server-token", vec![format!("ghu_{}", an(36))], vec![format!("ghu_{}", an(20))]),
        ("github-server-to-server-token", vec![format!("ghs_{}", an(36))], vec![format!("ghs_{}-", an(12))]),
        ("github-refresh-token", vec![format!("ghr_{}", an(76))], vec![format!("ghr_{}", an(30))]),
        (
            "github-fine-grained-token",
            vec![format!("github_pat_{}_{}", an(22), chars(ALNUM, 59, 5))],
            vec![format!("github_pat_{}_{}", an(22), chars(ALNUM, 50, 5))],
        ),
        ("gitlab-personal-access-token", vec![format!("glpat-{}", chars(B64URL, 20, 6))], vec![format!("glpat-{}", an(19))]),
        ("gitlab-token", vec![format!("glrt-{}", an(20)), format!("gldt-{}", an(24))], vec!["glrt-short".into()]),
        (
            "gitea-token",
            vec![format!("GITEA_TOKEN={}", chars(HEX, 40, 7)), format!("gitea.token: \"{}\"", chars(HEX, 40, 7))],
            vec![format!("GITEA_TOKEN={}", chars(HEX, 39, 7)), format!("gitea_url={}", chars(HEX, 40, 7))],
        ),
        (
            "bearer-token",
            vec!["Authorization: Bearer q8Zt3Lw9Vx2Rk7Yp5Nm1Hj4Gf6Dd".into(), "Authorization: token 7d3f0c2b9a8e7d6c5b4a39281706f5e4d3c2b1a0".into()],
            vec!["Bearer abcdefghijklmnopqrstuvwxyz".into(), "the token expires in 3600 seconds".into()],
        ),
        (
            "basic-auth-credentials",
            vec!["Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l".into()],
            vec!["Basic bm9jb2xvbmhlcmU=".into(), "WWW-Authenticate: Basic realm=\"x\"".into()],
        ),
        (
            "url-credentials",
            vec!["git remote add o https://deploy:s3cr3tP4ss@git.example.com/r.git".into()],
            vec!["https://git@github.com/x".into(), "https://user:${PASSWORD}@host/".into(), "https://example.com/a:b@c".into()],
        ),
        (
            "anthropic-api-key",
            vec![format!("sk-ant-api03-{}AA", chars(B64URL, 93, 8))],
            vec![format!("sk-ant-api03-{}", chars(B64URL, 40, 8))],
        ),
        (
            "anthropic-oauth-token",
            vec![format!("sk-ant-oat01-{}AA", chars(B64URL, 93, 9))],
            vec!["sk-ant-oat01-short".into()],
        ),
        (
            "openai-api-key",
            vec![
                format!("sk-proj-{}", chars(B64URL, 156, 10)),
                format!("sk-{}T3BlbkFJ{}", an(20), chars(ALNUM, 20, 11)),
            ],
            vec![format!("mask-proj-{}", chars(B64URL, 156, 10)), "sk-proj-abc".into(), format!("{}T3BlbkFJ", an(20))],
        ),
        (
            "slack-token",
            vec![format!("xoxb-123456789012-1234567890123-{}", an(24))],
            vec!["xoxb-notatoken".into(), "xoxo hugs".into()],
        ),
        (
            "slack-app-token",
            vec![format!("xapp-1-A0123456789-1234567890123-{}", chars(HEX, 64, 12))],
            vec!["xapp-1-short".into()],
        ),
        (
            "slack-webhook-url",
            vec![format!("https://hooks.slack.com/services/T01234567/B01234567/{}", an(24))],
            vec!["https://hooks.slack.com/services/".into()],
        ),
        (
            "discord-webhook-url",
            vec![format!("https://discord.com/api/webhooks/123456789012345678/{}", chars(B64URL, 68, 13))],
            vec![format!("https://example.com/api/webhooks/123456789012345678/{}", chars(B64URL, 68, 13))],
        ),
        (
            "telegram-bot-token",
            vec![format!("https://api.telegram.org/bot123456789:AA{}/getMe", chars(B64URL, 33, 14))],
            vec![format!("12345:AA{}", chars(B64URL, 33, 14)), format!("123456789:AA{}", chars(B64URL, 20, 14))],
        ),
        ("stripe-secret-key", vec![format!("sk_live_{}", an(24))], vec![format!("sk_test_{}", an(24))]),
        ("npm-access-token", vec![format!("//registry.npmjs.org/:_authToken=npm_{}", an(36))], vec![format!("npm_{}", an(30)), "npm_config_cache".into()]),
        (
            "pypi-api-token",
            vec![format!("pypi-AgEIcHlwaS5vcmc{}", chars(B64URL, 70, 15))],
            vec![format!("pypi-AgEIcHlwaS5vcmc{}", an(10))],
        ),
        (
            "private-key",
            vec![
                format!("-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n", chars(B64, 64, 16)),
                "-----BEGIN OPENSSH PRIVATE KEY-----\n".into(),
            ],
            vec!["-----BEGIN PUBLIC KEY-----\n".into(), "-----BEGIN CERTIFICATE-----".into()],
        ),
        (
            "jwt",
            vec!["eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c".into()],
            vec!["eyJmb28iOiJiYXIifQ.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c".into()],
        ),
        (
            "generic-secret-assignment",
            vec![
                "api_key = \"q8Zt3Lw9Vx2Rk7Yp5Nm1\"".into(),
                "SECRET_TOKEN: 4f9a2c7e1b8d3f6a0c5e9b2d7f1a4c8e".into(),
                "{\"clientSecret\":\"Xk29dLq8VnR3tZ7wYp4M\"}".into(),
            ],
            vec![
                "api_key = \"get_api_key_from_env\"".into(),
                "api_key = os.environ[\"API_KEY\"]".into(),
                "token = make_token(q8Zt3Lw9Vx2Rk7Yp5Nm1)".into(),
                "key: ${{ secrets.DEPLOY_KEY_0123456789 }}".into(),
                "if token == \"q8Zt3Lw9Vx2Rk7Yp5Nm1\"".into(),
            ],
        ),
        (
            "generic-password-assignment",
            vec!["password: \"Tr0ub4dor-3xQ\"".into(), "DB_PASSWD=hunter2-Horse".into()],
            vec!["password: \"changeme\"".into(), "password = getpass()".into(), "password = config.db.password".into()],
        ),
    ]
}

#[test]
fn every_rule_has_cases() {
    let cases = cases();
    for rule in RULES {
        assert!(cases.iter().any(|(id, _, _)| *id == rule.id), "no test for {}", rule.id);
    }
    for (id, _, _) in &cases {
        assert!(RULES.iter().any(|r| r.id == *id), "unknown rule {id}");
    }
}

#[test]
fn ids_are_kebab_case_and_unique() {
    for (i, rule) in RULES.iter().enumerate() {
        assert!(rule.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        assert!(RULES[..i].iter().all(|r| r.id != rule.id), "duplicate {}", rule.id);
    }
}

#[test]
fn true_positives_fire_and_near_misses_do_not() {
    let engine = Engine::new(&DlpConfig::default()).unwrap();
    for (id, positives, near_misses) in cases() {
        for text in positives {
            let found = engine.scan(text.as_bytes(), &Location::Body);
            assert!(found.iter().any(|f| f.rule_id == id), "{id} missed {text:?}: {found:?}");
            // Whole-buffer and one-byte-at-a-time streaming agree.
            let mut stream = engine.stream(Location::Body);
            let mut streamed: Vec<_> = text.as_bytes().chunks(1).flat_map(|c| stream.feed(c)).collect();
            streamed.extend(stream.finish());
            assert!(streamed.iter().any(|f| f.rule_id == id), "{id} missed streamed {text:?}");
        }
        for text in near_misses {
            let found = engine.scan(text.as_bytes(), &Location::Body);
            assert!(!found.iter().any(|f| f.rule_id == id), "{id} fired on {text:?}: {found:?}");
        }
    }
}

#[test]
fn spans_cover_the_secret_only() {
    let engine = Engine::new(&DlpConfig::default()).unwrap();
    let text = b"api_key = \"q8Zt3Lw9Vx2Rk7Yp5Nm1\";";
    let found = engine.scan(text, &Location::Body);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(&text[found[0].span.clone()], b"q8Zt3Lw9Vx2Rk7Yp5Nm1");

    let pem = format!("x\n-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\ny", chars(B64, 64, 1));
    let found = engine.scan(pem.as_bytes(), &Location::Body);
    assert_eq!(found[0].span, 2..pem.len() - 2);
}
