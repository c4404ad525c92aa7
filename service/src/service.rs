//! Starting the service's tasks over a store and a client, the router to mount, and the
//! graceful stop.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use bankconnect_core::{ClientError, WebhookRegistration};
use bankconnect_store::{Store, StoreError};
use bankconnect_webhook_verify::axum_handler::{BodyBudget, MAX_BUFFERED_BODIES};
use bankconnect_webhook_verify::Receiver;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::api::{self, App};
use crate::commit::{self, Committer};
use crate::config::{ConfigError, ServiceConfig};
use crate::coordinator::Coordinator;
use crate::delivery::{self, Delivery};
use crate::metrics::{CountingTransport, Metrics};

/// Commands queued for the tracking task (adds, cancels, webhooks) before senders wait.
const COMMANDS: usize = 10_000;

/// Why the service did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A setting is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store failed at start.
    #[error("the store failed at start: {0}")]
    Store(#[source] StoreError),
    /// The tracker could not be built from the client's settings.
    #[error("cannot start the tracker: {0}")]
    Tracker(#[source] ClientError),
}

/// The running service: its router, to serve or to mount in an app of your own.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use bankconnect_core::{Api, BaseUrl, Credentials};
/// use bankconnect_service::{Service, ServiceConfig};
/// use bankconnect_store::Store;
///
/// let api = Api::new(BaseUrl::production(), Credentials::new("api-key", "server-hash")?);
/// let client = bankconnect_http_async::Client::new(api);
/// let store = Store::open("sqlite:bankconnect.db").await?;
/// let (service, tasks) = Service::start(ServiceConfig::default(), store, client).await?;
/// let app: axum::Router = axum::Router::new().nest("/status", service.router());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// axum::serve(listener, app)
///     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
///     .await?;
/// tasks.shutdown(std::time::Duration::from_secs(10)).await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Service {
    router: Router,
    replica: Arc<str>,
    engine: &'static str,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("replica", &self.replica)
            .field("store", &self.engine)
            .finish_non_exhaustive()
    }
}

/// The service's background tasks (tracking, commits, leases, deliveries, the webhook
/// registration); stop them with [`ServiceTasks::shutdown`]. Dropping them without it leaves
/// the tasks running until the runtime ends (nothing is lost either way: leases lapse).
#[derive(Debug)]
pub struct ServiceTasks {
    shutdown: watch::Sender<bool>,
    coordinator: JoinHandle<()>,
    committer: JoinHandle<()>,
    delivery: Option<JoinHandle<()>>,
    registration: Option<JoinHandle<()>>,
    retention: Option<JoinHandle<()>>,
}

impl Service {
    /// Starts the service's tasks over `store` (migrated already by [`Store::open`]) with
    /// `client` (its API, credentials, transport, retries and concurrency; the timing comes
    /// from `config`). Nothing listens yet: serve or mount [`Service::router`].
    pub async fn start(
        config: ServiceConfig,
        store: Store,
        client: bankconnect_http_async::Client,
    ) -> Result<(Self, ServiceTasks), StartError> {
        let checked = config.check()?;
        let replica = replica_id();
        // Every history event this replica writes names it.
        let store = store.with_replica(&replica);
        let hold = crate::fleet::hold(checked.lease, store.capabilities().several_processes);
        if !store.capabilities().several_processes {
            // One node: whatever a crashed predecessor held is ours again at once.
            store
                .release_all_leases()
                .await
                .map_err(StartError::Store)?;
        }
        let metrics = Arc::new(Metrics::new(&replica));
        // Progress updates feed the sessions' histories (only changes are written).
        let limits = bankconnect_core::SchedulerConfig {
            progress_updates: true,
            ..client.settings().limits.clone()
        };
        let settings = client
            .settings()
            .clone()
            .with_policy(config.policy(&client.settings().policy))
            .with_limits(limits);
        let client = bankconnect_http_async::Client::with_settings(
            settings,
            CountingTransport::new(client.transport(), Arc::clone(&metrics), &replica),
        );
        let tracker = client.tracker().map_err(StartError::Tracker)?;

        let (shutdown, stop) = watch::channel(false);
        let (commands_tx, commands) = mpsc::channel(COMMANDS);
        let (commits_tx, commits) = mpsc::channel(commit::QUEUE);

        let delivery_wake = Arc::new(Notify::new());
        let polled = Arc::new(Mutex::new(std::collections::HashSet::new()));

        let committer = Committer {
            store: store.clone(),
            deliver_first: checked
                .delivery
                .as_ref()
                .map(|_| checked.schedule.first_delay()),
            delivery_wake: Arc::clone(&delivery_wake),
            metrics: Arc::clone(&metrics),
        };
        let committer = tokio::spawn(committer.run(commits, stop.clone()));
        let tracking = tokio::spawn(crate::tracking::run(
            tracker,
            Arc::clone(&polled),
            commands,
            commits_tx,
            stop.clone(),
        ));
        let coordinator = Coordinator {
            store: store.clone(),
            replica: replica.clone(),
            lease: checked.lease,
            hold,
            interval: checked.interval,
            polled: Arc::clone(&polled),
            tracking: commands_tx.clone(),
            metrics: Arc::clone(&metrics),
            store_down: std::sync::atomic::AtomicBool::new(false),
        };
        let coordinator = tokio::spawn(coordinator.run(stop.clone(), async move {
            let _ = tracking.await;
        }));
        let retention = checked.retention.map(|retention| {
            tokio::spawn(
                crate::retention::Retention {
                    store: store.clone(),
                    retention,
                    every: checked.prune_interval,
                    metrics: Arc::clone(&metrics),
                }
                .run(stop.clone()),
            )
        });
        let delivery_target = checked
            .delivery
            .as_ref()
            .map(|(target, _)| Arc::from(crate::config::shown_target(target).as_str()));
        let delivery = checked
            .delivery
            .map(|(target, secrets)| {
                crate::delivery_client::DeliveryClient::new(
                    target,
                    delivery::MAX_IN_FLIGHT,
                    delivery::ATTEMPT_TIMEOUT,
                )
                .map(|client| (client, secrets))
            })
            .transpose()
            .map_err(ConfigError::DeliveryUrl)?;
        let delivery = delivery.map(|(client, secrets)| {
            let worker = Delivery {
                store: store.clone(),
                replica: replica.clone(),
                secrets,
                schedule: checked.schedule.clone(),
                client,
                wake: Arc::clone(&delivery_wake),
                seed: bankconnect_core::ClientSettings::seed_from(SystemTime::now()),
                counted: delivery::ResultCounters::new(&metrics),
            };
            tokio::spawn(worker.run(stop.clone()))
        });
        let registration = checked
            .registration
            .map(|registration| tokio::spawn(register_webhook(client, registration, stop.clone())));

        let replica: Arc<str> = Arc::from(replica.as_str());
        let app = App {
            store: store.clone(),
            commands: commands_tx,
            metrics,
            receiver: Arc::new(Receiver::new(checked.receiver)),
            api_token: checked.api_token,
            read_token: checked.read_token,
            delivery_target,
            delivery_wake: Arc::clone(&delivery_wake),
            retention: checked.retention,
            polled,
            console: Arc::new(crate::console::ConsoleKeys::new(
                config.api_token.as_deref(),
                config.read_token.as_deref(),
                config
                    .public_url
                    .as_deref()
                    .is_some_and(|url| url.starts_with("https://")),
            )),
            replica: Arc::clone(&replica),
            lease: checked.lease,
            hold,
            max_wait: checked.max_wait,
            body_budget: Arc::new(BodyBudget::new(MAX_BUFFERED_BODIES)),
        };
        let router = api::router(app, &checked.webhook_path);
        tracing::info!(replica = %replica, store = store.engine(), "service started");
        Ok((
            Self {
                router,
                replica,
                engine: store.engine(),
            },
            ServiceTasks {
                shutdown,
                coordinator,
                committer,
                delivery,
                registration,
                retention,
            },
        ))
    }

    /// The whole API: `/v1/*`, the webhook path, `/healthz`, `/readyz`, `/metrics` and
    /// `/openapi.json`, to serve or to `nest` under a prefix of your app.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// This replica's id (in logs, metrics, leases and the user agent of its requests).
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The store's engine: `sqlite` or `postgres`.
    pub fn store_engine(&self) -> &'static str {
        self.engine
    }
}

impl ServiceTasks {
    /// Stops taking work, commits what is known, releases this replica's leases and lets
    /// deliveries in flight finish, within `grace` in all. Stop serving the router first, so
    /// that requests in flight are answered.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        if let Some(registration) = self.registration {
            registration.abort();
        }
        // Tracking ends, then the coordinator releases the leases; commits and deliveries go on
        // meanwhile for what they hold.
        if let Some(retention) = self.retention {
            // A batch in progress is one transaction: stopping between batches loses nothing.
            retention.abort();
        }
        for (name, task) in [
            ("leases", Some(self.coordinator)),
            ("commits", Some(self.committer)),
            ("deliveries", self.delivery),
        ] {
            let Some(task) = task else { continue };
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                tracing::warn!(task = name, "shutdown grace ran out");
            }
        }
        tracing::info!("service stopped");
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
