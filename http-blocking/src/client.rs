//! The blocking client: single calls with the policy's retries, and many-session tracking on the
//! calling thread with a small worker pool for requests in flight.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bankconnect_core::scheduler::{RequestTicket, SchedulerConfig, WebhookDisposition};
use bankconnect_core::{
    classify_progress, classify_session_status, classify_update_webhook, Api, Classified,
    ClientSettings, HttpResult, Outcome, PollPolicy, ProgressReport, Retry, Scheduler, SessionId,
    SessionStatusReply, TrackError, TransportError, TransportErrorKind, WebhookHint,
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

    /// Sets the client-wide limits (requests in flight = worker threads, rate limit).
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

    fn call<T>(
        &self,
        request: impl Fn() -> Result<http::Request<Vec<u8>>, bankconnect_core::RequestError>,
        classify: impl Fn(HttpResult) -> Classified<T>,
    ) -> Result<T, Error> {
        let mut retry = self.settings.one_shot()?;
        loop {
            let request = request()?;
            let path = request.uri().path().to_owned();
            let result = send_guarded(self.transport.as_ref(), request);
            tracing::debug!(path = %path, attempt = retry.attempts() + 1, status = ?result.as_ref().map(|r| r.status().as_u16()).ok(), "request");
            match retry.handle(classify(result)) {
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
        self.call(
            || self.settings.api.update_webhook_request(registration),
            classify_update_webhook,
        )
    }

    /// One progress report (with the policy's retries of transient failures).
    pub fn progress(&self, session: &SessionId) -> Result<ProgressReport, Error> {
        self.call(
            || self.settings.api.progress_request(session),
            classify_progress,
        )
    }

    /// The account-level results, or `NotYet` before processing ends.
    pub fn session_status(&self, session: &SessionId) -> Result<SessionStatusReply, Error> {
        self.call(
            || self.settings.api.session_status_request(session),
            classify_session_status,
        )
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
        let scheduler = self.settings.scheduler()?;
        let (events_tx, events) = mpsc::channel();
        let (work_tx, work_rx) = mpsc::channel();
        Ok(Tracker {
            scheduler,
            transport: Arc::clone(&self.transport),
            workers: self.settings.limits.max_in_flight.max(1),
            spawned: 0,
            work_tx,
            queue: Arc::new(Mutex::new(work_rx)),
            events_tx,
            events,
            tickets: HashMap::new(),
            next_job: 0,
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
    Response(u64, HttpResult),
    Webhook(WebhookHint),
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

/// Feeds verified webhooks to a running [`Tracker`] from any thread.
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

type Job = (u64, http::Request<Vec<u8>>);

/// Many sessions tracked on the calling thread; requests run on up to `max_in_flight` worker threads.
pub struct Tracker {
    scheduler: Scheduler,
    transport: Arc<dyn BlockingTransport>,
    workers: usize,
    spawned: usize,
    work_tx: Sender<Job>,
    queue: Arc<Mutex<Receiver<Job>>>,
    events_tx: Sender<Event>,
    events: Receiver<Event>,
    tickets: HashMap<u64, RequestTicket>,
    next_job: u64,
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
        WebhookFeed(self.events_tx.clone())
    }

    /// Feeds a webhook directly (same thread).
    pub fn handle_webhook(&mut self, hint: WebhookHint) {
        self.on_webhook(hint);
    }

    /// Webhooks received for sessions this tracker does not track.
    pub fn take_untracked_webhooks(&mut self) -> Vec<WebhookHint> {
        std::mem::take(&mut self.untracked)
    }

    fn on_webhook(&mut self, hint: WebhookHint) {
        tracing::debug!(session = %hint.session_id, "webhook");
        if let WebhookDisposition::Untracked(hint) =
            self.scheduler.handle_webhook(Instant::now(), hint)
        {
            self.untracked.push(hint);
        }
    }

    fn dispatch(&mut self, job: Job) {
        // Start workers lazily, one per request in flight, up to the cap.
        if self.spawned < self.workers && self.spawned < self.tickets.len() {
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
            let _ = self.events_tx.send(Event::Response(id, Err(failure)));
        }
    }

    /// Drives everything until the next session ends; `None` once nothing is tracked.
    pub fn next_outcome(&mut self) -> Option<Outcome> {
        loop {
            match self.next_event()? {
                TrackerEvent::Outcome(outcome) => return Some(outcome),
                TrackerEvent::Progress(_) => {}
            }
        }
    }

    /// Drives everything until the next event: a progress update (when the limits ask for them
    /// with `progress_updates`) or a session's outcome; `None` once nothing is tracked.
    pub fn next_event(&mut self) -> Option<TrackerEvent> {
        loop {
            if let Some(outcome) = self.scheduler.poll_outcome() {
                return Some(TrackerEvent::Outcome(outcome));
            }
            if let Some(update) = self.scheduler.poll_update() {
                return Some(TrackerEvent::Progress(update));
            }
            let now = Instant::now();
            while let Some(scheduled) = self.scheduler.poll_request(now) {
                let job = self.next_job;
                self.next_job = self.next_job.wrapping_add(1);
                tracing::debug!(session = %scheduled.ticket.session_id(), kind = scheduled.ticket.kind().as_str(), "send");
                self.tickets.insert(job, scheduled.ticket);
                self.dispatch((job, scheduled.request));
            }
            if let Some(outcome) = self.scheduler.poll_outcome() {
                return Some(TrackerEvent::Outcome(outcome));
            }
            if self.scheduler.is_empty() && self.tickets.is_empty() {
                return None;
            }
            let event = match self.scheduler.poll_timeout(now) {
                Some(at) => match self
                    .events
                    .recv_timeout(at.saturating_duration_since(Instant::now()))
                {
                    Ok(event) => Some(event),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return None,
                },
                None => self.events.recv().ok(),
            };
            match event {
                Some(Event::Response(job, result)) => {
                    if let Some(ticket) = self.tickets.remove(&job) {
                        tracing::debug!(session = %ticket.session_id(), status = ?result.as_ref().map(|r| r.status().as_u16()).ok(), "response");
                        self.scheduler
                            .handle_response(Instant::now(), ticket, result);
                    }
                }
                Some(Event::Webhook(hint)) => self.on_webhook(hint),
                None => {}
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
        let Ok((id, request)) = job else {
            return; // The tracker is gone.
        };
        let result = send_guarded(transport, request);
        if events.send(Event::Response(id, result)).is_err() {
            return;
        }
    }
}
