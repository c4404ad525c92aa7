//! `bankconnect serve`: the status service of docs/serve.md, which is the `bankconnect-service`
//! library. This file only maps the flags to its settings, builds the runtime, binds, handles
//! signals, prints the banner and maps errors to exit codes.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bankconnect_core::{ClientSettings, SchedulerConfig};
use bankconnect_service::{
    ConfigError, DeliveryConfig, DeliverySchedule, ListenerLimits, Service, ServiceConfig,
    StartError,
};
use bankconnect_store::{Store, StoreError};

use crate::args::{Global, ServeArgs};
use crate::context::api;
use crate::failure::{exit, Failure};

/// Longest a graceful shutdown waits for requests in flight, then for the service's tasks.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The service's settings from the flags.
fn config(args: &ServeArgs) -> Result<ServiceConfig, Failure> {
    let delivery_schedule = DeliverySchedule::parse(&args.delivery_schedule)
        .map_err(|err| Failure::usage(format!("bad --delivery-schedule: {err}")))?;
    let delivery =
        match (&args.deliver_to, args.deliver_secrets.is_empty()) {
            (Some(url), false) => Some(DeliveryConfig {
                url: url.clone(),
                secrets: args.deliver_secrets.clone(),
            }),
            (Some(_), true) => return Err(Failure::usage(
                "--deliver-to needs --deliver-secret (BANKCONNECT_DELIVER_SECRET), a whsec_… key",
            )),
            (None, _) => None,
        };
    let config = ServiceConfig {
        api_token: args.api_token.clone(),
        read_token: args.read_token.clone(),
        webhook_path: args.webhook_path.clone(),
        webhook_token: args.webhook_token.clone(),
        webhook_secrets: args.secrets.clone(),
        public_url: args.public_url.clone(),
        delivery,
        delivery_schedule,
        interval: args.interval,
        max_wait: args.max_wait,
        not_requested_grace: args.not_requested_grace,
        fetch_accounts: !args.no_accounts,
        lease: args.lease,
        retention: args.retention.0,
        prune_interval: args.prune_interval,
    };
    config.check_listener(args.listen).map_err(config_failure)?;
    config.validate().map_err(config_failure)?;
    Ok(config)
}

/// A configuration error, in the flags' words.
fn config_failure(err: ConfigError) -> Failure {
    let text = match &err {
        ConfigError::OpenToNetwork(addr) => format!(
            "refusing to listen on {addr} without --api-token (BANKCONNECT_SERVE_TOKEN): the API would be open to the network"
        ),
        ConfigError::ApiToken(why) => format!("bad --api-token: {why}"),
        ConfigError::ReadToken(why) => format!("bad --read-token: {why}"),
        ConfigError::WebhookToken(why) => format!("bad --webhook-token: {why}"),
        ConfigError::WebhookSecret(why) => format!("bad --secret: {why}; use whsec_<base64>"),
        ConfigError::PublicUrl(why) => format!("bad --public-url: {why}"),
        ConfigError::DeliveryUrl(why) => format!("bad --deliver-to: {why}"),
        ConfigError::DeliverySecret(why) => format!("bad --deliver-secret: {why}"),
        ConfigError::DeliverySchedule(why) => format!("bad --delivery-schedule: {why}"),
        ConfigError::Timing(why) => format!("bad timing option: {why}"),
        other => other.to_string(),
    };
    Failure::usage(text)
}

/// A store that cannot be opened is a configuration error; anything else is internal.
fn store_failure(err: StoreError) -> Failure {
    match err {
        StoreError::BadUrl(_) | StoreError::Connect { .. } | StoreError::NewerSchema { .. } => {
            Failure::usage(err.to_string())
        }
        other => Failure::internal(other.to_string()),
    }
}

pub(crate) fn run(global: &Global, args: &ServeArgs) -> Result<u8, Failure> {
    let config = config(args)?;
    let limits = SchedulerConfig {
        max_in_flight: args.concurrency as usize,
        ..SchedulerConfig::default()
    };
    limits
        .validate()
        .map_err(|err| Failure::usage(format!("bad --concurrency: {err}")))?;
    let settings = ClientSettings::new(api(global)?, ClientSettings::seed_from(SystemTime::now()))
        .with_limits(limits);
    let client = bankconnect_http_async::Client::with_settings(
        settings,
        bankconnect_http_async::ReqwestTransport::new(global.request_timeout),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| Failure::internal(format!("cannot start the async runtime: {err}")))?;
    runtime.block_on(async move {
        let store = Store::open(&args.store).await.map_err(store_failure)?;
        // Held until the process ends: a second serve on the same SQLite file exits 2.
        let _lock = bankconnect_service::SingleProcessLock::acquire(&args.store)
            .map_err(|err| Failure::usage(err.to_string()))?;
        let version = store.schema_version().await.map_err(store_failure)?;
        tracing::info!(
            store = store.engine(),
            url = %bankconnect_store::redacted_url(&args.store),
            schema_version = version,
            "store opened"
        );
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|err| Failure::usage(format!("cannot listen on {}: {err}", args.listen)))?;
        let bound: SocketAddr = listener
            .local_addr()
            .map_err(|err| Failure::usage(format!("cannot listen on {}: {err}", args.listen)))?;
        let (service, tasks) =
            Service::start(config, store, client)
                .await
                .map_err(|err| match err {
                    StartError::Config(err) => config_failure(err),
                    StartError::Store(err) => store_failure(err),
                    other => Failure::internal(other.to_string()),
                })?;
        crate::output::line(&format!("listening on http://{bound}"));
        tracing::info!(address = %bound, replica = service.replica(), "listening");
        let limits = ListenerLimits {
            max_connections: args.max_connections as usize,
            ..ListenerLimits::default()
        };
        let stop = async {
            let signal = wait_for_signal().await;
            tracing::info!(signal, "shutting down");
        };
        // Requests in flight finish (up to the grace period); then the tasks stop and leases go.
        bankconnect_service::serve(listener, service.router(), limits, stop, SHUTDOWN_GRACE).await;
        tasks.shutdown(SHUTDOWN_GRACE).await;
        Ok(exit::OK)
    })
}

/// Waits for SIGINT or SIGTERM; returns its name.
async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            std::future::pending::<()>().await;
            return "none";
        };
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
