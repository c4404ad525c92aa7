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
    /// A query failed.
    #[error("store error: {0}")]
    Database(String),
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

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Database(err.to_string())
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        // The Display of a database error carries the server's message; add its detail.
        match err.as_db_error() {
            Some(db) => Self::Database(format!("{}: {}", db.code().code(), db.message())),
            None => Self::Database(err.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(err) => err.into(),
            other => Self::Database(format!("no database connection: {other}")),
        }
    }
}
