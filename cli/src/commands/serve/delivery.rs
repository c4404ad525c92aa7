//! The delivery worker: each finished session's record POSTed to the lender's back end, signed
//! per Standard Webhooks with a webhook-id stable across retries, retried on the schedule with
//! jitter, then given up. Claims come from the store's outbox, so a delivery pending at a crash
//! is made after the restart, and in a fleet each attempt is made by one replica.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bankconnect_core::{DeliverySchedule, JitterRng};
use bankconnect_store::{Attempt, DueDelivery, Store};
use bankconnect_webhook_verify::WebhookSecret;
use tokio::sync::{watch, Notify};

use super::metrics::{label, Metrics};
use super::record::{record_json, rfc3339};

/// Longest a delivery attempt may take.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a claimed delivery is this worker's before another may take it over.
const CLAIM_FOR: Duration = Duration::from_secs(60);
/// Deliveries attempted at once.
const BATCH: usize = 16;
/// How often due retries are looked for when nothing wakes the worker.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// The delivery worker's settings.
pub(crate) struct Delivery {
    pub(crate) store: Store,
    pub(crate) replica: String,
    pub(crate) target: String,
    pub(crate) secret: WebhookSecret,
    /// When to retry (its first delay is applied when the session finishes).
    pub(crate) schedule: DeliverySchedule,
    pub(crate) client: reqwest::Client,
    pub(crate) wake: Arc<Notify>,
    pub(crate) metrics: Arc<Metrics>,
}

impl Delivery {
    pub(crate) async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut rng = JitterRng::new(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7),
        );
        loop {
            if *shutdown.borrow() {
                return;
            }
            let due = match self
                .store
                .claim_deliveries(&self.replica, SystemTime::now(), CLAIM_FOR, BATCH)
                .await
            {
                Ok(due) => due,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot claim deliveries");
                    Vec::new()
                }
            };
            if due.is_empty() {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                }
                continue;
            }
            let attempts = due.into_iter().map(|delivery| self.attempt(delivery));
            let results = futures_util::future::join_all(attempts).await;
            for (delivery, result) in results {
                let attempt = self.next_step(&delivery, result, &mut rng);
                let kind = match &attempt {
                    Attempt::Delivered => "delivered",
                    Attempt::GaveUp { .. } => "given_up",
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
    async fn attempt(&self, delivery: DueDelivery) -> (DueDelivery, Result<(), String>) {
        let record = match self.store.get_session(&delivery.session_id).await {
            Ok(Some(record)) => record,
            Ok(None) => return (delivery, Err("the session vanished".into())),
            Err(err) => return (delivery, Err(format!("store: {err}"))),
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
        let signature = bankconnect_webhook_verify::sign_standard(
            &self.secret,
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
        (delivery, result)
    }
}
