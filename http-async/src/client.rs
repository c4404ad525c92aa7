//! The async client: single calls with the policy's retries, and many-session tracking with a
//! cap on requests in flight, outcomes as they happen, and webhooks fed in while tracking.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bankconnect_core::scheduler::{RequestTicket, SchedulerConfig, WebhookDisposition};
use bankconnect_core::{
    classify_progress, classify_session_status, classify_update_webhook, Api, Classified,
    ClientSettings, HttpResult, Outcome, PollPolicy, ProgressReport, Retry, Scheduler, SessionId,
    SessionStatusReply, TrackError, TransportError, TransportErrorKind, WebhookHint,
    WebhookRegistration, WebhookUpdated,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::transport::{AsyncTransport, ReqwestTransport};

/// Why a client call failed (shared by both drivers).
pub type Error = bankconnect_core::ClientError;

/// A BankConnect client over an async transport (reqwest by default), on tokio.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use bankconnect_core::{Api, BaseUrl, Credentials, SessionId};
/// use bankconnect_http_async::Client;
///
/// let api = Api::new(BaseUrl::production(), Credentials::new("api-key", "server-hash")?);
/// let client = Client::new(api);
/// let outcome = client.wait(&SessionId::new("bfb98ac5-7224-401b-a643-175235856187")?).await?;
/// println!("{}: {}", outcome.session_id, outcome.outcome);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    settings: ClientSettings,
    transport: Arc<dyn AsyncTransport>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with the default reqwest transport (30 s per request).
    pub fn new(api: Api) -> Self {
        Self::with_transport(api, ReqwestTransport::default())
    }

    /// A client over your own transport.
    pub fn with_transport(api: Api, transport: impl AsyncTransport + 'static) -> Self {
        Self {
            settings: ClientSettings::new(api, seed_from_clock()),
            transport: Arc::new(transport),
        }
    }

    /// Sets the poll policy (validated when used).
    pub fn with_policy(mut self, policy: PollPolicy) -> Self {
        self.settings.policy = policy;
        self
    }

    /// Sets the client-wide limits (requests in flight, rate limit).
    pub fn with_limits(mut self, limits: SchedulerConfig) -> Self {
        self.settings.limits = limits;
        self
    }

    /// Sets the jitter seed (for reproducible runs).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.settings.seed = seed;
        self
    }

    /// The policy in use.
    pub fn policy(&self) -> &PollPolicy {
        &self.settings.policy
    }

    async fn call<T>(
        &self,
        request: impl Fn() -> Result<http::Request<Vec<u8>>, bankconnect_core::RequestError>,
        classify: impl Fn(HttpResult) -> Classified<T>,
    ) -> Result<T, Error> {
        let mut retry = self.settings.one_shot()?;
        loop {
            let request = request()?;
            let path = request.uri().path().to_owned();
            let result = self.transport.send(request).await;
            tracing::debug!(path = %path, attempt = retry.attempts() + 1, status = ?result.as_ref().map(|r| r.status().as_u16()).ok(), "request");
            match retry.handle(classify(result)) {
                Retry::Done(result) => return result.map_err(Error::from),
                Retry::After(delay) => {
                    tracing::debug!(path = %path, delay_ms = delay.as_millis() as u64, "retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Registers the webhook URL (with the policy's retries of transient failures).
    pub async fn update_webhook(
        &self,
        registration: &WebhookRegistration,
    ) -> Result<WebhookUpdated, Error> {
        self.call(
            || self.settings.api.update_webhook_request(registration),
            classify_update_webhook,
        )
        .await
    }

    /// One progress report (with the policy's retries of transient failures).
    pub async fn progress(&self, session: &SessionId) -> Result<ProgressReport, Error> {
        self.call(
            || self.settings.api.progress_request(session),
            classify_progress,
        )
        .await
    }

    /// The account-level results, or `NotYet` before processing ends.
    pub async fn session_status(&self, session: &SessionId) -> Result<SessionStatusReply, Error> {
        self.call(
            || self.settings.api.session_status_request(session),
            classify_session_status,
        )
        .await
    }

    /// Tracks one session until it ends. Dropping the future cancels cleanly.
    pub async fn wait(&self, session: &SessionId) -> Result<Outcome, Error> {
        let mut tracker = self.tracker()?;
        tracker.add(session.clone())?;
        tracker
            .next_outcome()
            .await
            .ok_or_else(|| Error::Stopped(session.clone()))
    }

    /// Tracks many sessions in one scheduler; await [`Tracker::next_outcome`] for each outcome as it happens.
    pub fn track_many(
        &self,
        sessions: impl IntoIterator<Item = SessionId>,
    ) -> Result<Tracker, Error> {
        let mut tracker = self.tracker()?;
        for session in sessions {
            tracker.add(session)?;
        }
        Ok(tracker)
    }

    /// An empty tracker to add sessions and feed webhooks to.
    pub fn tracker(&self) -> Result<Tracker, Error> {
        let scheduler = self.settings.scheduler()?;
        let (webhooks_tx, webhooks) = mpsc::unbounded_channel();
        Ok(Tracker {
            scheduler,
            transport: Arc::clone(&self.transport),
            in_flight: JoinSet::new(),
            tickets: HashMap::new(),
            webhooks_tx,
            webhooks,
            untracked: Vec::new(),
        })
    }
}

fn seed_from_clock() -> u64 {
    // Jitter only needs to differ between processes; the core takes it as a plain seed.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5eed)
}

/// What a tracker reports as it goes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TrackerEvent {
    /// A session's progress as just seen (only when the limits enable `progress_updates`).
    Progress(bankconnect_core::ProgressUpdate),
    /// A session ended.
    Outcome(Outcome),
}

/// Feeds verified webhooks to a [`Tracker`] from any task or thread.
#[derive(Clone)]
pub struct WebhookFeed(mpsc::UnboundedSender<WebhookHint>);

impl std::fmt::Debug for WebhookFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookFeed")
    }
}

impl WebhookFeed {
    /// Hands a webhook to the tracker; `false` if the tracker is gone.
    pub fn send(&self, hint: WebhookHint) -> bool {
        self.0.send(hint).is_ok()
    }
}

/// Many sessions tracked by one task; requests run concurrently up to `max_in_flight`.
/// Dropping it aborts the requests in flight.
pub struct Tracker {
    scheduler: Scheduler,
    transport: Arc<dyn AsyncTransport>,
    in_flight: JoinSet<HttpResult>,
    tickets: HashMap<tokio::task::Id, RequestTicket>,
    webhooks_tx: mpsc::UnboundedSender<WebhookHint>,
    webhooks: mpsc::UnboundedReceiver<WebhookHint>,
    untracked: Vec<WebhookHint>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("sessions", &self.scheduler.len())
            .field("in_flight", &self.scheduler.in_flight())
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// Starts tracking a session now.
    pub fn add(&mut self, session: SessionId) -> Result<(), TrackError> {
        tracing::debug!(session = %session, "tracking");
        self.scheduler.add(Instant::now(), session)
    }

    /// Sessions still tracked.
    pub fn len(&self) -> usize {
        self.scheduler.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.scheduler.is_empty()
    }

    /// A handle to feed webhooks in while tracking.
    pub fn webhook_feed(&self) -> WebhookFeed {
        WebhookFeed(self.webhooks_tx.clone())
    }

    /// Feeds a webhook directly.
    pub fn handle_webhook(&mut self, hint: WebhookHint) {
        tracing::debug!(session = %hint.session_id, "webhook");
        if let WebhookDisposition::Untracked(hint) =
            self.scheduler.handle_webhook(Instant::now(), hint)
        {
            self.untracked.push(hint);
        }
    }

    /// Webhooks received for sessions this tracker does not track.
    pub fn take_untracked_webhooks(&mut self) -> Vec<WebhookHint> {
        std::mem::take(&mut self.untracked)
    }

    /// Drives everything until the next session ends; `None` once nothing is tracked.
    pub async fn next_outcome(&mut self) -> Option<Outcome> {
        loop {
            match self.next_event().await? {
                TrackerEvent::Outcome(outcome) => return Some(outcome),
                TrackerEvent::Progress(_) => {}
            }
        }
    }

    /// Drives everything until the next event: a progress update (when the limits ask for them
    /// with `progress_updates`) or a session's outcome; `None` once nothing is tracked.
    /// Cancel-safe: dropping the future loses nothing (requests stay in flight in the tracker).
    pub async fn next_event(&mut self) -> Option<TrackerEvent> {
        loop {
            if let Some(outcome) = self.scheduler.poll_outcome() {
                return Some(TrackerEvent::Outcome(outcome));
            }
            if let Some(update) = self.scheduler.poll_update() {
                return Some(TrackerEvent::Progress(update));
            }
            let now = Instant::now();
            while let Some(scheduled) = self.scheduler.poll_request(now) {
                tracing::debug!(session = %scheduled.ticket.session_id(), kind = scheduled.ticket.kind().as_str(), "send");
                let transport = Arc::clone(&self.transport);
                let request = scheduled.request;
                let handle = self
                    .in_flight
                    .spawn(async move { transport.send(request).await });
                self.tickets.insert(handle.id(), scheduled.ticket);
            }
            if let Some(outcome) = self.scheduler.poll_outcome() {
                return Some(TrackerEvent::Outcome(outcome));
            }
            if self.scheduler.is_empty() && self.in_flight.is_empty() {
                return None;
            }
            let wake = self.scheduler.poll_timeout(now);
            tokio::select! {
                Some(joined) = self.in_flight.join_next_with_id() => {
                    let (id, result) = match joined {
                        Ok((id, result)) => (id, result),
                        Err(err) => (err.id(), Err(TransportError::new(TransportErrorKind::Other, "the transport task failed"))),
                    };
                    if let Some(ticket) = self.tickets.remove(&id) {
                        tracing::debug!(session = %ticket.session_id(), status = ?result.as_ref().map(|r| r.status().as_u16()).ok(), "response");
                        self.scheduler.handle_response(Instant::now(), ticket, result);
                    }
                }
                Some(hint) = self.webhooks.recv() => self.handle_webhook(hint),
                () = sleep_until(wake) => {}
            }
        }
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
