//! What every command derives from the global flags and the process environment.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context as _;
use bottle_manifest::{Catalog, Layout};
use bottle_state::Home;

use crate::cli::GlobalArgs;

/// The resolved home and the invoking user's directories.
#[derive(Debug)]
pub struct Context {
    pub home: Home,
    pub user_home: PathBuf,
    pub cwd: PathBuf,
}

impl Context {
    pub fn new(global: &GlobalArgs) -> anyhow::Result<Self> {
        let user_home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        // A relative `--home` is taken from here once, so every path derived from it is absolute.
        let explicit = global.home.as_ref().filter(|p| !p.as_os_str().is_empty()).map(|p| cwd.join(p));
        let home = Home::resolve(explicit, user_home.clone())?;
        Ok(Self { home, user_home: user_home.unwrap_or_else(|| PathBuf::from("/")), cwd })
    }

    pub fn skills_dir(&self) -> PathBuf {
        self.user_home.join(".claude").join("skills")
    }

    pub fn layout(&self) -> Layout {
        Layout { home: self.home.root().to_path_buf(), cwd: self.cwd.clone(), skills_dir: self.skills_dir() }
    }

    pub fn catalog(&self) -> anyhow::Result<Catalog> {
        Ok(Catalog::scan(self.layout())?)
    }

    /// Names of host environment variables that are set and non-empty. Values are not kept.
    pub fn env_set() -> BTreeSet<String> {
        std::env::vars_os().filter(|(_, v)| !v.is_empty()).filter_map(|(k, _)| k.into_string().ok()).collect()
    }
}
