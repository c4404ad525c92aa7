//! The operators' actions, one code path each for the API and the console: what they commit,
//! what they wake, what they count and log, and the errors they answer.

use std::time::SystemTime;

use axum::http::StatusCode;
use bankconnect_core::SessionId;
use bankconnect_store::{
    DeliveryOverview, DeliveryState, PollRequest, Recovered, Redelivery, SessionRecord,
    SessionState,
};

use crate::api::App;
use crate::error::ApiError;
use crate::tracking::{polled, Command};

/// 409 with its code.
pub(crate) fn conflict(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

/// Redelivers a finished session's outcome (same `webhook-id`, due now).
pub(crate) async fn redeliver(
    app: &App,
    id: &SessionId,
    force: bool,
) -> Result<SessionRecord, ApiError> {
    if app.delivery_target.is_none() {
        return Err(conflict(
            "NO_DELIVERY_TARGET",
            "serve delivers nowhere (no --deliver-to): nothing to redeliver".into(),
        ));
    }
    let base = crate::delivery::webhook_base(id);
    match app
        .store
        .redeliver(id, force, &base, SystemTime::now())
        .await
    {
        Ok(Redelivery::Requeued(record)) => {
            app.metrics.operator_action("redeliver");
            tracing::info!(session = %id, force, "redelivery asked");
            app.delivery_wake.notify_one();
            Ok(*record)
        }
        Ok(Redelivery::NotFinished) => Err(conflict(
            "NOT_FINISHED",
            format!("session {id} has no outcome to deliver (tracking or cancelled)"),
        )),
        Ok(Redelivery::AlreadyDelivered) => Err(conflict(
            "ALREADY_DELIVERED",
            format!(
                "session {id} was delivered already: send {{\"force\": true}} to deliver it again"
            ),
        )),
        Ok(_) => Err(ApiError::not_found(format!("no session {id}"))),
        Err(err) => Err(ApiError::store(&err)),
    }
}

/// Asks for a tracking session to be polled now (here, or by whichever replica holds it).
pub(crate) async fn poll_now(app: &App, id: &SessionId) -> Result<(), ApiError> {
    match app.store.request_poll(id, SystemTime::now()).await {
        Ok(PollRequest::Requested(_)) => {
            app.metrics.operator_action("poll");
            // Polled here: the tracker is told at once; elsewhere the store's notice wakes
            // the replica holding it. A hint to poll, never a verdict.
            if polled(&app.polled).contains(id) {
                let _ = app.commands.send(Command::PollNow(vec![id.clone()])).await;
            }
            Ok(())
        }
        Ok(PollRequest::NotTracking) => Err(conflict(
            "NOT_TRACKING",
            format!("session {id} is not being tracked"),
        )),
        Ok(_) => Err(ApiError::not_found(format!("no session {id}"))),
        Err(err) => Err(ApiError::store(&err)),
    }
}

/// Cancels a tracking session (no outcome, no delivery); a cancelled one answers its record.
pub(crate) async fn cancel(app: &App, id: &SessionId) -> Result<SessionRecord, ApiError> {
    match app.store.cancel_session(id, SystemTime::now()).await {
        Ok(Some(record)) if record.state == SessionState::Finished => Err(conflict(
            "NOT_TRACKING",
            format!("session {id} has finished: nothing to cancel"),
        )),
        Ok(Some(record)) => {
            let _ = app.commands.send(Command::Untrack(vec![id.clone()])).await;
            Ok(record)
        }
        Ok(None) => Err(ApiError::not_found(format!("no session {id}"))),
        Err(err) => Err(ApiError::store(&err)),
    }
}

/// Pauses or resumes delivery for the whole fleet; the overview after.
pub(crate) async fn switch_delivery(app: &App, paused: bool) -> Result<DeliveryOverview, ApiError> {
    app.store
        .set_delivery_paused(paused)
        .await
        .map_err(|err| ApiError::store(&err))?;
    let action = if paused { "pause" } else { "resume" };
    app.metrics.operator_action(action);
    tracing::info!(action, "delivery switched");
    if !paused {
        // What is due goes at once (other replicas find it within their idle poll).
        app.delivery_wake.notify_one();
    }
    delivery_overview(app).await
}

/// The delivery overview (and the store-wide gauges refreshed from it).
pub(crate) async fn delivery_overview(app: &App) -> Result<DeliveryOverview, ApiError> {
    let overview = app
        .store
        .delivery_overview()
        .await
        .map_err(|err| ApiError::store(&err))?;
    app.metrics.delivery_seen(&overview, SystemTime::now());
    Ok(overview)
}

/// Requeues (or on a dry run counts) every delivery in `states` whose outcome was committed in
/// `[since, until)`, checked as the API documents.
pub(crate) async fn recover(
    app: &App,
    since: SystemTime,
    until: SystemTime,
    states: &[DeliveryState],
    dry_run: bool,
) -> Result<Recovered, ApiError> {
    let now = SystemTime::now();
    if until < since {
        return Err(ApiError::invalid("bad until: it is before since"));
    }
    if let Some(retention) = app.retention {
        if now.duration_since(since).is_ok_and(|ago| ago > retention) {
            return Err(ApiError::invalid(format!(
                "bad since: further back than the retention ({}), whose outcomes may be gone",
                humantime::format_duration(retention)
            )));
        }
    }
    if app.delivery_target.is_none() {
        return Err(conflict(
            "NO_DELIVERY_TARGET",
            "serve delivers nowhere (no --deliver-to): nothing to recover".into(),
        ));
    }
    if states.is_empty() {
        return Err(ApiError::invalid("bad states: name at least one"));
    }
    let recovered = app
        .store
        .recover_deliveries(since, until, states, dry_run, now)
        .await
        .map_err(|err| ApiError::store(&err))?;
    if !dry_run {
        app.metrics.operator_action("recover");
        tracing::info!(matched = recovered.matched, "deliveries recovered");
        app.delivery_wake.notify_one();
    }
    Ok(recovered)
}
