//! Webhook bodies through the receiver: never a panic, always one of the contract's statuses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let receiver = bankconnect_webhook_verify::Receiver::new(Default::default());
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", http::HeaderValue::from_static("application/json"));
    let reception = receiver.receive(&http::Method::POST, "/", &headers, data, 0);
    assert!([200, 400, 413].contains(&reception.status().as_u16()));
    if let Some(json) = reception.event_json() {
        let _ = json.to_string();
    }
});
