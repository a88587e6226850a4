//! Sandbox backends and the images bottles run.
//!
//! [`backend`] declares what every backend (docker, smolmachines, namespaces) offers the CLI:
//! [`Backend`] turns a launch plan into a running [`Bottle`] and undoes it. [`engine`] is the Docker
//! Engine connection (API version negotiated, unix socket only) and [`image`] builds the agent and
//! sidecar images from a Dockerfile or offline from a Debian rootfs. [`relay`] is what runs inside a
//! `network=none` agent to reach the sidecar's unix sockets; [`docker`] launches a bottle on the engine.
//! [`selftest`] holds the boundary probes run inside every bottle before its agent starts, and the
//! host side that runs them and refuses a bottle any probe got out of. [`archive`] unpacks what a
//! bottle hands back to the host (`cp` out of it) without trusting any entry.
//!
//! This crate never depends on the sidecar services (egress, git-gate, supervise); they meet in the
//! binary.

pub mod archive;
pub mod backend;
pub mod docker;
pub mod engine;
mod error;
pub mod image;
pub mod relay;
pub mod selftest;
pub mod smolmachines;

pub use backend::{
    Backend, Bottle, BottleStatus, BottleSummary, CleanupOptions, CleanupReport, ExecResult, ExecUser, GuestFile,
    LaunchInputs, Preflight, SidecarLayout,
};
pub use engine::Engine;
pub use error::Error;
pub use image::{BuildMode, BuiltImage, ImageBuilder, ImageKind, ImageRecipe, Progress};
