//! Secret values for the token slots the routes name: from a private directory or the environment.
//!
//! Files are preferred: a process's initial environment stays readable in `/proc/<pid>/environ` to
//! anyone who can see the process, while a 0700 directory is readable by its owner only.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use bottle_egress::{Secret, Secrets};

use crate::{SidecarConfig, SidecarError};

/// Environment variables that may carry a slot's value: `BOT_BOTTLE_SECRET_<SLOT>`.
pub const SECRET_ENV_PREFIX: &str = "BOT_BOTTLE_SECRET_";

/// Loads the value of every slot a route names. A missing one is an error: a route that would inject
/// nothing must not silently forward the agent's placeholder.
pub fn load_secrets(config: &SidecarConfig) -> Result<Secrets, SidecarError> {
    if let Some(dir) = &config.secrets_dir {
        check_private_dir(dir)?;
    }
    let mut secrets = Secrets::new();
    let slots = config.egress.routes.iter().filter_map(|r| r.auth.as_ref().map(|a| a.token_slot.clone()));
    for slot in slots {
        if secrets.contains_key(&slot) {
            continue;
        }
        let from_file = match &config.secrets_dir {
            Some(dir) => read_slot_file(&dir.join(&slot))?,
            None => None,
        };
        let value = match from_file {
            Some(v) => v,
            None => match std::env::var(format!("{SECRET_ENV_PREFIX}{slot}")) {
                Ok(v) if !v.is_empty() => v,
                _ => return Err(SidecarError::MissingSecret { slot, dir: config.secrets_dir.clone() }),
            },
        };
        secrets.insert(slot, Secret::new(value));
    }
    Ok(secrets)
}

fn check_private_dir(dir: &Path) -> Result<(), SidecarError> {
    let unsafe_dir = |problem: String| SidecarError::UnsafeSecretsDir { path: dir.to_path_buf(), problem };
    let meta = std::fs::symlink_metadata(dir).map_err(|e| unsafe_dir(format!("unreadable ({e})")))?;
    if !meta.is_dir() {
        return Err(unsafe_dir("not a directory".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(unsafe_dir(format!("mode {mode:04o}")));
    }
    // SAFETY-free uid check: compare with the owner of a file we just created would need a write;
    // the process's own /proc entry carries our uid.
    let own_uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    if own_uid.is_some_and(|uid| uid != meta.uid()) {
        return Err(unsafe_dir(format!("owned by uid {}", meta.uid())));
    }
    Ok(())
}

/// A slot file's value with one trailing newline removed; `None` when the file does not exist.
fn read_slot_file(path: &Path) -> Result<Option<String>, SidecarError> {
    match std::fs::read_to_string(path) {
        Ok(mut v) => {
            if v.ends_with('\n') {
                v.pop();
                if v.ends_with('\r') {
                    v.pop();
                }
            }
            Ok(Some(v))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SidecarError::ReadSecret { path: path.to_path_buf(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: Option<&Path>) -> SidecarConfig {
        let json = serde_json::json!({
            "slug": "t", "state_dir": "/nonexistent", "listen": {"egress": "tcp:127.0.0.1:0"},
            "secrets_dir": dir,
            "egress": {"routes": [{"host": "a.example.com", "auth": {"scheme": "Bearer", "token_slot": "SLOT_A"}}]}
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn reads_slot_files_from_a_private_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(dir.path().join("SLOT_A"), "value-a\n").unwrap();
        let secrets = load_secrets(&config(Some(dir.path()))).unwrap();
        assert_eq!(secrets["SLOT_A"].expose(), "value-a");
    }

    #[test]
    fn refuses_a_shared_dir_and_a_missing_slot() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("SLOT_A"), "v").unwrap();
        let err = load_secrets(&config(Some(dir.path()))).unwrap_err();
        assert!(err.to_string().contains("mode 0755"), "{err}");

        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::remove_file(dir.path().join("SLOT_A")).unwrap();
        let err = load_secrets(&config(Some(dir.path()))).unwrap_err();
        assert!(err.to_string().contains("secret `SLOT_A` is missing"), "{err}");
    }
}
