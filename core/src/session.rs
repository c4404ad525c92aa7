//! One tracked session: a sans-IO state machine in the str0m / quinn-proto style.
//!
//! [`TrackedSession::poll_action`] says what to do next (send this request, wait until, done) and
//! [`TrackedSession::handle_input`] takes what happened (a response, a transport failure, a webhook).
//! Time comes in as `now`; jitter comes from a seed given at construction. Same inputs, same decisions.
//!
//! The rules, in order of precedence:
//! - a progress request is sent no sooner than the poll interval after the previous one; the one
//!   exception is a webhook's confirming request, which waits only [`PollPolicy::confirm_spacing`];
//! - no request is sent at or after the max wait; a request in flight then is still answered, so a
//!   session ends at most one request past its max wait;
//! - terminal API errors end the session at once; PROCESSING_NOT_REQUESTED is polled like
//!   `processing` during the grace period; transient failures are retried with capped full-jitter
//!   backoff (honouring a capped `Retry-After`) until the retry budget is spent;
//! - a completed session that learnt of it by polling alone fetches `session_status` once for the
//!   accounts (if the policy says so); a failure there keeps the verdict and says why in `accounts_error`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::account::AccountResult;
use crate::classify::{classify_progress, Classified, HttpResult, TransientFailure};
use crate::error_codes::ApiErrorCode;
use crate::ids::SessionId;
use crate::jitter::JitterRng;
use crate::outcome::{NotifiedBy, Outcome, OutcomeError, OutcomeKind};
use crate::policy::{PolicyError, PollPolicy};
use crate::progress::{keep_all, kept_are, KeptStatement, ProgressReport, StatementProgress};
use crate::request::{Api, RequestError};
use crate::session_status::{classify_session_status, SessionStatusReply};
use crate::status::SessionProgress;
use crate::webhook_hint::WebhookHint;

/// Which endpoint a request of a session goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::exhaustive_enums)] // closed: the two requests a session makes
pub enum RequestKind {
    /// `GET …/progress/`.
    Progress,
    /// `GET …/session_status/`, once, after completion learnt by polling.
    SessionStatus,
}

impl RequestKind {
    /// The kind's name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Progress => "progress",
            Self::SessionStatus => "session_status",
        }
    }
}

/// A response classified for the kind of request it answers: the pure (and costliest) part of
/// handling it, which a driver may do away from the tracker, e.g. outside the lock that its
/// worker threads share, before feeding it with
/// [`Tracker::handle_answer`](crate::Tracker::handle_answer).
///
/// ```
/// use bankconnect_core::{Answer, Classified, RequestKind};
///
/// let response = http::Response::builder()
///     .status(200)
///     .body(br#"{"session_id":"s-1","session_progress":"completed","statements":[]}"#.to_vec())?;
/// let answer = Answer::classify(RequestKind::Progress, Ok(response));
/// assert!(matches!(answer, Answer::Progress(Classified::Ok(_))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[allow(clippy::exhaustive_enums)] // closed: one per RequestKind
pub enum Answer {
    /// To a progress request.
    Progress(Classified<ProgressReport>),
    /// To a session_status request.
    SessionStatus(Classified<SessionStatusReply>),
}

impl Answer {
    /// Classifies the result of a request of `kind`.
    pub fn classify(kind: RequestKind, result: HttpResult) -> Self {
        match kind {
            RequestKind::Progress => Self::Progress(classify_progress(result)),
            RequestKind::SessionStatus => Self::SessionStatus(classify_session_status(result)),
        }
    }

    /// What the answer tells the adaptive rate limit.
    pub(crate) fn signal(&self) -> AnswerSignal {
        let transient = match self {
            Self::Progress(Classified::Transient(failure))
            | Self::SessionStatus(Classified::Transient(failure)) => failure,
            _ => return AnswerSignal::Answered,
        };
        match transient {
            TransientFailure::Transport(_) => AnswerSignal::NoAnswer,
            TransientFailure::RateLimited { retry_after } => {
                AnswerSignal::RateLimited(*retry_after)
            }
            _ => AnswerSignal::Answered,
        }
    }
}

/// What an answer tells the adaptive rate limit.
pub(crate) enum AnswerSignal {
    /// 429, with the server's `Retry-After`.
    RateLimited(Option<Duration>),
    /// Any other HTTP answer.
    Answered,
    /// No HTTP answer at all.
    NoAnswer,
}

/// What the driver should do next for a session.
#[derive(Debug)]
#[must_use]
#[allow(clippy::large_enum_variant)] // returned and consumed at once, never stored
#[allow(clippy::exhaustive_enums)] // closed: the machine's outputs, matched exhaustively by drivers
pub enum Action {
    /// Send this request, then feed its result to `handle_input`.
    Send(http::Request<Vec<u8>>),
    /// Nothing to do before this instant (unless an input arrives); then poll again.
    WaitUntil(Instant),
    /// A request is in flight: feed its result to `handle_input`.
    AwaitResponse,
    /// The session ended. Returned once; later polls return [`Action::Finished`].
    Done(Box<Outcome>),
    /// The outcome was already handed out.
    Finished,
}

/// What happened, for `handle_input`.
#[derive(Debug)]
#[allow(clippy::exhaustive_enums)] // closed: the machine's inputs
pub enum Input {
    /// The result of the request last handed out by `poll_action`.
    Response(HttpResult),
    /// A (verified) webhook for this session.
    Webhook(WebhookHint),
}

/// Where a session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// The next request of this kind is due at this instant.
    Due(Instant, RequestKind),
    /// A request is in flight.
    InFlight(RequestKind),
    /// Ended; the outcome until it is handed out.
    Ended(Option<Box<Outcome>>),
}

/// What the machine decided on a poll, before a request is built.
#[derive(Debug)]
pub(crate) enum Step {
    Send(RequestKind),
    WaitUntil(Instant),
    AwaitResponse,
    Done(Box<Outcome>),
    Finished,
}

/// What few sessions carry, boxed so that the many without it stay small (a tracker may hold
/// hundreds of thousands of sessions).
#[derive(Debug, Clone, Default, PartialEq)]
struct Rare {
    /// Time tracked before this process (from a resumed snapshot or an earlier add).
    carried: Duration,
    /// This session's own max wait, instead of the policy's.
    max_wait: Option<Duration>,
    /// The last transient failure, until a request succeeds.
    last_failure: Option<TransientFailure>,
    /// The accounts from an authenticated webhook, once one came.
    webhook_accounts: Option<Vec<AccountResult>>,
    /// When the webhook awaiting credit came (a poll sent after it that finds the session still
    /// processing contradicts it).
    webhook_at: Option<Instant>,
    /// When a webhook last hastened a poll (at most once per interval).
    hastened_at: Option<Instant>,
}

/// The state of one session, without the policy or the API (which a scheduler shares).
#[derive(Debug, Clone)]
pub(crate) struct SessionMachine {
    id: SessionId,
    started: Instant,
    /// What few sessions carry (none while nothing unusual happened).
    rare: Option<Box<Rare>>,
    phase: Phase,
    last_progress_sent: Option<Instant>,
    polls: u32,
    retries: u32,
    failures_in_row: u32,
    session_progress: Option<SessionProgress>,
    /// The statements as last seen, compact (sessions are many and kept for long).
    statements: Box<[KeptStatement]>,
    /// Whether a webhook named this session (authenticated or not) and no poll since has
    /// contradicted it: the outcome is credited to it (`notified_by: webhook`).
    webhook_seen: bool,
    /// A webhook came while a request was in flight: confirm with one more request.
    confirm_pending: bool,
    /// The completion verdict while `session_status` is being fetched.
    completed_with_stage_failure: Option<bool>,
    rng: JitterRng,
}

impl SessionMachine {
    pub(crate) fn new(id: SessionId, now: Instant, seed: u64) -> Self {
        let rng = JitterRng::for_session(seed, id.as_str());
        Self {
            id,
            started: now,
            rare: None,
            phase: Phase::Due(now, RequestKind::Progress),
            last_progress_sent: None,
            polls: 0,
            retries: 0,
            failures_in_row: 0,
            session_progress: None,
            statements: Box::default(),
            webhook_seen: false,
            confirm_pending: false,
            completed_with_stage_failure: None,
            rng,
        }
    }

    /// A session that has already been tracked for `elapsed` (e.g. since it was added, in wall
    /// time, before this process started), with its own max wait if given.
    pub(crate) fn started_earlier(
        id: SessionId,
        now: Instant,
        seed: u64,
        elapsed: Duration,
        max_wait: Option<Duration>,
    ) -> Self {
        let mut machine = Self::new(id, now, seed);
        if !elapsed.is_zero() || max_wait.is_some() {
            let rare = machine.rare_mut();
            rare.carried = elapsed;
            rare.max_wait = max_wait;
        }
        machine
    }

    pub(crate) fn id(&self) -> &SessionId {
        &self.id
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Time tracked before this process (from a resumed snapshot or an earlier add).
    fn carried(&self) -> Duration {
        self.rare
            .as_ref()
            .map_or(Duration::ZERO, |rare| rare.carried)
    }

    fn max_wait(&self) -> Option<Duration> {
        self.rare.as_ref().and_then(|rare| rare.max_wait)
    }

    fn last_failure(&self) -> Option<&TransientFailure> {
        self.rare
            .as_ref()
            .and_then(|rare| rare.last_failure.as_ref())
    }

    fn set_last_failure(&mut self, failure: Option<TransientFailure>) {
        match failure {
            Some(failure) => self.rare_mut().last_failure = Some(failure),
            None => {
                if let Some(rare) = self.rare.as_mut() {
                    rare.last_failure = None;
                }
            }
        }
    }

    fn webhook_accounts(&self) -> Option<&Vec<AccountResult>> {
        self.rare
            .as_ref()
            .and_then(|rare| rare.webhook_accounts.as_ref())
    }

    fn deadline(&self, policy: &PollPolicy) -> Instant {
        let max_wait = self.max_wait().unwrap_or(policy.max_wait);
        self.started + max_wait.saturating_sub(self.carried())
    }

    fn elapsed(&self, now: Instant) -> Duration {
        self.carried() + now.saturating_duration_since(self.started)
    }

    /// When this session next needs attention without any input: `None` while a request is in
    /// flight or once the outcome was handed out.
    pub(crate) fn wake_at(&self, policy: &PollPolicy) -> Option<Instant> {
        match &self.phase {
            Phase::Due(at, _) => Some((*at).min(self.deadline(policy))),
            Phase::InFlight(_) => None,
            Phase::Ended(Some(_)) => Some(self.started),
            Phase::Ended(None) => None,
        }
    }

    /// The last progress seen: overall state and `(finished stages, total stages)`.
    /// The statements as last seen.
    pub(crate) fn statements(&self) -> Vec<StatementProgress> {
        self.statements
            .iter()
            .map(KeptStatement::progress)
            .collect()
    }

    /// Progress requests answered so far.
    pub(crate) fn polls(&self) -> u32 {
        self.polls
    }

    pub(crate) fn progress_summary(&self) -> Option<(SessionProgress, usize, usize)> {
        let state = self.session_progress.clone()?;
        let done = self
            .statements
            .iter()
            .map(KeptStatement::finished_stages)
            .sum();
        let total = self.statements.len() * crate::progress::STAGES_PER_STATEMENT;
        Some((state, done, total))
    }

    /// Ends the session if its max wait has passed and no request is in flight.
    pub(crate) fn expire(&mut self, now: Instant, policy: &PollPolicy) {
        if matches!(self.phase, Phase::Due(..)) && now >= self.deadline(policy) {
            self.end_at_deadline(now);
        }
    }

    /// The outcome, if the session ended and it was not handed out yet.
    pub(crate) fn take_outcome(&mut self) -> Option<Box<Outcome>> {
        match &mut self.phase {
            Phase::Ended(outcome) => outcome.take(),
            _ => None,
        }
    }

    /// When the max wait ends.
    pub(crate) fn deadline_at(&self, policy: &PollPolicy) -> Instant {
        self.deadline(policy)
    }

    pub(crate) fn poll(&mut self, now: Instant, policy: &PollPolicy) -> Step {
        match &mut self.phase {
            Phase::Ended(outcome) => match outcome.take() {
                Some(outcome) => Step::Done(outcome),
                None => Step::Finished,
            },
            Phase::InFlight(_) => Step::AwaitResponse,
            Phase::Due(at, kind) => {
                let (at, kind) = (*at, *kind);
                if now >= self.deadline(policy) {
                    self.end_at_deadline(now);
                    return self.poll(now, policy);
                }
                if now < at {
                    return Step::WaitUntil(at.min(self.deadline(policy)));
                }
                if kind == RequestKind::Progress {
                    self.polls = self.polls.saturating_add(1);
                    self.last_progress_sent = Some(now);
                }
                if self.failures_in_row > 0 {
                    self.retries = self.retries.saturating_add(1);
                }
                self.phase = Phase::InFlight(kind);
                Step::Send(kind)
            }
        }
    }

    /// Ends the session because the max wait passed while no request was in flight.
    fn end_at_deadline(&mut self, now: Instant) {
        if self.completed_with_stage_failure.is_some() {
            // Completion is known; only the accounts are missing.
            let reason = "the max wait passed before session_status answered".to_owned();
            self.end_without_accounts(now, reason);
        } else if self.session_progress.is_none() && self.failures_in_row > 0 {
            // Nothing but transient failures the whole time: the API was unreachable, which is
            // more use to the caller than "timed out".
            let error = self.last_failure().map(OutcomeError::from);
            self.end(now, OutcomeKind::TransportError, error);
        } else {
            self.end(now, OutcomeKind::TimedOut, None);
        }
    }

    pub(crate) fn handle_response(
        &mut self,
        now: Instant,
        result: HttpResult,
        policy: &PollPolicy,
    ) {
        if let Phase::InFlight(kind) = self.phase {
            self.handle_answer(now, Answer::classify(kind, result), policy);
        }
    }

    pub(crate) fn handle_answer(&mut self, now: Instant, answer: Answer, policy: &PollPolicy) {
        let Phase::InFlight(kind) = self.phase else {
            return;
        };
        match answer {
            Answer::Progress(classified) if kind == RequestKind::Progress => {
                self.handle_progress(now, classified, policy)
            }
            Answer::SessionStatus(classified) if kind == RequestKind::SessionStatus => {
                self.handle_session_status(now, classified, policy)
            }
            // A driver's mix-up: counted as a failed request, so the session goes on.
            _ => {
                let failure = TransientFailure::Transport(crate::TransportError::new(
                    crate::TransportErrorKind::Other,
                    "the answer was classified for another kind of request",
                ));
                self.transient(now, failure, kind, policy);
            }
        }
        // A request answered after the max wait ends the session now, whatever it said.
        if matches!(self.phase, Phase::Due(..)) && now >= self.deadline(policy) {
            self.end_at_deadline(now);
        }
    }

    fn handle_progress(
        &mut self,
        now: Instant,
        classified: Classified<ProgressReport>,
        policy: &PollPolicy,
    ) {
        match classified {
            Classified::Ok(report) if report.session_id != self.id => {
                let failure = TransientFailure::UnparsableBody {
                    http_status: 200,
                    reason: format!("the response is about session {}", report.session_id),
                };
                self.transient(now, failure, RequestKind::Progress, policy);
            }
            Classified::Ok(report) => {
                self.failures_in_row = 0;
                self.set_last_failure(None);
                let completed = report.is_completed();
                self.session_progress = Some(report.session_progress);
                // Most polls repeat the last report: keep the list held rather than build a new
                // one, which costs allocations per answer.
                if !kept_are(&self.statements, &report.statements) {
                    self.statements = keep_all(report.statements);
                }
                if completed {
                    self.on_completed(now, policy);
                } else {
                    self.contradicted();
                    self.schedule_next_poll(now, policy);
                }
            }
            Classified::Api(err) => {
                self.failures_in_row = 0;
                let in_grace = err.code == ApiErrorCode::ProcessingNotRequested
                    && self.elapsed(now) < policy.not_requested_grace;
                if in_grace || err.code == ApiErrorCode::ProcessingNotCompleted {
                    self.contradicted();
                    self.schedule_next_poll(now, policy);
                } else {
                    self.end(now, OutcomeKind::ApiError, Some(OutcomeError::from(&err)));
                }
            }
            Classified::Transient(failure) => {
                self.transient(now, failure, RequestKind::Progress, policy)
            }
        }
    }

    fn on_completed(&mut self, now: Instant, policy: &PollPolicy) {
        let stage_failure = self.statements.iter().any(KeptStatement::has_failed_stage);
        let by = self.notified_by();
        match self
            .rare
            .as_mut()
            .and_then(|rare| rare.webhook_accounts.take())
        {
            // Only an authenticated webhook's accounts get here.
            Some(accounts) => self.end_completed(now, stage_failure, accounts, None, by),
            None if policy.fetch_accounts => {
                self.completed_with_stage_failure = Some(stage_failure);
                self.phase = Phase::Due(now, RequestKind::SessionStatus);
            }
            None => self.end_completed(now, stage_failure, Vec::new(), None, by),
        }
    }

    fn handle_session_status(
        &mut self,
        now: Instant,
        classified: Classified<SessionStatusReply>,
        policy: &PollPolicy,
    ) {
        let stage_failure = self.completed_with_stage_failure.unwrap_or(false);
        match classified {
            Classified::Ok(SessionStatusReply::Ready(status)) => {
                let by = self.notified_by();
                self.end_completed(now, stage_failure, status.accounts, None, by);
            }
            Classified::Ok(SessionStatusReply::NotYet(err)) => {
                // Progress said completed but the data is not ready yet: the server is healthy,
                // so ask again after a poll interval (not a backoff), within the retry budget.
                self.failures_in_row = self.failures_in_row.saturating_add(1);
                if self.failures_in_row > policy.retry_budget {
                    let reason = format!(
                        "session_status kept answering {}: {}",
                        err.code, err.message
                    );
                    self.end_without_accounts(now, reason);
                } else {
                    let at = now + policy.next_interval(&mut self.rng);
                    self.phase = Phase::Due(at, RequestKind::SessionStatus);
                }
            }
            Classified::Api(err) => {
                let reason = format!("session_status refused: {err}");
                self.end_without_accounts(now, reason);
            }
            Classified::Transient(failure) => {
                self.transient(now, failure, RequestKind::SessionStatus, policy)
            }
        }
    }

    fn transient(
        &mut self,
        now: Instant,
        failure: TransientFailure,
        kind: RequestKind,
        policy: &PollPolicy,
    ) {
        self.failures_in_row = self.failures_in_row.saturating_add(1);
        if self.failures_in_row > policy.retry_budget {
            if kind == RequestKind::SessionStatus {
                let reason = format!("session_status kept failing: {failure}");
                self.end_without_accounts(now, reason);
            } else {
                let error = OutcomeError::from(&failure);
                self.set_last_failure(Some(failure));
                self.end(now, OutcomeKind::TransportError, Some(error));
            }
            return;
        }
        let delay = match failure.retry_after() {
            Some(asked) => policy.capped_retry_after(asked),
            None => policy.backoff.delay(self.failures_in_row, &mut self.rng),
        };
        let mut at = now + delay;
        if kind == RequestKind::Progress {
            if let Some(sent) = self.last_progress_sent {
                at = at.max(sent + policy.interval);
            }
        }
        self.set_last_failure(Some(failure));
        self.phase = Phase::Due(at, kind);
    }

    fn schedule_next_poll(&mut self, now: Instant, policy: &PollPolicy) {
        let sent = self.last_progress_sent.unwrap_or(now);
        let at = if std::mem::take(&mut self.confirm_pending) {
            sent + policy.confirm_spacing()
        } else {
            sent + policy.next_interval(&mut self.rng)
        };
        self.phase = Phase::Due(at.max(now), RequestKind::Progress);
    }

    pub(crate) fn handle_webhook(&mut self, now: Instant, hint: WebhookHint, policy: &PollPolicy) {
        match &self.phase {
            Phase::Ended(_) => return,
            // Completion is known and session_status is being fetched: an authenticated webhook
            // carries exactly those accounts, so take them and end; any other keeps fetching.
            Phase::Due(_, RequestKind::SessionStatus)
            | Phase::InFlight(RequestKind::SessionStatus) => {
                if hint.authenticated {
                    self.webhook_seen = true;
                    let stage_failure = self.completed_with_stage_failure.unwrap_or(false);
                    self.end_completed(
                        now,
                        stage_failure,
                        hint.accounts,
                        None,
                        NotifiedBy::Webhook,
                    );
                }
                return;
            }
            // A webhook may cause one early request per interval, so a flood of (forged)
            // webhooks cannot raise the poll rate, and a later webhook after a contradicted one
            // still gets its own confirmation.
            Phase::InFlight(RequestKind::Progress) => {
                if self.may_hasten(now, policy) {
                    self.confirm_pending = true;
                    self.rare_mut().hastened_at = Some(now);
                }
            }
            Phase::Due(_, RequestKind::Progress) => self.hasten_due_poll(now, policy),
        }
        self.webhook_seen = true;
        let rare = self.rare_mut();
        rare.webhook_at = Some(now);
        if hint.authenticated {
            rare.webhook_accounts = Some(hint.accounts);
        }
    }

    /// Someone asked for a poll now (an operator): the next progress request goes as early as
    /// the confirmation spacing allows, at most once per interval (as a webhook hastens one),
    /// and nothing is credited to a webhook.
    pub(crate) fn handle_poll_request(&mut self, now: Instant, policy: &PollPolicy) {
        self.hasten_due_poll(now, policy);
    }

    /// Brings a due progress request forward to as early as the confirmation spacing allows,
    /// if nothing hastened one within the last interval.
    fn hasten_due_poll(&mut self, now: Instant, policy: &PollPolicy) {
        let Phase::Due(at, RequestKind::Progress) = &self.phase else {
            return;
        };
        let at = *at;
        let earliest = self
            .last_progress_sent
            .map_or(now, |sent| sent + policy.confirm_spacing())
            .max(now);
        if earliest < at && self.may_hasten(now, policy) {
            self.phase = Phase::Due(earliest, RequestKind::Progress);
            self.rare_mut().hastened_at = Some(now);
        }
    }

    /// Whether a webhook may hasten a poll now: none did within the last interval.
    fn may_hasten(&self, now: Instant, policy: &PollPolicy) -> bool {
        self.rare
            .as_ref()
            .and_then(|rare| rare.hastened_at)
            .is_none_or(|at| now >= at + policy.interval)
    }

    /// A poll sent after the pending webhook found the session still processing: the hint was
    /// wrong (or forged), so it earns no credit. An authenticated webhook's stays.
    fn contradicted(&mut self) {
        if !self.webhook_seen || self.webhook_accounts().is_some() {
            return;
        }
        let webhook_at = self.rare.as_ref().and_then(|rare| rare.webhook_at);
        let after = match (webhook_at, self.last_progress_sent) {
            (Some(webhook), Some(sent)) => sent >= webhook,
            // Resumed from a snapshot: the webhook came before every request since.
            (None, _) => true,
            (Some(_), None) => false,
        };
        if after {
            self.webhook_seen = false;
        }
    }

    /// How the ending was learnt: a webhook (confirmed by a poll) or polling alone.
    fn notified_by(&self) -> NotifiedBy {
        if self.webhook_seen {
            NotifiedBy::Webhook
        } else {
            NotifiedBy::Poll
        }
    }

    /// Ends a session whose completion is known but whose accounts could not be fetched; the
    /// progress verdict stands and `accounts_error` says why.
    fn end_without_accounts(&mut self, now: Instant, reason: String) {
        let stage_failure = self.completed_with_stage_failure.unwrap_or(false);
        let by = self.notified_by();
        self.end_completed(now, stage_failure, Vec::new(), Some(reason), by);
    }

    fn end_completed(
        &mut self,
        now: Instant,
        stage_failure: bool,
        accounts: Vec<AccountResult>,
        accounts_error: Option<String>,
        by: NotifiedBy,
    ) {
        let failed = stage_failure || accounts.iter().any(AccountResult::is_failed);
        let kind = if failed {
            OutcomeKind::CompletedWithFailures
        } else {
            OutcomeKind::Completed
        };
        let mut outcome = self.outcome(now, kind, None);
        outcome.accounts = accounts;
        outcome.notified_by = by;
        outcome.accounts_error = accounts_error;
        self.phase = Phase::Ended(Some(Box::new(outcome)));
    }

    fn end(&mut self, now: Instant, kind: OutcomeKind, error: Option<OutcomeError>) {
        // Not completed: no webhook's accounts are attached, authenticated or not, since the
        // API never confirmed the end they describe.
        let outcome = self.outcome(now, kind, error);
        self.phase = Phase::Ended(Some(Box::new(outcome)));
    }

    fn outcome(&mut self, now: Instant, kind: OutcomeKind, error: Option<OutcomeError>) -> Outcome {
        Outcome {
            session_id: self.id.clone(),
            outcome: kind,
            error,
            statements: Vec::from(std::mem::take(&mut self.statements))
                .into_iter()
                .map(KeptStatement::into_progress)
                .collect(),
            accounts: Vec::new(),
            notified_by: self.notified_by(),
            polls: self.polls,
            retries: self.retries,
            elapsed_ms: u64::try_from(self.elapsed(now).as_millis()).unwrap_or(u64::MAX),
            session_progress: self.session_progress.clone(),
            accounts_error: None,
        }
    }

    /// A resumable copy of the state (an in-flight request is forgotten: it is re-sent).
    pub(crate) fn snapshot(&self, now: Instant) -> Option<SessionSnapshot> {
        let (next_kind, due_in) = match &self.phase {
            Phase::Due(at, kind) => (*kind, at.saturating_duration_since(now)),
            Phase::InFlight(kind) => (*kind, Duration::ZERO),
            Phase::Ended(_) => return None,
        };
        Some(SessionSnapshot {
            session_id: self.id.clone(),
            elapsed: self.elapsed(now),
            next_kind,
            due_in,
            since_last_poll: self
                .last_progress_sent
                .map(|sent| now.saturating_duration_since(sent)),
            polls: self.polls,
            retries: self.retries,
            failures_in_row: self.failures_in_row,
            last_failure: self.last_failure().cloned(),
            session_progress: self.session_progress.clone(),
            statements: self.statements(),
            max_wait: self.max_wait(),
            webhook_seen: self.webhook_seen,
            webhook_accounts: self.webhook_accounts().cloned(),
            confirm_pending: self.confirm_pending,
            completed_with_stage_failure: self.completed_with_stage_failure,
            rng: self.rng.clone(),
        })
    }

    pub(crate) fn resume(snapshot: SessionSnapshot, now: Instant) -> Self {
        let rare = Rare {
            carried: snapshot.elapsed,
            max_wait: snapshot.max_wait,
            last_failure: snapshot.last_failure,
            webhook_accounts: snapshot.webhook_accounts,
            webhook_at: None,
            hastened_at: None,
        };
        Self {
            id: snapshot.session_id,
            started: now,
            webhook_seen: snapshot.webhook_seen || rare.webhook_accounts.is_some(),
            rare: (rare != Rare::default()).then(|| Box::new(rare)),
            phase: Phase::Due(now + snapshot.due_in, snapshot.next_kind),
            last_progress_sent: snapshot
                .since_last_poll
                .map(|since| now.checked_sub(since).unwrap_or(now)),
            polls: snapshot.polls,
            retries: snapshot.retries,
            failures_in_row: snapshot.failures_in_row,
            session_progress: snapshot.session_progress,
            statements: keep_all(snapshot.statements),
            confirm_pending: snapshot.confirm_pending,
            completed_with_stage_failure: snapshot.completed_with_stage_failure,
            rng: snapshot.rng,
        }
    }
}

/// A session's resumable state, free of `Instant`s: save it (serde) and resume it later, in
/// another process, with [`TrackedSession::resume`] or `Scheduler::resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionSnapshot {
    /// The session.
    pub session_id: SessionId,
    /// Time tracked so far (counts towards the max wait).
    #[serde(rename = "elapsed_ms", with = "crate::duration_serde")]
    pub elapsed: Duration,
    /// Which request comes next.
    pub next_kind: RequestKind,
    /// How long after resuming it is due.
    #[serde(rename = "due_in_ms", with = "crate::duration_serde")]
    pub due_in: Duration,
    /// Time since the last progress request, if any (keeps the interval across the restart).
    #[serde(rename = "since_last_poll_ms", default, with = "option_duration_ms")]
    pub since_last_poll: Option<Duration>,
    /// Progress requests sent so far.
    pub polls: u32,
    /// Retries so far.
    pub retries: u32,
    /// Consecutive transient failures.
    pub failures_in_row: u32,
    /// The last transient failure.
    pub last_failure: Option<TransientFailure>,
    /// The last progress seen.
    pub session_progress: Option<SessionProgress>,
    /// The statements last seen.
    pub statements: Vec<StatementProgress>,
    /// This session's own max wait, when not the policy's.
    #[serde(rename = "max_wait_ms", default, with = "option_duration_ms")]
    pub max_wait: Option<Duration>,
    /// Whether a webhook named this session.
    #[serde(default)]
    pub webhook_seen: bool,
    /// The accounts from an authenticated webhook, if one came.
    pub webhook_accounts: Option<Vec<AccountResult>>,
    /// Whether a webhook still awaits its confirming request.
    pub confirm_pending: bool,
    /// Set once completion is known and only the accounts are being fetched.
    pub completed_with_stage_failure: Option<bool>,
    /// The jitter source's state.
    pub rng: JitterRng,
}

mod option_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => serializer.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(deserializer)?.map(Duration::from_millis))
    }
}

/// One session tracked on its own: the state machine with its policy and API.
///
/// Drive it with your own HTTP client and clock:
///
/// ```
/// use std::time::Instant;
/// use bankconnect_core::{Action, Api, BaseUrl, Credentials, Input, PollPolicy, SessionId, TrackedSession};
///
/// let api = Api::new(BaseUrl::parse("http://127.0.0.1:1/bank-connect/v1")?, Credentials::new("k", "h")?);
/// let mut session = TrackedSession::new(api, PollPolicy::default(), SessionId::new("s-1")?, Instant::now(), 42)?;
/// let outcome = loop {
///     match session.poll_action(Instant::now()) {
///         Action::Send(request) => {
///             // Send `request` with any client; here, a canned completed answer.
///             let body = br#"{"session_id": "s-1", "session_progress": "completed", "progress": []}"#;
///             let answer = http::Response::builder().status(200).body(body.to_vec())?;
///             # let answer = if request.uri().path().ends_with("session_status/") {
///             #     http::Response::builder().status(200).body(br#"{"session_id": "s-1", "accounts": []}"#.to_vec())?
///             # } else { answer };
///             session.handle_input(Instant::now(), Input::Response(Ok(answer)));
///         }
///         Action::WaitUntil(at) => std::thread::sleep(at.saturating_duration_since(Instant::now())),
///         Action::AwaitResponse | Action::Finished => unreachable!("this loop answers every request"),
///         Action::Done(outcome) => break outcome,
///     }
/// };
/// assert_eq!(outcome.outcome.as_str(), "completed");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct TrackedSession {
    api: Api,
    policy: PollPolicy,
    machine: SessionMachine,
}

impl TrackedSession {
    /// Starts tracking `session` at `now`, with jitter drawn from `seed`.
    pub fn new(
        api: Api,
        policy: PollPolicy,
        session: SessionId,
        now: Instant,
        seed: u64,
    ) -> Result<Self, TrackError> {
        policy.validate()?;
        // Build once so that a bad URL is refused here, not mid-flight.
        api.progress_request(&session)?;
        Ok(Self {
            api,
            policy,
            machine: SessionMachine::new(session, now, seed),
        })
    }

    /// Resumes a saved session at `now`.
    pub fn resume(
        api: Api,
        policy: PollPolicy,
        snapshot: SessionSnapshot,
        now: Instant,
    ) -> Result<Self, TrackError> {
        policy.validate()?;
        api.progress_request(&snapshot.session_id)?;
        Ok(Self {
            api,
            policy,
            machine: SessionMachine::resume(snapshot, now),
        })
    }

    /// The session's ID.
    pub fn session_id(&self) -> &SessionId {
        self.machine.id()
    }

    /// The next thing to do. Call again after every input and at every `WaitUntil` instant.
    pub fn poll_action(&mut self, now: Instant) -> Action {
        match self.machine.poll(now, &self.policy) {
            Step::Send(kind) => match build_request(&self.api, kind, self.machine.id()) {
                Ok(request) => Action::Send(request),
                Err(err) => {
                    // Unreachable after the check in `new`; end cleanly rather than panic.
                    self.machine.handle_response(
                        now,
                        Err(crate::TransportError::new(
                            crate::TransportErrorKind::Other,
                            err.to_string(),
                        )),
                        &self.policy,
                    );
                    self.poll_action(now)
                }
            },
            Step::WaitUntil(at) => Action::WaitUntil(at),
            Step::AwaitResponse => Action::AwaitResponse,
            Step::Done(outcome) => Action::Done(outcome),
            Step::Finished => Action::Finished,
        }
    }

    /// Feeds what happened. A response when no request is in flight, or anything after the
    /// end, is ignored; a webhook for another session is ignored too.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Response(result) => self.machine.handle_response(now, result, &self.policy),
            Input::Webhook(hint) if hint.session_id == *self.machine.id() => {
                self.machine.handle_webhook(now, hint, &self.policy)
            }
            Input::Webhook(_) => {}
        }
    }

    /// The instant of the next timer-driven action, if any (none while awaiting a response).
    pub fn next_wake(&self) -> Option<Instant> {
        self.machine.wake_at(&self.policy)
    }

    /// A resumable copy of the state, or `None` once the session ended.
    pub fn snapshot(&self, now: Instant) -> Option<SessionSnapshot> {
        self.machine.snapshot(now)
    }
}

pub(crate) fn build_request(
    api: &Api,
    kind: RequestKind,
    session: &SessionId,
) -> Result<http::Request<Vec<u8>>, RequestError> {
    match kind {
        RequestKind::Progress => api.progress_request(session),
        RequestKind::SessionStatus => api.session_status_request(session),
    }
}

/// Why tracking could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrackError {
    /// The policy is invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The session's requests cannot be built.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The session is already tracked.
    #[error("session {0} is already tracked")]
    Duplicate(SessionId),
}
