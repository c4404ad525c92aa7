//! The BankConnect SDK's webhook intake.
//!
//! **Not built yet**: this crate is reserved in the workspace and exports nothing today; its work
//! is tracked in issue 6. Use `bankconnect-core` directly with your own HTTP client meanwhile.
#![forbid(unsafe_code)]
