//! The data directory: created private (0700, its files 0600), tightened at startup
//! when an older hostd or the operator left it wider, and locked so that a second
//! hostd cannot share the spool.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the data directory and the directories in it.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files hostd keeps there.
pub const FILE_MODE: u32 = 0o600;
/// The lock file, holding the pid of the hostd that owns the directory.
pub const LOCK_FILE: &str = "LOCK";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data_dir {dir}: {message}")]
    Io { dir: String, message: String },
    #[error("data_dir {dir} is in use by another hostd{}: two daemons must not share a spool (stop it, or give this one another server.data_dir)", .pid.as_ref().map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { dir: String, pid: Option<String> },
}

/// Holds the exclusive lock on `data_dir/LOCK` for as long as it lives.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates `dir` (and missing parents) 0700, or tightens it to 0700, logging the change.
pub fn secure_dir(dir: &Path) -> Result<(), DataDirError> {
    let io = |what: &str, e: std::io::Error| DataDirError::Io {
        dir: dir.display().to_string(),
        message: format!("{what}: {e}"),
    };
    if !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir).map_err(|e| io("cannot create it", e))?;
    }
    tighten(dir, DIR_MODE).map_err(|e| io("cannot restrict its permissions", e))
}

/// Secures a cache directory inside data_dir (the compiled policies, which hostd loads
/// as code): the directory 0700 and the files already in it 0600.
pub fn secure_cache_dir(dir: &Path) -> Result<(), DataDirError> {
    secure_dir(dir)?;
    let io = |e: std::io::Error| DataDirError::Io { dir: dir.display().to_string(), message: e.to_string() };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_type().map_err(io)?.is_file() {
            tighten(&entry.path(), FILE_MODE).map_err(io)?;
        }
    }
    Ok(())
}

/// Sets `path`'s permission bits to at most `mode` when they are wider; logs what changed.
/// A missing file is left alone.
pub fn tighten(path: &Path, mode: u32) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() {
        return Ok(()); // chmod would follow it to whatever it names
    }
    let current = meta.permissions().mode() & 0o7777;
    let wanted = current & mode;
    if current != wanted {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))?;
        tracing::warn!("tightened the permissions of {} from {current:04o} to {wanted:04o}", path.display());
    }
    Ok(())
}

/// Creates `path` empty with mode 0600 if it does not exist (so SQLite, which gives its
/// `-wal` and `-shm` files the database file's mode, creates those 0600 too), or
/// tightens it.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    match OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => tighten(path, FILE_MODE),
        Err(e) => Err(e),
    }
}

/// Secures `dir` and takes the exclusive lock on `dir/LOCK`, writing this process's pid
/// into it. Fails, naming the directory and the other process's pid, when another hostd
/// holds it.
pub fn lock(dir: &Path) -> Result<DataDirLock, DataDirError> {
    secure_dir(dir)?;
    let path = dir.join(LOCK_FILE);
    let io = |what: &str, e: std::io::Error| DataDirError::Io {
        dir: dir.display().to_string(),
        message: format!("{what} {}: {e}", path.display()),
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(|e| io("cannot open", e))?;
    tighten(&path, FILE_MODE).map_err(|e| io("cannot restrict", e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            // The owner's pid, if it is readable; at most a few bytes of it.
            let _ = (&file).take(32).read_to_string(&mut text);
            let pid = text.trim();
            let pid = (!pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())).then(|| pid.to_string());
            return Err(DataDirError::Locked { dir: dir.display().to_string(), pid });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io("cannot lock", e)),
    }
    let write_pid = |file: &mut File| -> std::io::Result<()> {
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_data()
    };
    write_pid(&mut file).map_err(|e| io("cannot write the pid to", e))?;
    Ok(DataDirLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn creates_private_and_tightens_existing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        secure_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.join("spool.db");
        std::fs::write(&file, b"").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        secure_dir(&dir).unwrap();
        create_private_file(&file).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        let fresh = dir.join("fresh");
        create_private_file(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o600);
    }

    #[test]
    fn a_second_lock_fails_naming_the_dir_and_the_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let first = lock(tmp.path()).unwrap();
        let err = lock(tmp.path()).unwrap_err().to_string();
        assert!(err.contains(&tmp.path().display().to_string()), "{err}");
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        drop(first);
        lock(tmp.path()).unwrap();
    }
}
