//! Every documented payload, and the adversarial table through the receiver.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Read;

use bankconnect_core::{AccountErrorCode, AccountStatus, EventName, StageStatus};
use bankconnect_webhook_verify::WebhookEvent as Event;
use bankconnect_webhook_verify::{
    sign_standard, Authenticator, Limits, ParseError, Receiver, ReceiverConfig, Reception,
    Rejection, WebhookEvent, WebhookSecret,
};
use http::{HeaderMap, Method};

fn parse(body: &[u8]) -> Result<WebhookEvent, ParseError> {
    WebhookEvent::parse(body, &Limits::default())
}

#[test]
fn enrichment_fixtures() {
    let Event::Enrichment(event) =
        parse(include_bytes!("fixtures/webhook_enrichment_completed.json")).unwrap()
    else {
        panic!()
    };
    assert_eq!(event.session_id.as_str(), "uuid4");
    assert_eq!(
        event.accounts[0].result.account_status,
        Some(AccountStatus::Completed)
    );
    assert_eq!(event.insights_available, None);

    let newer = parse(include_bytes!(
        "fixtures/webhook_enrichment_newer_completed.json"
    ))
    .unwrap();
    let Event::Enrichment(event) = &newer else {
        panic!()
    };
    assert_eq!(event.insights_available, Some(true));
    let account = &event.accounts[0];
    assert_eq!(account.result.error_code, None, "\"\" is none");
    assert_eq!(account.result.error_message, None);
    assert_eq!(account.name.as_deref(), Some("Asha Verma"));
    assert_eq!(
        account.attempt_types.as_deref(),
        Some(&["PDF".to_string()][..])
    );
    let hint = newer.hint().unwrap();
    assert_eq!(hint.accounts.len(), 1);

    let months = parse(include_bytes!(
        "fixtures/webhook_enrichment_incomplete_months.json"
    ))
    .unwrap();
    let json = months.to_json(false);
    assert_eq!(json["event_name"], "ENRICHMENT_NOTIFICATION");
    assert_eq!(json["session_id"], "abcd");
    assert_eq!(json["duplicate"], false);
    assert_eq!(json["accounts"][0]["error_code"], "INCOMPLETE_MONTHS");
    assert_eq!(
        json["accounts"][0]["error_detail"],
        serde_json::json!({"months": ["2023-11", "2023-12"]})
    );

    let dates = parse(include_bytes!(
        "fixtures/webhook_enrichment_incomplete_dates.json"
    ))
    .unwrap();
    assert_eq!(
        dates.to_json(true)["accounts"][0]["error_detail"],
        serde_json::json!({"dates": {"2024-01": [1, 2, 3, 4]}})
    );
    assert_eq!(dates.to_json(true)["duplicate"], true);

    let failed = parse(include_bytes!("fixtures/webhook_enrichment_failed.json")).unwrap();
    assert_eq!(
        failed.account_results()[0].error_code,
        Some(AccountErrorCode::MissingTransactions)
    );
    assert!(failed.to_json(false)["accounts"][0]["error_detail"].is_null());
}

#[test]
fn upload_completion_and_expiry() {
    let Event::Session(event) =
        parse(include_bytes!("fixtures/webhook_upload_completed.json")).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        event.event_name,
        EventName::SessionRequirementCompletionNotification
    );
    assert_eq!(event.message.as_deref(), Some("Upload Completed"));
    assert_eq!(
        event
            .session_date_range
            .as_ref()
            .unwrap()
            .from_date
            .as_deref(),
        Some("01/01/2024")
    );
    let account = &event.accounts[0];
    assert_eq!(account.account_status, Some(AccountStatus::Partial));
    assert_eq!(account.months.len(), 5);
    assert_eq!(
        account.missing_data[0].to_date.as_deref(),
        Some("30/04/2024")
    );
    assert_eq!(
        account.statements[0].upload_file_name.as_deref(),
        Some("jan-mar.pdf")
    );
    assert_eq!(account.statements[0].error_code, None);

    let expiry = br#"{"session_id": "s9", "event_name": "SESSION_EXPIRY_NOTIFICATION", "message": "Session Expired", "accounts": []}"#;
    let Event::Session(event) = parse(expiry).unwrap() else {
        panic!()
    };
    assert_eq!(event.event_name, EventName::SessionExpiryNotification);
    assert!(
        parse(expiry).unwrap().hint().is_none(),
        "only enrichment ends processing"
    );
}

#[test]
fn legacy_entity_payload() {
    let Event::LegacyEntity(event) =
        parse(include_bytes!("fixtures/webhook_legacy_entity.json")).unwrap()
    else {
        panic!()
    };
    assert_eq!(event.entity_id, "2f6c9a1e-8b3d-4e5f-9a0b-1c2d3e4f5a6b");
    assert_eq!(event.statement_id, None);
    assert_eq!(event.link_id, None);
    assert_eq!(event.progress, StageStatus::Failed);
    assert_eq!(event.reason.as_deref(), Some("Invalid credentials"));
    let json = parse(include_bytes!("fixtures/webhook_legacy_entity.json"))
        .unwrap()
        .to_json(false);
    assert!(json["event_name"].is_null());
    assert!(json["session_id"].is_null());
}

#[test]
fn unknown_values_are_kept() {
    let body =
        br#"{"session_id": "s1", "event_name": "SOMETHING_NEW", "whatever": [1, {"x": null}]}"#;
    let Event::Other(event) = parse(body).unwrap() else {
        panic!()
    };
    assert_eq!(event.event_name.as_str(), "SOMETHING_NEW");
    assert_eq!(event.session_id.unwrap().as_str(), "s1");
    let body = br#"{"session_id": "s1", "event_name": "ENRICHMENT_NOTIFICATION", "new_field": {"a": [1]},
        "accounts": [{"account_status": "on_hold", "error_code": "BRAND_NEW", "error_message": "eh", "extra": 1}]}"#;
    let event = parse(body).unwrap();
    let account = &event.account_results()[0];
    assert_eq!(
        account.account_status,
        Some(AccountStatus::Other("on_hold".into()))
    );
    assert_eq!(account.error_code.as_ref().unwrap().as_str(), "BRAND_NEW");
}

fn field_of(err: ParseError) -> String {
    match err {
        ParseError::Field { field, .. } => field,
        ParseError::Json(text) => format!("json: {text}"),
        other => format!("{other}"),
    }
}

#[test]
fn wrong_types_and_missing_fields_name_the_field() {
    for (body, field) in [
        (r#"{"event_name": "ENRICHMENT_NOTIFICATION"}"#, "session_id"),
        (
            r#"{"session_id": null, "event_name": "ENRICHMENT_NOTIFICATION"}"#,
            "session_id",
        ),
        (
            r#"{"session_id": 7, "event_name": "ENRICHMENT_NOTIFICATION"}"#,
            "session_id",
        ),
        (
            r#"{"session_id": "a/b", "event_name": "ENRICHMENT_NOTIFICATION"}"#,
            "session_id",
        ),
        (r#"{"session_id": "s", "event_name": 5}"#, "event_name"),
        (r#"{"session_id": "s"}"#, "event_name"),
        (
            r#"{"session_id": "s", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": {}}"#,
            "accounts",
        ),
        (
            r#"{"session_id": "s", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": [1]}"#,
            "accounts[0]",
        ),
        (
            r#"{"session_id": "s", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": [{"error_code": 5}]}"#,
            "accounts[0].error_code",
        ),
        (
            r#"{"session_id": "s", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": [{"account_status": true}]}"#,
            "accounts[0].account_status",
        ),
        (
            r#"{"session_id": "s", "event_name": "ENRICHMENT_NOTIFICATION", "insights_available": "yes"}"#,
            "insights_available",
        ),
        (r#"{"entity_id": "e"}"#, "progress"),
        (r#"[1, 2]"#, "(body)"),
        (r#""just a string""#, "(body)"),
    ] {
        let err = parse(body.as_bytes()).unwrap_err();
        assert_eq!(field_of(err.clone()), field, "{body}: {err}");
    }
    // Missing and null optional fields both read as none.
    let body = br#"{"session_id": "s", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": null, "insights_available": null}"#;
    assert!(parse(body).is_ok());
}

#[test]
fn pass_through_fields_that_drift_to_numbers_are_kept_as_text() {
    let body = br#"{"session_id": "s", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": [
        {"account_id": 123456789, "bank_name": "sbi", "account_number": 4242, "account_status": "completed"}]}"#;
    let event = parse(body).unwrap();
    let accounts = event.account_results();
    assert_eq!(accounts[0].account_id.as_deref(), Some("123456789"));
    assert_eq!(accounts[0].account_number.as_deref(), Some("4242"));
    // Structure is still refused.
    let body = br#"{"session_id": "s", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": [{"account_id": {"x": 1}}]}"#;
    assert_eq!(field_of(parse(body).unwrap_err()), "accounts[0].account_id");
}

fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers
}

const GOOD: &[u8] =
    br#"{"session_id": "s1", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": []}"#;

/// A reader that never ends, to prove the receiver stops reading at the limit.
struct Endless(u64);

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        buf.fill(b' ');
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
}

#[test]
fn adversarial_table() {
    let receiver = Receiver::new(ReceiverConfig::default());
    let deep = format!(
        r#"{{"session_id": "s", "event_name": "X", "a": {}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let huge_number = r#"{"session_id": "s", "event_name": "X", "n": 1e999}"#;
    let oversized = format!(
        r#"{{"session_id": "s", "event_name": "X", "pad": "{}"}}"#,
        "a".repeat(1024 * 1024)
    );
    let many_accounts = format!(
        r#"{{"session_id": "s", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": [{}]}}"#,
        vec!["{}"; 300].join(",")
    );
    let long_string = format!(
        r#"{{"session_id": "s", "event_name": "{}"}}"#,
        "A".repeat(20_000)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("good", GOOD.to_vec(), 200),
        ("malformed", b"{\"session_id\": ".to_vec(), 400),
        ("truncated", GOOD[..GOOD.len() - 3].to_vec(), 400),
        ("empty", Vec::new(), 400),
        ("top-level array", b"[]".to_vec(), 400),
        ("top-level null", b"null".to_vec(), 400),
        ("200-deep nesting", deep.into_bytes(), 400),
        ("huge number", huge_number.as_bytes().to_vec(), 400),
        (
            "big but finite number",
            br#"{"session_id": "s", "event_name": "X", "n": 123456789012345678901234567890}"#
                .to_vec(),
            200,
        ),
        (
            "duplicate key",
            br#"{"session_id": "s1", "session_id": "s2", "event_name": "ENRICHMENT_NOTIFICATION"}"#
                .to_vec(),
            400,
        ),
        ("trailing garbage", [GOOD, b"xyz"].concat(), 400),
        ("second document", [GOOD, GOOD].concat(), 400),
        (
            "non-UTF-8",
            b"{\"session_id\": \"s\xff\", \"event_name\": \"X\"}".to_vec(),
            400,
        ),
        ("BOM", [&[0xEF, 0xBB, 0xBF][..], GOOD].concat(), 400),
        ("oversized", oversized.into_bytes(), 413),
        ("too many accounts", many_accounts.into_bytes(), 400),
        ("overlong string", long_string.into_bytes(), 400),
        (
            "wrong type",
            br#"{"session_id": "s", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": "x"}"#
                .to_vec(),
            400,
        ),
        (
            "unknown event",
            br#"{"session_id": "s", "event_name": "NEW_THING"}"#.to_vec(),
            200,
        ),
        ("trailing whitespace", [GOOD, b" \n\t"].concat(), 200),
    ];
    for (name, body, status) in cases {
        let reception = receiver.receive(&Method::POST, "/", &json_headers(), &body[..], 0);
        assert_eq!(reception.status(), status, "{name}: {reception:?}");
    }
    // Method, path and content type.
    assert_eq!(
        receiver
            .receive(&Method::GET, "/", &json_headers(), GOOD, 0)
            .status(),
        405
    );
    assert_eq!(
        receiver
            .receive(&Method::POST, "/other", &json_headers(), GOOD, 0)
            .status(),
        404
    );
    let mut text = HeaderMap::new();
    text.insert("content-type", "text/plain".parse().unwrap());
    assert_eq!(
        receiver
            .receive(&Method::POST, "/", &text, GOOD, 0)
            .status(),
        415
    );
    assert_eq!(
        receiver
            .receive(&Method::POST, "/", &HeaderMap::new(), GOOD, 0)
            .status(),
        415
    );
    let mut charset = json_headers();
    charset.insert(
        "content-type",
        "Application/JSON; charset=utf-8".parse().unwrap(),
    );
    assert_eq!(
        receiver
            .receive(
                &Method::POST,
                "/",
                &charset,
                br#"{"session_id": "s7", "event_name": "X"}"#.as_slice(),
                0
            )
            .status(),
        200
    );
    // A declared length over the limit is refused before reading.
    let mut declared = json_headers();
    declared.insert("content-length", "104857600".parse().unwrap());
    assert_eq!(
        receiver.precheck(&Method::POST, "/", &declared),
        Some(Rejection::TooLarge { limit: 1024 * 1024 })
    );
    // An endless body is read only up to the limit plus one byte.
    let mut endless = Endless(0);
    let reception = receiver.receive(&Method::POST, "/", &json_headers(), &mut endless, 0);
    assert_eq!(reception.status(), 413);
    assert!(endless.0 <= 1024 * 1024 + 8192, "read {} bytes", endless.0);
}

#[test]
fn duplicates_are_answered_200_and_flagged() {
    let receiver = Receiver::new(ReceiverConfig::default());
    let first = receiver.receive(&Method::POST, "/", &json_headers(), GOOD, 0);
    assert!(matches!(first, Reception::Accepted(_)));
    // The same event with other whitespace and key order is the same event.
    let reordered =
        br#"{ "accounts": [], "event_name": "ENRICHMENT_NOTIFICATION",   "session_id": "s1" }"#;
    let second = receiver.receive(&Method::POST, "/", &json_headers(), &reordered[..], 1);
    assert!(matches!(second, Reception::Duplicate(_)));
    assert_eq!(second.status(), 200);
    assert_eq!(second.event_json().unwrap()["duplicate"], true);
}

#[test]
fn signed_receiver_verifies_before_parsing_and_dedupes_by_id() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let receiver = Receiver::new(ReceiverConfig {
        auth: Authenticator::standard_webhooks(&[secret]).unwrap(),
        ..ReceiverConfig::default()
    });
    let key = WebhookSecret::standard(secret).unwrap();
    let now = 1_700_000_000;
    let signed = |id: &str, body: &[u8]| {
        let mut headers = json_headers();
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        headers.insert(
            "webhook-signature",
            sign_standard(&key, id, now, body).parse().unwrap(),
        );
        headers
    };
    assert_eq!(
        receiver
            .receive(&Method::POST, "/", &json_headers(), GOOD, now)
            .status(),
        401
    );
    // Garbage with a bad signature is 401, not 400: nothing is parsed before verification.
    let mut bad = signed("msg_1", GOOD);
    bad.insert("webhook-signature", "v1,AAAA".parse().unwrap());
    assert_eq!(
        receiver
            .receive(&Method::POST, "/", &bad, &b"{{{"[..], now)
            .status(),
        401
    );
    // A validly signed but malformed body is 400.
    assert_eq!(
        receiver
            .receive(
                &Method::POST,
                "/",
                &signed("msg_0", b"{{{"),
                &b"{{{"[..],
                now
            )
            .status(),
        400
    );
    let first = receiver.receive(&Method::POST, "/", &signed("msg_1", GOOD), GOOD, now);
    assert!(
        matches!(first, Reception::Accepted(ref d) if d.webhook_id.as_deref() == Some("msg_1"))
    );
    let again = receiver.receive(&Method::POST, "/", &signed("msg_1", GOOD), GOOD, now);
    assert!(matches!(again, Reception::Duplicate(_)));
    // The same content under a new id is a new delivery.
    let other = receiver.receive(&Method::POST, "/", &signed("msg_2", GOOD), GOOD, now);
    assert!(matches!(other, Reception::Accepted(_)));
}

#[test]
fn a_wrong_path_is_404_whatever_the_method() {
    let receiver = Receiver::new(ReceiverConfig {
        path: "/hooks".into(),
        ..ReceiverConfig::default()
    });
    assert_eq!(
        receiver
            .receive(&Method::GET, "/elsewhere", &json_headers(), GOOD, 0)
            .status(),
        404
    );
    assert_eq!(
        receiver
            .receive(&Method::GET, "/hooks", &json_headers(), GOOD, 0)
            .status(),
        405
    );
    assert_eq!(
        receiver
            .receive(&Method::POST, "/hooks", &json_headers(), GOOD, 0)
            .status(),
        200
    );
}
