//! The cluster's private runtime directory: `cluster2-<pid of the master>` under
//! `$XDG_RUNTIME_DIR` (or the temp dir), mode 0700, where the cache socket lives.
//!
//! Private, because anyone who can reach the socket can read and write the cache: the
//! directory's mode is the access control. The master creates it and removes it when it stops;
//! a plain process that enables the cache gets one of its own.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// Creates this process's private directory (or checks the existing one).
pub(crate) fn create() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("cluster2-{}", std::process::id()));
    ensure_private(&dir).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot create the private directory {}", dir.display()),
        )
        .with_source(e)
    })?;
    Ok(dir)
}

/// Creates `dir` with mode 0700, or checks that an existing one is not open to others.
pub(crate) fn ensure_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(std::io::Error::other(format!(
                    "{} is readable by others (mode {mode:o}); the cache socket needs a private \
                     directory",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_directory_open_to_others_is_refused_and_a_new_one_is_private() {
        let base = std::env::temp_dir().join(format!("cluster2-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir(&base).unwrap();
        let fresh = base.join("fresh");
        ensure_private(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        ensure_private(&fresh).unwrap();

        let open = base.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = ensure_private(&open).unwrap_err().to_string();
        assert!(err.contains("readable by others (mode 755)"), "{err}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
