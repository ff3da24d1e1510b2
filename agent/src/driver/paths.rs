//! Confining the init and autorun files of create requests to their folders.
//!
//! A create request names its `InitFile` and `AutorunFile` relative to the agent's `init_folder` and
//! `autorun_folder`. The name comes from an API client, so it must never reach outside the folder: no `..`,
//! no absolute path, no drive prefix, and no symbolic link (of the file or of a folder on the way) that
//! resolves outside. The check resolves the real path of both the folder and the file and requires the file
//! to be a regular file under the folder; the resolved path is what `dcv` receives, so a link swapped after
//! the check cannot redirect it to another file than the one checked (short of replacing a folder inside the
//! confined folder, which only the folder's owner can do).

use std::path::{Component, Path, PathBuf};

use super::DriverError;

/// Longest relative name accepted.
const MAX_NAME_BYTES: usize = 1024;

/// The real path of `name` inside `folder`, or why it is refused. `what` names the request field in errors.
pub fn confined_file(folder: Option<&Path>, name: &str, what: &str) -> Result<PathBuf, DriverError> {
    let invalid = |why: String| DriverError::InvalidRequest(format!("{what} `{name}`: {why}"));
    let folder = folder.ok_or_else(|| invalid(format!("no {what} folder is configured on this host")))?;
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(invalid("empty, too long or with control characters".into()));
    }
    let relative = Path::new(name);
    for component in relative.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(invalid("`..` is not allowed".into())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(invalid(format!("must be relative to the {what} folder")));
            }
        }
    }
    let root = folder
        .canonicalize()
        .map_err(|e| invalid(format!("the {what} folder {} cannot be resolved: {e}", folder.display())))?;
    let resolved = root.join(relative).canonicalize().map_err(|e| invalid(format!("not found: {e}")))?;
    if !resolved.starts_with(&root) {
        return Err(invalid(format!("resolves outside the {what} folder")));
    }
    if !resolved.is_file() {
        return Err(invalid("is not a regular file".into()));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let init = dir.path().join("init");
        std::fs::create_dir_all(init.join("sub")).unwrap();
        std::fs::write(init.join("setup.sh"), "#!/bin/sh\n").unwrap();
        std::fs::write(init.join("sub/deep.sh"), "#!/bin/sh\n").unwrap();
        std::fs::write(dir.path().join("secret.sh"), "#!/bin/sh\n").unwrap();
        (dir, init)
    }

    fn refused(folder: &Path, name: &str) -> String {
        match confined_file(Some(folder), name, "init file") {
            Err(DriverError::InvalidRequest(why)) => why,
            other => panic!("`{name}` should be refused, got {other:?}"),
        }
    }

    #[test]
    fn files_inside_the_folder_resolve() {
        let (_dir, init) = folder();
        let root = init.canonicalize().unwrap();
        assert_eq!(confined_file(Some(&init), "setup.sh", "init file").unwrap(), root.join("setup.sh"));
        assert_eq!(confined_file(Some(&init), "./sub/deep.sh", "init file").unwrap(), root.join("sub/deep.sh"));
    }

    #[test]
    fn traversal_and_absolute_paths_are_refused() {
        let (dir, init) = folder();
        assert!(refused(&init, "../secret.sh").contains(".."));
        assert!(refused(&init, "sub/../../secret.sh").contains(".."));
        assert!(refused(&init, "sub/../setup.sh").contains(".."));
        let absolute = dir.path().join("secret.sh");
        assert!(refused(&init, absolute.to_str().unwrap()).contains("relative"));
        assert!(refused(&init, "/etc/passwd").contains("relative"));
        assert!(refused(&init, "").contains("empty"));
        assert!(refused(&init, "a\nb").contains("control"));
        assert!(refused(&init, "missing.sh").contains("not found"));
        assert!(refused(&init, "sub").contains("regular file"));
    }

    #[test]
    fn symlinks_out_of_the_folder_are_refused() {
        let (dir, init) = folder();
        std::os::unix::fs::symlink(dir.path().join("secret.sh"), init.join("link.sh")).unwrap();
        std::os::unix::fs::symlink(dir.path(), init.join("escape")).unwrap();
        assert!(refused(&init, "link.sh").contains("outside"));
        assert!(refused(&init, "escape/secret.sh").contains("outside"));
        // A link that stays inside is fine.
        std::os::unix::fs::symlink(init.join("setup.sh"), init.join("alias.sh")).unwrap();
        let root = init.canonicalize().unwrap();
        assert_eq!(confined_file(Some(&init), "alias.sh", "init file").unwrap(), root.join("setup.sh"));
    }

    #[test]
    fn no_folder_configured_is_refused() {
        let error = confined_file(None, "setup.sh", "autorun file").unwrap_err();
        assert!(error.to_string().contains("no autorun file folder"), "{error}");
    }
}
