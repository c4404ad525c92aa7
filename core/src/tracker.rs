//! The tracking loop, sans-IO, once for every driver: the scheduler, the tickets of requests in
//! flight, webhooks for sessions not (yet) tracked, and the events a caller sees.
//!
//! Drivers (`bankconnect-http-async`, `bankconnect-http-blocking`, `serve`) only do IO around it:
//! send what [`Tracker::poll_output`] hands out, sleep until the instant it names, and feed back
//! responses and webhooks.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::classify::HttpResult;
use crate::client_settings::ClientSettings;
use crate::ids::SessionId;
use crate::one_shot::ClientError;
use crate::outcome::Outcome;
use crate::scheduler::{ProgressUpdate, RequestTicket, Scheduler, WebhookDisposition};
use crate::session::{Answer, RequestKind, SessionSnapshot, TrackError};
use crate::webhook_hint::WebhookHint;

/// Identifies a request handed out by [`Tracker::poll_output`]; give it back with the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

impl RequestId {
    /// The number, for logs and maps.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A request to send now.
#[derive(Debug)]
#[non_exhaustive]
pub struct Transmit {
    /// Hand this back to [`Tracker::handle_response`] with the result.
    pub id: RequestId,
    /// The session the request is for.
    pub session_id: SessionId,
    /// Which endpoint it goes to.
    pub kind: RequestKind,
    /// The request.
    pub request: http::Request<Vec<u8>>,
}

/// What a tracker reports as it goes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TrackerEvent {
    /// A session's progress as just seen (only when the limits enable `progress_updates`).
    Progress(ProgressUpdate),
    /// A session ended; it is no longer tracked.
    Outcome(Outcome),
    /// A request for a session failed (FinBox refused, or a failure worth a retry), as just
    /// seen (only when the limits enable `progress_updates`).
    Failure(crate::scheduler::FailureUpdate),
}

/// What to do next, from [`Tracker::poll_output`].
#[derive(Debug)]
#[must_use]
#[non_exhaustive]
pub enum Output {
    /// Send this request; feed its result to [`Tracker::handle_response`].
    Send(Transmit),
    /// Something happened; poll again at once.
    Event(TrackerEvent),
    /// Nothing to do before this instant unless an input arrives; then poll again.
    WaitUntil(Instant),
    /// Only an input (a response, a webhook, a new session) can move things on.
    WaitForInput,
    /// Nothing tracked and nothing in flight: a one-shot loop may stop here.
    Idle,
}

/// Bounds of the webhooks kept for sessions not (yet) tracked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PendingLimits {
    /// Most sessions with a kept webhook (default 10 000); the oldest falls out first.
    pub max_count: usize,
    /// How long a kept webhook waits for its session (default 24 h).
    #[serde(rename = "max_age_ms", with = "crate::duration_serde")]
    pub max_age: Duration,
}

impl Default for PendingLimits {
    fn default() -> Self {
        Self {
            max_count: 10_000,
            max_age: Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl PendingLimits {
    /// Bounds of `max_count` webhooks kept for `max_age`.
    pub fn new(max_count: usize, max_age: Duration) -> Self {
        Self { max_count, max_age }
    }
}

/// Counts of what happened to webhooks for sessions not tracked when they came.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PendingStats {
    /// Webhooks kept now, waiting for their session.
    pub held: usize,
    /// Kept webhooks applied when their session was added.
    pub applied: u64,
    /// Pushed out by the count bound (the oldest go first).
    pub dropped: u64,
    /// Expired unclaimed after the age bound.
    pub expired: u64,
}

/// Webhooks for sessions not tracked yet: one per session (the most trustworthy, then the
/// latest), bounded by count and age.
#[derive(Debug)]
struct Pending {
    limits: PendingLimits,
    by_session: HashMap<SessionId, (Instant, WebhookHint)>,
    /// Arrival order, for eviction and expiry; entries whose arrival no longer matches the map
    /// are stale and skipped.
    order: VecDeque<(Instant, SessionId)>,
    stats: PendingStats,
}

impl Pending {
    fn new(limits: PendingLimits) -> Self {
        Self {
            limits,
            by_session: HashMap::new(),
            order: VecDeque::new(),
            stats: PendingStats::default(),
        }
    }

    fn keep(&mut self, now: Instant, hint: WebhookHint) {
        self.expire(now);
        if self.limits.max_count == 0 {
            self.stats.dropped += 1;
            return;
        }
        if let Some((_, kept)) = self.by_session.get(&hint.session_id) {
            // An unauthenticated webhook never replaces an authenticated one.
            if kept.authenticated && !hint.authenticated {
                return;
            }
        } else {
            while self.by_session.len() >= self.limits.max_count {
                if !self.evict_oldest() {
                    break;
                }
                self.stats.dropped += 1;
            }
        }
        self.order.push_back((now, hint.session_id.clone()));
        self.by_session.insert(hint.session_id.clone(), (now, hint));
        self.compact();
    }

    fn take(&mut self, now: Instant, session: &SessionId) -> Option<WebhookHint> {
        self.expire(now);
        let (_, hint) = self.by_session.remove(session)?;
        self.stats.applied += 1;
        self.compact();
        Some(hint)
    }

    /// Removes the oldest live entry; `false` if there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((at, session)) = self.order.pop_front() {
            if self
                .by_session
                .get(&session)
                .is_some_and(|(kept, _)| *kept == at)
            {
                self.by_session.remove(&session);
                return true;
            }
        }
        false
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, session)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.limits.max_age {
                break;
            }
            let live = self
                .by_session
                .get(session)
                .is_some_and(|(kept, _)| kept == at);
            if live {
                self.by_session.remove(session);
                self.stats.expired += 1;
            }
            self.order.pop_front();
        }
    }

    /// Drops stale order entries once they outnumber live ones, so replaced webhooks for one
    /// session cannot grow the queue without bound.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.by_session.len() + 64 {
            let map = &self.by_session;
            self.order
                .retain(|(at, session)| map.get(session).is_some_and(|(kept, _)| kept == at));
        }
    }

    fn stats(&self) -> PendingStats {
        PendingStats {
            held: self.by_session.len(),
            ..self.stats
        }
    }
}

/// Many sessions tracked together: the whole tracking loop, without IO.
///
/// # Calling contract
///
/// The methods come in four kinds, as in quinn-proto's `Connection`:
/// - **output**: [`poll_output`](Self::poll_output) says what to do next. Call it until it
///   returns [`Output::WaitUntil`], [`Output::WaitForInput`] or [`Output::Idle`]: each
///   [`Output::Send`] must be sent (or answered with a transport error), each
///   [`Output::Event`] handed to the user;
/// - **input**: [`handle_response`](Self::handle_response) (the result of a request it handed
///   out, exactly once per [`RequestId`]) and [`handle_webhook`](Self::handle_webhook); after any
///   input, call `poll_output` again;
/// - **control**: [`add`](Self::add), [`remove`](Self::remove); then call `poll_output` again;
/// - **queries**: [`len`](Self::len), [`in_flight`](Self::in_flight), [`snapshot`](Self::snapshot)
///   and the like, which change nothing.
///
/// Time is passed in as `now` and must never go backwards between calls. A driver sleeps until
/// the instant of [`Output::WaitUntil`] or until an input arrives, whichever comes first.
///
/// ```
/// use std::time::Instant;
/// use bankconnect_core::{Api, BaseUrl, ClientSettings, Credentials, Output, SessionId, Tracker};
///
/// let api = Api::new(BaseUrl::parse("http://127.0.0.1:1/bank-connect/v1")?, Credentials::new("k", "h")?);
/// let mut tracker = Tracker::new(&ClientSettings::new(api, 7))?;
/// tracker.add(Instant::now(), SessionId::new("s-1")?)?;
/// let mut outcomes = Vec::new();
/// loop {
///     match tracker.poll_output(Instant::now()) {
///         Output::Send(transmit) => {
///             // Send `transmit.request` with any client; here, a canned answer.
///             let body = if transmit.request.uri().path().ends_with("/progress/") {
///                 br#"{"session_id": "s-1", "session_progress": "completed", "progress": []}"#.to_vec()
///             } else {
///                 br#"{"session_id": "s-1", "accounts": []}"#.to_vec()
///             };
///             let answer = http::Response::builder().status(200).body(body)?;
///             tracker.handle_response(Instant::now(), transmit.id, Ok(answer));
///         }
///         Output::Event(bankconnect_core::TrackerEvent::Outcome(outcome)) => outcomes.push(outcome),
///         Output::Event(_) => {}
///         Output::WaitUntil(at) => std::thread::sleep(at.saturating_duration_since(Instant::now())),
///         Output::Idle => break,
///         Output::WaitForInput | _ => unreachable!("this loop answers every request at once"),
///     }
/// }
/// assert_eq!(outcomes[0].outcome.as_str(), "completed");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Tracker {
    scheduler: Scheduler,
    tickets: HashMap<RequestId, RequestTicket>,
    next_request: u64,
    pending: Pending,
}

impl Tracker {
    /// An empty tracker with the settings' API, policy, limits and seed.
    pub fn new(settings: &ClientSettings) -> Result<Self, ClientError> {
        Ok(Self::with_scheduler(
            settings.scheduler()?,
            settings.pending.clone(),
        ))
    }

    /// A tracker with the settings' API, policy, limits and seed, tracking `sessions` from
    /// `now` (what a driver's `track_many` builds before its first poll).
    pub fn tracking(
        settings: &ClientSettings,
        now: Instant,
        sessions: impl IntoIterator<Item = SessionId>,
    ) -> Result<Self, ClientError> {
        let mut tracker = Self::new(settings)?;
        let sessions = sessions.into_iter();
        tracker.scheduler.reserve(sessions.size_hint().0);
        for session in sessions {
            tracker.add(now, session)?;
        }
        Ok(tracker)
    }

    /// An empty tracker over a scheduler you configured.
    pub fn with_scheduler(scheduler: Scheduler, pending: PendingLimits) -> Self {
        Self {
            scheduler,
            tickets: HashMap::new(),
            next_request: 0,
            pending: Pending::new(pending),
        }
    }

    /// Sessions tracked (a session leaves once its outcome is handed out).
    pub fn len(&self) -> usize {
        self.scheduler.len()
    }

    /// Whether no session is tracked.
    pub fn is_empty(&self) -> bool {
        self.scheduler.is_empty()
    }

    /// Whether `session` is tracked.
    pub fn contains(&self, session: &SessionId) -> bool {
        self.scheduler.contains(session)
    }

    /// Requests handed out and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.tickets.len()
    }

    /// What happened to webhooks for untracked sessions.
    pub fn pending_webhooks(&self) -> PendingStats {
        self.pending.stats()
    }

    /// The scheduler underneath (policy, API, counts).
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Starts tracking a session at `now`; a webhook kept for it is applied at once.
    pub fn add(&mut self, now: Instant, session: SessionId) -> Result<(), TrackError> {
        self.scheduler.add(now, session.clone())?;
        self.apply_pending(now, &session);
        Ok(())
    }

    /// Starts tracking a session that has already waited `elapsed` (a service restarting counts
    /// the time since the session was added), with its own `max_wait` if given; a webhook kept
    /// for it is applied at once.
    pub fn add_started(
        &mut self,
        now: Instant,
        session: SessionId,
        elapsed: Duration,
        max_wait: Option<Duration>,
    ) -> Result<(), TrackError> {
        self.scheduler
            .add_started(now, session.clone(), elapsed, max_wait)?;
        self.apply_pending(now, &session);
        Ok(())
    }

    /// Resumes a saved session at `now`; a webhook kept for it is applied at once.
    pub fn resume(&mut self, now: Instant, snapshot: SessionSnapshot) -> Result<(), TrackError> {
        let session = snapshot.session_id.clone();
        self.scheduler.resume(now, snapshot)?;
        self.apply_pending(now, &session);
        Ok(())
    }

    fn apply_pending(&mut self, now: Instant, session: &SessionId) {
        if let Some(hint) = self.pending.take(now, session) {
            // Tracked a moment ago, so the scheduler takes it.
            let _ = self.scheduler.handle_webhook(now, hint);
        }
    }

    /// Stops tracking a session (no outcome is reported), returning its resumable state. A
    /// request in flight for it still needs its [`handle_response`](Self::handle_response),
    /// whose result is then ignored.
    pub fn remove(&mut self, now: Instant, session: &SessionId) -> Option<SessionSnapshot> {
        self.scheduler.remove(now, session)
    }

    /// Feeds an accepted webhook. For a tracked session it is a hint to confirm; for any other
    /// it is kept (bounded by [`PendingLimits`]) and applied if that session is added later.
    pub fn handle_webhook(&mut self, now: Instant, hint: WebhookHint) {
        if let WebhookDisposition::Untracked(hint) = self.scheduler.handle_webhook(now, hint) {
            self.pending.keep(now, hint);
        }
    }

    /// Polls a tracked session as soon as its spacing allows (at most once per interval, as a
    /// webhook may); `false` if it is not tracked.
    pub fn poll_now(&mut self, now: Instant, session: &SessionId) -> bool {
        self.scheduler.poll_now(now, session)
    }

    /// Feeds the result of a request handed out as [`Output::Send`]. An unknown or repeated id
    /// is ignored.
    pub fn handle_response(&mut self, now: Instant, id: RequestId, result: HttpResult) {
        if let Some(ticket) = self.tickets.remove(&id) {
            self.scheduler.handle_response(now, ticket, result);
        }
    }

    /// Feeds the result of a request handed out as [`Output::Send`], classified already with
    /// [`Answer::classify`] and the [`Transmit::kind`] (so that a driver can classify away from
    /// the tracker); the same as [`handle_response`](Self::handle_response) otherwise.
    pub fn handle_answer(&mut self, now: Instant, id: RequestId, answer: Answer) {
        if let Some(ticket) = self.tickets.remove(&id) {
            self.scheduler.handle_answer(now, ticket, answer);
        }
    }

    /// What to do next. See the calling contract on [`Tracker`].
    pub fn poll_output(&mut self, now: Instant) -> Output {
        if let Some(outcome) = self.scheduler.poll_outcome() {
            return Output::Event(TrackerEvent::Outcome(outcome));
        }
        if let Some(update) = self.scheduler.poll_update() {
            return Output::Event(TrackerEvent::Progress(update));
        }
        if let Some(failure) = self.scheduler.poll_failure() {
            return Output::Event(TrackerEvent::Failure(failure));
        }
        if let Some(scheduled) = self.scheduler.poll_request(now) {
            let id = RequestId(self.next_request);
            self.next_request = self.next_request.wrapping_add(1);
            let session_id = scheduled.ticket.session_id().clone();
            let kind = scheduled.ticket.kind();
            self.tickets.insert(id, scheduled.ticket);
            return Output::Send(Transmit {
                id,
                session_id,
                kind,
                request: scheduled.request,
            });
        }
        // Handing out requests can end sessions (max wait, a request that cannot be built).
        if let Some(outcome) = self.scheduler.poll_outcome() {
            return Output::Event(TrackerEvent::Outcome(outcome));
        }
        if self.scheduler.is_empty() && self.tickets.is_empty() {
            return Output::Idle;
        }
        match self.scheduler.poll_timeout(now) {
            // Never ask to wait for a moment already past: the next poll handles it.
            Some(at) => Output::WaitUntil(at.max(now)),
            None => Output::WaitForInput,
        }
    }

    /// The whole tracker's resumable state: every session (a request in flight is re-sent on
    /// resume) and the kept webhooks, stamped with the wall-clock time `wall` that `now` is.
    pub fn snapshot(&self, now: Instant, wall: SystemTime) -> TrackerSnapshot {
        let pending = self
            .pending
            .by_session
            .values()
            .map(|(at, hint)| PendingWebhook {
                age: now.saturating_duration_since(*at),
                hint: hint.clone(),
            })
            .collect();
        TrackerSnapshot {
            version: TrackerSnapshot::VERSION,
            taken_at_unix_ms: unix_ms(wall),
            sessions: self.scheduler.snapshot_all(now),
            pending_webhooks: pending,
        }
    }

    /// A tracker resumed from `snapshot` at `now`, which is the wall-clock time `wall`. The time
    /// between the snapshot and `wall` counts toward every session's max wait and every kept
    /// webhook's age, so a process that was stopped resumes where the clock says it should be.
    pub fn resume_from(
        settings: &ClientSettings,
        snapshot: TrackerSnapshot,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Self, SnapshotError> {
        snapshot.check_version()?;
        let mut tracker = Self::new(settings)?;
        let stopped =
            Duration::from_millis(unix_ms(wall).saturating_sub(snapshot.taken_at_unix_ms));
        for pending in snapshot.pending_webhooks {
            let age = pending.age.saturating_add(stopped);
            if age < tracker.pending.limits.max_age {
                let at = now.checked_sub(age).unwrap_or(now);
                tracker.pending.keep(at, pending.hint);
            } else {
                tracker.pending.stats.expired += 1;
            }
        }
        for mut session in snapshot.sessions {
            session.elapsed = session.elapsed.saturating_add(stopped);
            session.due_in = session.due_in.saturating_sub(stopped);
            session.since_last_poll = session.since_last_poll.map(|d| d.saturating_add(stopped));
            tracker.resume(now, session)?;
        }
        Ok(tracker)
    }
}

fn unix_ms(wall: SystemTime) -> u64 {
    wall.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A kept webhook in a [`TrackerSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PendingWebhook {
    /// The webhook.
    pub hint: WebhookHint,
    /// How long it had been kept when the snapshot was taken.
    #[serde(rename = "age_ms", with = "crate::duration_serde")]
    pub age: Duration,
}

/// A whole tracker's state, versioned, with its wall-clock time, for saving across processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrackerSnapshot {
    /// The format's version ([`TrackerSnapshot::VERSION`] when written by this crate).
    pub version: u32,
    /// When it was taken, in milliseconds since the Unix epoch.
    pub taken_at_unix_ms: u64,
    /// Every session that had not ended.
    pub sessions: Vec<SessionSnapshot>,
    /// Webhooks kept for sessions not tracked.
    #[serde(default)]
    pub pending_webhooks: Vec<PendingWebhook>,
}

impl TrackerSnapshot {
    /// The format this crate writes and the newest it reads.
    pub const VERSION: u32 = 1;

    /// The snapshot as JSON.
    pub fn to_json(&self) -> Result<Vec<u8>, SnapshotError> {
        serde_json::to_vec(self).map_err(|err| SnapshotError::Malformed(err.to_string()))
    }

    /// Reads a snapshot written by this or an older version; a newer one is refused with its
    /// version, before its body is interpreted.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SnapshotError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let Version { version } = serde_json::from_slice(bytes)
            .map_err(|err| SnapshotError::Malformed(format!("no version: {err}")))?;
        if version > Self::VERSION {
            return Err(SnapshotError::Newer {
                found: version,
                supported: Self::VERSION,
            });
        }
        let snapshot: Self = serde_json::from_slice(bytes)
            .map_err(|err| SnapshotError::Malformed(err.to_string()))?;
        snapshot.check_version()?;
        Ok(snapshot)
    }

    fn check_version(&self) -> Result<(), SnapshotError> {
        match self.version {
            Self::VERSION => Ok(()),
            found if found > Self::VERSION => Err(SnapshotError::Newer {
                found,
                supported: Self::VERSION,
            }),
            found => Err(SnapshotError::Unsupported(found)),
        }
    }
}

/// Why a tracker snapshot could not be read or resumed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Written by a newer version of this crate.
    #[error("the tracker snapshot is version {found}, newer than this build reads (up to {supported}); upgrade bankconnect")]
    Newer {
        /// The snapshot's version.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    /// A version this build never wrote.
    #[error("the tracker snapshot version {0} is not one this build knows")]
    Unsupported(u32),
    /// Not a tracker snapshot.
    #[error("malformed tracker snapshot: {0}")]
    Malformed(String),
    /// The settings are invalid.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A session in it cannot be tracked.
    #[error(transparent)]
    Track(#[from] TrackError),
}
