//! The delivery worker: each finished session's record POSTed to the lender's back end, signed
//! per Standard Webhooks (with every configured key) with a webhook-id stable across retries,
//! retried on the schedule with jitter, then given up. Claims come from the store's outbox, so
//! a delivery pending at a crash is made after the restart, and in a fleet each attempt is made
//! by one replica. Attempts are independent: many are in flight at once, and a slow receiver
//! holds up only its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bankconnect_core::JitterRng;
use bankconnect_store::{Attempt, DueDelivery, Store};
use bankconnect_webhook_verify::WebhookSecret;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::delivery_schedule::DeliverySchedule;
use crate::metrics::{label, Metrics};
use crate::record::{record_json, rfc3339};

/// Longest a delivery attempt may take.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a claimed delivery is this worker's before another may take it over: the attempt's
/// timeout and a margin to record its result.
const CLAIM_FOR: Duration = Duration::from_secs(20);
/// Most attempts in flight at once.
pub(crate) const MAX_IN_FLIGHT: usize = 64;
/// How often due retries are looked for when nothing wakes the worker.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// Longest shutdown waits for attempts in flight (their results are recorded).
const LAST_ROUND: Duration = Duration::from_secs(2);

/// The delivery worker's settings.
pub(crate) struct Delivery {
    pub(crate) store: Store,
    pub(crate) replica: String,
    pub(crate) target: String,
    /// Each signs every delivery (rotation: the receiver accepts either).
    pub(crate) secrets: Vec<WebhookSecret>,
    /// When to retry (its first delay is applied when the session finishes).
    pub(crate) schedule: DeliverySchedule,
    pub(crate) client: reqwest::Client,
    pub(crate) wake: Arc<Notify>,
    pub(crate) metrics: Arc<Metrics>,
    /// Seeds each attempt's jitter.
    pub(crate) seed: u64,
}

impl Delivery {
    /// Claims due deliveries while there is room in flight, until `shutdown`.
    pub(crate) async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let attempts = Arc::new(AtomicU64::new(0));
        let mut in_flight: JoinSet<()> = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let room = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
            let due = if room == 0 {
                Vec::new()
            } else {
                match this
                    .store
                    .claim_deliveries(&this.replica, SystemTime::now(), CLAIM_FOR, room)
                    .await
                {
                    Ok(due) => due,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot claim deliveries");
                        Vec::new()
                    }
                }
            };
            let claimed = due.len();
            for delivery in due {
                let this = Arc::clone(&this);
                let n = attempts.fetch_add(1, Ordering::Relaxed);
                in_flight.spawn(async move { this.deliver(delivery, n).await });
            }
            if claimed > 0 && claimed == room {
                // Full: wait for a slot (or more to claim when one frees).
                tokio::select! {
                    _ = shutdown.changed() => break,
                    Some(_) = in_flight.join_next() => {}
                }
                continue;
            }
            if claimed > 0 {
                continue; // There may be more due right away.
            }
            tokio::select! {
                _ = shutdown.changed() => break,
                () = this.wake.notified() => {}
                Some(_) = in_flight.join_next() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
        // Attempts in flight get a moment to finish and be recorded; the rest are aborted
        // (their claims lapse and they are made again: at least once).
        let _ = tokio::time::timeout(LAST_ROUND, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
    }

    /// One attempt and its recorded result.
    async fn deliver(&self, delivery: DueDelivery, n: u64) {
        let result = self.attempt(&delivery).await;
        let mut rng = JitterRng::new(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let attempt = self.next_step(&delivery, result, &mut rng);
        let kind = match &attempt {
            Attempt::Delivered => "delivered",
            Attempt::GaveUp { error } => {
                tracing::warn!(session = %delivery.session_id, attempts = delivery.attempts + 1, error = %error, "delivery given up");
                "given_up"
            }
            Attempt::Failed { error, .. } => {
                if delivery.attempts == 0 {
                    tracing::warn!(session = %delivery.session_id, error = %error, "delivery failing; retrying on the schedule");
                }
                "failed"
            }
            _ => "failed",
        };
        self.metrics
            .deliveries
            .get_or_create(&label("result", kind))
            .inc();
        if let Err(err) = self
            .store
            .delivery_attempted(&delivery.session_id, attempt, SystemTime::now())
            .await
        {
            // The claim lapses and the attempt is made again: at least once.
            tracing::warn!(session = %delivery.session_id, error = %err, "cannot record a delivery attempt");
        }
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

    /// One signed POST of the session's record; `Err` says why it did not count as delivered.
    async fn attempt(&self, delivery: &DueDelivery) -> Result<(), String> {
        let record = match self.store.get_session(&delivery.session_id).await {
            Ok(Some(record)) => record,
            Ok(None) => return Err("the session vanished".into()),
            Err(err) => return Err(format!("store: {err}")),
        };
        let now = SystemTime::now();
        let body = serde_json::json!({
            "type": "session.finished",
            "timestamp": rfc3339(now),
            "data": record_json(&record),
        })
        .to_string();
        let timestamp = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or_default();
        let signature = signatures(
            &self.secrets,
            &delivery.webhook_id,
            timestamp,
            body.as_bytes(),
        );
        let sent = self
            .client
            .post(&self.target)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let result = match sent {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("HTTP {}", response.status().as_u16())),
            Err(err) if err.is_timeout() => {
                Err(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()))
            }
            Err(err) if err.is_connect() => Err("cannot connect".into()),
            Err(_) => Err("the request failed".into()),
        };
        tracing::debug!(session = %delivery.session_id, attempt = delivery.attempts + 1, ok = result.is_ok(), "delivery attempt");
        result
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
