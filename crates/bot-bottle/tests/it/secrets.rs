//! No secret value reaches any output: plans, info, errors, warnings, in text or JSON.

use std::fs;

use crate::bot_bottle;

const HOST_SECRET: &str = "host-secret-value-7f3a9c1e5b";
const ROUTE_SECRET: &str = "ghp_routesecretvalue0123456789abcdefABCD";
const PROVIDER_SECRET: &str = "sk-ant-oat01-providersecret-9d8c7b6a";

#[test]
fn secrets_never_appear_in_any_output() {
    let home = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(home.path().join("bottles")).expect("mkdir");
    fs::create_dir_all(home.path().join("agents")).expect("mkdir");
    fs::write(
        home.path().join("bottles/base.md"),
        "---\nagent_provider:\n  auth_token: PROVIDER_TOKEN\nenv:\n  FROM_HOST: ${PLANTED_HOST_VAR}\n  ASKED: \"?\"\negress:\n  log: 2\n  routes:\n    - host: api.github.com\n      auth: {scheme: Bearer, token_ref: ROUTE_TOKEN}\n---\n",
    )
    .expect("write");
    fs::write(home.path().join("agents/main.md"), "---\nbottle: base\n---\nprompt\n").expect("write");
    let runs: [&[&str]; 6] = [
        &["start", "main", "--dry-run", "--format", "json"],
        &["start", "main", "--dry-run"],
        &["info", "main", "--format", "json"],
        &["info", "main"],
        &["info", "--format", "json"],
        &["-v", "info"],
    ];
    for args in runs {
        let out = bot_bottle()
            .env("HOME", home.path())
            .env("PLANTED_HOST_VAR", HOST_SECRET)
            .env("ROUTE_TOKEN", ROUTE_SECRET)
            .env("PROVIDER_TOKEN", PROVIDER_SECRET)
            .arg("--home")
            .arg(home.path())
            .args(args)
            .output()
            .expect("runs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        for secret in [HOST_SECRET, ROUTE_SECRET, PROVIDER_SECRET] {
            assert!(!all.contains(secret), "{args:?} printed a secret value");
        }
    }
}

#[test]
fn a_token_pasted_into_token_ref_is_not_echoed() {
    let home = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(home.path().join("bottles")).expect("mkdir");
    fs::create_dir_all(home.path().join("agents")).expect("mkdir");
    fs::write(
        home.path().join("bottles/base.md"),
        format!("---\negress:\n  routes:\n    - host: api.github.com\n      auth:\n        scheme: Bearer\n        token_ref: {ROUTE_SECRET}\n---\n"),
    )
    .expect("write");
    fs::write(home.path().join("agents/main.md"), "---\nbottle: base\n---\nprompt\n").expect("write");
    let out = bot_bottle()
        .env("HOME", home.path())
        .arg("--home")
        .arg(home.path())
        .args(["start", "main", "--dry-run"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("token_ref") && stderr.contains("base.md:7:"), "{stderr}");
    assert!(!stderr.contains(ROUTE_SECRET), "the pasted token was echoed: {stderr}");
}

mod property {
    use std::fs;

    use proptest::prelude::*;

    use crate::bot_bottle;

    fn secret() -> impl Strategy<Value = String> {
        // Long and random enough never to occur in a plan by coincidence.
        "[A-Za-z0-9+/=_.-]{24,48}"
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Whatever values the host holds for `${VAR}` entries, route tokens and provider tokens,
        /// the plan (JSON and text) and every message contain none of them.
        #[test]
        fn plan_output_contains_no_secret_value(
            env_secrets in proptest::collection::vec(secret(), 1..4),
            route_secret in secret(),
            provider_secret in secret(),
            prompts in 0usize..3,
            log in 0u8..3,
        ) {
            let home = tempfile::tempdir().expect("tempdir");
            fs::create_dir_all(home.path().join("bottles")).expect("mkdir");
            fs::create_dir_all(home.path().join("agents")).expect("mkdir");
            let mut front = String::from("agent_provider:\n  auth_token: PROVIDER_TOKEN\nenv:\n");
            for i in 0..env_secrets.len() {
                front.push_str(&format!("  FROM_HOST_{i}: ${{HOST_SECRET_{i}}}\n"));
            }
            for i in 0..prompts {
                front.push_str(&format!("  ASKED_{i}: \"?value {i}\"\n"));
            }
            front.push_str(&format!(
                "egress:\n  log: {log}\n  routes:\n    - host: api.example.com\n      auth: {{scheme: Bearer, token_ref: ROUTE_TOKEN}}\n"
            ));
            fs::write(home.path().join("bottles/base.md"), format!("---\n{front}---\n")).expect("write");
            fs::write(home.path().join("agents/main.md"), "---\nbottle: base\n---\nprompt\n").expect("write");
            for args in [&["--format", "json"][..], &[][..]] {
                let mut cmd = bot_bottle();
                cmd.env("HOME", home.path())
                    .env("ROUTE_TOKEN", &route_secret)
                    .env("PROVIDER_TOKEN", &provider_secret)
                    .arg("--home")
                    .arg(home.path())
                    .args(["start", "main", "--dry-run"])
                    .args(args);
                for (i, s) in env_secrets.iter().enumerate() {
                    cmd.env(format!("HOST_SECRET_{i}"), s);
                }
                let out = cmd.output().expect("runs");
                prop_assert!(out.status.success());
                let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
                for s in env_secrets.iter().chain([&route_secret, &provider_secret]) {
                    prop_assert!(!all.contains(s.as_str()), "a secret value appeared in the output");
                }
            }
        }
    }
}
