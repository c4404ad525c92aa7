//! The `bankconnect` command's package. The command itself is the `bankconnect` binary; this
//! library target only compiles the README's code examples as doctests, so they cannot rot.
#![forbid(unsafe_code)]

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
