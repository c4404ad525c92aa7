//! One process per SQLite file: an exclusive advisory lock (flock) on the database file, held
//! for the process's life, so that a second service on the same file is refused at start
//! instead of polling every session twice. SQLite's own locks are of another kind (fcntl) and
//! are not disturbed.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

use bankconnect_store::StoreUrl;

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds the file.
    #[error("the SQLite file {} is in use by another process: one service per SQLite file (use PostgreSQL for several)", .0.display())]
    InUse(PathBuf),
    /// The file could not be opened or locked.
    #[error("cannot lock the SQLite file {}: {source}", path.display())]
    Io {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The lock on a SQLite store's file; released when dropped (or when the process ends, even
/// by SIGKILL).
#[derive(Debug)]
pub struct SingleProcessLock {
    _file: File,
}

impl SingleProcessLock {
    /// Takes the lock when `store_url` names a SQLite file (open the store first, so that the
    /// file exists); `None` for PostgreSQL, which several processes share by design.
    pub fn acquire(store_url: &str) -> Result<Option<Self>, LockError> {
        let Ok(StoreUrl::Sqlite(path)) = StoreUrl::parse(store_url) else {
            return Ok(None);
        };
        let file = OpenOptions::new()
            .read(true)
            .open(&path)
            .map_err(|source| LockError::Io {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(TryLockError::WouldBlock) => Err(LockError::InUse(path)),
            Err(TryLockError::Error(source)) => Err(LockError::Io { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_second_lock_on_the_same_file_is_refused_until_the_first_goes() {
        let dir = std::env::temp_dir().join(format!("bc-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.db");
        std::fs::write(&path, b"").unwrap();
        let url = format!("sqlite:{}", path.display());
        let first = SingleProcessLock::acquire(&url).unwrap();
        assert!(first.is_some());
        let second = SingleProcessLock::acquire(&url);
        assert!(matches!(second, Err(LockError::InUse(_))), "{second:?}");
        drop(first);
        assert!(SingleProcessLock::acquire(&url).unwrap().is_some());
        assert!(SingleProcessLock::acquire("postgres://u@127.0.0.1:5432/db")
            .unwrap()
            .is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
