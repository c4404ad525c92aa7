//! Delivering ENRICHMENT_NOTIFICATION webhooks to the registered URL, as FinBox would (optionally
//! signed, duplicated or delayed), recording every attempt.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bankconnect_webhook_verify::{sign_standard, WebhookSecret};

use crate::responses::enrichment_body;
use crate::scenario::SessionScript;
use crate::state::{SimState, WebhookAttempt};

/// Schedules the webhook of a session that just completed, if one is registered and due.
pub(crate) fn schedule(state: &Arc<SimState>, script: &SessionScript) {
    let registration = state.lock().registration.clone();
    let Some(registration) = registration else {
        return;
    };
    if !script.webhook.send {
        return;
    }
    // Mode 0 notifies net-banking sessions only.
    let net_banking = script
        .statements
        .iter()
        .any(|s| s.source.eq_ignore_ascii_case("online"));
    if registration.webhook_mode == 0 && !net_banking {
        return;
    }
    let body = match serde_json::to_vec(&enrichment_body(script)) {
        Ok(body) => body,
        Err(_) => return,
    };
    let deliveries = if script.webhook.duplicate { 2 } else { 1 };
    let delay = Duration::from_millis(script.webhook.delay_ms);
    let state = Arc::clone(state);
    let session_id = script.session_id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        for delivery in 1..=deliveries {
            deliver(
                &state,
                &registration.webhook_url,
                &session_id,
                &body,
                delivery,
            )
            .await;
        }
    });
}

async fn deliver(state: &SimState, url: &str, session_id: &str, body: &[u8], delivery: u32) {
    let secret = state
        .webhooks
        .signing_secret
        .as_deref()
        .and_then(|s| WebhookSecret::standard(s).ok());
    let message_id = format!("msg_{session_id}");
    for attempt in 1..=state.webhooks.retries.saturating_add(1) {
        let mut request = state
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(secret) = &secret {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                .unwrap_or_default();
            request = request
                .header("webhook-id", &message_id)
                .header("webhook-timestamp", now.to_string())
                .header(
                    "webhook-signature",
                    sign_standard(secret, &message_id, now, body),
                );
        }
        let (status, error) = match request.send().await {
            Ok(response) => (Some(response.status().as_u16()), None),
            Err(err) => (None, Some(describe(&err))),
        };
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        state.lock().attempts.push(WebhookAttempt {
            session_id: session_id.to_owned(),
            url: url.to_owned(),
            at_ms: state.since_start(),
            delivery,
            attempt,
            status,
            error,
        });
        if ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
    }
}

fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connect"
    } else {
        "request"
    };
    format!("{kind} error: {err}")
}
