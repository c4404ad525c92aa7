//! The store's one error type. Messages name the engine, host and database, never a password.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store URL is not one of the accepted forms (the URL itself is not echoed: it may
    /// hold a password).
    #[error("unusable store URL ({0}): use sqlite:PATH (e.g. sqlite:bankconnect.db) or postgres://USER@HOST:PORT/DATABASE")]
    BadUrl(String),
    /// The database could not be reached or opened.
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// `SQLite file PATH` or `PostgreSQL at HOST:PORT/DATABASE`.
        target: String,
        /// Why, from the driver (never holding a password).
        reason: String,
    },
    /// The database was written by a newer version of bankconnect.
    #[error("the store's schema is version {found}, newer than this build knows (up to {supported}); upgrade bankconnect or use another store")]
    NewerSchema {
        /// The database's schema version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// A query failed for a reason a retry cannot mend (a constraint, a missing table, bad SQL).
    #[error("store error: {message}")]
    Database {
        /// What failed, from the driver (never holding a password).
        message: String,
        /// The driver's error.
        #[source]
        source: Option<Cause>,
    },
    /// The database is busy, locked, out of space or unreachable: a retry can help.
    #[error("store busy or unreachable: {message}")]
    Busy {
        /// What failed, from the driver (never holding a password).
        message: String,
        /// The driver's error.
        #[source]
        source: Option<Cause>,
    },
    /// A value read back could not be understood (a damaged row).
    #[error("store holds an unreadable value: {0}")]
    Corrupt(String),
    /// A paging cursor this store did not hand out.
    #[error("invalid cursor")]
    InvalidCursor,
    /// A value given to the store breaks its rules (e.g. an empty batch, a bound of zero).
    #[error("invalid input: {0}")]
    Invalid(String),
}

/// The driver's error under a [`StoreError`].
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

impl StoreError {
    /// A failure no retry mends, with no driver error under it.
    pub(crate) fn database(message: impl Into<String>) -> Self {
        Self::Database {
            message: message.into(),
            source: None,
        }
    }

    /// A failure a retry may mend, with no driver error under it.
    pub(crate) fn busy(message: impl Into<String>) -> Self {
        Self::Busy {
            message: message.into(),
            source: None,
        }
    }

    /// Whether the same operation may succeed if retried (the database was unreachable, busy,
    /// locked, out of space or timed out), as against a constraint, a damaged row, a schema
    /// this build does not know or bad input, which a retry cannot mend.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Busy { .. })
    }
}

/// An error's message followed by its causes', each once.
fn with_causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        let said = next.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = next.source();
    }
    text
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match err.sqlite_error_code() {
            Some(
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory,
            ) => Self::Busy {
                message: err.to_string(),
                source: Some(Box::new(err)),
            },
            _ => Self::Database {
                message: err.to_string(),
                source: Some(Box::new(err)),
            },
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        // The Display of a database error carries the server's message; add its detail.
        match err.as_db_error() {
            Some(db) => {
                let code = db.code().code();
                let message = format!("{code}: {}", db.message());
                // Connection (08), transaction rollback such as serialization or deadlock (40),
                // insufficient resources (53), operator intervention (57), system (58).
                let transient = ["08", "40", "53", "57", "58"]
                    .iter()
                    .any(|class| code.starts_with(class));
                let source: Option<Cause> = Some(Box::new(err));
                if transient {
                    Self::Busy { message, source }
                } else {
                    Self::Database { message, source }
                }
            }
            // No answer from the server: the connection broke, timed out, or its TLS failed
            // (the causes are said: "invalid peer certificate: UnknownIssuer").
            None => Self::Busy {
                message: with_causes(&err),
                source: Some(Box::new(err)),
            },
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(err) => err.into(),
            other => Self::Busy {
                message: format!("no database connection: {other}"),
                source: Some(Box::new(other)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: std::os::raw::c_int) -> StoreError {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None).into()
    }

    #[test]
    fn a_retry_is_offered_only_where_it_can_help() {
        assert!(sqlite(rusqlite::ffi::SQLITE_BUSY).is_transient());
        assert!(sqlite(rusqlite::ffi::SQLITE_FULL).is_transient());
        assert!(sqlite(rusqlite::ffi::SQLITE_IOERR).is_transient());
        assert!(!sqlite(rusqlite::ffi::SQLITE_CONSTRAINT).is_transient());
        assert!(!sqlite(rusqlite::ffi::SQLITE_CORRUPT).is_transient());
        assert!(!StoreError::Corrupt("x".into()).is_transient());
        assert!(!StoreError::NewerSchema {
            found: 9,
            supported: 3
        }
        .is_transient());
        assert!(StoreError::Connect {
            target: "t".into(),
            reason: "r".into()
        }
        .is_transient());
    }
}
