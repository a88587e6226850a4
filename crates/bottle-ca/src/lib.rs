//! Per-bottle certificate authority for the egress proxy's TLS interception.
//!
//! Each bottle gets its own CA (ECDSA P-256), minted once into the bottle's state directory and loaded
//! on later starts. The agent trusts that CA; the egress proxy presents leaf certificates signed by it,
//! minted on demand per host and cached in memory. Nothing here opens sockets or spawns tasks.
//!
//! ```no_run
//! # fn main() -> Result<(), bottle_ca::CaError> {
//! bottle_ca::install_crypto_provider();
//! let ca = bottle_ca::Ca::load_or_create(std::path::Path::new("/tmp/ca"))?;
//! println!("{}", ca.fingerprint_sha256());
//! let config = ca.server_config_for_host("api.example.com")?; // ALPN h2 + http/1.1
//! # let _ = config; Ok(()) }
//! ```

mod authority;
mod leaf;

use std::path::PathBuf;

pub use authority::{CA_CERT_FILE, CA_KEY_FILE, Ca};
pub use leaf::{DEFAULT_LEAF_CACHE_CAPACITY, SniResolver};

/// Everything that can go wrong while minting, loading or using a bottle CA.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Reading or writing a CA file or directory failed.
    #[error("cannot access `{path}`")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A stored CA file is not what we wrote (bad PEM, key and certificate do not belong together).
    #[error("invalid CA material in `{path}`: {reason}")]
    Invalid {
        /// The file that failed to parse or validate.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate library refused to build a certificate.
    #[error("cannot mint certificate for `{subject}`")]
    Mint {
        /// Host (or CA name) the certificate was for.
        subject: String,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },
    /// The host name cannot be put in a certificate.
    #[error("`{host}` is not a valid DNS name or IP address for a certificate")]
    InvalidHost {
        /// The rejected host.
        host: String,
    },
    /// rustls refused the minted key or configuration.
    #[error("TLS configuration error")]
    Tls(#[from] rustls::Error),
}

/// Installs the rustls `ring` crypto provider as the process default.
///
/// Call once at program start: rustls panics at first use when more than one provider is compiled in
/// and none was chosen. Calling it again (or after another crate installed ring) is harmless.
pub fn install_crypto_provider() {
    // The only failure is "already installed", which is exactly the state we want.
    let _already = rustls::crypto::ring::default_provider().install_default();
}

/// The crypto provider this crate builds every rustls configuration with, independent of the
/// process default, so library users cannot end up with a different provider by accident.
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// The ALPN protocols every interception certificate is served with, most preferred first.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

#[cfg(test)]
mod tests;
