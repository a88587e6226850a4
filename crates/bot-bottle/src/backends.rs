//! The backends this machine can run, for the commands that work on bottles of any of them.
//!
//! Docker is required (it also runs the smolmachines sidecar bundle); smolmachines is there whether
//! or not `smolvm` is installed, so its bundles are listed and cleaned up either way.

use std::sync::Arc;

use anyhow::Context as _;
use bottle_backend::docker::DockerBackend;
use bottle_backend::smolmachines::SmolBackend;
use bottle_backend::{Backend, BottleSummary};
use bottle_core::BackendKind;
use bottle_state::Home;

use crate::commands::backend_error;

/// The docker and smolmachines backends on one runtime.
pub struct Backends {
    pub docker: DockerBackend,
    pub smol: SmolBackend,
}

impl Backends {
    pub fn connect(home: &Home) -> anyhow::Result<Self> {
        let rt = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?,
        );
        let docker = DockerBackend::connect(rt.clone()).map_err(backend_error)?;
        let smol = SmolBackend::connect(rt, home.states_dir()).map_err(backend_error)?;
        Ok(Self { docker, smol })
    }

    /// Every backend, docker first.
    pub fn all(&self) -> [&dyn Backend; 2] {
        [&self.docker, &self.smol]
    }

    /// The backend of `kind`, when this build runs it.
    pub fn get(&self, kind: BackendKind) -> Option<&dyn Backend> {
        match kind {
            BackendKind::Docker => Some(&self.docker),
            BackendKind::Smolmachines => Some(&self.smol),
            BackendKind::Namespaces => None,
        }
    }

    /// The backend that runs the bottle `slug`: the one its state says, else the first that has it.
    pub fn for_slug(&self, home: &Home, slug: &str) -> anyhow::Result<&dyn Backend> {
        if let Ok(meta) = home.state(slug).read_metadata()
            && let Some(kind) = BackendKind::ALL.into_iter().find(|k| k.to_string() == meta.backend)
            && let Some(backend) = self.get(kind)
        {
            return Ok(backend);
        }
        for backend in self.all() {
            if backend.list().map_err(backend_error)?.iter().any(|b| b.slug == slug) {
                return Ok(backend);
            }
        }
        Ok(&self.docker)
    }

    /// Every bottle of every backend.
    pub fn list(&self) -> anyhow::Result<Vec<BottleSummary>> {
        let mut out = Vec::new();
        for backend in self.all() {
            out.extend(backend.list().map_err(backend_error)?);
        }
        Ok(out)
    }
}
