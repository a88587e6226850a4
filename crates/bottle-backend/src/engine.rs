//! The Docker Engine connection: unix socket only, API version negotiated with the server.
//!
//! bollard speaks a recent API by default; Debian bookworm's `docker.io` (20.10) answers 1.41 and
//! refuses newer paths, so every connection first asks `/version` and downgrades to the server's.

use bollard::Docker;

use crate::Error;

/// Where the engine listens when `DOCKER_HOST` is unset.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";

/// Seconds any one engine request may take. Builds stream for minutes, but the limit applies to the
/// response head, and importing a rootfs of a few hundred MiB answers only once it is read.
const REQUEST_TIMEOUT_SECS: u64 = 900;

/// A connected engine whose API version has been agreed.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    endpoint: String,
}

impl Engine {
    /// Connects to `DOCKER_HOST` (a `unix://` URL or socket path) or the default socket and
    /// negotiates the API version.
    pub async fn connect() -> Result<Self, Error> {
        let endpoint =
            std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        Self::connect_to(&endpoint).await
    }

    /// Connects to one endpoint: `unix:///path` or `/path`.
    pub async fn connect_to(endpoint: &str) -> Result<Self, Error> {
        if !(endpoint.starts_with("unix://") || endpoint.starts_with('/')) {
            return Err(Error::UnsupportedEndpoint { endpoint: endpoint.to_owned() });
        }
        let unreachable = |source| Error::EngineUnreachable { endpoint: endpoint.to_owned(), source };
        let docker = Docker::connect_with_unix(endpoint, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            .map_err(unreachable)?;
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        Ok(Self { docker, endpoint: endpoint.to_owned() })
    }

    /// The bollard client, already at the negotiated version.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Where this engine was reached.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The API version both sides speak, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }
}
