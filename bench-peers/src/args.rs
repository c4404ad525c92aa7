//! The peer binaries' shared command line: `--name value` pairs and one positional file.

use std::collections::HashMap;

/// A parsed command line.
#[allow(clippy::exhaustive_structs)] // plain data for this crate's own binaries
pub struct Args {
    named: HashMap<String, String>,
    /// The one positional argument.
    pub file: Option<String>,
}

impl Args {
    /// Parses `std::env::args`, exiting with `usage` on anything malformed.
    pub fn parse(usage: &str) -> Self {
        let mut named = HashMap::new();
        let mut file = None;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            if let Some(name) = arg.strip_prefix("--") {
                let Some(value) = args.next() else {
                    fail(usage);
                };
                named.insert(name.to_owned(), value);
            } else if file.replace(arg).is_some() {
                fail(usage);
            }
        }
        Self { named, file }
    }

    /// The value of `--name`, or `default`.
    pub fn get<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.named.get(name).map_or(default, String::as_str)
    }

    /// `--name` as a number, or `default`; exits with `usage` if it is not one.
    pub fn number(&self, name: &str, default: u64, usage: &str) -> u64 {
        match self.named.get(name) {
            Some(value) => value.parse().unwrap_or_else(|_| fail(usage)),
            None => default,
        }
    }
}

/// Prints `message` and exits with status 2.
pub fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(2)
}

/// What a poller binary reads: where to poll, and its sessions file, read whole and kept for
/// the run (as a simple poller keeps it).
#[allow(clippy::exhaustive_structs)] // plain data for this crate's own binaries
pub struct PollerInput {
    /// Where and how often.
    pub target: crate::Target,
    /// The sessions file's text.
    pub text: String,
}

impl PollerInput {
    /// From `--base-url`, `--api-key`, `--server-hash`, `--interval-ms` and the file named last;
    /// exits with `usage` if something is missing.
    pub fn read(args: &Args, usage: &str) -> Self {
        let file = args.file.as_deref().unwrap_or_else(|| fail(usage));
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|err| fail(&format!("cannot read {file}: {err}")));
        let target = crate::Target {
            base: args.get("base-url", "").to_owned(),
            api_key: args.get("api-key", "test-key").to_owned(),
            server_hash: args.get("server-hash", "test-hash").to_owned(),
            interval: std::time::Duration::from_millis(args.number("interval-ms", 20, usage)),
        };
        if target.base.is_empty() {
            fail(usage);
        }
        Self { target, text }
    }

    /// Runs `poll` with a sink that prints each session's line as it ends, then exits: 0 if
    /// every session completed, 1 otherwise. The input is kept until then.
    pub fn print_each(self, poll: impl FnOnce(&mut dyn FnMut(crate::Ended))) -> ! {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut failed = false;
        poll(&mut |ended| {
            failed |= ended.outcome != "completed";
            let _ = writeln!(out, "{}", ended.line());
        });
        let _ = out.flush();
        drop(self);
        std::process::exit(i32::from(failed))
    }

    /// The sessions, one per non-empty line.
    pub fn sessions(&self) -> Vec<String> {
        self.text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }
}
