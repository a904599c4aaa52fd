//! Who may read what fortress writes: its owner only, as PostgreSQL
//! insists for a data directory. The process's umask is 077, so every file
//! it creates is 0600 and every folder 0700 (the WAL, sled's files,
//! checkpoints, the lock and the control socket alike); a directory written
//! by an older fortress, or copied in with wider modes, is tightened when a
//! server starts on it. A key file others can read is refused.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context};

/// Makes everything this process creates from now on private to its owner.
pub fn owner_only() {
    // SAFETY: umask only swaps the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Takes group and other permissions off `root` (followed if it is a
/// symbolic link) and everything under it (where links are left alone);
/// how many entries changed.
pub fn tighten(root: &Path) -> anyhow::Result<usize> {
    let mut changed = 0;
    let mut todo = vec![root.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = if path == root {
            std::fs::metadata(&path)
        } else {
            std::fs::symlink_metadata(&path)
        };
        let meta = match meta {
            Ok(m) => m,
            // Gone since it was listed (a WAL segment recycled, say).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            let private = std::fs::Permissions::from_mode(mode & 0o700);
            std::fs::set_permissions(&path, private)
                .with_context(|| format!("taking group and other access off {}", path.display()))?;
            changed += 1;
        }
        if meta.is_dir() {
            for entry in
                std::fs::read_dir(&path).with_context(|| format!("listing {}", path.display()))?
            {
                todo.push(entry?.path());
            }
        }
    }
    Ok(changed)
}

/// Refuses a secret file (a key) others can read, by PostgreSQL's rule for
/// its key files: at most 0600, or 0640 when root owns it (a secret
/// mounted for a group the server runs in).
pub fn check_secret(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mode = meta.permissions().mode();
    let allowed = if meta.uid() == 0 { 0o037 } else { 0o077 };
    if mode & allowed != 0 {
        bail!(
            "{} can be read by others (mode {:04o}); a key file must be private to its \
             owner (chmod 600 {}), or 0640 at most when root owns it",
            path.display(),
            mode & 0o7777,
            path.display()
        );
    }
    Ok(())
}
