//! Agent and bottle manifests: Markdown files with YAML frontmatter.
//!
//! [`Catalog::scan`] finds what exists; [`Catalog::agent`] and [`Catalog::resolve_bottles`] parse,
//! validate and merge on demand. Every error is a [`Diagnostic`](bottle_core::Diagnostic) naming the
//! file, line, column and key path, with a hint where one helps; none ever quotes an env value.

mod doc;
mod loader;
pub mod schema;
pub mod yaml;

pub use loader::{AgentEntry, Catalog, Layout, Misnamed, ResolvedBottles};
pub use schema::BottleFile;
