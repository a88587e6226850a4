//! Unit tests: CA files on disk, leaf minting, and real rustls handshakes over an in-memory duplex.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{CA_CERT_FILE, CA_KEY_FILE, Ca, CaError, SniResolver};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn client_config(ca: &Ca) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(crate::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Handshakes a client trusting `ca` against `server`, exchanges one message, returns the ALPN.
async fn handshake(
    ca: &Ca,
    server: Arc<rustls::ServerConfig>,
    name: ServerName<'static>,
) -> std::io::Result<Option<Vec<u8>>> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let mut tls = acceptor.accept(server_io).await?;
        let mut buf = [0_u8; 4];
        tls.read_exact(&mut buf).await?;
        tls.write_all(&buf).await?;
        tls.shutdown().await?;
        std::io::Result::Ok(())
    });
    let connector = tokio_rustls::TlsConnector::from(client_config(ca));
    let mut tls = connector.connect(name, client_io).await?;
    tls.write_all(b"ping").await?;
    let mut echo = [0_u8; 4];
    tls.read_exact(&mut echo).await?;
    assert_eq!(&echo, b"ping");
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    server_task.await.unwrap()?;
    Ok(alpn)
}

#[test]
fn creates_ca_files_with_private_permissions_and_reloads_same_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state/ca");
    let ca = Ca::load_or_create(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.join(CA_CERT_FILE)), 0o644);
    let cert = std::fs::read_to_string(dir.join(CA_CERT_FILE)).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(cert, ca.cert_pem());

    let again = Ca::load_or_create(&dir).unwrap();
    assert_eq!(again.fingerprint_sha256(), ca.fingerprint_sha256());
    assert_eq!(again.cert_pem(), ca.cert_pem());
}

#[test]
fn fingerprint_is_colon_separated_upper_hex_sha256() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(tmp.path()).unwrap();
    let fp = ca.fingerprint_sha256();
    assert_eq!(fp.len(), 32 * 3 - 1);
    assert!(fp.split(':').all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))));
}

#[test]
fn debug_never_prints_key_material() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(tmp.path()).unwrap();
    let key = std::fs::read_to_string(tmp.path().join(CA_KEY_FILE)).unwrap();
    let debug = format!("{ca:?}");
    let key_body: String = key.lines().nth(1).unwrap().to_owned();
    assert!(!debug.contains(&key_body));
    assert!(debug.contains(&ca.fingerprint_sha256()));
}

#[test]
fn mismatched_key_and_certificate_are_rejected() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    Ca::load_or_create(a.path()).unwrap();
    Ca::load_or_create(b.path()).unwrap();
    std::fs::copy(b.path().join(CA_CERT_FILE), a.path().join(CA_CERT_FILE)).unwrap();
    let err = Ca::load(a.path()).unwrap_err();
    assert!(matches!(err, CaError::Invalid { .. }), "{err:?}");
}

#[test]
fn missing_certificate_is_an_error_not_a_silent_remint() {
    let tmp = tempfile::tempdir().unwrap();
    Ca::load_or_create(tmp.path()).unwrap();
    std::fs::remove_file(tmp.path().join(CA_CERT_FILE)).unwrap();
    assert!(matches!(Ca::load_or_create(tmp.path()), Err(CaError::Io { .. })));
}

#[test]
fn leaf_cache_is_bounded_and_reuses_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(tmp.path()).unwrap().with_leaf_cache_capacity(2);
    let first = ca.certified_key("a.example").unwrap();
    assert!(Arc::ptr_eq(&first, &ca.certified_key("A.example.").unwrap()));
    ca.certified_key("b.example").unwrap();
    ca.certified_key("c.example").unwrap();
    assert_eq!(ca.cached_leaf_count(), 2);
    assert!(matches!(ca.certified_key(""), Err(CaError::InvalidHost { .. })));
}

#[tokio::test]
async fn per_host_config_handshakes_with_alpn_h2() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(tmp.path()).unwrap();
    let server = ca.server_config_for_host("api.example.com").unwrap();
    let name = ServerName::try_from("api.example.com").unwrap();
    let alpn = handshake(&ca, server, name).await.unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn reloaded_ca_signs_leaves_trusted_by_the_stored_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let original = Ca::load_or_create(tmp.path()).unwrap();
    let reloaded = Ca::load(tmp.path()).unwrap();
    let server = reloaded.server_config_for_host("git.example").unwrap();
    let name = ServerName::try_from("git.example").unwrap();
    handshake(&original, server, name).await.unwrap();
}

#[tokio::test]
async fn ip_literal_gets_an_ip_san() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(tmp.path()).unwrap();
    let server = ca.server_config_for_host("127.0.0.1").unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    handshake(&ca, server, name).await.unwrap();
}

#[tokio::test]
async fn leaf_for_one_host_is_rejected_for_another() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(tmp.path()).unwrap();
    let server = ca.server_config_for_host("api.example.com").unwrap();
    let name = ServerName::try_from("evil.example.com").unwrap();
    assert!(handshake(&ca, server, name).await.is_err());
}

#[tokio::test]
async fn client_not_trusting_the_ca_fails() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ours = Ca::load_or_create(a.path()).unwrap();
    let other = Ca::load_or_create(b.path()).unwrap();
    let server = ours.server_config_for_host("api.example.com").unwrap();
    let name = ServerName::try_from("api.example.com").unwrap();
    assert!(handshake(&other, server, name).await.is_err());
}

#[tokio::test]
async fn sni_resolver_serves_any_host_from_one_config() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Arc::new(Ca::load_or_create(tmp.path()).unwrap());
    let server = SniResolver::new(ca.clone()).into_server_config().unwrap();
    for host in ["one.example", "two.example"] {
        let name = ServerName::try_from(host).unwrap();
        let alpn = handshake(&ca, server.clone(), name).await.unwrap();
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    }
    assert_eq!(ca.cached_leaf_count(), 2);
}

#[tokio::test]
async fn sni_resolver_falls_back_for_ip_clients_without_sni() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Arc::new(Ca::load_or_create(tmp.path()).unwrap());
    let server = SniResolver::new(ca.clone()).with_fallback_host("10.0.0.7").into_server_config().unwrap();
    let name = ServerName::try_from("10.0.0.7").unwrap();
    handshake(&ca, server, name).await.unwrap();
}
