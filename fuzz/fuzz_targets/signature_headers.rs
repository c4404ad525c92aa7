//! Standard Webhooks and hex-HMAC headers: verification never panics on any header bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parts: Vec<&[u8]> = data.splitn(4, |b| *b == b'\n').collect();
    let mut headers = http::HeaderMap::new();
    for (name, value) in ["webhook-id", "webhook-timestamp", "webhook-signature", "x-signature"].iter().zip(&parts) {
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            headers.insert(*name, value);
        }
    }
    let standard = bankconnect_webhook_verify::Authenticator::standard_webhooks(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
    if let Ok(auth) = standard {
        let _ = auth.verify(&headers, data, 1_614_265_330);
    }
    if let Ok(secret) = bankconnect_webhook_verify::WebhookSecret::raw(b"secret".to_vec()) {
        let hex = bankconnect_webhook_verify::Authenticator::HexHmac {
            header: http::HeaderName::from_static("x-signature"),
            secrets: vec![secret],
        };
        let _ = hex.verify(&headers, data, 0);
    }
});
