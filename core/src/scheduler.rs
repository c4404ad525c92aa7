//! Many sessions in one structure: which request next, and when the next wake-up is, in O(log n).
//!
//! The scheduler owns the sessions' state machines, a timer heap (one live entry per waiting
//! session, stale entries skipped lazily) and a deadline heap (so that max waits fire even while
//! the in-flight cap holds requests back). It protects the API with a cap on requests in flight, an
//! optional global rate limit and an adaptive slow-down on 429s. Like the rest of the core it does
//! no IO and reads no clock.
//!
//! A driver's loop:
//! 1. send every request `poll_request(now)` hands out (up to the caps);
//! 2. drain `poll_outcome()`;
//! 3. sleep until `poll_timeout(now)`, or until a response or webhook arrives, and feed it with
//!    `handle_response` / `handle_webhook`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::classify::{Classified, HttpResult};
use crate::ids::SessionId;
use crate::outcome::Outcome;
use crate::policy::{PolicyError, PollPolicy};
use crate::request::Api;
use crate::session::{
    build_request, Answer, AnswerSignal, RequestKind, SessionMachine, SessionSnapshot, Step,
    TrackError,
};
use crate::throttle::{Adaptive, RateLimit, TokenBucket};
use crate::transport_error::{TransportError, TransportErrorKind};
use crate::webhook_hint::WebhookHint;

/// Client-wide limits, as plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(clippy::exhaustive_structs)] // plain data, built with `..Default::default()`
pub struct SchedulerConfig {
    /// Most requests in flight at once (default 32).
    pub max_in_flight: usize,
    /// An optional global request rate across all sessions (default none).
    pub rate_limit: Option<RateLimit>,
    /// Halve the requests in flight and pause on every 429, recovering gradually (default true).
    pub adaptive_rate_limiting: bool,
    /// Queue a [`ProgressUpdate`] after every progress answer, for live displays (default false).
    pub progress_updates: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 32,
            rate_limit: None,
            adaptive_rate_limiting: true,
            progress_updates: false,
        }
    }
}

impl SchedulerConfig {
    /// Checks the limits.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.max_in_flight == 0 {
            return Err(PolicyError::Zero("max_in_flight"));
        }
        if let Some(limit) = &self.rate_limit {
            if !limit.per_second.is_finite() || limit.per_second <= 0.0 {
                return Err(PolicyError::Zero("rate_limit per_second"));
            }
            if limit.burst == 0 {
                return Err(PolicyError::Zero("rate_limit burst"));
            }
        }
        Ok(())
    }
}

/// Proof that a request was handed out; give it back with the request's result.
#[derive(Debug)]
#[must_use = "a ticket must be handed back to handle_response, or the in-flight count leaks"]
pub struct RequestTicket {
    slot: u32,
    epoch: u32,
    session_id: SessionId,
    kind: RequestKind,
}

impl RequestTicket {
    /// The session the request is for.
    pub fn session_id(&self) -> &SessionId {
        &self.session_id
    }

    /// Which endpoint the request goes to.
    pub fn kind(&self) -> RequestKind {
        self.kind
    }
}

/// A request to send now.
#[derive(Debug)]
#[non_exhaustive]
pub struct ScheduledRequest {
    /// Hand this back to [`Scheduler::handle_response`] with the result.
    pub ticket: RequestTicket,
    /// The request.
    pub request: http::Request<Vec<u8>>,
}

/// A tracked session's progress as last seen, for live displays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ProgressUpdate {
    /// The session.
    pub session_id: SessionId,
    /// Its overall state.
    pub session_progress: crate::status::SessionProgress,
    /// Stages finished (completed or failed) over all statements.
    pub stages_done: usize,
    /// Stages in all (4 per statement).
    pub stages_total: usize,
    /// The statements as just seen, each with its stages.
    pub statements: Vec<crate::progress::StatementProgress>,
    /// Progress requests answered so far.
    pub polls: u32,
}

/// A failed request for a tracked session, for live displays and histories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FailureUpdate {
    /// The session.
    pub session_id: SessionId,
    /// The refusal or the transient cause, as an outcome would carry it.
    pub error: crate::outcome::OutcomeError,
}

/// What became of a webhook fed to the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[allow(clippy::exhaustive_enums)] // closed: tracked or not
pub enum WebhookDisposition {
    /// It names a tracked session, which will confirm it.
    Tracked,
    /// It names no tracked session: reported back, not dropped.
    Untracked(WebhookHint),
}

#[derive(Debug)]
struct Slot {
    /// Bumped whenever the slot changes hands, so old tickets and heap entries are recognised.
    epoch: u32,
    /// Bumped whenever the session's timer changes, so only the newest heap entry counts.
    timer: u32,
    machine: Option<SessionMachine>,
}

/// Tracks many sessions with one policy and one API.
///
/// ```
/// use std::time::Instant;
/// use bankconnect_core::{Scheduler, SchedulerConfig};
/// use bankconnect_core::{Api, BaseUrl, Credentials, PollPolicy, SessionId};
///
/// let api = Api::new(BaseUrl::production(), Credentials::new("k", "h")?);
/// let mut scheduler = Scheduler::new(api, PollPolicy::default(), SchedulerConfig::default(), 7)?;
/// let now = Instant::now();
/// scheduler.add(now, SessionId::new("s-1")?)?;
/// let scheduled = scheduler.poll_request(now).expect("the first poll is due at once");
/// assert!(scheduled.request.uri().path().ends_with("/s-1/progress/"));
/// // …send it, then: scheduler.handle_response(Instant::now(), scheduled.ticket, result);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Scheduler {
    api: Api,
    policy: PollPolicy,
    config: SchedulerConfig,
    seed: u64,
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashMap<SessionId, u32>,
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    deadlines: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    outcomes: VecDeque<Outcome>,
    updates: VecDeque<ProgressUpdate>,
    /// Failures seen, when `progress_updates` is on (bounded like the updates: one per answer).
    failures: VecDeque<FailureUpdate>,
    in_flight: usize,
    bucket: Option<TokenBucket>,
    adaptive: Adaptive,
}

impl Scheduler {
    /// An empty scheduler. `seed` feeds every session's jitter.
    pub fn new(
        api: Api,
        policy: PollPolicy,
        config: SchedulerConfig,
        seed: u64,
    ) -> Result<Self, PolicyError> {
        policy.validate()?;
        config.validate()?;
        Ok(Self {
            bucket: config.rate_limit.as_ref().map(TokenBucket::new),
            adaptive: Adaptive::new(config.max_in_flight),
            api,
            policy,
            config,
            seed,
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            timers: BinaryHeap::new(),
            deadlines: BinaryHeap::new(),
            outcomes: VecDeque::new(),
            updates: VecDeque::new(),
            failures: VecDeque::new(),
            in_flight: 0,
        })
    }

    /// The policy every session follows.
    pub fn policy(&self) -> &PollPolicy {
        &self.policy
    }

    /// The API the requests go to.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// Sessions tracked (ended sessions leave once their outcome is handed out).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no session is tracked.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Requests handed out and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether `session` is tracked.
    pub fn contains(&self, session: &SessionId) -> bool {
        self.index.contains_key(session)
    }

    /// Makes room for `additional` more sessions at once: a caller adding many known sessions
    /// gets tables of that size instead of ones doubled past it (up to twice the memory).
    pub fn reserve(&mut self, additional: usize) {
        self.slots
            .reserve_exact(additional.saturating_sub(self.free.len()));
        self.index.reserve(additional);
        self.timers.reserve(additional);
        self.deadlines.reserve(additional);
    }

    /// Starts tracking a session at `now`; its first poll is due at once.
    pub fn add(&mut self, now: Instant, session: SessionId) -> Result<(), TrackError> {
        self.insert(now, SessionMachine::new(session, now, self.seed))
    }

    /// Starts tracking a session that has already waited `elapsed` (time before this process
    /// counts toward its max wait), with its own `max_wait` if given; its first poll is due at once.
    pub fn add_started(
        &mut self,
        now: Instant,
        session: SessionId,
        elapsed: std::time::Duration,
        max_wait: Option<std::time::Duration>,
    ) -> Result<(), TrackError> {
        if max_wait.is_some_and(|m| m.is_zero()) {
            return Err(TrackError::Policy(PolicyError::Zero("max_wait")));
        }
        let machine = SessionMachine::started_earlier(session, now, self.seed, elapsed, max_wait);
        self.insert(now, machine)
    }

    /// Resumes a saved session at `now`.
    pub fn resume(&mut self, now: Instant, snapshot: SessionSnapshot) -> Result<(), TrackError> {
        self.insert(now, SessionMachine::resume(snapshot, now))
    }

    fn insert(&mut self, now: Instant, machine: SessionMachine) -> Result<(), TrackError> {
        let id = machine.id().clone();
        if self.index.contains_key(&id) {
            return Err(TrackError::Duplicate(id));
        }
        self.api.progress_request(&id)?;
        let deadline = machine.deadline_at(&self.policy);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let slot = u32::try_from(self.slots.len()).map_err(|_| {
                    TrackError::Policy(PolicyError::Zero("free capacity (over 4 billion sessions)"))
                })?;
                self.slots.push(Slot {
                    epoch: 0,
                    timer: 0,
                    machine: None,
                });
                slot
            }
        };
        let Some(entry) = self.slots.get_mut(slot as usize) else {
            return Err(TrackError::Duplicate(id));
        };
        entry.machine = Some(machine);
        let epoch = entry.epoch;
        self.index.insert(id, slot);
        self.deadlines.push(Reverse((deadline, slot, epoch)));
        self.settle(now, slot);
        Ok(())
    }

    /// Stops tracking a session, returning its resumable state (none if it already ended). A
    /// request in flight for it is still counted until its ticket comes back, then ignored.
    pub fn remove(&mut self, now: Instant, session: &SessionId) -> Option<SessionSnapshot> {
        let slot = self.index.remove(session)?;
        let entry = self.slots.get_mut(slot as usize)?;
        let snapshot = entry.machine.take().and_then(|m| m.snapshot(now));
        entry.epoch = entry.epoch.wrapping_add(1);
        self.free.push(slot);
        snapshot
    }

    /// Resumable state of a tracked session.
    pub fn snapshot(&self, now: Instant, session: &SessionId) -> Option<SessionSnapshot> {
        let slot = *self.index.get(session)?;
        self.slots
            .get(slot as usize)?
            .machine
            .as_ref()?
            .snapshot(now)
    }

    /// Resumable state of every tracked session that has not ended.
    pub fn snapshot_all(&self, now: Instant) -> Vec<SessionSnapshot> {
        self.slots
            .iter()
            .filter_map(|slot| slot.machine.as_ref()?.snapshot(now))
            .collect()
    }

    /// The next request to send now, if one is due and the caps allow it.
    pub fn poll_request(&mut self, now: Instant) -> Option<ScheduledRequest> {
        self.expire(now);
        loop {
            if self.send_blocked_until(now).is_some() {
                return None;
            }
            let &Reverse((at, slot, timer)) = self.timers.peek()?;
            if at > now {
                return None;
            }
            self.timers.pop();
            let epoch;
            let step = {
                let entry = self.slots.get_mut(slot as usize)?;
                if entry.timer != timer {
                    continue;
                }
                let Some(machine) = entry.machine.as_mut() else {
                    continue;
                };
                epoch = entry.epoch;
                let step = machine.poll(now, &self.policy);
                (step, machine.id().clone())
            };
            match step {
                (Step::Send(kind), session_id) => {
                    let request = match build_request(&self.api, kind, &session_id) {
                        Ok(request) => request,
                        Err(err) => {
                            // Checked when the session was added; end it rather than panic.
                            self.in_flight += 1;
                            let ticket = RequestTicket {
                                slot,
                                epoch,
                                session_id,
                                kind,
                            };
                            let failure =
                                TransportError::new(TransportErrorKind::Other, err.to_string());
                            self.handle_response(now, ticket, Err(failure));
                            continue;
                        }
                    };
                    self.in_flight += 1;
                    if let Some(bucket) = &mut self.bucket {
                        bucket.take(now);
                    }
                    return Some(ScheduledRequest {
                        ticket: RequestTicket {
                            slot,
                            epoch,
                            session_id,
                            kind,
                        },
                        request,
                    });
                }
                (Step::Done(outcome), _) => {
                    self.outcomes.push_back(*outcome);
                    self.release(slot);
                }
                (Step::WaitUntil(_), _) => self.settle(now, slot),
                (Step::AwaitResponse | Step::Finished, _) => {}
            }
        }
    }

    /// The next ended session's outcome, if any.
    pub fn poll_outcome(&mut self) -> Option<Outcome> {
        self.outcomes.pop_front()
    }

    /// When to call `poll_request` again if nothing else happens: `None` when only responses
    /// (or webhooks) can move things on. May be in the past: then call it now.
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        if !self.outcomes.is_empty() {
            return Some(now);
        }
        self.drop_stale_tops();
        let deadline = self.deadlines.peek().map(|Reverse((at, _, _))| *at);
        let due = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let send = match (due, self.send_blocked_until(now)) {
            (Some(due), None) => Some(due),
            (Some(due), Some(Some(unblocked))) => Some(due.max(unblocked)),
            // Held back by the in-flight caps: a response will move things on.
            (_, Some(None)) | (None, _) => None,
        };
        [deadline, send].into_iter().flatten().min()
    }

    /// Feeds the result of a request handed out by `poll_request`.
    pub fn handle_response(&mut self, now: Instant, ticket: RequestTicket, result: HttpResult) {
        let answer = Answer::classify(ticket.kind, result);
        self.handle_answer(now, ticket, answer);
    }

    /// Feeds a result classified already (see [`Answer`]); the same as
    /// [`handle_response`](Self::handle_response) otherwise.
    pub fn handle_answer(&mut self, now: Instant, ticket: RequestTicket, answer: Answer) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.config.adaptive_rate_limiting {
            match answer.signal() {
                AnswerSignal::RateLimited(asked) => {
                    self.adaptive.on_rate_limited(now, asked, &self.policy);
                }
                AnswerSignal::Answered => self.adaptive.on_answer(),
                AnswerSignal::NoAnswer => {}
            }
        }
        let Some(entry) = self.slots.get_mut(ticket.slot as usize) else {
            return;
        };
        if entry.epoch != ticket.epoch {
            return; // The session was removed meanwhile.
        }
        if let Some(machine) = entry.machine.as_mut() {
            if self.config.progress_updates {
                let error = match &answer {
                    Answer::Progress(Classified::Api(err))
                    | Answer::SessionStatus(Classified::Api(err)) => {
                        Some(crate::outcome::OutcomeError::from(err))
                    }
                    Answer::Progress(Classified::Transient(failure))
                    | Answer::SessionStatus(Classified::Transient(failure)) => {
                        Some(crate::outcome::OutcomeError::from(failure))
                    }
                    _ => None,
                };
                if let Some(error) = error {
                    self.failures.push_back(FailureUpdate {
                        session_id: ticket.session_id.clone(),
                        error,
                    });
                }
            }
            machine.handle_answer(now, answer, &self.policy);
            if self.config.progress_updates && ticket.kind == RequestKind::Progress {
                if let Some((session_progress, stages_done, stages_total)) =
                    machine.progress_summary()
                {
                    self.updates.push_back(ProgressUpdate {
                        session_id: ticket.session_id.clone(),
                        session_progress,
                        stages_done,
                        stages_total,
                        statements: machine.statements(),
                        polls: machine.polls(),
                    });
                }
            }
        }
        self.settle(now, ticket.slot);
    }

    /// The next progress update, when `progress_updates` is on.
    pub fn poll_update(&mut self) -> Option<ProgressUpdate> {
        self.updates.pop_front()
    }

    /// The next failure seen, when `progress_updates` is on.
    pub fn poll_failure(&mut self) -> Option<FailureUpdate> {
        self.failures.pop_front()
    }

    /// Feeds a verified webhook. A webhook for a session not tracked here is handed back.
    pub fn handle_webhook(&mut self, now: Instant, hint: WebhookHint) -> WebhookDisposition {
        let Some(&slot) = self.index.get(&hint.session_id) else {
            return WebhookDisposition::Untracked(hint);
        };
        if let Some(machine) = self
            .slots
            .get_mut(slot as usize)
            .and_then(|entry| entry.machine.as_mut())
        {
            machine.handle_webhook(now, hint, &self.policy);
        }
        self.settle(now, slot);
        WebhookDisposition::Tracked
    }

    /// Polls a tracked session as soon as its spacing allows (an operator asked); `false` if it
    /// is not tracked here.
    pub fn poll_now(&mut self, now: Instant, session: &SessionId) -> bool {
        let Some(&slot) = self.index.get(session) else {
            return false;
        };
        if let Some(machine) = self
            .slots
            .get_mut(slot as usize)
            .and_then(|entry| entry.machine.as_mut())
        {
            machine.handle_poll_request(now, &self.policy);
        }
        self.settle(now, slot);
        true
    }

    /// After any change to a session: queue its outcome, or (re)arm its timer.
    fn settle(&mut self, now: Instant, slot: u32) {
        let Some(entry) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Some(machine) = entry.machine.as_mut() else {
            return;
        };
        machine.expire(now, &self.policy);
        if let Some(outcome) = machine.take_outcome() {
            self.outcomes.push_back(*outcome);
            self.release(slot);
            return;
        }
        if let Some(at) = machine.wake_at(&self.policy) {
            entry.timer = entry.timer.wrapping_add(1);
            self.timers.push(Reverse((at, slot, entry.timer)));
        }
    }

    /// Ends every waiting session whose max wait has passed, even while sending is held back.
    fn expire(&mut self, now: Instant) {
        while let Some(&Reverse((at, slot, epoch))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let live = self
                .slots
                .get(slot as usize)
                .is_some_and(|entry| entry.epoch == epoch && entry.machine.is_some());
            if live {
                // In flight: the response (bounded by the transport's timeout) ends it.
                self.settle(now, slot);
            }
        }
    }

    fn release(&mut self, slot: u32) {
        let Some(entry) = self.slots.get_mut(slot as usize) else {
            return;
        };
        if let Some(machine) = entry.machine.take() {
            self.index.remove(machine.id());
        }
        entry.epoch = entry.epoch.wrapping_add(1);
        self.free.push(slot);
    }

    /// `None` if a request may go now; `Some(Some(t))` if not before `t`; `Some(None)` if only
    /// a response can unblock (the in-flight caps).
    fn send_blocked_until(&mut self, now: Instant) -> Option<Option<Instant>> {
        let cap = if self.config.adaptive_rate_limiting {
            self.config.max_in_flight.min(self.adaptive.window())
        } else {
            self.config.max_in_flight
        };
        if self.in_flight >= cap {
            return Some(None);
        }
        let mut ready = now;
        if let Some(paused) = self.adaptive.paused_until() {
            ready = ready.max(paused);
        }
        if let Some(bucket) = &mut self.bucket {
            ready = ready.max(bucket.ready_at(now));
        }
        (ready > now).then_some(Some(ready))
    }

    fn drop_stale_tops(&mut self) {
        while let Some(&Reverse((_, slot, timer))) = self.timers.peek() {
            let live = self
                .slots
                .get(slot as usize)
                .is_some_and(|entry| entry.timer == timer && entry.machine.is_some());
            if live {
                break;
            }
            self.timers.pop();
        }
        while let Some(&Reverse((_, slot, epoch))) = self.deadlines.peek() {
            let live = self
                .slots
                .get(slot as usize)
                .is_some_and(|entry| entry.epoch == epoch && entry.machine.is_some());
            if live {
                break;
            }
            self.deadlines.pop();
        }
    }
}
