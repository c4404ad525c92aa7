//! The delivery worker: each finished session's record POSTed to the lender's back end, signed
//! per Standard Webhooks (with every configured key) with a webhook-id stable across retries,
//! retried on the schedule with jitter, then given up. Claims come from the store's outbox, so
//! a delivery pending at a crash is made after the restart, and in a fleet each attempt is made
//! by one replica. Attempts are independent: many are in flight at once, and a slow receiver
//! holds up only its own.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bankconnect_core::{JitterRng, SessionId};
use bankconnect_store::{Attempt, AttemptDetail, DueDelivery, SessionRecord, Store};
use bankconnect_webhook_verify::WebhookSecret;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};

use crate::claim_pace::ClaimPace;
use crate::delivery_client::{DeliveryClient, Posted};
use crate::delivery_schedule::DeliverySchedule;
use crate::metrics::{label, Metrics};
use crate::record::{record_body, rfc3339, RecordBody};

/// Longest a delivery attempt may take.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a claimed delivery is this worker's before another may take it over: the attempt's
/// timeout and a margin to record its result.
const CLAIM_FOR: Duration = Duration::from_secs(20);
/// Most attempts in flight at once.
pub(crate) const MAX_IN_FLIGHT: usize = 64;
/// Results recorded in one commit once this many wait.
const RECORD_BATCH: usize = 8 * MAX_IN_FLIGHT;
/// How often due retries are looked for when nothing wakes the worker.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// Longest a finished attempt waits for others to share its commit.
const RECORD_WAIT: Duration = Duration::from_millis(50);
/// Longest shutdown waits for attempts in flight (their results are recorded).
const LAST_ROUND: Duration = Duration::from_secs(2);

/// The `webhook-id` base of a session's deliveries (`msg_<id>`; the store numbers those of
/// later outcomes after a retrack).
pub(crate) fn webhook_base(session: &SessionId) -> String {
    format!("msg_{session}")
}

/// Most bytes of an answer's body read for the history.
const EXCERPT: usize = 256;
/// Room made for a delivery's body before it is written: a typical record, and no more than
/// the allocator keeps per thread for quick reuse (glibc: 1 032 bytes).
const BODY_ROOM: usize = 1024;

/// The delivery worker's settings.
pub(crate) struct Delivery {
    pub(crate) store: Store,
    pub(crate) replica: String,
    /// Each signs every delivery (rotation: the receiver accepts either).
    pub(crate) secrets: Vec<WebhookSecret>,
    /// When to retry (its first delay is applied when the session finishes).
    pub(crate) schedule: DeliverySchedule,
    /// Every attempt goes out on it, to the one target.
    pub(crate) client: DeliveryClient,
    pub(crate) wake: Arc<Notify>,
    /// Seeds each attempt's jitter.
    pub(crate) seed: u64,
    /// The attempts' counters, looked up once (not per attempt).
    pub(crate) counted: ResultCounters,
}

/// `bankconnect_deliveries` by result, each the family's own counter.
pub(crate) struct ResultCounters {
    delivered: Counter<u64, AtomicU64>,
    failed: Counter<u64, AtomicU64>,
    given_up: Counter<u64, AtomicU64>,
}

impl ResultCounters {
    pub(crate) fn new(metrics: &Metrics) -> Self {
        let of = |kind| {
            metrics
                .deliveries
                .get_or_create(&label("result", kind))
                .clone()
        };
        Self {
            delivered: of("delivered"),
            failed: of("failed"),
            given_up: of("given_up"),
        }
    }

    fn of(&self, attempt: &Attempt) -> &Counter<u64, AtomicU64> {
        match attempt {
            Attempt::Delivered => &self.delivered,
            Attempt::GaveUp { .. } => &self.given_up,
            _ => &self.failed,
        }
    }
}

impl Delivery {
    /// Claims due deliveries while there is room in flight, until `shutdown`. Attempts' results
    /// are recorded in batches (one transaction for all that finished meanwhile), so the
    /// store's commit is not paid per delivery. Claiming and recording run as tasks of their own
    /// (one of each at a time), so attempts keep starting and finishing while the store works.
    pub(crate) async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let attempts = Arc::new(AtomicU64::new(0));
        // How many to keep claimed ahead, from the recent pace (crate::claim_pace).
        let mut pace = ClaimPace::new();
        let clock = tokio::time::Instant::now();
        let mut in_flight: JoinSet<Finished> = JoinSet::new();
        // Claimed and read, waiting for a slot in flight, with when they were claimed.
        let mut ready: VecDeque<(tokio::time::Instant, Claimed)> = VecDeque::new();
        let mut done: Vec<Finished> = Vec::new();
        // The claim and the record being made; a record hands back what it could not write.
        let mut claiming: Option<JoinHandle<(Vec<Claimed>, bool, tokio::time::Instant)>> = None;
        let mut recording: Option<JoinHandle<Vec<Finished>>> = None;
        // When what finished must be recorded at the latest (results wait a little to share a
        // commit, never long: their claims hold meanwhile).
        let mut record_by: Option<tokio::time::Instant> = None;
        // The last claim found less than it asked for: nothing more is due until woken.
        let mut drained = false;
        loop {
            while let Some(joined) = in_flight.try_join_next() {
                done.extend(joined.ok());
            }
            if !done.is_empty() && recording.is_none() {
                let due =
                    *record_by.get_or_insert_with(|| tokio::time::Instant::now() + RECORD_WAIT);
                if done.len() >= RECORD_BATCH
                    || in_flight.is_empty()
                    || tokio::time::Instant::now() >= due
                {
                    let results = std::mem::take(&mut done);
                    let this = Arc::clone(&this);
                    recording = Some(tokio::spawn(async move { this.record(results).await }));
                    record_by = None;
                }
            }
            if *shutdown.borrow() {
                break;
            }
            // Claims are writes (commits): made a batch ahead, not one per attempt finished.
            let asked = if !drained && claiming.is_none() {
                pace.poll_claim(ready.len(), clock.elapsed())
            } else {
                None
            };
            if let Some(asked) = asked {
                let this = Arc::clone(&this);
                claiming = Some(tokio::spawn(async move {
                    // The claims count from before they are made.
                    let at = tokio::time::Instant::now();
                    let claimed = this.claim(asked).await;
                    // Fewer than asked: all that is due now (a failed claim reads likewise).
                    let short = claimed.len() < asked;
                    (claimed, short, at)
                }));
            }
            while in_flight.len() < MAX_IN_FLIGHT {
                let Some((claimed_at, (delivery, record))) = ready.pop_front() else {
                    break;
                };
                // Behind slow attempts, a claim can run short of time for one more: it is left
                // to lapse and claimed again later, never attempted past its claim.
                if claimed_at.elapsed() > CLAIM_FOR - ATTEMPT_TIMEOUT {
                    continue;
                }
                let this = Arc::clone(&this);
                pace.handle_started(1);
                let n = attempts.fetch_add(1, Ordering::Relaxed);
                in_flight.spawn(async move { this.deliver(delivery, record, n).await });
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                Some(joined) = in_flight.join_next() => done.extend(joined.ok()),
                claimed = join(&mut claiming) => {
                    claiming = None;
                    match claimed {
                        Ok((claimed, short, at)) => {
                            drained = short;
                            if short {
                                pace.handle_drained();
                            }
                            ready.extend(claimed.into_iter().map(|claimed| (at, claimed)));
                        }
                        Err(_) => {
                            drained = true;
                            pace.handle_drained();
                        }
                    }
                }
                kept = join(&mut recording) => {
                    recording = None;
                    // Not recorded (the store failed): tried again with the next batch.
                    done.extend(kept.unwrap_or_default());
                }
                () = this.wake.notified(), if drained => drained = false,
                () = tokio::time::sleep(IDLE_POLL), if drained => drained = false,
                () = sleep_until(record_by), if recording.is_none() => {}
            }
        }
        // Attempts in flight get a moment to finish and be recorded; the rest are aborted
        // (their claims lapse and they are made again: at least once).
        let _ = tokio::time::timeout(LAST_ROUND, async {
            while let Some(joined) = in_flight.join_next().await {
                done.extend(joined.ok());
            }
        })
        .await;
        if let Some(claim) = claiming {
            // What it claimed is not attempted: the claims lapse.
            let _ = claim.await;
        }
        if let Some(record) = recording {
            done.extend(record.await.unwrap_or_default());
        }
        let _ = this.record(done).await;
    }

    /// Claims up to `limit` due deliveries with their records.
    async fn claim(&self, limit: usize) -> Vec<Claimed> {
        match self
            .store
            .claim_deliveries_with_records(&self.replica, SystemTime::now(), CLAIM_FOR, limit)
            .await
        {
            Ok(claimed) => claimed,
            Err(err) => {
                // Whatever was claimed lapses and is claimed again.
                tracing::warn!(error = %err, "cannot claim deliveries");
                Vec::new()
            }
        }
    }

    /// Records finished attempts in one transaction; what could not be written is handed back
    /// for the next round (the claims hold meanwhile).
    async fn record(&self, results: Vec<Finished>) -> Vec<Finished> {
        if results.is_empty() {
            return Vec::new();
        }
        match self
            .store
            .record_attempts(results.clone(), SystemTime::now())
            .await
        {
            Ok(_) => Vec::new(),
            Err(err) => {
                tracing::warn!(error = %err, attempts = results.len(), "cannot record delivery attempts; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                // Not forever: past the claim they would be made again anyway.
                if results.len() < 4 * MAX_IN_FLIGHT {
                    results
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// One attempt, and what its result makes of the delivery.
    async fn deliver(
        &self,
        delivery: DueDelivery,
        record: Option<SessionRecord>,
        n: u64,
    ) -> Finished {
        let started = std::time::Instant::now();
        let (result, status, class, excerpt) = match record {
            Some(record) => self.attempt(&delivery, record).await,
            None => (
                Err("the session's record could not be read".to_owned()),
                None,
                Some("store".to_owned()),
                None,
            ),
        };
        let detail = AttemptDetail::new(status, class, started.elapsed(), excerpt.as_deref());
        let mut rng = JitterRng::new(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let attempt = self.next_step(&delivery, result, &mut rng);
        match &attempt {
            Attempt::GaveUp { error } => {
                tracing::warn!(session = %delivery.session_id, attempts = delivery.attempts + 1, error = %error, "delivery given up");
            }
            Attempt::Failed { error, .. } if delivery.attempts == 0 => {
                tracing::warn!(session = %delivery.session_id, error = %error, "delivery failing; retrying on the schedule");
            }
            _ => {}
        }
        self.counted.of(&attempt).inc();
        (delivery.session_id, attempt, detail)
    }

    /// What the attempt's result makes of the delivery.
    fn next_step(
        &self,
        delivery: &DueDelivery,
        result: Result<(), String>,
        rng: &mut JitterRng,
    ) -> Attempt {
        let error = match result {
            Ok(()) => return Attempt::Delivered,
            Err(error) => error,
        };
        let made = u64::from(delivery.attempts).saturating_add(1);
        match self.schedule.retry_after(made, rng) {
            Some(delay) => Attempt::Failed {
                error,
                retry_at: SystemTime::now() + delay,
            },
            None => Attempt::GaveUp { error },
        }
    }

    /// One signed POST of the session's record: `Err` says why it did not count as delivered;
    /// beside it the status answered, the failure's class and the start of the answer's body.
    async fn attempt(
        &self,
        delivery: &DueDelivery,
        record: SessionRecord,
    ) -> (
        Result<(), String>,
        Option<u16>,
        Option<String>,
        Option<Vec<u8>>,
    ) {
        let now = SystemTime::now();
        // Serialized straight from the record's shape, with no JSON tree in between, into room
        // for a typical record (not grown from serde_json's 128 bytes by copies).
        let mut body = Vec::with_capacity(BODY_ROOM);
        let written = serde_json::to_writer(
            &mut body,
            &FinishedEvent {
                kind: "session.finished",
                timestamp: rfc3339(now),
                data: record_body(record),
            },
        );
        let body = match written {
            Ok(()) => body,
            Err(err) => {
                return (
                    Err(format!("cannot serialize the record: {err}")),
                    None,
                    Some("serialize".into()),
                    None,
                )
            }
        };
        let timestamp = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or_default();
        let signature = signatures(&self.secrets, &delivery.webhook_id, timestamp, &body);
        let posted = self
            .client
            .post(&delivery.webhook_id, timestamp, signature, body, EXCERPT)
            .await;
        let (result, status, class, excerpt) = match posted {
            Posted::Answered { status, excerpt } if (200..300).contains(&status) => {
                (Ok(()), Some(status), None, excerpt)
            }
            Posted::Answered { status, excerpt } => (
                Err(format!("HTTP {status}")),
                Some(status),
                Some(format!("http_{}xx", status / 100)),
                excerpt,
            ),
            Posted::TimedOut => (
                Err(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())),
                None,
                Some("timeout".into()),
                None,
            ),
            Posted::CannotConnect => (
                Err("cannot connect".into()),
                None,
                Some("connect".into()),
                None,
            ),
            Posted::Failed => (
                Err("the request failed".into()),
                None,
                Some("request".into()),
                None,
            ),
        };
        tracing::debug!(session = %delivery.session_id, attempt = delivery.attempts + 1, ok = result.is_ok(), "delivery attempt");
        (result, status, class, excerpt)
    }
}

/// What a delivery POSTs: `{"type": "session.finished", "timestamp", "data": record}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = FinishedEventBody)]
pub(crate) struct FinishedEvent {
    /// Always `session.finished`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "session.finished")]
    kind: &'static str,
    /// When this attempt was made (RFC 3339).
    timestamp: String,
    /// The session's record, its outcome in it.
    data: RecordBody,
}

/// A claimed delivery and its record (`None`: it could not be read).
type Claimed = (DueDelivery, Option<SessionRecord>);
/// A finished attempt, to record.
type Finished = (SessionId, Attempt, AttemptDetail);

/// The task's result once it ends; pending forever while there is none.
async fn join<T>(task: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The `webhook-signature` value: one `v1,<base64>` per key, space-separated (Standard
/// Webhooks), so a receiver holding any one of the keys verifies it.
pub(crate) fn signatures(
    secrets: &[WebhookSecret],
    webhook_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|secret| {
            bankconnect_webhook_verify::sign_standard(secret, webhook_id, timestamp, body)
        })
        .collect::<Vec<_>>()
        .join(" ")
}
