//! The webhook receiver under load against a bare axum handler answering 200, side by side.
//!
//! Both serve on loopback in the same runtime; the same client load (C concurrent connections,
//! M POSTs of a real ENRICHMENT_NOTIFICATION each) hits one then the other, alternately. Ours
//! bounds, parses strictly, extracts detail and dedupes every body; the baseline does nothing.
//! Reports time per request (lower is better) as `bench NAME: ours=X baseline=Y unit=us ratio=R`.
//!
//! Run: `cargo bench -p bankconnect-cli --bench receiver` (`-- --quick` for a short run).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bankconnect_webhook_verify::{Receiver, ReceiverConfig};

async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn body(i: usize) -> Vec<u8> {
    format!(
        r#"{{"session_id": "sess-{i}", "event_name": "ENRICHMENT_NOTIFICATION", "insights_available": true,
        "accounts": [{{"bank_name": "sbi", "account_id": "acct-{i}", "account_status": "failed", "error_code": "INCOMPLETE_MONTHS",
        "error_message": "Insufficient data to generate report. There are no transactions for Nov 2023, Dec 2023",
        "name": "Holder", "account_category": "individual", "attempt_types": ["PDF"]}}]}}"#
    )
    .into_bytes()
}

async fn load(addr: SocketAddr, requests: usize, concurrency: usize) -> f64 {
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new((0..requests).map(body).collect());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let bodies = Arc::clone(&bodies);
        tasks.spawn(async move {
            let client = reqwest::Client::new();
            for i in (worker..bodies.len()).step_by(concurrency) {
                let status = client
                    .post(format!("http://{addr}/"))
                    .header("content-type", "application/json")
                    .body(bodies[i].clone())
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, 200);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    started.elapsed().as_secs_f64() * 1e6 / requests as f64
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let requests = if quick { 3_000 } else { 20_000 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let receiver = Arc::new(Receiver::new(ReceiverConfig::default()));
        let ours = serve(bankconnect_webhook_verify::axum_handler::router(receiver, |_| {})).await;
        let bare = serve(axum::Router::new().fallback(|_body: axum::body::Bytes| async { http::StatusCode::OK })).await;
        let (mut best_ours, mut best_bare) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..3 {
            best_ours = best_ours.min(load(ours, requests, 8).await);
            best_bare = best_bare.min(load(bare, requests, 8).await);
        }
        println!("receiver: requests={requests} concurrency=8");
        println!(
            "bench webhook_receiver_per_request: ours={best_ours:.1} baseline={best_bare:.1} unit=us ratio={:.2}",
            best_ours / best_bare
        );
    });
}
