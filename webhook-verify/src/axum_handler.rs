//! An axum integration over the framework-free [`Receiver`] (feature `axum`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;
use tokio::sync::Semaphore;

pub use crate::listener::{serve_with, ListenerLimits};
use crate::receiver::{Receiver, Reception, Rejection};

/// A router that answers every request with the receiver's verdict, and hands each accepted or
/// duplicate [`Reception`] to `on_reception` (after the status is decided, before it is sent).
///
/// The body is read through a limit of `max_body + 1` bytes, so an oversized or endless body is
/// refused with 413 without being buffered; all bodies being read at once share
/// [`MAX_BUFFERED_BODIES`], beyond which a request is answered 503.
///
/// `on_reception` runs on the request's task before the answer is sent: keep it short and never
/// block in it (hand slow work such as printing to a queue).
///
/// The router is generic over the state `S` of the app it is merged or nested into.
pub fn router<S, F>(receiver: Arc<Receiver>, on_reception: F) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    F: Fn(&Reception) + Send + Sync + 'static,
{
    let on_reception = Arc::new(on_reception);
    let budget = Arc::new(Semaphore::new(budget_units(MAX_BUFFERED_BODIES)));
    Router::new().fallback(move |request: Request| {
        let receiver = Arc::clone(&receiver);
        let on_reception = Arc::clone(&on_reception);
        let budget = Arc::clone(&budget);
        async move {
            let (reception, _) = receive_within(&receiver, request, &budget).await;
            on_reception(&reception);
            respond(&reception)
        }
    })
}

/// Most body bytes buffered at once by one router, over all requests (64 MiB), so many slow
/// senders cannot multiply memory.
pub const MAX_BUFFERED_BODIES: usize = 64 * 1024 * 1024;
/// Most connections served at once by [`serve`]; a client beyond them is answered 503 at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// The budget counts KiB, which keeps it within a semaphore's permits.
const BUDGET_UNIT: usize = 1024;

fn budget_units(bytes: usize) -> usize {
    bytes.div_ceil(BUDGET_UNIT)
}

/// Longest a client may take to send a request's head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client may take to send a body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until the task is dropped, within [`ListenerLimits`]'s
/// defaults ([`HEAD_TIMEOUT`] for the request head, which also closes idle connections;
/// [`MAX_CONNECTIONS`]; the handler bounds the body by [`BODY_TIMEOUT`]), so slow or idle
/// clients cannot hold connections open. [`serve_with`] takes limits and a graceful stop.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) {
    serve_with(
        listener,
        router,
        ListenerLimits::default(),
        std::future::pending(),
        Duration::ZERO,
    )
    .await;
}

/// Runs one request through the receiver.
pub async fn receive(receiver: &Receiver, request: Request) -> Reception {
    let budget = Semaphore::new(budget_units(
        receiver.config().limits.max_body.saturating_add(1),
    ));
    receive_within(receiver, request, &budget).await.0
}

/// Runs one request through the receiver, also handing back the body as read (empty when it
/// was refused before reading), e.g. to find the session a malformed but authenticated webhook
/// names ([`Receiver::named_session`]).
pub async fn receive_keeping_body(receiver: &Receiver, request: Request) -> (Reception, Vec<u8>) {
    let budget = Semaphore::new(budget_units(
        receiver.config().limits.max_body.saturating_add(1),
    ));
    receive_within(receiver, request, &budget).await
}

/// Why a body could not be read whole.
enum BodyError {
    TooLarge,
    Unreadable(String),
    Overloaded,
}

/// Reads at most `limit + 1` bytes, taking each chunk's size from `budget` (given back when the
/// returned permit drops).
async fn read_body<'a>(
    mut body: Body,
    limit: usize,
    budget: &'a Semaphore,
) -> Result<(Vec<u8>, Option<tokio::sync::SemaphorePermit<'a>>), BodyError> {
    let mut bytes = Vec::new();
    let mut held: Option<tokio::sync::SemaphorePermit<'a>> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| BodyError::Unreadable(err.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // Trailers carry nothing a webhook needs.
        };
        let total = bytes.len().saturating_add(data.len());
        if total > limit {
            return Err(BodyError::TooLarge);
        }
        let needed =
            budget_units(total).saturating_sub(held.as_ref().map_or(0, |p| p.num_permits()));
        if needed > 0 {
            let more = u32::try_from(needed)
                .ok()
                .and_then(|n| budget.try_acquire_many(n).ok())
                .ok_or(BodyError::Overloaded)?;
            match &mut held {
                Some(permit) => permit.merge(more),
                None => held = Some(more),
            }
        }
        bytes.extend_from_slice(&data);
    }
    Ok((bytes, held))
}

async fn receive_within(
    receiver: &Receiver,
    request: Request,
    budget: &Semaphore,
) -> (Reception, Vec<u8>) {
    let (verified, bytes, now) = verify_within(receiver, request, budget).await;
    let reception = match verified {
        Ok(delivery) => receiver.receive_body_verified(delivery, now),
        Err(rejection) => Reception::Rejected(rejection),
    };
    (reception, bytes)
}

/// A memory budget for the bodies of one intake's requests in flight: beyond it, requests are
/// refused with 503 ([`Rejection::Overloaded`]) instead of multiplying memory.
#[derive(Debug)]
pub struct BodyBudget(Semaphore);

impl BodyBudget {
    /// A budget of `bytes` in all (e.g. [`MAX_BUFFERED_BODIES`]).
    pub fn new(bytes: usize) -> Self {
        Self(Semaphore::new(budget_units(bytes)))
    }

    /// Reads a body of at most `limit` bytes within this budget (shared with every other body
    /// read through it), for other endpoints of the same server; the bytes stay counted until
    /// the returned [`BudgetShare`] drops.
    pub async fn read(
        &self,
        body: Body,
        limit: usize,
    ) -> Result<(Vec<u8>, BudgetShare<'_>), BodyReadError> {
        match read_body(body, limit, &self.0).await {
            Ok((bytes, permit)) => Ok((bytes, BudgetShare(permit))),
            Err(BodyError::TooLarge) => Err(BodyReadError::TooLarge),
            Err(BodyError::Overloaded) => Err(BodyReadError::Overloaded),
            Err(BodyError::Unreadable(reason)) => Err(BodyReadError::Unreadable(reason)),
        }
    }
}

/// The part of a [`BodyBudget`] a body read holds; given back when dropped.
#[derive(Debug)]
pub struct BudgetShare<'a>(#[allow(dead_code)] Option<tokio::sync::SemaphorePermit<'a>>);

/// Why [`BodyBudget::read`] did not return a whole body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyReadError {
    /// Larger than the limit.
    #[error("the body is larger than the limit")]
    TooLarge,
    /// The budget is spent: answer 503.
    #[error("too many bodies in flight")]
    Overloaded,
    /// The body could not be read (a bad chunk, a connection closed early).
    #[error("the body could not be read: {0}")]
    Unreadable(String),
}

/// Runs one request through the receiver's checks, authentication and strict parsing, with
/// no dedupe (for an intake whose store dedupes on [`crate::Delivery::key`]), reading the body
/// within `budget`; hands back the body as read (empty when refused before reading).
pub async fn verify(
    receiver: &Receiver,
    request: Request,
    budget: &BodyBudget,
) -> (Result<crate::Delivery, Rejection>, Vec<u8>) {
    let (verified, bytes, _) = verify_within(receiver, request, &budget.0).await;
    (verified, bytes)
}

async fn verify_within(
    receiver: &Receiver,
    request: Request,
    budget: &Semaphore,
) -> (Result<crate::Delivery, Rejection>, Vec<u8>, i64) {
    let (parts, body) = request.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    let rejected = |rejection| (Err(rejection), Vec::new(), now);
    if let Some(rejection) = receiver.precheck(&parts.method, target, &parts.headers) {
        return rejected(rejection);
    }
    let limit = receiver.config().limits.max_body;
    let read = read_body(body, limit, budget);
    let (bytes, _permit) = match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(read)) => read,
        Ok(Err(BodyError::TooLarge)) => return rejected(Rejection::TooLarge { limit }),
        Ok(Err(BodyError::Overloaded)) => return rejected(Rejection::Overloaded),
        // A malformed or truncated body (a bad chunk, a connection closed early) is a bad request.
        Ok(Err(BodyError::Unreadable(reason))) => return rejected(Rejection::Unreadable(reason)),
        Err(_) => {
            return rejected(Rejection::Unreadable(format!(
                "the body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            )))
        }
    };
    let verified = receiver.verify_body(&parts.headers, &bytes, now);
    (verified, bytes, now)
}

/// The HTTP answer for a reception: its status and a short JSON body.
pub fn respond(reception: &Reception) -> Response {
    let body = match reception {
        Reception::Accepted(_) => serde_json::json!({"status": "accepted"}),
        Reception::Duplicate(_) => serde_json::json!({"status": "duplicate"}),
        Reception::Rejected(rejection) => {
            serde_json::json!({"status": "rejected", "error": rejection.to_string()})
        }
    };
    let mut response = (reception.status(), body.to_string()).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
