//! Shared helpers for the state-machine tests: canned responses and a virtual-time driver.
#![allow(
    missing_docs,
    unreachable_pub,
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use bankconnect_core::{
    Action, Api, BaseUrl, Credentials, HttpResult, Input, Outcome, PollPolicy, SessionId,
    TrackedSession, TransportError, TransportErrorKind, WebhookHint,
};

pub fn api() -> Api {
    Api::new(
        BaseUrl::parse("http://127.0.0.1:9/bank-connect/v1").unwrap(),
        Credentials::new("key", "hash").unwrap(),
    )
}

pub fn sid(id: &str) -> SessionId {
    SessionId::new(id).unwrap()
}

pub fn json(status: u16, body: &str) -> HttpResult {
    Ok(http::Response::builder()
        .status(status)
        .body(body.as_bytes().to_vec())
        .unwrap())
}

pub fn progress(session: &str, state: &str, stage: &str) -> HttpResult {
    json(
        200,
        &format!(
            r#"{{"session_id": "{session}", "session_progress": "{state}", "progress": [
            {{"statement_id": "st-1", "source": "pdf", "message": null, "identity_status": "completed",
              "transaction_status": "{stage}", "processing_status": "{stage}", "fraud_status": "{stage}"}}]}}"#
        ),
    )
}

pub fn processing(session: &str) -> HttpResult {
    progress(session, "processing", "processing")
}

pub fn completed(session: &str) -> HttpResult {
    progress(session, "completed", "completed")
}

pub fn api_error(status: u16, code: &str) -> HttpResult {
    json(
        status,
        &format!(r#"{{"error": {{"code": "{code}", "message": "{code} happened"}}}}"#),
    )
}

pub fn status_with_retry_after(status: u16, retry_after: &str) -> HttpResult {
    Ok(http::Response::builder()
        .status(status)
        .header("retry-after", retry_after)
        .body(Vec::new())
        .unwrap())
}

pub fn timeout() -> HttpResult {
    Err(TransportError::new(
        TransportErrorKind::Timeout,
        "timed out",
    ))
}

pub fn session_status(
    session: &str,
    account_status: &str,
    code: &str,
    message: &str,
) -> HttpResult {
    json(
        200,
        &format!(
            r#"{{"session_id": "{session}", "accounts": [{{"bank_name": "sbi", "account_number": "XXXX1234",
            "account_id": "acc-1", "account_status": "{account_status}", "error_code": "{code}",
            "error_message": "{message}", "statements": [{{"statement_id": "st-1", "statement_status": "completed",
            "error_code": null, "error_message": null, "source": "pdf"}}]}}]}}"#
        ),
    )
}

pub fn hint(
    session: &str,
    account_status: &str,
    code: Option<&str>,
    message: Option<&str>,
) -> WebhookHint {
    WebhookHint {
        session_id: sid(session),
        event_name: Some("ENRICHMENT_NOTIFICATION".into()),
        accounts: vec![bankconnect_core::AccountResult::new(
            Some("acc-1".into()),
            Some("sbi".into()),
            Some(account_status.into()),
            code.map(Into::into),
            message.map(Into::into),
        )],
        authenticated: true,
    }
}

/// The same webhook as [`hint`], from an unauthenticated receiver.
pub fn unsigned_hint(
    session: &str,
    account_status: &str,
    code: Option<&str>,
    message: Option<&str>,
) -> WebhookHint {
    WebhookHint {
        authenticated: false,
        ..hint(session, account_status, code, message)
    }
}

/// One request as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub at: Duration,
    pub path: String,
}

impl Sent {
    pub fn is_progress(&self) -> bool {
        self.path.ends_with("/progress/")
    }
}

/// Drives a session in virtual time: `respond` answers each request (given its index among
/// requests and its path) with a result and a latency; `webhook_at` injects a webhook.
pub fn drive(
    mut session: TrackedSession,
    t0: Instant,
    mut respond: impl FnMut(usize, &str) -> (HttpResult, Duration),
    mut webhook: Option<(Duration, WebhookHint)>,
) -> (Outcome, Vec<Sent>) {
    let mut now = t0;
    let mut sent = Vec::new();
    for _ in 0..100_000 {
        if let Some((at, _)) = &webhook {
            if t0 + *at <= now {
                let (_, hint) = webhook.take().unwrap();
                session.handle_input(now, Input::Webhook(hint));
            }
        }
        match session.poll_action(now) {
            Action::Send(request) => {
                let path = request.uri().path().to_owned();
                assert_eq!(request.headers()["x-api-key"], "key");
                sent.push(Sent {
                    at: now - t0,
                    path: path.clone(),
                });
                let (result, latency) = respond(sent.len() - 1, &path);
                // A webhook may land while the request is in flight.
                if let Some((at, _)) = &webhook {
                    if t0 + *at < now + latency {
                        let at = t0 + *at;
                        let (_, hint) = webhook.take().unwrap();
                        session.handle_input(at.max(now), Input::Webhook(hint));
                    }
                }
                now += latency;
                session.handle_input(now, Input::Response(result));
            }
            Action::WaitUntil(at) => {
                assert!(
                    at > now,
                    "WaitUntil must move time forward ({at:?} <= {now:?})"
                );
                let wake = match &webhook {
                    Some((w, _)) if t0 + *w < at => t0 + *w,
                    _ => at,
                };
                now = wake.max(now);
            }
            Action::AwaitResponse => panic!("AwaitResponse with nothing in flight"),
            Action::Done(outcome) => {
                assert!(matches!(session.poll_action(now), Action::Finished));
                return (*outcome, sent);
            }
            Action::Finished => panic!("Finished before Done"),
        }
    }
    panic!("livelock: the session never ended");
}

pub fn track(policy: PollPolicy, id: &str, t0: Instant, seed: u64) -> TrackedSession {
    TrackedSession::new(api(), policy, sid(id), t0, seed).unwrap()
}

pub const MS: Duration = Duration::from_millis(1);
pub const LATENCY: Duration = Duration::from_millis(80);
