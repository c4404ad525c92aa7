//! Classification of every documented body shape, fixture and error code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use bankconnect_core::{classify_progress, classify_update_webhook, Classified};
use bankconnect_core::{
    ApiErrorCode, SessionProgress, Source, StageStatus, TransientFailure, TransportError,
    TransportErrorKind,
};

fn response(status: u16, body: &[u8]) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .body(body.to_vec())
        .unwrap()
}

fn with_header(status: u16, name: &str, value: &str, body: &[u8]) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header(name, value)
        .body(body.to_vec())
        .unwrap()
}

const PROCESSING: &[u8] = include_bytes!("fixtures/progress_processing.json");
const COMPLETED: &[u8] = include_bytes!("fixtures/progress_completed.json");

#[test]
fn progress_fixtures() {
    let report = classify_progress(Ok(response(200, PROCESSING)))
        .ok()
        .unwrap();
    assert_eq!(
        report.session_id.as_str(),
        "bfb98ac5-7224-401b-a643-175235856187"
    );
    assert_eq!(report.session_progress, SessionProgress::Processing);
    assert!(!report.is_completed());
    assert_eq!(report.statements.len(), 2);
    let second = &report.statements[1];
    assert_eq!(second.source, Some(Source::Aa));
    assert_eq!(second.transaction_status, Some(StageStatus::Failed));
    assert_eq!(
        second.message.as_deref(),
        Some("Statement is password protected")
    );
    assert!(report.has_failed_stage());
    assert_eq!(report.stage_counts(), (6, 8));

    let report = classify_progress(Ok(response(200, COMPLETED)))
        .ok()
        .unwrap();
    assert!(report.is_completed());
    assert!(!report.has_failed_stage());
    assert_eq!(report.stage_counts(), (8, 8));
    assert_eq!(report.statements[0].message, None);
}

#[test]
fn progress_serializes_in_the_normalized_shape() {
    let report = classify_progress(Ok(response(200, PROCESSING)))
        .ok()
        .unwrap();
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["session_progress"], "processing");
    assert!(json.get("progress").is_none());
    let statement = &json["statements"][1];
    assert_eq!(
        statement["statement_id"],
        "bd90d1c9-7b1a-4300-9987-3c6c20bbe71d"
    );
    assert_eq!(statement["source"], "aa");
    assert_eq!(statement["processing_status"], "failed");
    assert_eq!(statement["message"], "Statement is password protected");
    assert!(json["statements"][0]["message"].is_null());
}

#[test]
fn progress_keeps_unknown_values_and_tolerates_blanks() {
    let body = br#"{"session_id": "s1", "session_progress": "queued", "extra": {"x": [1]},
        "progress": [{"statement_id": "st", "source": "PDF", "message": "",
                      "identity_status": "retrying", "transaction_status": null}]}"#;
    let report = classify_progress(Ok(response(200, body))).ok().unwrap();
    assert_eq!(
        report.session_progress,
        SessionProgress::Other("queued".into())
    );
    let statement = &report.statements[0];
    assert_eq!(statement.source, Some(Source::Pdf));
    assert_eq!(statement.message, None);
    assert_eq!(
        statement.identity_status,
        Some(StageStatus::Other("retrying".into()))
    );
    assert_eq!(statement.transaction_status, None);
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains(r#""session_progress":"queued""#));
    assert!(json.contains(r#""identity_status":"retrying""#));

    let no_list = br#"{"session_id": "s1", "session_progress": "processing", "progress": null}"#;
    let report = classify_progress(Ok(response(200, no_list))).ok().unwrap();
    assert!(report.statements.is_empty());
}

fn api_error(status: u16, body: &[u8]) -> bankconnect_core::ApiError {
    match classify_progress(Ok(response(status, body))) {
        Classified::Api(err) => err,
        other => panic!("expected an API error for {status} {body:?}, got {other:?}"),
    }
}

#[test]
fn every_documented_code_in_the_documented_envelope() {
    for (status, code, expected) in [
        (404, "SESSION_NOT_FOUND", ApiErrorCode::SessionNotFound),
        (
            400,
            "PROCESSING_NOT_REQUESTED",
            ApiErrorCode::ProcessingNotRequested,
        ),
        (410, "SESSION_DELETED", ApiErrorCode::SessionDeleted),
        (403, "ACCESS_DENIED", ApiErrorCode::AccessDenied),
        (401, "ACCESS_DENIED", ApiErrorCode::AccessDenied),
        (
            400,
            "PROCESSING_NOT_COMPLETED",
            ApiErrorCode::ProcessingNotCompleted,
        ),
        (
            409,
            "DUPLICATE_PROCESSING_REQUEST",
            ApiErrorCode::DuplicateProcessingRequest,
        ),
        (400, "KEY_REQUIRED", ApiErrorCode::KeyRequired),
        (
            418,
            "SOMETHING_NEW",
            ApiErrorCode::Other("SOMETHING_NEW".into()),
        ),
    ] {
        let body = format!(r#"{{"error": {{"code": "{code}", "message": "msg for {code}"}}}}"#);
        let err = api_error(status, body.as_bytes());
        assert_eq!(err.code, expected, "{code}");
        assert_eq!(err.code.as_str(), code);
        assert_eq!(err.http_status, status);
        assert_eq!(err.message, format!("msg for {code}"));
        assert_eq!(err.body, body.as_bytes());
        let json = serde_json::to_value(&err).unwrap();
        assert_eq!(json["code"], code);
        assert_eq!(json["http_status"], status);
        assert!(json.get("body").is_none());
    }
}

#[test]
fn error_fixtures() {
    let err = api_error(404, include_bytes!("fixtures/error_session_not_found.json"));
    assert_eq!(err.code, ApiErrorCode::SessionNotFound);
    assert_eq!(err.message, "The provided session ID is invalid");

    let err = api_error(401, include_bytes!("fixtures/error_detail_401.json"));
    assert_eq!(err.code, ApiErrorCode::AccessDenied);
    assert_eq!(err.message, "Authentication credentials were not provided.");
}

#[test]
fn codes_from_the_status_alone() {
    let html = b"<html><body><h1>403 Forbidden</h1></body></html>";
    for (status, body, expected) in [
        (403, &html[..], "ACCESS_DENIED"),
        (401, b"", "ACCESS_DENIED"),
        (404, b"", "SESSION_NOT_FOUND"),
        (404, b"<html>Not Found</html>", "SESSION_NOT_FOUND"),
        (410, b"   ", "SESSION_DELETED"),
        (409, b"", "DUPLICATE_PROCESSING_REQUEST"),
        (400, b"", "HTTP_400"),
        (400, b"[1, 2]", "HTTP_400"),
        (422, b"not json", "HTTP_422"),
        (302, b"", "HTTP_302"),
    ] {
        let err = api_error(status, body);
        assert_eq!(err.code.as_str(), expected, "{status} {body:?}");
        assert_eq!(err.http_status, status);
        assert!(
            err.message.contains(&format!("HTTP {status}")),
            "{}",
            err.message
        );
    }
    // A blank code in an error envelope falls back to the status too.
    let err = api_error(404, br#"{"error": {"code": "", "message": ""}}"#);
    assert_eq!(err.code, ApiErrorCode::SessionNotFound);
    assert!(err.message.contains("Not Found"));
    // Non-string details and codes are kept as text.
    let err = api_error(400, br#"{"detail": {"session_id": ["required"]}}"#);
    assert_eq!(err.message, r#"{"session_id":["required"]}"#);
    let err = api_error(400, br#"{"error": {"code": 7, "message": null}}"#);
    assert_eq!(err.code.as_str(), "7");
}

#[test]
fn transient_failures() {
    for status in [500, 502, 503, 504, 408, 599] {
        match classify_progress(Ok(response(status, b"<html>Bad Gateway</html>"))) {
            Classified::Transient(TransientFailure::ServerError { http_status, .. }) => {
                assert_eq!(http_status, status)
            }
            other => panic!("{status}: {other:?}"),
        }
    }
    // A 5xx carrying an error envelope is still transient.
    assert!(matches!(
        classify_progress(Ok(response(
            503,
            br#"{"error": {"code": "ACCESS_DENIED"}}"#
        ))),
        Classified::Transient(_)
    ));
    match classify_progress(Ok(with_header(429, "retry-after", "3", b""))) {
        Classified::Transient(failure) => {
            assert!(failure.is_rate_limited());
            assert_eq!(failure.retry_after(), Some(Duration::from_secs(3)));
        }
        other => panic!("{other:?}"),
    }
    match classify_progress(Ok(response(429, b"slow down"))) {
        Classified::Transient(failure) => assert_eq!(failure.retry_after(), None),
        other => panic!("{other:?}"),
    }
    match classify_progress(Ok(with_header(503, "Retry-After", "10", b""))) {
        Classified::Transient(failure) => {
            assert_eq!(failure.retry_after(), Some(Duration::from_secs(10)))
        }
        other => panic!("{other:?}"),
    }
    for kind in [
        TransportErrorKind::Connect,
        TransportErrorKind::Timeout,
        TransportErrorKind::Reset,
        TransportErrorKind::Other,
    ] {
        let err = TransportError::new(kind, "boom");
        assert_eq!(
            classify_progress(Err(err.clone())),
            Classified::Transient(TransientFailure::Transport(err))
        );
    }
}

#[test]
fn unparsable_success_bodies_are_transient() {
    let deep = format!(
        r#"{{"session_id": "s", "session_progress": "completed", "x": {}1{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    for body in [
        &b""[..],
        b"<html>OK</html>",
        b"{",
        br#"{"session_id": "s""#,
        b"[]",
        br#"["s", "completed", []]"#,
        br#"{"session_progress": "completed"}"#,
        br#"{"session_id": 5, "session_progress": "completed"}"#,
        br#"{"session_id": "s", "session_progress": "completed"} trailing"#,
        br#"{"session_id": "s", "session_id": "t", "session_progress": "completed"}"#,
        br#"{"session_id": "s", "session_progress": "completed", "progress": [], "statements": []}"#,
        br#"{"session_id": "../x", "session_progress": "completed"}"#,
        deep.as_bytes(),
        b"\xEF\xBB\xBF{}",
        b"\xff\xfe",
    ] {
        match classify_progress(Ok(response(200, body))) {
            Classified::Transient(TransientFailure::UnparsableBody { http_status, .. }) => {
                assert_eq!(http_status, 200)
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(body)),
        }
    }
    // A 200 that is really an error envelope is read as the API error it names.
    let err = api_error(
        200,
        br#"{"error": {"code": "SESSION_NOT_FOUND", "message": "gone"}}"#,
    );
    assert_eq!(err.code, ApiErrorCode::SessionNotFound);
    assert_eq!(err.http_status, 200);
}

#[test]
fn oversized_bodies_are_refused_without_parsing() {
    let mut big = br#"{"session_id": "s", "session_progress": "completed", "pad": ""#.to_vec();
    big.resize(5 * 1024 * 1024, b'a');
    big.extend_from_slice(b"\"}");
    assert!(matches!(
        classify_progress(Ok(response(200, &big))),
        Classified::Transient(TransientFailure::UnparsableBody { .. })
    ));
    let err = api_error(404, &big);
    assert_eq!(err.body.len(), 8 * 1024);
}

#[test]
fn update_webhook_answers() {
    assert_eq!(
        classify_update_webhook(Ok(response(200, br#"{"message": "success"}"#)))
            .ok()
            .unwrap()
            .message
            .as_deref(),
        Some("success")
    );
    assert!(classify_update_webhook(Ok(response(200, b"")))
        .ok()
        .is_some());
    assert!(matches!(
        classify_update_webhook(Ok(response(200, b"<html>"))),
        Classified::Transient(_)
    ));
    assert!(matches!(
        classify_update_webhook(Ok(response(403, br#"{"error": {"code": "ACCESS_DENIED", "message": "no"}}"#))),
        Classified::Api(err) if err.code == ApiErrorCode::AccessDenied
    ));
}
