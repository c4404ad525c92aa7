//! The lender's back end: verifies each delivery's signature, answers 5xx at random, and hangs
//! past the attempt timeout on a few attempts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use serde_json::Value;

use crate::dice::Dice;

/// What the delivery receiver saw.
#[derive(Default)]
pub(crate) struct Deliveries {
    /// Verified deliveries answered 2xx, by session: (webhook-id, outcome).
    pub(crate) accepted: HashMap<String, Vec<(String, Value)>>,
    /// Attempts answered 5xx on purpose.
    pub(crate) refused: u64,
    /// Deliveries whose signature did not verify.
    pub(crate) bad_signatures: u64,
    /// Attempts left hanging past the attempt timeout on purpose.
    pub(crate) hung: u64,
}

pub(crate) struct Receiving {
    pub(crate) deliveries: Mutex<Deliveries>,
    pub(crate) dice: Arc<Dice>,
    pub(crate) auth: bankconnect_webhook_verify::Authenticator,
}

pub(crate) async fn receive(
    State(receiving): State<Arc<Receiving>>,
    request: Request,
) -> StatusCode {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 8 << 20).await else {
        return StatusCode::BAD_REQUEST;
    };
    if receiving.dice.chance(0.2) {
        receiving.deliveries.lock().unwrap().refused += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if receiving.dice.chance(0.02) {
        // A slow back end: past the 15 s attempt timeout, so the attempt fails and is retried;
        // other deliveries must go on meanwhile.
        receiving.deliveries.lock().unwrap().hung += 1;
        tokio::time::sleep(Duration::from_secs(20)).await;
        return StatusCode::OK;
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let verified = receiving.auth.verify(&parts.headers, &body, now);
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let mut deliveries = receiving.deliveries.lock().unwrap();
    match (verified, parsed) {
        (Ok(Some(webhook_id)), Some(value)) => {
            let session = value["data"]["session_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            deliveries
                .accepted
                .entry(session)
                .or_default()
                .push((webhook_id, value["data"]["outcome"].clone()));
            StatusCode::OK
        }
        _ => {
            deliveries.bad_signatures += 1;
            StatusCode::BAD_REQUEST
        }
    }
}

pub(crate) async fn serve_on(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}
