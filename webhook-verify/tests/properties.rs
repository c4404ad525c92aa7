//! Fuzz-style properties: no input makes parsing, verification or the receiver panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bankconnect_webhook_verify::{Authenticator, Limits, Receiver, ReceiverConfig, WebhookEvent};
use http::{HeaderMap, HeaderValue, Method};
use proptest::prelude::*;

const SEEDS: &[&[u8]] = &[
    include_bytes!("fixtures/webhook_enrichment_completed.json"),
    include_bytes!("fixtures/webhook_enrichment_failed.json"),
    include_bytes!("fixtures/webhook_enrichment_incomplete_dates.json"),
    include_bytes!("fixtures/webhook_enrichment_incomplete_months.json"),
    include_bytes!("fixtures/webhook_enrichment_newer_completed.json"),
    include_bytes!("fixtures/webhook_legacy_entity.json"),
    include_bytes!("fixtures/webhook_upload_completed.json"),
];

/// A fixture with some bytes replaced, removed or inserted.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        0..SEEDS.len(),
        proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..8),
    )
        .prop_map(|(seed, edits)| {
            let mut body = SEEDS[seed].to_vec();
            for (at, byte, op) in edits {
                if body.is_empty() {
                    body.push(byte);
                    continue;
                }
                let at = at % body.len();
                match op {
                    0 => body[at] = byte,
                    1 => {
                        body.remove(at);
                    }
                    _ => body.insert(at, byte),
                }
            }
            body
        })
}

/// Cases per property: the default, or `PROPTEST_CASES` when set (`cargo xtask fuzz` raises it).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(3000)))]

    #[test]
    fn parsing_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = WebhookEvent::parse(&body, &Limits::default());
    }

    #[test]
    fn parsing_never_panics_on_mutated_fixtures(body in mutated()) {
        if let Ok(event) = WebhookEvent::parse(&body, &Limits::default()) {
            let _ = event.to_json(false);
            let _ = event.hint();
        }
    }

    #[test]
    fn signature_headers_never_panic(
        id in "\\PC{0,40}",
        timestamp in prop_oneof!["[0-9]{0,25}", "-?[0-9]{1,20}", "\\PC{0,30}"],
        signature in prop_oneof!["(v1,[A-Za-z0-9+/=]{0,60} ?){0,5}", "\\PC{0,200}"],
        now in any::<i64>(),
    ) {
        let auth = Authenticator::standard_webhooks(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]).unwrap();
        let mut headers = HeaderMap::new();
        for (name, value) in [("webhook-id", &id), ("webhook-timestamp", &timestamp), ("webhook-signature", &signature)] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
        let _ = auth.verify(&headers, b"{}", now);
    }

    #[test]
    fn receiver_never_panics(body in mutated(), content_type in prop_oneof![Just("application/json".to_string()), Just("text/plain".to_string()), "\\PC{0,20}"]) {
        let receiver = Receiver::new(ReceiverConfig::default());
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&content_type) {
            headers.insert("content-type", value);
        }
        let reception = receiver.receive(&Method::POST, "/", &headers, &body[..], 0);
        prop_assert!([200, 400, 413, 415].contains(&reception.status().as_u16()));
    }
}
