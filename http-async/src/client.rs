//! The async client: single calls with the policy's retries, and many-session tracking with a
//! cap on requests in flight, outcomes as they happen, and webhooks fed in while tracking.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bankconnect_core::{
    Answer, Api, ApiCall, ClientSettings, Outcome, Output, PendingStats, ProgressReport, RequestId,
    RequestKind, Retry, SessionId, SessionSnapshot, SessionStatusReply, TrackError, TrackerEvent,
    TrackerSnapshot, TransportError, TransportErrorKind, WebhookHint, WebhookRegistration,
    WebhookUpdated,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::transport::{AsyncTransport, ReqwestTransport};
use crate::Error;

/// A BankConnect client over an async transport (reqwest by default), on tokio.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// // One dependency: the driver re-exports the core types its users name.
/// use bankconnect_http_async::{Api, BaseUrl, Client, Credentials, SessionId};
///
/// let api = Api::new(BaseUrl::production(), Credentials::new("api-key", "server-hash")?);
/// let client = Client::new(api);
/// let outcome = client.wait(&SessionId::new("bfb98ac5-7224-401b-a643-175235856187")?).await?;
/// println!("{}: {}", outcome.session_id, outcome.outcome);
/// # Ok(()) }
/// ```
///
/// Its `Debug` shows the settings, which never show a secret.
#[derive(Clone, Debug)]
pub struct Client {
    settings: ClientSettings,
    transport: Arc<dyn AsyncTransport>,
}

impl Client {
    /// Default settings and the default reqwest transport (30 s per request, a shared connection
    /// pool), the jitter seeded from the clock.
    pub fn new(api: Api) -> Self {
        Self::with_transport(api, ReqwestTransport::default())
    }

    /// The settings given (policy, limits, seed, pending-webhook bounds), the default reqwest
    /// transport:
    ///
    /// ```no_run
    /// use bankconnect_http_async::{Api, BaseUrl, Client, ClientSettings, Credentials, PollPolicy};
    ///
    /// let api = Api::new(BaseUrl::production(), Credentials::new("api-key", "server-hash")?);
    /// let policy = PollPolicy { interval: std::time::Duration::from_secs(2), ..PollPolicy::default() };
    /// let client = Client::from_settings(ClientSettings::new(api, 7).with_policy(policy));
    /// # drop(client);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_settings(settings: ClientSettings) -> Self {
        Self::with_settings(settings, ReqwestTransport::default())
    }

    /// Default settings over your own transport (an async closure from request to result is
    /// one), the jitter seeded from the clock.
    pub fn with_transport(api: Api, transport: impl AsyncTransport + 'static) -> Self {
        let settings = ClientSettings::new(api, ClientSettings::seed_from(SystemTime::now()));
        Self::with_settings(settings, transport)
    }

    /// The settings and the transport given; every constructor ends here.
    pub fn with_settings(
        settings: ClientSettings,
        transport: impl AsyncTransport + 'static,
    ) -> Self {
        let transport = Arc::new(transport);
        Self {
            settings,
            transport,
        }
    }

    /// What this client was built with (to derive another client's settings from).
    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// Tracks many sessions in one scheduler; awaiting [`Tracker::next_outcome`] sends the
    /// requests as tokio tasks, and hands each outcome out as it happens.
    pub fn track_many(
        &self,
        sessions: impl IntoIterator<Item = SessionId>,
    ) -> Result<Tracker, Error> {
        let core = bankconnect_core::Tracker::tracking(&self.settings, Instant::now(), sessions)?;
        Ok(self.tracker_over(core))
    }

    /// An empty tracker; sessions and webhooks can be added between awaits or through its feeds.
    pub fn tracker(&self) -> Result<Tracker, Error> {
        self.track_many([])
    }

    /// A tracker resumed from a snapshot (see [`Tracker::snapshot`]); the time since it was
    /// taken counts toward each session's max wait.
    pub fn resume(
        &self,
        snapshot: TrackerSnapshot,
    ) -> Result<Tracker, bankconnect_core::SnapshotError> {
        let core = bankconnect_core::Tracker::resume_from(
            &self.settings,
            snapshot,
            Instant::now(),
            SystemTime::now(),
        )?;
        Ok(self.tracker_over(core))
    }

    /// The transport requests go through (to wrap it, e.g. to count requests, and build a
    /// client over the wrapper with [`Client::with_settings`]).
    pub fn transport(&self) -> Arc<dyn AsyncTransport> {
        Arc::clone(&self.transport)
    }

    /// Runs a call: send, then retry as the core says.
    async fn run<T>(&self, mut call: ApiCall<T>) -> Result<T, Error> {
        loop {
            let request = call.request();
            let path = request.uri().path().to_owned();
            let result = self.transport.send(request).await;
            tracing::debug!(path = %path, attempt = call.attempts() + 1, status = ?result.as_ref().map(|r| r.status().as_u16()).ok(), "request");
            match call.handle(result) {
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
        self.run(self.settings.update_webhook_call(registration)?)
            .await
    }

    /// One progress report (with the policy's retries of transient failures).
    pub async fn progress(&self, session: &SessionId) -> Result<ProgressReport, Error> {
        self.run(self.settings.progress_call(session)?).await
    }

    /// The account-level results, or `NotYet` before processing ends.
    pub async fn session_status(&self, session: &SessionId) -> Result<SessionStatusReply, Error> {
        self.run(self.settings.session_status_call(session)?).await
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

    fn tracker_over(&self, core: bankconnect_core::Tracker) -> Tracker {
        let (webhooks_tx, webhooks) = mpsc::unbounded_channel();
        Tracker {
            core,
            transport: Arc::clone(&self.transport),
            in_flight: JoinSet::new(),
            tasks: HashMap::new(),
            webhooks_tx,
            webhooks,
            feed: std::sync::Mutex::new(FeedSlot::default()),
            adds: None,
        }
    }
}

/// Feeds accepted webhooks to a [`Tracker`] from any task or thread.
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

/// Many sessions tracked by one task over the core [`bankconnect_core::Tracker`]; requests run
/// concurrently up to `max_in_flight`. Dropping it aborts the requests in flight.
pub struct Tracker {
    core: bankconnect_core::Tracker,
    transport: Arc<dyn AsyncTransport>,
    in_flight: JoinSet<(RequestId, Answer)>,
    /// Which request each task carries, for a task that panicked.
    tasks: HashMap<tokio::task::Id, (RequestId, RequestKind)>,
    webhooks_tx: mpsc::UnboundedSender<WebhookHint>,
    webhooks: mpsc::UnboundedReceiver<WebhookHint>,
    /// Where [`Tracker::session_feed`] (on `&self`, as the blocking driver's) leaves a new
    /// channel for [`Tracker::next_event`] to take up.
    feed: std::sync::Mutex<FeedSlot>,
    /// Sessions fed while tracking; the channel closes with the last [`SessionFeed`].
    adds: Option<mpsc::UnboundedReceiver<SessionId>>,
}

/// The feeds' channel: a weak sender to hand out clones of, and a receiver not taken up yet.
#[derive(Default)]
struct FeedSlot {
    tx: Option<mpsc::WeakUnboundedSender<SessionId>>,
    new_rx: Option<mpsc::UnboundedReceiver<SessionId>>,
}

/// Adds sessions to a running [`Tracker`] from any task or thread. While one lives, the
/// tracker waits for more sessions instead of ending when it runs out.
#[derive(Clone)]
pub struct SessionFeed(mpsc::UnboundedSender<SessionId>);

impl std::fmt::Debug for SessionFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionFeed")
    }
}

impl SessionFeed {
    /// Hands a session to the tracker; `false` if the tracker is gone.
    pub fn send(&self, session: SessionId) -> bool {
        self.0.send(session).is_ok()
    }
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("sessions", &self.core.len())
            .field("in_flight", &self.core.in_flight())
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// Starts tracking a session now (a webhook already kept for it is applied).
    pub fn add(&mut self, session: SessionId) -> Result<(), TrackError> {
        tracing::debug!(session = %session, "tracking");
        self.core.add(Instant::now(), session)
    }

    /// Starts tracking a session that has already waited `elapsed` (counted toward its max
    /// wait), with its own `max_wait` if given.
    pub fn add_started(
        &mut self,
        session: SessionId,
        elapsed: Duration,
        max_wait: Option<Duration>,
    ) -> Result<(), TrackError> {
        tracing::debug!(session = %session, elapsed_ms = elapsed.as_millis() as u64, "tracking");
        self.core
            .add_started(Instant::now(), session, elapsed, max_wait)
    }

    /// Stops tracking a session without an outcome, returning its resumable state.
    pub fn remove(&mut self, session: &SessionId) -> Option<SessionSnapshot> {
        self.core.remove(Instant::now(), session)
    }

    /// Sessions still tracked.
    pub fn len(&self) -> usize {
        self.core.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.core.is_empty()
    }

    /// A handle to feed webhooks in while tracking.
    pub fn webhook_feed(&self) -> WebhookFeed {
        WebhookFeed(self.webhooks_tx.clone())
    }

    /// A handle to add sessions while tracking (e.g. as lines arrive on stdin); the tracker
    /// goes on waiting for sessions until every feed is dropped.
    pub fn session_feed(&self) -> SessionFeed {
        let mut slot = self
            .feed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = slot
            .tx
            .as_ref()
            .and_then(mpsc::WeakUnboundedSender::upgrade)
        {
            return SessionFeed(tx);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        slot.tx = Some(tx.downgrade());
        slot.new_rx = Some(rx);
        SessionFeed(tx)
    }

    /// Takes up a channel [`Tracker::session_feed`] opened, after what the old one still holds.
    fn take_up_feed(&mut self) {
        let fresh = self
            .feed
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .new_rx
            .take();
        if let Some(rx) = fresh {
            if let Some(mut old) = self.adds.replace(rx) {
                while let Ok(session) = old.try_recv() {
                    self.add_fed(session);
                }
            }
        }
    }

    fn add_fed(&mut self, session: SessionId) {
        if let Err(err) = self.add(session) {
            tracing::warn!(error = %err, "cannot track a fed session");
        }
    }

    /// Feeds a webhook directly. One for a session not tracked yet is kept (bounded) and
    /// applied when the session is added.
    pub fn handle_webhook(&mut self, hint: WebhookHint) {
        tracing::debug!(session = %hint.session_id, authenticated = hint.authenticated, "webhook");
        self.core.handle_webhook(Instant::now(), hint);
    }

    /// Polls a tracked session as soon as its spacing allows (an operator asked); `false` if
    /// it is not tracked.
    pub fn poll_now(&mut self, session: &SessionId) -> bool {
        self.core.poll_now(Instant::now(), session)
    }

    /// What became of webhooks for sessions not tracked when they came.
    pub fn pending_webhooks(&self) -> PendingStats {
        self.core.pending_webhooks()
    }

    /// The whole tracker's resumable state (requests in flight are re-sent on resume).
    pub fn snapshot(&self) -> TrackerSnapshot {
        self.core.snapshot(Instant::now(), SystemTime::now())
    }

    /// Drives everything until the next session ends; `None` once nothing is tracked.
    pub async fn next_outcome(&mut self) -> Option<Outcome> {
        loop {
            if let TrackerEvent::Outcome(outcome) = self.next_event().await? {
                return Some(outcome);
            }
        }
    }

    /// Drives everything until the next event: a progress update (when the limits ask for them
    /// with `progress_updates`) or a session's outcome; `None` once nothing is tracked.
    /// Cancel-safe: dropping the future loses nothing (requests stay in flight in the tracker).
    pub async fn next_event(&mut self) -> Option<TrackerEvent> {
        loop {
            self.take_up_feed();
            let wake = match self.core.poll_output(Instant::now()) {
                Output::Send(transmit) => {
                    // One span per request, carrying the session (never a secret).
                    let span = tracing::debug_span!(
                        "bankconnect_request",
                        session = %transmit.session_id,
                        kind = transmit.kind.as_str(),
                        request = transmit.id.get()
                    );
                    tracing::debug!(parent: &span, "send");
                    let transport = Arc::clone(&self.transport);
                    let (id, kind, request) = (transmit.id, transmit.kind, transmit.request);
                    let handle = self.in_flight.spawn(
                        async move {
                            let result = transport.send(request).await;
                            tracing::debug!(status = ?result.as_ref().map(|r| r.status().as_u16()).ok(), "response");
                            // Parsed in the request's task, on any of the runtime's workers.
                            (id, Answer::classify(kind, result))
                        }
                        .instrument(span),
                    );
                    self.tasks.insert(handle.id(), (id, kind));
                    continue;
                }
                Output::Event(event) => return Some(event),
                Output::Idle => match self.adds.as_mut() {
                    // Nothing left, but a feed may bring more.
                    Some(adds) => match adds.recv().await {
                        Some(session) => {
                            self.add_fed(session);
                            continue;
                        }
                        None => {
                            self.adds = None;
                            return None;
                        }
                    },
                    None => return None,
                },
                Output::WaitUntil(at) => Some(at),
                _ => None,
            };
            tokio::select! {
                Some(joined) = self.in_flight.join_next_with_id() => {
                    let (id, answer) = match joined {
                        Ok((task, (id, answer))) => {
                            self.tasks.remove(&task);
                            (id, answer)
                        }
                        Err(err) => {
                            let Some((id, kind)) = self.tasks.remove(&err.id()) else {
                                continue;
                            };
                            let failure = TransportError::new(TransportErrorKind::Other, "the transport task failed");
                            (id, Answer::classify(kind, Err(failure)))
                        }
                    };
                    tracing::debug!(request = id.get(), "answer");
                    self.core.handle_answer(Instant::now(), id, answer);
                }
                Some(hint) = self.webhooks.recv() => self.handle_webhook(hint),
                Some(session) = recv_fed(&mut self.adds) => self.add_fed(session),
                () = sleep_until(wake) => {}
            }
        }
    }
}

/// The next fed session; pending forever without a feed (or once every feed is gone).
async fn recv_fed(adds: &mut Option<mpsc::UnboundedReceiver<SessionId>>) -> Option<SessionId> {
    match adds {
        Some(rx) => match rx.recv().await {
            Some(session) => Some(session),
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
