//! `bankconnect serve`: the status service of docs/serve.md. Sessions come in over HTTP and are
//! committed to the store; a tracking task polls those this replica holds leases on, with FinBox's
//! webhooks as the fast path; outcomes are committed with their delivery, which a worker POSTs,
//! signed and retried, to the lender's back end.

mod api;
mod delivery;
mod metrics;
mod openapi;
mod record;
mod tracking;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bankconnect_core::DeliverySchedule;
use bankconnect_core::SchedulerConfig;
use bankconnect_core::{ClientSettings, PollPolicy, WebhookMode, WebhookRegistration};
use bankconnect_store::{Store, StoreError};
use bankconnect_webhook_verify::{DedupeStore, EventKey, Receiver, WebhookSecret};
use tokio::sync::{mpsc, watch, Notify};

use crate::args::{Global, ServeArgs};
use crate::commands::webhook::receiver_config;
use crate::context::api;
use crate::failure::{exit, Failure};

/// The store does the dedupe (shared by every replica); the receiver only checks and parses.
struct StoreDedupe;

impl DedupeStore for StoreDedupe {
    fn insert_if_absent(&mut self, _key: EventKey, _now_unix: i64) -> bool {
        true
    }
}

/// Longest a graceful shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn parse_schedule(text: &str) -> Result<DeliverySchedule, Failure> {
    let delays = text
        .split(',')
        .map(|part| bankconnect_cli::duration::parse_duration(part.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| Failure::usage(format!("bad --delivery-schedule: {err}")))?;
    DeliverySchedule::new(delays)
        .map_err(|err| Failure::usage(format!("bad --delivery-schedule: {err} (comma-separated)")))
}

/// Checks `--deliver-to`: an absolute http(s) URL, `http://` only to loopback, a valid port.
fn delivery_target(url: &str) -> Result<String, Failure> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| Failure::usage("bad --deliver-to: not an absolute URL"))?;
    let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty())
        .ok_or_else(|| Failure::usage("bad --deliver-to: it has no host"))?;
    if authority.as_str().contains('@') {
        return Err(Failure::usage(
            "bad --deliver-to: credentials in the URL are not allowed",
        ));
    }
    bankconnect_core::check_port(authority)
        .map_err(|err| Failure::usage(format!("bad --deliver-to: {err}")))?;
    match scheme.as_deref() {
        Some("https") => Ok(url.to_owned()),
        Some("http") if bankconnect_core::is_loopback_host(authority.host()) => Ok(url.to_owned()),
        Some("http") => Err(Failure::usage(
            "refusing plain http:// in --deliver-to for a non-loopback host: use https://",
        )),
        _ => Err(Failure::usage("bad --deliver-to: use https://")),
    }
}

fn store_failure(err: StoreError) -> Failure {
    match err {
        StoreError::BadUrl(_) | StoreError::Connect { .. } | StoreError::NewerSchema { .. } => {
            Failure::usage(err.to_string())
        }
        other => Failure::internal(other.to_string()),
    }
}

/// A replica id: unique per process, readable in logs and metrics.
fn replica_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("r{}-{nanos:08x}", std::process::id())
}

pub(crate) fn run(global: &Global, args: &ServeArgs) -> Result<u8, Failure> {
    if !args.listen.ip().is_loopback() && args.api_token.is_none() {
        return Err(Failure::usage(format!(
            "refusing to listen on {} without --api-token (BANKCONNECT_SERVE_TOKEN): the API would be open to the network",
            args.listen
        )));
    }
    let api_token = args
        .api_token
        .as_deref()
        .map(|token| {
            WebhookSecret::raw(token.as_bytes().to_vec())
                .map(Arc::new)
                .map_err(|err| Failure::usage(format!("bad --api-token: {err}")))
        })
        .transpose()?;
    let api = api(global)?;
    let receiver_config = receiver_config(
        &args.webhook_path,
        None,
        &args.secrets,
        args.webhook_token.as_deref(),
    )?;
    let schedule = parse_schedule(&args.delivery_schedule)?;
    let delivery =
        match (&args.deliver_to, &args.deliver_secret) {
            (Some(url), Some(secret)) => Some((
                delivery_target(url)?,
                WebhookSecret::standard(secret).map_err(|err| {
                    Failure::usage(format!("bad --deliver-secret: {err}; use whsec_<base64>"))
                })?,
            )),
            (Some(_), None) => return Err(Failure::usage(
                "--deliver-to needs --deliver-secret (BANKCONNECT_DELIVER_SECRET), a whsec_… key",
            )),
            (None, _) => None,
        };
    let registration = match &args.public_url {
        Some(url) => {
            let mut webhook_url = format!("{}{}", url.trim_end_matches('/'), args.webhook_path);
            if let Some(token) = &args.webhook_token {
                webhook_url.push_str("?token=");
                webhook_url.push_str(&percent_encode(token));
            }
            Some(
                WebhookRegistration::new(&webhook_url, WebhookMode::All)
                    .map_err(|err| Failure::usage(format!("bad --public-url: {err}")))?,
            )
        }
        None => None,
    };
    let policy = PollPolicy {
        interval: args.interval,
        max_wait: args.max_wait,
        not_requested_grace: args.not_requested_grace,
        fetch_accounts: !args.no_accounts,
        ..PollPolicy::default()
    };
    policy
        .validate()
        .map_err(|err| Failure::usage(format!("bad timing option: {err}")))?;
    let limits = SchedulerConfig {
        max_in_flight: args.concurrency as usize,
        ..SchedulerConfig::default()
    };
    let settings = ClientSettings::new(api, ClientSettings::seed_from(SystemTime::now()))
        .with_policy(policy)
        .with_limits(limits);
    let replica = replica_id();
    let metrics = Arc::new(metrics::Metrics::new(&replica));
    let client = bankconnect_http_async::Client::with_settings(
        settings,
        metrics::CountingTransport::new(
            bankconnect_http_async::ReqwestTransport::new(global.request_timeout),
            Arc::clone(&metrics),
            &replica,
        ),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| Failure::internal(format!("cannot start the async runtime: {err}")))?;
    runtime.block_on(async move {
        let store = Store::open(&args.store).await.map_err(store_failure)?;
        if store.engine() == "sqlite" {
            // One node: whatever a crashed predecessor held is ours again at once.
            store
                .release_all_leases()
                .await
                .map_err(|err| Failure::internal(err.to_string()))?;
        }
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|err| Failure::usage(format!("cannot listen on {}: {err}", args.listen)))?;
        let bound: SocketAddr = listener
            .local_addr()
            .map_err(|err| Failure::usage(format!("cannot listen on {}: {err}", args.listen)))?;
        let (shutdown_tx, shutdown) = watch::channel(false);
        let (commands_tx, commands) = mpsc::channel(10_000);
        let delivery_wake = Arc::new(Notify::new());

        let tracking = tracking::Tracking {
            store: store.clone(),
            client: client.clone(),
            replica: replica.clone(),
            lease: args.lease,
            interval: args.interval,
            deliver_first: delivery.as_ref().map(|_| schedule.first_delay()),
            delivery_wake: Arc::clone(&delivery_wake),
            metrics: Arc::clone(&metrics),
        };
        let tracking = tokio::spawn(tracking.run(commands, shutdown.clone()));
        let delivering = delivery.map(|(target, secret)| {
            let http = reqwest::Client::builder()
                .timeout(delivery::ATTEMPT_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default();
            let worker = delivery::Delivery {
                store: store.clone(),
                replica: replica.clone(),
                target,
                secret,
                schedule: schedule.clone(),
                client: http,
                wake: Arc::clone(&delivery_wake),
                metrics: Arc::clone(&metrics),
            };
            tokio::spawn(worker.run(shutdown.clone()))
        });
        if let Some(registration) = registration {
            tokio::spawn(register_webhook(client, registration, shutdown.clone()));
        }

        let app = api::App {
            store: store.clone(),
            commands: commands_tx,
            metrics,
            receiver: Arc::new(Receiver::with_store(receiver_config, Box::new(StoreDedupe))),
            api_token,
            replica: Arc::from(replica.as_str()),
            lease: args.lease,
        };
        let router = api::router(app, &args.webhook_path);
        crate::output::line(&format!("listening on http://{bound}"));
        tracing::info!(replica = %replica, store = store.engine(), "serving");

        let mut stopping = shutdown.clone();
        let server = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        });
        let server = tokio::spawn(async move { server.await });
        let signal = wait_for_signal().await;
        tracing::info!(signal, "shutting down");
        let _ = shutdown_tx.send(true);
        // Requests in flight finish (up to the grace period); then leases are released.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, server).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), tracking).await;
        if let Some(delivering) = delivering {
            let _ = tokio::time::timeout(Duration::from_secs(2), delivering).await;
        }
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

/// Registers the webhook URL, retrying in the background until it works (polling carries on).
async fn register_webhook(
    client: bankconnect_http_async::Client,
    registration: WebhookRegistration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut delay = Duration::from_secs(1);
    loop {
        match client.update_webhook(&registration).await {
            Ok(_) => {
                tracing::info!("webhook registered");
                return;
            }
            Err(err) => tracing::warn!(error = %err, "cannot register the webhook; retrying"),
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(300));
    }
}

/// Percent-encodes a token for a query string.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
