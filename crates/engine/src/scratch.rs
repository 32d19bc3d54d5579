//! Private directories for a run's intermediate files (a sort's spills, the hash diff's spill files,
//! repair's sorted keys), under a parent such as `--tmp`: `keyrecon-TAG-PID-RANDOM`, removed with their
//! contents when dropped.
//!
//! A run killed with SIGKILL cannot remove its directory. So each directory holds a `.lock` file that its
//! run keeps locked (`flock`) while it lives; the kernel drops the lock when the process dies, however it
//! dies. Creating a directory first removes every `keyrecon-*` directory in the same parent whose lock
//! can be taken: its run is gone. A directory is set up under a dotted name and renamed into place once
//! locked, so a sweep never sees a live directory unlocked. Directories without a `.lock` (older
//! versions) are left alone.

use crate::error::{IoContext, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

const LOCK: &str = ".lock";

pub struct ScratchDir {
    path: PathBuf,
    /// Held while the directory lives; closed (unlocked) after the directory is removed.
    _lock: File,
}

impl ScratchDir {
    pub fn create(parent: &Path, tag: &str) -> Result<ScratchDir> {
        std::fs::create_dir_all(parent).ctx(parent)?;
        sweep(parent);
        let name = format!("keyrecon-{tag}-{}-{:x}", std::process::id(), rand::random::<u32>());
        let (building, path) = (parent.join(format!(".{name}")), parent.join(&name));
        std::fs::create_dir(&building).ctx(&building)?;
        let lock = File::create(building.join(LOCK)).ctx(&building)?;
        // A file system without flock: the directory works, it just cannot be swept after a kill (a
        // sweep only removes what it could lock).
        try_lock(&lock);
        std::fs::rename(&building, &path).ctx(&path)?;
        Ok(ScratchDir { path, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Takes an exclusive `flock` on `f` without waiting. False if another open file holds it.
fn try_lock(f: &File) -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
    }
    #[cfg(not(unix))]
    {
        let _ = f;
        false
    }
}

/// Removes the scratch directories in `parent` whose runs are gone (their lock can be taken).
fn sweep(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with("keyrecon-") {
            continue;
        }
        let Ok(lock) = File::open(e.path().join(LOCK)) else { continue };
        if try_lock(&lock) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_runs_directory_is_swept_and_a_live_ones_is_not() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        // Dead: a lock file nobody holds. Live: another scratch directory, still open. Old: no lock.
        let dead = p.join("keyrecon-repair-4242-abc");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(LOCK), b"").unwrap();
        std::fs::write(dead.join("keys.krc"), b"x").unwrap();
        let live = ScratchDir::create(p, "sort").unwrap();
        std::fs::write(live.path().join("spill"), b"x").unwrap();
        let old = p.join("keyrecon-diff-4243-def");
        std::fs::create_dir(&old).unwrap();
        let other = p.join("not-ours");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join(LOCK), b"").unwrap();
        assert!(!dead.exists(), "the first create swept the dead run's directory");
        let mine = ScratchDir::create(p, "repair").unwrap();
        assert!(live.path().join("spill").exists() && old.exists() && other.exists());
        assert!(mine.path().file_name().unwrap().to_string_lossy().starts_with("keyrecon-repair-"));
        let (live_path, mine_path) = (live.path().to_path_buf(), mine.path().to_path_buf());
        drop(live);
        drop(mine);
        assert!(!live_path.exists() && !mine_path.exists(), "dropped directories are removed");
        let names: Vec<_> = std::fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
