//! What the workspace's tests, benches and tools share (not published):
//!
//! - [`driver_cases`]: the scenario list both drivers are tested on, so the async and blocking
//!   drivers are held to exactly the same expectations;
//! - [`process`]: child processes that announce their address on their first stdout line;
//! - [`schema`]: a PostgreSQL schema of one test's own, dropped afterwards;
//! - [`proc_stat`]: CPU time of a process from `/proc`;
//! - [`mix`]: the session mix the soak and the chaos run share;
//! - [`million`]: a million sessions written by SQL for the benchmarks that read them.
#![forbid(unsafe_code)]
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::exhaustive_structs,
    clippy::exhaustive_enums
)]

pub mod driver_cases;
pub mod million;
pub mod mix;
pub mod proc_stat;
pub mod process;
pub mod schema;

/// A new, empty folder under the system's temporary one, named for `name`, this process and
/// the time (remove it when done).
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "bankconnect_{name}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
