//! Room left on the disk of a data directory. A write is refused with
//! 53100 before it is logged when the filesystem has less than the reserve
//! free, so the store always has room to apply what the WAL already holds
//! (an apply that fails after its record is durable would stop the shard)
//! and a restart on that disk can still open it and serve reads. Writes
//! work again by themselves once space is freed: the check is made anew at
//! most every [`RECHECK`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Result, StorageError};

/// How long a free-space reading is trusted.
pub const RECHECK: Duration = Duration::from_millis(100);

/// Bytes available to this process on the filesystem holding `path`.
pub fn available(path: &Path) -> std::io::Result<u64> {
    usage(path).map(|(available, _)| available)
}

/// Bytes available to this process, and the size, of the filesystem
/// holding `path`.
pub fn usage(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let block = st.f_frsize as u64;
    Ok((st.f_bavail as u64 * block, st.f_blocks as u64 * block))
}

/// The free-space check of one directory.
#[derive(Debug)]
pub struct Space {
    dir: PathBuf,
    reserve: u64,
    started: Instant,
    /// Micros since `started` of the last reading, and what it found.
    checked_at: AtomicU64,
    full: AtomicBool,
}

impl Space {
    /// Checks `dir`, keeping `reserve` bytes free (0: never refuses).
    pub fn new(dir: &Path, reserve: u64) -> Space {
        Space {
            dir: dir.to_path_buf(),
            reserve,
            started: Instant::now(),
            checked_at: AtomicU64::new(u64::MAX),
            full: AtomicBool::new(false),
        }
    }

    /// 53100 when the disk has less than the reserve free.
    pub fn check(&self) -> Result<()> {
        if self.reserve == 0 {
            return Ok(());
        }
        let now = self.started.elapsed().as_micros() as u64;
        let last = self.checked_at.load(Ordering::Acquire);
        if last == u64::MAX || now.saturating_sub(last) >= RECHECK.as_micros() as u64 {
            // A failed reading counts as room: the write itself then says.
            let full = available(&self.dir).is_ok_and(|free| free < self.reserve);
            if full && !self.full.load(Ordering::Acquire) {
                tracing::warn!(dir = %self.dir.display(), reserve = self.reserve,
                    "the disk is nearly full: writes get 53100 until space is freed");
            }
            self.full.store(full, Ordering::Release);
            self.checked_at.store(now, Ordering::Release);
        }
        if self.full.load(Ordering::Acquire) {
            return Err(StorageError::DiskFull {
                path: self.dir.clone(),
                reserve: self.reserve,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_past_the_free_space_refuses_and_zero_never_does() {
        let dir = tempfile::tempdir().unwrap();
        let free = available(dir.path()).unwrap();
        assert!(free > 0);
        assert!(Space::new(dir.path(), 0).check().is_ok());
        assert!(Space::new(dir.path(), 1).check().is_ok());
        let e = Space::new(dir.path(), free.saturating_mul(2).max(1 << 60))
            .check()
            .unwrap_err();
        assert_eq!(e.sql_state(), "53100");
    }
}
