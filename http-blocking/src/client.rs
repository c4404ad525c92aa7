//! The blocking client: single calls with the policy's retries, and many-session tracking on the
//! calling thread with a small worker pool for requests in flight.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bankconnect_core::SchedulerConfig;
use bankconnect_core::{
    Api, ApiCall, ClientSettings, HttpResult, Outcome, Output, PendingStats, PollPolicy,
    ProgressReport, RequestId, Retry, SessionId, SessionSnapshot, SessionStatusReply, TrackError,
    TrackerEvent, TrackerSnapshot, TransportError, TransportErrorKind, WebhookHint,
    WebhookRegistration, WebhookUpdated,
};

use crate::transport::{BlockingTransport, UreqTransport};

/// Why a client call failed (shared by both drivers).
pub type Error = bankconnect_core::ClientError;

/// A BankConnect client over a blocking transport (ureq by default). No async runtime anywhere.
///
/// ```no_run
/// use bankconnect_core::{Api, BaseUrl, Credentials, SessionId};
/// use bankconnect_http_blocking::Client;
///
/// let api = Api::new(BaseUrl::production(), Credentials::new("api-key", "server-hash")?);
/// let client = Client::new(api);
/// let outcome = client.wait(&SessionId::new("bfb98ac5-7224-401b-a643-175235856187")?)?;
/// println!("{}: {}", outcome.session_id, outcome.outcome);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Client {
    settings: ClientSettings,
    transport: Arc<dyn BlockingTransport>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with the default ureq transport (30 s per request).
    pub fn new(api: Api) -> Self {
        Self::with_transport(api, UreqTransport::default())
    }

    /// A client over your own transport (any `Fn(http::Request<Vec<u8>>) -> HttpResult` too).
    pub fn with_transport(api: Api, transport: impl BlockingTransport + 'static) -> Self {
        let settings = ClientSettings::new(api, ClientSettings::seed_from(SystemTime::now()));
        Self::with_settings(settings, transport)
    }

    /// A client with every setting given (API, policy, limits, seed, pending-webhook bounds).
    pub fn with_settings(
        settings: ClientSettings,
        transport: impl BlockingTransport + 'static,
    ) -> Self {
        Self {
            settings,
            transport: Arc::new(transport),
        }
    }

    /// Sets the poll policy (validated when used).
    pub fn with_policy(mut self, policy: PollPolicy) -> Self {
        self.settings = self.settings.with_policy(policy);
        self
    }

    /// Sets the client-wide limits (requests in flight = worker threads, rate limit).
    pub fn with_limits(mut self, limits: SchedulerConfig) -> Self {
        self.settings = self.settings.with_limits(limits);
        self
    }

    /// Sets the jitter seed (for reproducible runs).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.settings = self.settings.with_seed(seed);
        self
    }

    /// The settings in use.
    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// The policy in use.
    pub fn policy(&self) -> &PollPolicy {
        &self.settings.policy
    }

    /// Runs a call: send, then retry as the core says.
    fn run<T>(&self, mut call: ApiCall<T>) -> Result<T, Error> {
        loop {
            let request = call.request();
            let path = request.uri().path().to_owned();
            let result = send_guarded(self.transport.as_ref(), request);
            tracing::debug!(path = %path, attempt = call.attempts() + 1, status = ?result.as_ref().map(|r| r.status().as_u16()).ok(), "request");
            match call.handle(result) {
                Retry::Done(result) => return result.map_err(Error::from),
                Retry::After(delay) => {
                    tracing::debug!(path = %path, delay_ms = delay.as_millis() as u64, "retrying");
                    std::thread::sleep(delay);
                }
            }
        }
    }

    /// Registers the webhook URL (with the policy's retries of transient failures).
    pub fn update_webhook(
        &self,
        registration: &WebhookRegistration,
    ) -> Result<WebhookUpdated, Error> {
        self.run(self.settings.update_webhook_call(registration)?)
    }

    /// One progress report (with the policy's retries of transient failures).
    pub fn progress(&self, session: &SessionId) -> Result<ProgressReport, Error> {
        self.run(self.settings.progress_call(session)?)
    }

    /// The account-level results, or `NotYet` before processing ends.
    pub fn session_status(&self, session: &SessionId) -> Result<SessionStatusReply, Error> {
        self.run(self.settings.session_status_call(session)?)
    }

    /// Tracks one session until it ends.
    pub fn wait(&self, session: &SessionId) -> Result<Outcome, Error> {
        let mut tracker = self.tracker()?;
        tracker.add(session.clone())?;
        tracker
            .next_outcome()
            .ok_or_else(|| Error::Stopped(session.clone()))
    }

    /// Tracks many sessions in one scheduler; call [`Tracker::next_outcome`] for each outcome as it happens.
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
        Ok(self.tracker_over(bankconnect_core::Tracker::new(&self.settings)?))
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

    fn tracker_over(&self, core: bankconnect_core::Tracker) -> Tracker {
        let (events_tx, events) = mpsc::channel();
        let (work_tx, work_rx) = mpsc::channel();
        Tracker {
            core,
            transport: Arc::clone(&self.transport),
            workers: self.settings.limits.max_in_flight.max(1),
            spawned: 0,
            work_tx,
            queue: Arc::new(Mutex::new(work_rx)),
            events_tx,
            events,
            feeds: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }
}

/// Sends through the transport, turning a panic inside it into a transport error.
fn send_guarded(transport: &dyn BlockingTransport, request: http::Request<Vec<u8>>) -> HttpResult {
    std::panic::catch_unwind(AssertUnwindSafe(|| transport.send(request))).unwrap_or_else(|_| {
        Err(TransportError::new(
            TransportErrorKind::Other,
            "the transport panicked",
        ))
    })
}

enum Event {
    Response(RequestId, HttpResult),
    Webhook(WebhookHint),
    Add(SessionId),
    /// A [`SessionFeed`] was dropped: the tracker rechecks whether any is left.
    FeedClosed,
}

/// Adds sessions to a running [`Tracker`] from any thread. While one lives, the tracker waits
/// for more sessions instead of ending when it runs out.
pub struct SessionFeed {
    events: Sender<Event>,
    alive: Arc<std::sync::atomic::AtomicUsize>,
}

impl Clone for SessionFeed {
    fn clone(&self) -> Self {
        self.alive.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self {
            events: self.events.clone(),
            alive: Arc::clone(&self.alive),
        }
    }
}

impl Drop for SessionFeed {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        let _ = self.events.send(Event::FeedClosed);
    }
}

impl std::fmt::Debug for SessionFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionFeed")
    }
}

impl SessionFeed {
    /// Hands a session to the tracker; `false` if the tracker is gone.
    pub fn send(&self, session: SessionId) -> bool {
        self.events.send(Event::Add(session)).is_ok()
    }
}

/// Feeds accepted webhooks to a running [`Tracker`] from any thread.
#[derive(Clone)]
pub struct WebhookFeed(Sender<Event>);

impl std::fmt::Debug for WebhookFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookFeed")
    }
}

impl WebhookFeed {
    /// Hands a webhook to the tracker; `false` if the tracker is gone.
    pub fn send(&self, hint: WebhookHint) -> bool {
        self.0.send(Event::Webhook(hint)).is_ok()
    }
}

type Job = (RequestId, http::Request<Vec<u8>>, tracing::Span);

/// Many sessions tracked on the calling thread over the core [`bankconnect_core::Tracker`];
/// requests run on up to `max_in_flight` worker threads.
pub struct Tracker {
    core: bankconnect_core::Tracker,
    transport: Arc<dyn BlockingTransport>,
    workers: usize,
    spawned: usize,
    work_tx: Sender<Job>,
    queue: Arc<Mutex<Receiver<Job>>>,
    events_tx: Sender<Event>,
    events: Receiver<Event>,
    /// Live [`SessionFeed`]s: while any lives, running out of sessions is not the end.
    feeds: Arc<std::sync::atomic::AtomicUsize>,
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
        elapsed: std::time::Duration,
        max_wait: Option<std::time::Duration>,
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
        WebhookFeed(self.events_tx.clone())
    }

    /// A handle to add sessions while tracking (e.g. as lines arrive on stdin); the tracker
    /// goes on waiting for sessions until every feed is dropped.
    pub fn session_feed(&self) -> SessionFeed {
        self.feeds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        SessionFeed {
            events: self.events_tx.clone(),
            alive: Arc::clone(&self.feeds),
        }
    }

    /// Feeds a webhook directly (same thread). One for a session not tracked yet is kept
    /// (bounded) and applied when the session is added.
    pub fn handle_webhook(&mut self, hint: WebhookHint) {
        tracing::debug!(session = %hint.session_id, authenticated = hint.authenticated, "webhook");
        self.core.handle_webhook(Instant::now(), hint);
    }

    /// What became of webhooks for sessions not tracked when they came.
    pub fn pending_webhooks(&self) -> PendingStats {
        self.core.pending_webhooks()
    }

    /// The whole tracker's resumable state (requests in flight are re-sent on resume).
    pub fn snapshot(&self) -> TrackerSnapshot {
        self.core.snapshot(Instant::now(), SystemTime::now())
    }

    fn dispatch(&mut self, job: Job) {
        // Start workers lazily, one per request in flight, up to the cap.
        if self.spawned < self.workers && self.spawned < self.core.in_flight() {
            let queue = Arc::clone(&self.queue);
            let transport = Arc::clone(&self.transport);
            let events = self.events_tx.clone();
            let spawned = std::thread::Builder::new()
                .name("bankconnect-worker".into())
                .spawn(move || worker(&queue, transport.as_ref(), &events));
            if spawned.is_ok() {
                self.spawned += 1;
            }
        }
        let id = job.0;
        if self.spawned == 0 || self.work_tx.send(job).is_err() {
            let failure = TransportError::new(
                TransportErrorKind::Other,
                "no worker thread could be started",
            );
            self.core.handle_response(Instant::now(), id, Err(failure));
        }
    }

    /// Drives everything until the next session ends; `None` once nothing is tracked.
    pub fn next_outcome(&mut self) -> Option<Outcome> {
        loop {
            if let TrackerEvent::Outcome(outcome) = self.next_event()? {
                return Some(outcome);
            }
        }
    }

    /// Drives everything until the next event: a progress update (when the limits ask for them
    /// with `progress_updates`) or a session's outcome; `None` once nothing is tracked.
    pub fn next_event(&mut self) -> Option<TrackerEvent> {
        loop {
            let event = match self.core.poll_output(Instant::now()) {
                Output::Send(transmit) => {
                    // One span per request, carrying the session (never a secret).
                    let span = tracing::debug_span!(
                        "bankconnect_request",
                        session = %transmit.session_id,
                        kind = transmit.kind.as_str(),
                        request = transmit.id.get()
                    );
                    tracing::debug!(parent: &span, "send");
                    self.dispatch((transmit.id, transmit.request, span));
                    continue;
                }
                Output::Event(event) => return Some(event),
                Output::Idle if self.feeds.load(std::sync::atomic::Ordering::SeqCst) == 0 => {
                    return None
                }
                // Nothing left, but a feed may bring more.
                Output::Idle => match self.events.recv() {
                    Ok(event) => event,
                    Err(_) => return None,
                },
                Output::WaitUntil(at) => {
                    match self
                        .events
                        .recv_timeout(at.saturating_duration_since(Instant::now()))
                    {
                        Ok(event) => event,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => return None,
                    }
                }
                _ => match self.events.recv() {
                    Ok(event) => event,
                    Err(_) => return None,
                },
            };
            match event {
                Event::Response(id, result) => {
                    tracing::debug!(request = id.get(), status = ?result.as_ref().map(|r| r.status().as_u16()).ok(), "response");
                    self.core.handle_response(Instant::now(), id, result);
                }
                Event::Webhook(hint) => self.handle_webhook(hint),
                Event::Add(session) => {
                    if let Err(err) = self.add(session) {
                        tracing::warn!(error = %err, "cannot track a fed session");
                    }
                }
                Event::FeedClosed => {}
            }
        }
    }
}

fn worker(queue: &Mutex<Receiver<Job>>, transport: &dyn BlockingTransport, events: &Sender<Event>) {
    loop {
        let job = match queue.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok((id, request, span)) = job else {
            return; // The tracker is gone.
        };
        let result = span.in_scope(|| {
            let result = send_guarded(transport, request);
            tracing::debug!(status = ?result.as_ref().map(|r| r.status().as_u16()).ok(), "response");
            result
        });
        if events.send(Event::Response(id, result)).is_err() {
            return;
        }
    }
}
