//! Progress and error bodies under every status: the classifier never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data.split_first() {
        Some((first, rest)) => (200 + u16::from(*first) * 2, rest),
        None => (200, data),
    };
    if let Ok(response) = http::Response::builder().status(status.min(599)).body(body.to_vec()) {
        let _ = bankconnect_core::classify_progress(Ok(response));
    }
});
