//! The BankConnect SDK's blocking driver (ureq).
//!
//! **Not built yet**: this crate is reserved in the workspace and exports nothing today; its work
//! is tracked in issue 5. Use `bankconnect-core` directly with your own HTTP client meanwhile.
#![forbid(unsafe_code)]
