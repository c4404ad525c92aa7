//! What operators type: durations, sizes, session ids and base URLs never panic the parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = bankconnect_cli::duration::parse_duration(text);
        let _ = bankconnect_cli::duration::parse_size(text);
        let _ = bankconnect_core::SessionId::new(text);
        let _ = bankconnect_core::BaseUrl::parse(text);
        let _ = bankconnect_core::WebhookRegistration::new(text, bankconnect_core::WebhookMode::All);
        let _ = bankconnect_core::parse_retry_after(text, Some(text));
    }
});
