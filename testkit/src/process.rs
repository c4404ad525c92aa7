//! Child processes that announce their address on their first stdout line
//! (`listening on URL`): `serve` and `sim`. Shared by the tests, benches and examples.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout};

/// Reads the first stdout line of `child` (spawned with a piped stdout), returns what follows
/// `listening on ` (the URL), and keeps draining the rest in a thread so the child never
/// blocks on a full pipe. Panics, naming the line, if it says something else.
pub fn listening_on(child: &mut Child) -> String {
    let stdout = child
        .stdout
        .take()
        .unwrap_or_else(|| panic!("spawn with a piped stdout"));
    listening_line(stdout).unwrap_or_else(|line| panic!("not a listening line: {line:?}"))
}

/// As [`listening_on`], for a caller that retries: the URL, or the first line it got instead
/// (`None` if the process said nothing, e.g. it exited).
pub fn listening_line(stdout: ChildStdout) -> Result<String, Option<String>> {
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().and_then(Result::ok);
    std::thread::spawn(move || for _ in lines {});
    match first {
        Some(line) => match line.strip_prefix("listening on ") {
            Some(url) => Ok(url.to_owned()),
            None => Err(Some(line)),
        },
        None => Err(None),
    }
}
