//! The `bankconnect` command's package. The command itself is the `bankconnect` binary; this
//! library target holds the parsers of what operators type (shared with the fuzz targets) and
//! compiles the README's code examples as doctests, so they cannot rot.
#![forbid(unsafe_code)]

/// Durations, sizes and paths as people type them (the service's parsers, shared by the flags).
pub use bankconnect_service::duration;

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
