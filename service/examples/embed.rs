//! A lender's own axum app with the status service mounted under `/status`.
//!
//! ```text
//! BANKCONNECT_BASE_URL=http://127.0.0.1:8765 BANKCONNECT_API_KEY=… BANKCONNECT_SERVER_HASH=… \
//!     cargo run -p bankconnect-service --example embed
//! ```
//!
//! Reads `BANKCONNECT_BASE_URL` (default: production), `BANKCONNECT_API_KEY`,
//! `BANKCONNECT_SERVER_HASH`, `BANKCONNECT_STORE` (default `sqlite:bankconnect.db` in the working
//! directory) and `BANKCONNECT_LISTEN` (default `127.0.0.1:0`); prints
//! `listening on http://IP:PORT` first, and exits 0 after a graceful shutdown on SIGTERM or
//! SIGINT.

use std::net::SocketAddr;
use std::time::Duration;

use bankconnect_core::{Api, BaseUrl, Credentials};
use bankconnect_service::{Service, ServiceConfig, SingleProcessLock};
use bankconnect_store::Store;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let base = env("BANKCONNECT_BASE_URL")
        .unwrap_or_else(|| bankconnect_core::PRODUCTION_BASE_URL.to_owned());
    let (Some(key), Some(hash)) = (env("BANKCONNECT_API_KEY"), env("BANKCONNECT_SERVER_HASH"))
    else {
        return Err("set BANKCONNECT_API_KEY and BANKCONNECT_SERVER_HASH".into());
    };
    let api = Api::new(BaseUrl::parse(&base)?, Credentials::new(&key, &hash)?);
    let client = bankconnect_http_async::Client::new(api);
    let store_url = env("BANKCONNECT_STORE").unwrap_or_else(|| "sqlite:bankconnect.db".to_owned());
    let listen: SocketAddr = env("BANKCONNECT_LISTEN")
        .unwrap_or_else(|| "127.0.0.1:0".to_owned())
        .parse()?;

    let config = ServiceConfig::default();
    config.check_listener(listen)?;
    let store = Store::open(&store_url).await?;
    let _lock = SingleProcessLock::acquire(&store_url)?;
    let (service, tasks) = Service::start(config, store, client).await?;

    // The lender's own routes, and the service beside them.
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "lender app" }))
        .nest("/status", service.router());

    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(signal())
        .await?;
    tasks.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

/// SIGTERM or SIGINT.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
