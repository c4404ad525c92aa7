//! Child processes that announce their address on their first stdout line
//! (`listening on URL`): `serve` and `sim`. Shared by the tests, benches and examples (included
//! by path: it uses only std).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::Child;

/// Reads the first stdout line of `child` (spawned with a piped stdout), returns what follows
/// `listening on ` (the URL), and keeps draining the rest in a thread so the child never
/// blocks on a full pipe. Panics, naming the line, if it says something else.
pub(crate) fn listening_on(child: &mut Child) -> String {
    let stdout = child
        .stdout
        .take()
        .unwrap_or_else(|| panic!("spawn with a piped stdout"));
    let mut lines = BufReader::new(stdout).lines();
    let first = lines
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("the process said nothing (exited?)"));
    let url = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("not a listening line: {first}"))
        .to_owned();
    std::thread::spawn(move || for _ in lines {});
    url
}
