//! Bounds on untrusted webhook input, all configurable.

use serde::{Deserialize, Serialize};

/// Limits applied to every webhook body before and while it is parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(clippy::exhaustive_structs)] // plain data, built with `..Default::default()`
pub struct Limits {
    /// Largest body accepted, in bytes (default 1 MiB). Larger bodies are refused with 413
    /// without being read past this limit plus one byte.
    pub max_body: usize,
    /// Most accounts in one event (default 256).
    pub max_accounts: usize,
    /// Most statements per account (default 1024).
    pub max_statements: usize,
    /// Longest string (keys included), in bytes (default 16 KiB).
    pub max_string: usize,
    /// Deepest nesting of objects and arrays anywhere in the document (default 64).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 1024 * 1024,
            max_accounts: 256,
            max_statements: 1024,
            max_string: 16 * 1024,
            max_depth: bankconnect_core::DEFAULT_MAX_DEPTH,
        }
    }
}
