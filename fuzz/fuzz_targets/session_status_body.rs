//! Session-status bodies: the classifier never panics; account detail extraction included.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = http::Response::builder().status(200).body(data.to_vec()) {
        let _ = bankconnect_core::classify_session_status(Ok(response));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for code in bankconnect_core::AccountErrorCode::KNOWN {
            let _ = bankconnect_core::ErrorDetail::extract(code, text);
        }
    }
});
