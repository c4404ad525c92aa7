//! Webhook intake against its baselines, side by side in one run:
//! - strict parsing (`WebhookEvent::parse`: limits, duplicate keys, typed events, error detail)
//!   against `serde_json::from_slice::<Value>` on the same payloads;
//! - Standard Webhooks verification against the `standardwebhooks` crate, same secret and message.
//!
//! Run: `cargo bench -p bankconnect-webhook-verify --bench intake` (`-- --quick` for a short run).
//! Prints `bench NAME: ours=X baseline=Y unit=ns ratio=R` lines (lower is better).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::hint::black_box;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bankconnect_webhook_verify::{
    sign_standard, Authenticator, Limits, WebhookEvent, WebhookSecret,
};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn payloads() -> Vec<(&'static str, Vec<u8>)> {
    let small =
        include_bytes!("../tests/fixtures/webhook_enrichment_incomplete_months.json").to_vec();
    let newer =
        include_bytes!("../tests/fixtures/webhook_enrichment_newer_completed.json").to_vec();
    let upload = include_bytes!("../tests/fixtures/webhook_upload_completed.json").to_vec();
    let accounts: Vec<String> = (0..200)
        .map(|i| {
            format!(
                r#"{{"bank_name": "sbi", "account_id": "acct-{i}", "account_status": "failed", "error_code": "INCOMPLETE_MONTHS", "error_message": "Insufficient data to generate report. There are no transactions for Nov 2023, Dec 2023", "name": "Holder {i}", "account_category": "individual", "attempt_types": ["PDF"]}}"#
            )
        })
        .collect();
    let large = format!(
        r#"{{"session_id": "5f0c5e52-1d8e-4c1a-9a53-0c8f1d2b7e11", "event_name": "ENRICHMENT_NOTIFICATION", "insights_available": false, "accounts": [{}]}}"#,
        accounts.join(",")
    )
    .into_bytes();
    vec![
        ("small", small),
        ("newer", newer),
        ("upload", upload),
        ("200_accounts", large),
    ]
}

/// Nanoseconds per call of `f` over `iterations` calls.
fn once(iterations: u32, f: &mut impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..iterations {
        f();
    }
    started.elapsed().as_nanos() as f64 / f64::from(iterations)
}

/// Best of 7 alternating rounds of each side, so drift on a shared machine hits both alike.
fn compare(iterations: u32, mut ours: impl FnMut(), mut baseline: impl FnMut()) -> (f64, f64) {
    let (mut best_ours, mut best_baseline) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..7 {
        best_ours = best_ours.min(once(iterations, &mut ours));
        best_baseline = best_baseline.min(once(iterations, &mut baseline));
    }
    (best_ours, best_baseline)
}

fn line(name: &str, ours: f64, baseline: f64) {
    println!(
        "bench {name}: ours={ours:.0} baseline={baseline:.0} unit=ns ratio={:.2}",
        ours / baseline
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let limits = Limits::default();
    for (name, body) in payloads() {
        let iterations =
            if quick { 2_000 } else { 20_000 } / if name == "200_accounts" { 50 } else { 1 };
        let (ours, baseline) = compare(
            iterations,
            || {
                black_box(WebhookEvent::parse(black_box(&body), &limits).unwrap());
            },
            || {
                black_box(serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap());
            },
        );
        line(&format!("webhook_parse_{name}"), ours, baseline);
    }

    let key = WebhookSecret::standard(SECRET).unwrap();
    let ours_auth = Authenticator::standard_webhooks(&[SECRET]).unwrap();
    let theirs = standardwebhooks::Webhook::new(SECRET).unwrap();
    for (name, body) in payloads() {
        // Signed now, per payload: the baseline checks the timestamp against its own clock
        // (5 minutes' tolerance), so a long run must not reuse an old one.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let signature = sign_standard(&key, "msg_bench", now, &body);
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", "msg_bench".parse().unwrap());
        headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        assert!(
            theirs.verify(&body, &headers).is_ok(),
            "the baseline must accept the same message"
        );
        let iterations =
            if quick { 5_000 } else { 50_000 } / if name == "200_accounts" { 20 } else { 1 };
        let (ours, baseline) = compare(
            iterations,
            || {
                black_box(
                    ours_auth
                        .verify(black_box(&headers), black_box(&body), now)
                        .unwrap(),
                );
            },
            || {
                theirs
                    .verify(black_box(&body), black_box(&headers))
                    .unwrap();
            },
        );
        line(&format!("webhook_verify_{name}"), ours, baseline);
    }
}
