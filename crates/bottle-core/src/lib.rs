//! Shared vocabulary of bot-bottle: the types every other crate speaks.
//!
//! This crate is pure: it performs no I/O, spawns nothing and reads no environment. Whatever it needs
//! from the host (environment variables, directories) is handed to it as data, so every function here
//! is deterministic and testable without a machine around it.

pub mod diag;
pub mod ids;
pub mod plan;
pub mod secret;
pub mod spec;

pub use diag::{Diagnostic, SourceLocation};
pub use ids::{BackendKind, Color, Label, ManifestName, Slug};
pub use secret::Secret;
