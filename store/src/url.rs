//! Which backend a store URL names. The URL is never echoed in errors: it may hold a password.

use std::path::PathBuf;

use crate::StoreError;

/// A parsed store URL.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// `sqlite:PATH` (also `sqlite://PATH`).
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`, in libpq's URL form.
    Postgres(String),
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "Sqlite({})", path.display()),
            Self::Postgres(_) => f.write_str("Postgres(..)"),
        }
    }
}

impl StoreUrl {
    /// Parses `sqlite:PATH`, `sqlite://PATH` or `postgres[ql]://…`.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(StoreError::BadUrl("sqlite: needs a file path".into()));
            }
            if path.contains('?') {
                return Err(StoreError::BadUrl(
                    "sqlite: takes a plain file path, without options".into(),
                ));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            crate::tls::PostgresUrl::parse(url, None)?;
            return Ok(Self::Postgres(url.to_owned()));
        }
        let scheme = url
            .split_once(':')
            .map(|(scheme, _)| scheme)
            .filter(|scheme| {
                scheme.len() <= 16 && scheme.chars().all(|c| c.is_ascii_alphanumeric())
            });
        Err(StoreError::BadUrl(match scheme {
            Some(scheme) => format!("unknown scheme {scheme:?}"),
            None => "no scheme".into(),
        }))
    }
}
