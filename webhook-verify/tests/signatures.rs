//! Known-answer vectors and the bugs other libraries shipped, as regression tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use bankconnect_webhook_verify::{
    sign_hex, sign_standard, AuthError, Authenticator, SecretError, WebhookSecret,
};
use http::{HeaderMap, HeaderName};

fn standard_headers(id: &str, timestamp: &str, signature: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("webhook-id", id.parse().unwrap());
    headers.insert("webhook-timestamp", timestamp.parse().unwrap());
    headers.insert("webhook-signature", signature.parse().unwrap());
    headers
}

const SECRET_1: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID_1: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const TS_1: i64 = 1614265330;
const BODY_1: &[u8] = br#"{"test": 2432232314}"#;
const SIG_1: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

const SECRET_2: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const ID_2: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
const TS_2: i64 = 1649367553;
const BODY_2: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
const SIG_2: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

#[test]
fn standard_webhooks_known_answers() {
    for (secret, id, ts, body, sig) in [
        (SECRET_1, ID_1, TS_1, BODY_1, SIG_1),
        (SECRET_2, ID_2, TS_2, BODY_2, SIG_2),
    ] {
        let key = WebhookSecret::standard(secret).unwrap();
        assert_eq!(sign_standard(&key, id, ts, body), sig);
        let auth = Authenticator::standard_webhooks(&[secret]).unwrap();
        let headers = standard_headers(id, &ts.to_string(), sig);
        assert_eq!(
            auth.verify(&headers, body, ts).unwrap().as_deref(),
            Some(id)
        );
        // One byte changed anywhere fails.
        let mut tampered = body.to_vec();
        tampered[2] ^= 1;
        assert_eq!(
            auth.verify(&headers, &tampered, ts),
            Err(AuthError::NoMatch)
        );
    }
}

#[test]
fn hex_hmac_known_answer() {
    let secret = WebhookSecret::raw(*b"It's a Secret to Everybody").unwrap();
    let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(sign_hex(&secret, b"Hello, World!"), expected);
    let auth = Authenticator::HexHmac {
        header: HeaderName::from_static("x-hub-signature-256"),
        secrets: vec![secret],
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-hub-signature-256", expected.parse().unwrap());
    assert!(auth.verify(&headers, b"Hello, World!", 0).is_ok());
    assert_eq!(
        auth.verify(&headers, b"Hello, World?", 0),
        Err(AuthError::NoMatch)
    );
    headers.insert(
        "x-hub-signature-256",
        expected
            .to_uppercase()
            .replace("SHA256", "sha256")
            .parse()
            .unwrap(),
    );
    assert!(
        auth.verify(&headers, b"Hello, World!", 0).is_ok(),
        "hex case does not matter"
    );
    for bad in [
        "sha256=",
        "sha256=abc",
        "md5=757107ea",
        expected.trim_end_matches('7'),
    ] {
        headers.insert("x-hub-signature-256", bad.parse().unwrap());
        assert!(auth.verify(&headers, b"Hello, World!", 0).is_err(), "{bad}");
    }
}

#[test]
fn bug_truncated_signature_v1_comma_does_not_pass() {
    let auth = Authenticator::standard_webhooks(&[SECRET_1]).unwrap();
    for decoy in [
        "v1,",
        "v1",
        "v1,g0hM9SsE",
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE",
        ",",
    ] {
        let headers = standard_headers(ID_1, &TS_1.to_string(), decoy);
        assert_eq!(
            auth.verify(&headers, BODY_1, TS_1),
            Err(AuthError::NoMatch),
            "{decoy}"
        );
    }
}

#[test]
fn bug_overflowing_timestamps_are_refused_before_any_math() {
    let auth = Authenticator::standard_webhooks(&[SECRET_1]).unwrap();
    for ts in [
        "-9223372036854775808",
        "9223372036854775807",
        "99999999999999999999999",
        "-1",
        "+1614265330",
        "1614265330.5",
        "",
        " ",
        "0x10",
    ] {
        let headers = standard_headers(ID_1, ts, SIG_1);
        let result = auth.verify(&headers, BODY_1, TS_1);
        assert!(
            matches!(
                result,
                Err(AuthError::MalformedHeader(_)) | Err(AuthError::Future) | Err(AuthError::Stale)
            ),
            "{ts:?}: {result:?}"
        );
    }
    // Extreme clocks do not overflow either.
    let headers = standard_headers(ID_1, &TS_1.to_string(), SIG_1);
    assert_eq!(
        auth.verify(&headers, BODY_1, i64::MIN),
        Err(AuthError::Future)
    );
    assert_eq!(
        auth.verify(&headers, BODY_1, i64::MAX),
        Err(AuthError::Stale)
    );
}

#[test]
fn bug_empty_secrets_are_refused() {
    assert_eq!(
        WebhookSecret::standard("whsec_").unwrap_err(),
        SecretError::Empty
    );
    assert_eq!(WebhookSecret::standard("").unwrap_err(), SecretError::Empty);
    assert_eq!(
        WebhookSecret::raw(Vec::new()).unwrap_err(),
        SecretError::Empty
    );
    assert_eq!(
        WebhookSecret::standard("whsec_!!!").unwrap_err(),
        SecretError::Malformed
    );
    assert!(Authenticator::standard_webhooks(&[]).is_err());
    assert!(!format!("{:?}", WebhookSecret::standard(SECRET_1).unwrap()).contains("MfKQ"));
}

#[test]
fn bug_every_signature_is_checked_not_only_the_last() {
    let auth = Authenticator::standard_webhooks(&[SECRET_1]).unwrap();
    let rotated =
        format!("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= {SIG_1} v2,whatever v1,bm90IGl0");
    let headers = standard_headers(ID_1, &TS_1.to_string(), &rotated);
    assert!(auth.verify(&headers, BODY_1, TS_1).is_ok());
    let first = format!("{SIG_1} v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    let headers = standard_headers(ID_1, &TS_1.to_string(), &first);
    assert!(auth.verify(&headers, BODY_1, TS_1).is_ok());
}

#[test]
fn rotated_secrets_any_matches() {
    let auth = Authenticator::standard_webhooks(&[SECRET_2, SECRET_1]).unwrap();
    let headers = standard_headers(ID_1, &TS_1.to_string(), SIG_1);
    assert!(auth.verify(&headers, BODY_1, TS_1).is_ok());
    let only_new = Authenticator::standard_webhooks(&[SECRET_2]).unwrap();
    assert_eq!(
        only_new.verify(&headers, BODY_1, TS_1),
        Err(AuthError::NoMatch)
    );
}

#[test]
fn stale_and_future_timestamps() {
    let secret = WebhookSecret::standard(SECRET_1).unwrap();
    let auth = Authenticator::StandardWebhooks {
        secrets: vec![secret],
        tolerance: Duration::from_secs(300),
    };
    let headers = standard_headers(ID_1, &TS_1.to_string(), SIG_1);
    assert!(auth.verify(&headers, BODY_1, TS_1 + 300).is_ok());
    assert!(auth.verify(&headers, BODY_1, TS_1 - 300).is_ok());
    assert_eq!(
        auth.verify(&headers, BODY_1, TS_1 + 301),
        Err(AuthError::Stale)
    );
    assert_eq!(
        auth.verify(&headers, BODY_1, TS_1 - 301),
        Err(AuthError::Future)
    );
}

#[test]
fn missing_headers() {
    let auth = Authenticator::standard_webhooks(&[SECRET_1]).unwrap();
    let full = standard_headers(ID_1, &TS_1.to_string(), SIG_1);
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let mut headers = full.clone();
        headers.remove(name);
        assert_eq!(
            auth.verify(&headers, BODY_1, TS_1),
            Err(AuthError::MissingHeader(match name {
                "webhook-id" => "webhook-id",
                "webhook-timestamp" => "webhook-timestamp",
                _ => "webhook-signature",
            }))
        );
    }
}

#[test]
fn header_token_in_constant_time() {
    let auth = Authenticator::HeaderToken {
        header: HeaderName::from_static("x-webhook-token"),
        token: WebhookSecret::raw(*b"tok-123").unwrap(),
    };
    let mut headers = HeaderMap::new();
    assert_eq!(auth.verify(&headers, b"{}", 0), Err(AuthError::BadToken));
    headers.insert("x-webhook-token", "tok-12".parse().unwrap());
    assert_eq!(auth.verify(&headers, b"{}", 0), Err(AuthError::BadToken));
    headers.insert("x-webhook-token", "tok-123".parse().unwrap());
    assert!(auth.verify(&headers, b"{}", 0).is_ok());
}
