//! The blocking client: single calls with the policy's retries, and many-session tracking by a
//! pool of threads (the caller and workers) that share the core tracker, each sending what it takes.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};

use bankconnect_core::{
    Answer, Api, ApiCall, ClientSettings, HttpResult, Outcome, Output, PendingStats,
    ProgressReport, Retry, SessionId, SessionSnapshot, SessionStatusReply, SnapshotError,
    TrackError, TrackerEvent, TrackerSnapshot, TransportError, TransportErrorKind, WebhookHint,
    WebhookRegistration, WebhookUpdated,
};

use crate::transport::{BlockingTransport, UreqTransport};
use crate::Error;

/// A BankConnect client over a blocking transport (ureq by default). No async runtime anywhere.
///
/// ```no_run
/// // One dependency: the driver re-exports the core types its users name.
/// use bankconnect_http_blocking::{Api, BaseUrl, Client, Credentials, SessionId};
///
/// let api = Api::new(BaseUrl::production(), Credentials::new("api-key", "server-hash")?);
/// let client = Client::new(api);
/// let outcome = client.wait(&SessionId::new("bfb98ac5-7224-401b-a643-175235856187")?)?;
/// println!("{}: {}", outcome.session_id, outcome.outcome);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Cloning is cheap (the transport is shared); `Debug` shows only the settings, without secrets.
#[derive(Clone, Debug)]
pub struct Client {
    transport: Arc<dyn BlockingTransport>,
    settings: ClientSettings,
}

impl Client {
    /// The client every constructor builds: these settings, this transport.
    pub fn with_settings(
        settings: ClientSettings,
        transport: impl BlockingTransport + 'static,
    ) -> Self {
        Self {
            transport: Arc::new(transport),
            settings,
        }
    }

    /// Default settings, jitter seeded from the clock, and ureq (30 s per request; its pool
    /// is shared by the tracker's threads).
    pub fn new(api: Api) -> Self {
        Self::with_transport(api, UreqTransport::default())
    }

    /// Default settings over a transport of yours: any `Fn(Request) -> HttpResult` is one.
    pub fn with_transport(api: Api, transport: impl BlockingTransport + 'static) -> Self {
        let seed = ClientSettings::seed_from(SystemTime::now());
        Self::with_settings(ClientSettings::new(api, seed), transport)
    }

    /// Given settings (policy, limits, seed, pending-webhook bounds) over ureq:
    ///
    /// ```no_run
    /// use bankconnect_http_blocking::{Api, BaseUrl, Client, ClientSettings, Credentials, SchedulerConfig};
    ///
    /// let api = Api::new(BaseUrl::production(), Credentials::new("api-key", "server-hash")?);
    /// let limits = SchedulerConfig { max_in_flight: 8, ..SchedulerConfig::default() };
    /// let client = Client::from_settings(ClientSettings::new(api, 7).with_limits(limits));
    /// # drop(client);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_settings(settings: ClientSettings) -> Self {
        Self::with_settings(settings, UreqTransport::default())
    }

    /// The settings in use: the policy, limits and seed each tracker it makes starts from.
    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// A tracker picking up where a [`Tracker::snapshot`] left off, e.g. in a process started
    /// after one that stopped: the wall-clock time between counts toward each max wait.
    pub fn resume(&self, snapshot: TrackerSnapshot) -> Result<Tracker, SnapshotError> {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let core = bankconnect_core::Tracker::resume_from(&self.settings, snapshot, now, wall)?;
        Ok(self.tracker_over(core, now))
    }

    /// Tracks these sessions in one scheduler; [`Tracker::next_outcome`] polls them from the
    /// calling thread and up to `max_in_flight - 1` workers, returning each outcome as it happens.
    pub fn track_many(
        &self,
        sessions: impl IntoIterator<Item = SessionId>,
    ) -> Result<Tracker, Error> {
        // The shared state's clock starts at the instant the sessions were added.
        let now = Instant::now();
        let core = bankconnect_core::Tracker::tracking(&self.settings, now, sessions)?;
        Ok(self.tracker_over(core, now))
    }

    /// A tracker with nothing in it yet: other threads add sessions and webhooks through
    /// its feeds while this one waits in `next_outcome`.
    pub fn tracker(&self) -> Result<Tracker, Error> {
        self.track_many(None)
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

    fn tracker_over(&self, core: bankconnect_core::Tracker, now: Instant) -> Tracker {
        Tracker {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    core,
                    events: VecDeque::new(),
                    idle: false,
                    feeds: 0,
                    timed_wait: None,
                    now,
                    waiting: 0,
                    caller_waiting: false,
                    stopping: false,
                    worker_panicked: false,
                }),
                work: Condvar::new(),
                events_ready: Condvar::new(),
                transport: Arc::clone(&self.transport),
            }),
            taken: VecDeque::new(),
            max_workers: self.settings.limits.max_in_flight.max(1),
            spawned: 0,
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

/// Events queued for the caller before the workers stop polling and wait for it to read: a
/// caller that stops reading stops the tracker instead of growing a queue without bound.
const MAX_QUEUED_EVENTS: usize = 1024;

/// What the tracker's threads share: the core tracker and its queue of events, under one lock.
struct Shared {
    state: Mutex<State>,
    /// Workers wait here for something to do (a due time, a response, an added session).
    work: Condvar,
    /// The caller of [`Tracker::next_event`] waits here for an event or the end.
    events_ready: Condvar,
    transport: Arc<dyn BlockingTransport>,
}

struct State {
    core: bankconnect_core::Tracker,
    /// Events for the caller, oldest first.
    events: VecDeque<TrackerEvent>,
    /// The core said idle (nothing tracked, nothing in flight, nothing to hand out) and nothing
    /// was added since.
    idle: bool,
    /// Live [`SessionFeed`]s: while any lives, running out of sessions is not the end.
    feeds: usize,
    /// The earliest time a worker waits for with a timeout: the others wait without one.
    timed_wait: Option<Instant>,
    /// The latest time handed to the core: it only moves forward, whichever thread reads the
    /// clock first.
    now: Instant,
    /// Workers waiting on [`Shared::work`].
    waiting: usize,
    /// The caller waits on [`Shared::events_ready`], for an event or something to do (a
    /// notify is a system call even when nobody waits, so it is made only when somebody does).
    caller_waiting: bool,
    /// The [`Tracker`] was dropped: workers finish what they send and end.
    stopping: bool,
    /// A worker panicked (a bug): the caller panics too rather than wait for nothing.
    worker_panicked: bool,
}

impl State {
    fn now(&mut self) -> Instant {
        self.now = self.now.max(Instant::now());
        self.now
    }
}

impl Shared {
    /// Every event queued, for the caller; workers that stopped at the bound get room again.
    fn take_events(&self, state: &mut State) -> VecDeque<TrackerEvent> {
        if state.events.len() >= MAX_QUEUED_EVENTS && state.waiting > 0 {
            self.work.notify_all();
        }
        std::mem::take(&mut state.events)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change to the state is a whole call into the core, so a thread that panicked
        // holding the lock left it consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `change` on the state and wakes a worker to look at what it changed.
    fn change<T>(&self, change: impl FnOnce(&mut State, Instant) -> T) -> T {
        let mut state = self.lock();
        let now = state.now();
        let out = change(&mut state, now);
        state.idle = false;
        wake_one(self, &state);
        out
    }
}

/// Adds sessions to a running [`Tracker`] from any thread. While one lives, the tracker waits
/// for more sessions instead of ending when it runs out.
pub struct SessionFeed(Arc<Shared>);

impl Clone for SessionFeed {
    fn clone(&self) -> Self {
        self.0.lock().feeds += 1;
        Self(Arc::clone(&self.0))
    }
}

impl Drop for SessionFeed {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.feeds = state.feeds.saturating_sub(1);
        drop(state);
        // The caller may be waiting only because this feed lived.
        self.0.events_ready.notify_all();
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
        if self.0.lock().stopping {
            return false;
        }
        tracing::debug!(session = %session, "tracking");
        if let Err(err) = self.0.change(|state, now| state.core.add(now, session)) {
            tracing::warn!(error = %err, "cannot track a fed session");
        }
        true
    }
}

/// Feeds accepted webhooks to a running [`Tracker`] from any thread.
#[derive(Clone)]
pub struct WebhookFeed(Arc<Shared>);

impl std::fmt::Debug for WebhookFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookFeed")
    }
}

impl WebhookFeed {
    /// Hands a webhook to the tracker; `false` if the tracker is gone.
    pub fn send(&self, hint: WebhookHint) -> bool {
        if self.0.lock().stopping {
            return false;
        }
        tracing::debug!(session = %hint.session_id, authenticated = hint.authenticated, "webhook");
        self.0
            .change(|state, now| state.core.handle_webhook(now, hint));
        true
    }
}

/// Many sessions tracked over the core [`bankconnect_core::Tracker`] by up to `max_in_flight`
/// threads (the caller of [`Tracker::next_event`] and workers), each of which takes the next due
/// request, sends it and feeds the answer back itself: no hand-off per request.
///
/// With workers, tracking goes on between calls to `next_event` (up to a bounded queue of
/// unread events); dropping the tracker stops them (a request in flight is finished, its
/// answer dropped). A single session is driven by the caller alone, without threads.
pub struct Tracker {
    shared: Arc<Shared>,
    /// Events taken from the shared queue and not handed out yet.
    taken: VecDeque<TrackerEvent>,
    max_workers: usize,
    spawned: usize,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("Tracker")
            .field("sessions", &state.core.len())
            .field("in_flight", &state.core.in_flight())
            .finish_non_exhaustive()
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.work.notify_all();
    }
}

impl Tracker {
    /// Starts tracking a session now (a webhook already kept for it is applied).
    pub fn add(&mut self, session: SessionId) -> Result<(), TrackError> {
        tracing::debug!(session = %session, "tracking");
        self.shared
            .change(|state, now| state.core.add(now, session))
    }

    /// Starts tracking a session that has already waited `elapsed` (counted toward its max
    /// wait), with its own `max_wait` if given.
    pub fn add_started(
        &mut self,
        session: SessionId,
        elapsed: std::time::Duration,
        max_wait: Option<std::time::Duration>,
    ) -> Result<(), TrackError> {
        let result = self.shared.change(|state, now| {
            state
                .core
                .add_started(now, session.clone(), elapsed, max_wait)
        });
        // Logged with the result: a session the scheduler refused is not being tracked.
        let elapsed_ms = elapsed.as_millis() as u64;
        tracing::debug!(session = %session, elapsed_ms, refused = result.is_err(), "tracking");
        result
    }

    /// Stops tracking a session without an outcome, returning its resumable state.
    pub fn remove(&mut self, session: &SessionId) -> Option<SessionSnapshot> {
        let mut state = self.shared.lock();
        let now = state.now();
        state.core.remove(now, session)
    }

    /// Sessions still tracked.
    pub fn len(&self) -> usize {
        self.shared.lock().core.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.shared.lock().core.is_empty()
    }

    /// A handle to feed webhooks in while tracking.
    pub fn webhook_feed(&self) -> WebhookFeed {
        WebhookFeed(Arc::clone(&self.shared))
    }

    /// A handle to add sessions while tracking (e.g. as lines arrive on stdin); the tracker
    /// goes on waiting for sessions until every feed is dropped.
    pub fn session_feed(&self) -> SessionFeed {
        self.shared.lock().feeds += 1;
        SessionFeed(Arc::clone(&self.shared))
    }

    /// Feeds a webhook directly (same thread). One for a session not tracked yet is kept
    /// (bounded) and applied when the session is added.
    pub fn handle_webhook(&mut self, hint: WebhookHint) {
        tracing::debug!(session = %hint.session_id, authenticated = hint.authenticated, "webhook");
        self.shared
            .change(|state, now| state.core.handle_webhook(now, hint));
    }

    /// Polls a tracked session as soon as its spacing allows (an operator asked); `false` if
    /// it is not tracked.
    pub fn poll_now(&mut self, session: &SessionId) -> bool {
        self.shared
            .change(|state, now| state.core.poll_now(now, session))
    }

    /// What became of webhooks for sessions not tracked when they came.
    pub fn pending_webhooks(&self) -> PendingStats {
        self.shared.lock().core.pending_webhooks()
    }

    /// The whole tracker's resumable state (requests in flight are re-sent on resume).
    pub fn snapshot(&self) -> TrackerSnapshot {
        let mut state = self.shared.lock();
        let now = state.now();
        state.core.snapshot(now, SystemTime::now())
    }

    /// Starts worker threads so that, with the caller, one thread per tracked session drives
    /// (one per request in flight while a session feed may bring more), at most
    /// `max_in_flight` in all. One session needs no thread: the caller drives it alone, as it
    /// does should the system refuse threads.
    fn start_workers(&mut self) {
        let wanted = {
            let state = self.shared.lock();
            if state.feeds > 0 {
                self.max_workers
            } else {
                state.core.len().clamp(1, self.max_workers)
            }
        };
        while self.spawned + 1 < wanted {
            let shared = Arc::clone(&self.shared);
            let started = std::thread::Builder::new()
                .name("bankconnect-worker".into())
                .spawn(move || {
                    let _panic = PanicGuard(&shared);
                    drive(&shared, Role::Worker);
                });
            if started.is_err() {
                break;
            }
            self.spawned += 1;
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

    /// An event the threads have already queued, without driving or waiting; `None` when none
    /// is ready yet (then [`Tracker::next_event`] waits for one). A caller that buffers output
    /// flushes it when this says nothing is ready.
    pub fn try_next_event(&mut self) -> Option<TrackerEvent> {
        if self.taken.is_empty() {
            self.taken = self.shared.take_events(&mut self.shared.lock());
        }
        self.taken.pop_front()
    }

    /// Drives everything until the next event: a progress update (when the limits ask for them
    /// with `progress_updates`) or a session's outcome; `None` once nothing is tracked. The
    /// calling thread drives too (it sends requests like a worker) until an event is ready.
    pub fn next_event(&mut self) -> Option<TrackerEvent> {
        if let Some(event) = self.taken.pop_front() {
            return Some(event);
        }
        self.start_workers();
        self.taken = drive(&self.shared, Role::Caller)?;
        self.taken.pop_front()
    }
}

/// Who runs [`drive`]: a worker thread until the tracker is dropped, or the caller of
/// [`Tracker::next_event`] until an event is ready.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Worker,
    Caller,
}

/// The loop every driving thread runs: take what the core hands out, under the lock; send
/// without it and classify the answer; feed the answer back; when nothing is due, wait (one
/// thread with a timeout at the next due time, the others until woken). The caller returns
/// the queued events as soon as there are any (`None` at the end).
fn drive(shared: &Shared, role: Role) -> Option<VecDeque<TrackerEvent>> {
    let mut state = shared.lock();
    loop {
        match role {
            Role::Worker if state.stopping => return None,
            Role::Worker if state.events.len() >= MAX_QUEUED_EVENTS => {
                state = park(shared, state, role, None);
                continue;
            }
            Role::Worker => {}
            Role::Caller => {
                if !state.events.is_empty() {
                    // All at once: one lock for every event queued.
                    return Some(shared.take_events(&mut state));
                }
                if state.idle && state.feeds == 0 {
                    return None;
                }
                if state.worker_panicked {
                    drop(state);
                    std::panic::resume_unwind(Box::new("a bankconnect worker thread panicked"));
                }
            }
        }
        let now = state.now();
        match state.core.poll_output(now) {
            Output::Send(transmit) => {
                if state.timed_wait.is_none() {
                    // Nobody waits for the next due time: hand that to a waiting thread.
                    wake_one(shared, &state);
                }
                drop(state);
                // One span per request, carrying the session (never a secret).
                let span = tracing::debug_span!(
                    "bankconnect_request",
                    session = %transmit.session_id,
                    kind = transmit.kind.as_str(),
                    request = transmit.id.get()
                );
                let answer = span.in_scope(|| {
                    tracing::debug!("send");
                    let result = send_guarded(shared.transport.as_ref(), transmit.request);
                    tracing::debug!(status = ?result.as_ref().map(|r| r.status().as_u16()).ok(), "response");
                    // Parsed before taking the lock, so that the threads parse side by side.
                    Answer::classify(transmit.kind, result)
                });
                state = shared.lock();
                let now = state.now();
                state.core.handle_answer(now, transmit.id, answer);
            }
            Output::Event(event) => {
                state.events.push_back(event);
                if state.caller_waiting {
                    shared.events_ready.notify_one();
                }
            }
            Output::Idle => {
                state.idle = true;
                if state.caller_waiting {
                    shared.events_ready.notify_one();
                }
                if role == Role::Caller && state.feeds == 0 {
                    return None;
                }
                state = park(shared, state, role, None);
            }
            Output::WaitUntil(at) if state.timed_wait.is_none_or(|t| t > at) => {
                state.timed_wait = Some(at);
                state = park(shared, state, role, Some(at.saturating_duration_since(now)));
                if state.timed_wait == Some(at) {
                    state.timed_wait = None;
                }
            }
            // Another thread wakes by then, or a response or an added session comes first.
            _ => state = park(shared, state, role, None),
        }
    }
}

/// Wakes one waiting thread to look at the state: a worker if any waits, else the caller.
fn wake_one(shared: &Shared, state: &State) {
    if state.waiting > 0 {
        shared.work.notify_one();
    } else if state.caller_waiting {
        shared.events_ready.notify_one();
    }
}

/// Tells the caller when its worker unwinds, so that it does not wait for events forever.
struct PanicGuard<'a>(&'a Shared);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().worker_panicked = true;
            self.0.events_ready.notify_all();
        }
    }
}

/// Waits (workers on [`Shared::work`], the caller on [`Shared::events_ready`]) until woken or
/// `timeout`.
fn park<'a>(
    shared: &'a Shared,
    mut state: MutexGuard<'a, State>,
    role: Role,
    timeout: Option<std::time::Duration>,
) -> MutexGuard<'a, State> {
    let condvar = match role {
        Role::Worker => {
            state.waiting += 1;
            &shared.work
        }
        Role::Caller => {
            state.caller_waiting = true;
            &shared.events_ready
        }
    };
    let mut state = match timeout {
        Some(timeout) => {
            condvar
                .wait_timeout(state, timeout)
                .unwrap_or_else(PoisonError::into_inner)
                .0
        }
        None => condvar.wait(state).unwrap_or_else(PoisonError::into_inner),
    };
    match role {
        Role::Worker => state.waiting = state.waiting.saturating_sub(1),
        Role::Caller => state.caller_waiting = false,
    }
    state
}
