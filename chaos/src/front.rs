//! The webhook front, playing the load balancer: each of FinBox's webhooks goes to a random live
//! replica; some are lost, some duplicated to two replicas, some delayed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;

use crate::dice::Dice;
use crate::fleet::Fleet;

/// The webhook front: FinBox's webhook lands on a random live replica; some are lost, some
/// duplicated to two replicas, some delayed.
pub(crate) struct Front {
    pub(crate) fleet: Arc<Fleet>,
    pub(crate) dice: Arc<Dice>,
    pub(crate) lost: AtomicU64,
    pub(crate) duplicated: AtomicU64,
}

pub(crate) async fn front(State(front): State<Arc<Front>>, request: Request) -> StatusCode {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
        return StatusCode::BAD_REQUEST;
    };
    let dice = &front.dice;
    if dice.chance(0.1) {
        front.lost.fetch_add(1, Ordering::Relaxed);
        return StatusCode::OK; // FinBox believes it delivered; polling must find the end.
    }
    let copies = if dice.chance(0.1) {
        front.duplicated.fetch_add(1, Ordering::Relaxed);
        2
    } else {
        1
    };
    if dice.chance(0.1) {
        tokio::time::sleep(Duration::from_millis(dice.below(1500))).await;
    }
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let mut status = StatusCode::BAD_GATEWAY;
    for _ in 0..copies {
        let live = front.fleet.live();
        if live.is_empty() {
            break;
        }
        let port = live[dice.below(live.len() as u64) as usize];
        if let Ok(answer) = front
            .fleet
            .http
            .post(format!("http://127.0.0.1:{port}{target}"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
        {
            status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(status);
        }
    }
    status
}
