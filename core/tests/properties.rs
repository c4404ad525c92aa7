//! Properties: the classifier never panics; reports survive a serialize → parse round trip.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bankconnect_core::{classify_progress, Classified};
use bankconnect_core::{
    ProgressReport, SessionId, SessionProgress, Source, StageStatus, StatementProgress,
};
use proptest::prelude::*;

fn upstream_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("completed".to_string()),
        Just("processing".to_string()),
        Just("failed".to_string()),
        Just("PDF".to_string()),
        Just("aa".to_string()),
        "[a-zA-Z_ ]{1,12}",
    ]
}

fn stage() -> impl Strategy<Value = Option<StageStatus>> {
    proptest::option::of(upstream_text().prop_map(|t| StageStatus::parse(&t)))
}

fn statement() -> impl Strategy<Value = StatementProgress> {
    (
        proptest::option::of("[a-f0-9-]{1,36}"),
        proptest::option::of(upstream_text().prop_map(|t| Source::parse(&t))),
        stage(),
        stage(),
        stage(),
        stage(),
        proptest::option::of("\\PC{1,40}"),
    )
        .prop_map(
            |(statement_id, source, identity, transaction, processing, fraud, message)| {
                StatementProgress {
                    statement_id,
                    source,
                    identity_status: identity,
                    transaction_status: transaction,
                    processing_status: processing,
                    fraud_status: fraud,
                    message,
                }
            },
        )
}

fn report() -> impl Strategy<Value = ProgressReport> {
    (
        "[a-zA-Z0-9_-]{1,40}",
        upstream_text(),
        proptest::collection::vec(statement(), 0..5),
    )
        .prop_map(|(id, progress, statements)| ProgressReport {
            session_id: SessionId::new(id).unwrap(),
            session_progress: SessionProgress::parse(&progress),
            statements,
        })
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[0-9]{0,30}".prop_map(String::into_bytes),
        Just(b"Sun, 06 Nov 1994 08:49:37 GMT".to_vec()),
        proptest::collection::vec(32u8..127, 0..40),
    ]
}

/// Cases per property: the default, or `PROPTEST_CASES` when set (`cargo xtask fuzz` raises it).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2000)))]

    #[test]
    fn classifier_never_panics(
        status in 100u16..1000,
        body in proptest::collection::vec(any::<u8>(), 0..300),
        retry_after in proptest::option::of(header_value()),
        date in proptest::option::of(header_value()),
    ) {
        let mut builder = http::Response::builder().status(status);
        if let Some(value) = retry_after {
            builder = builder.header("retry-after", value);
        }
        if let Some(value) = date {
            builder = builder.header("date", value);
        }
        let response = builder.body(body).unwrap();
        let _ = classify_progress(Ok(response));
    }

    #[test]
    fn classifier_never_panics_on_json_like_bodies(
        status in prop_oneof![Just(200u16), Just(400), Just(404), Just(429), Just(503)],
        body in r#"[{}\[\]":,a-z0-9 \\]{0,200}"#,
    ) {
        let response = http::Response::builder().status(status).body(body.into_bytes()).unwrap();
        let _ = classify_progress(Ok(response));
    }

    #[test]
    fn report_round_trip_is_lossless(report in report()) {
        let json = serde_json::to_vec(&report).unwrap();
        let back: ProgressReport = serde_json::from_slice(&json).unwrap();
        prop_assert_eq!(&back, &report);
        // Every value, known or unknown, is written back as an upstream string.
        let again = serde_json::to_vec(&back).unwrap();
        prop_assert_eq!(json, again);
    }

    #[test]
    fn upstream_shape_parses_like_the_normalized_one(report in report()) {
        let mut value = serde_json::to_value(&report).unwrap();
        let statements = value.as_object_mut().unwrap().remove("statements").unwrap();
        value.as_object_mut().unwrap().insert("progress".into(), statements);
        let body = serde_json::to_vec(&value).unwrap();
        let response = http::Response::builder().status(200).body(body).unwrap();
        match classify_progress(Ok(response)) {
            Classified::Ok(parsed) => prop_assert_eq!(parsed, report),
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
