//! Fixtures for the store's tests: a fresh SQLite file or PostgreSQL schema per test, removed
//! afterwards (even when the test fails).
#![allow(
    missing_docs,
    unreachable_pub,
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};

use bankconnect_store::{Bounds, Store, StoreError};

/// The PostgreSQL server tests may use, from `BANKCONNECT_TEST_POSTGRES`.
pub fn postgres_url() -> Option<String> {
    std::env::var("BANKCONNECT_TEST_POSTGRES")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// One test's own database: a file, or a schema.
pub struct Fixture {
    pub backend: Backend,
    pub url: String,
    dir: Option<PathBuf>,
    schema: Option<(String, String)>,
}

impl Fixture {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(unique("bankconnect_store"));
                std::fs::create_dir_all(&dir).unwrap();
                let url = format!("sqlite:{}", dir.join("store.db").display());
                Self {
                    backend,
                    url,
                    dir: Some(dir),
                    schema: None,
                }
            }
            Backend::Postgres => {
                let base = postgres_url().expect("BANKCONNECT_TEST_POSTGRES");
                let schema = unique("bc_test");
                let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
                    .await
                    .expect("PostgreSQL answers at BANKCONNECT_TEST_POSTGRES");
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("CREATE SCHEMA {schema}"))
                    .await
                    .unwrap();
                let separator = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{separator}options=-csearch_path%3D{schema}");
                Self {
                    backend,
                    url,
                    dir: None,
                    schema: Some((base, schema)),
                }
            }
        }
    }

    pub async fn try_open(&self) -> Result<Store, StoreError> {
        Store::open(&self.url).await
    }

    pub async fn open(&self) -> Store {
        self.try_open().await.expect("the store opens")
    }

    pub async fn open_with(&self, bounds: Bounds) -> Store {
        Store::open_with(&self.url, bounds)
            .await
            .expect("the store opens")
    }

    /// Writes a schema version directly, as a newer build would have.
    pub async fn set_schema_version(&self, version: i64) {
        let sql =
            format!("UPDATE bankconnect_meta SET value = '{version}' WHERE key = 'schema_version'");
        match self.backend {
            Backend::Sqlite => {
                let path = self.url.trim_start_matches("sqlite:").to_owned();
                let conn = rusqlite::Connection::open(path).unwrap();
                assert_eq!(conn.execute(&sql, []).unwrap(), 1);
            }
            Backend::Postgres => {
                let (client, connection) =
                    tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                        .await
                        .unwrap();
                tokio::spawn(connection);
                assert_eq!(client.execute(&sql, &[]).await.unwrap(), 1);
            }
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((base, schema)) = self.schema.take() {
            // Drop runs inside or outside a runtime: clean up on a thread of its own.
            let _ = std::thread::spawn(move || {
                block_on(async move {
                    if let Ok((client, connection)) =
                        tokio_postgres::connect(&base, tokio_postgres::NoTls).await
                    {
                        tokio::spawn(connection);
                        let _ = client
                            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Runs one conformance case on `backend` in a runtime of its own.
pub fn run(backend: Backend, case: fn(Fixture) -> Pin<Box<dyn Future<Output = ()> + Send>>) {
    block_on(async move {
        let fixture = Fixture::new(backend).await;
        case(fixture).await;
    });
}
