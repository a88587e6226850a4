//! Minting, storing and loading the bottle CA itself.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::ServerConfig;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest as _, Sha256};
use time::{Duration, OffsetDateTime};

use crate::CaError;
use crate::leaf::LeafCache;

/// File name of the CA private key (PKCS#8 PEM, mode 0600) inside the CA directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of the CA certificate (PEM, mode 0644) inside the CA directory.
pub const CA_CERT_FILE: &str = "ca.crt";

/// How long a freshly minted CA is valid. A bottle's CA lives as long as its state directory.
const CA_VALIDITY: Duration = Duration::days(3650);

/// A per-bottle certificate authority plus its in-memory cache of leaf certificates.
///
/// Cheap to share behind an [`Arc`]; all methods take `&self`.
pub struct Ca {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    /// One key for every leaf: minting then costs a single signature, and the key never leaves memory.
    leaf_key: KeyPair,
    leaf_key_der: PrivatePkcs8KeyDer<'static>,
    pub(crate) leaves: LeafCache,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Ca").field("fingerprint", &self.fingerprint_sha256()).finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads the CA from `dir`, or mints a new one there when `dir` holds no CA yet.
    ///
    /// The directory is created with mode 0700 and the key written with mode 0600; the certificate is
    /// world-readable because it is handed to the agent as a trust anchor.
    pub fn load_or_create(dir: &Path) -> Result<Self, CaError> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        if key_path.exists() || cert_path.exists() {
            return Self::load(dir);
        }
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|source| io_err(dir, source))?;
        // `recursive` leaves an existing directory's mode alone; the key must not be readable by others.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| io_err(dir, source))?;

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|source| CaError::Mint { subject: "CA".into(), source })?;
        let params = ca_params(&key);
        let cert = params.self_signed(&key).map_err(|source| CaError::Mint { subject: "CA".into(), source })?;

        // Key first, created exclusively: a concurrent creator makes one of us fail loudly instead
        // of silently pairing a key with someone else's certificate.
        write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
        tracing::info!(dir = %dir.display(), "minted bottle CA");
        Self::from_parts(key, cert.der().clone(), cert.pem())
    }

    /// Loads an existing CA from `dir`; fails when either file is missing or they do not match.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        let key_pem = fs::read_to_string(&key_path).map_err(|source| io_err(&key_path, source))?;
        let cert_pem = fs::read_to_string(&cert_path).map_err(|source| io_err(&cert_path, source))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| invalid(&key_path, e.to_string()))?;
        let cert_der =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| invalid(&cert_path, e.to_string()))?;
        // The certificate embeds the public key verbatim; a mismatch means the files were mixed up.
        if !contains(cert_der.as_ref(), key.public_key_raw()) {
            return Err(invalid(&cert_path, "certificate does not belong to the key".into()));
        }
        Self::from_parts(key, cert_der, cert_pem)
    }

    fn from_parts(key: KeyPair, cert_der: CertificateDer<'static>, cert_pem: String) -> Result<Self, CaError> {
        // The issuer only needs the CA's name and key id, both derived from the key, so a reloaded
        // CA signs leaves that chain to the stored certificate without parsing it.
        let issuer = Issuer::new(ca_params(&key), key);
        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|source| CaError::Mint { subject: "leaf key".into(), source })?;
        let leaf_key_der = PrivatePkcs8KeyDer::from(leaf_key.serialize_der());
        Ok(Self {
            cert_der,
            cert_pem,
            issuer,
            leaf_key,
            leaf_key_der,
            leaves: LeafCache::new(crate::DEFAULT_LEAF_CACHE_CAPACITY),
        })
    }

    /// The CA certificate in PEM form, as installed into the agent's trust store.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER form.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// SHA-256 fingerprint of the CA certificate as colon-separated upper-case hex (`AA:BB:…`).
    pub fn fingerprint_sha256(&self) -> String {
        let digest = Sha256::digest(self.cert_der.as_ref());
        let mut out = String::with_capacity(digest.len() * 3);
        for (i, byte) in digest.iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            let _infallible = write!(out, "{byte:02X}");
        }
        out
    }

    /// Sets how many leaf certificates are kept in memory (default
    /// [`DEFAULT_LEAF_CACHE_CAPACITY`](crate::DEFAULT_LEAF_CACHE_CAPACITY)).
    #[must_use]
    pub fn with_leaf_cache_capacity(mut self, capacity: usize) -> Self {
        self.leaves = LeafCache::new(capacity);
        self
    }

    /// The leaf certificate (chain: leaf, CA) and key for `host`, minted on first use and cached.
    ///
    /// `host` is a DNS name or an IP literal (an IP address gets an IP SAN); it is lower-cased.
    pub fn certified_key(&self, host: &str) -> Result<Arc<CertifiedKey>, CaError> {
        Ok(self.leaf(host)?.certified_key.clone())
    }

    /// A rustls server configuration presenting the leaf for `host`, with ALPN h2 and http/1.1.
    ///
    /// Cached together with the leaf, so repeated connections to one host share one configuration.
    pub fn server_config_for_host(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        Ok(self.leaf(host)?.server_config.clone())
    }

    fn leaf(&self, host: &str) -> Result<Arc<crate::leaf::Leaf>, CaError> {
        let host = normalize_host(host)?;
        self.leaves.get_or_try_insert(&host, || self.mint_leaf(&host))
    }

    fn mint_leaf(&self, host: &str) -> Result<crate::leaf::Leaf, CaError> {
        let mut params = CertificateParams::new(vec![host.to_owned()])
            .map_err(|_| CaError::InvalidHost { host: host.to_owned() })?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        let now = OffsetDateTime::now_utc();
        // Backdated so agents with a slightly skewed clock still accept it.
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(90);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(|source| CaError::Mint { subject: host.to_owned(), source })?;
        let signing_key =
            rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(self.leaf_key_der.clone_key()))?;
        let certified_key = Arc::new(CertifiedKey::new(vec![cert.der().clone(), self.cert_der.clone()], signing_key));
        let server_config = Arc::new(server_config_with(Arc::new(crate::leaf::FixedResolver(certified_key.clone())))?);
        tracing::debug!(host, "minted leaf certificate");
        Ok(crate::leaf::Leaf { certified_key, server_config })
    }
}

/// A TLS server configuration around `resolver`, with our provider, safe protocol versions and ALPN.
pub(crate) fn server_config_with(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
) -> Result<ServerConfig, CaError> {
    let mut config = ServerConfig::builder_with_provider(crate::crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = crate::ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// CA parameters that depend only on the key, so they can be rebuilt when loading.
fn ca_params(key: &KeyPair) -> CertificateParams {
    let mut params = CertificateParams::default();
    let id = Sha256::digest(key.public_key_raw());
    let mut dn = DistinguishedName::new();
    // A per-key suffix keeps several bottles' CAs distinguishable in one trust store.
    dn.push(DnType::CommonName, format!("bot-bottle CA {:02x}{:02x}{:02x}{:02x}", id[0], id[1], id[2], id[3]));
    dn.push(DnType::OrganizationName, "bot-bottle");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + CA_VALIDITY;
    params
}

/// Lower-cases `host`, strips IPv6 brackets and a trailing dot, and rejects empty names.
fn normalize_host(host: &str) -> Result<String, CaError> {
    let trimmed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).trim_end_matches('.');
    if trimmed.is_empty() {
        return Err(CaError::InvalidHost { host: host.to_owned() });
    }
    Ok(trimmed.to_ascii_lowercase())
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| io_err(path, source))?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(|source| io_err(path, source))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn io_err(path: &Path, source: std::io::Error) -> CaError {
    CaError::Io { path: PathBuf::from(path), source }
}

fn invalid(path: &Path, reason: String) -> CaError {
    CaError::Invalid { path: PathBuf::from(path), reason }
}
