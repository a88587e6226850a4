//! The undo stack: every engine resource a launch creates is pushed here the moment it exists, and
//! removed newest first — on a failed launch and on close alike — so a half-built bottle never
//! outlives the call that built it.

use bollard::Docker;
use bollard::query_parameters::RemoveContainerOptionsBuilder;

/// One engine resource, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Container(String),
    Network(String),
    Volume(String),
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Container(n) => write!(f, "container {n}"),
            Self::Network(n) => write!(f, "network {n}"),
            Self::Volume(n) => write!(f, "volume {n}"),
        }
    }
}

/// Resources in creation order.
#[derive(Debug, Default)]
pub struct Undo {
    stack: Vec<Resource>,
}

impl Undo {
    pub fn push(&mut self, resource: Resource) {
        self.stack.push(resource);
    }

    /// What is registered, oldest first.
    pub fn resources(&self) -> &[Resource] {
        &self.stack
    }

    /// Removes everything, newest first. Best effort: a failure is recorded and the rest still
    /// goes, because a network left behind must not keep its volume alive too. Already gone counts
    /// as removed, so unwinding twice (or after `cleanup`) is harmless.
    pub async fn unwind(&mut self, docker: &Docker) -> Vec<(Resource, bollard::errors::Error)> {
        let mut failed = Vec::new();
        while let Some(resource) = self.stack.pop() {
            // Containers next to each other on the stack go together: killing them one by one
            // would only add up their stop times.
            let mut batch = vec![resource];
            while matches!(batch[0], Resource::Container(_))
                && matches!(self.stack.last(), Some(Resource::Container(_)))
            {
                batch.extend(self.stack.pop());
            }
            let results = futures_util::future::join_all(batch.iter().map(|r| remove(docker, r))).await;
            for (resource, result) in batch.into_iter().zip(results) {
                match result {
                    Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                        tracing::debug!(%resource, "removed");
                    }
                    Err(error) => {
                        tracing::warn!(%resource, %error, "could not remove");
                        failed.push((resource, error));
                    }
                }
            }
        }
        failed
    }
}

async fn remove(docker: &Docker, resource: &Resource) -> Result<(), bollard::errors::Error> {
    match resource {
        Resource::Container(name) => {
            // force: kill what runs; the socket volume is named, so `v` would not remove it.
            let options = RemoveContainerOptionsBuilder::new().force(true).build();
            docker.remove_container(name, Some(options)).await
        }
        Resource::Network(name) => docker.remove_network(name).await,
        Resource::Volume(name) => {
            docker.remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>).await
        }
    }
}
