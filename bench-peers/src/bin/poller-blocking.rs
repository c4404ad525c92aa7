//! `poller-blocking --base-url URL [--interval-ms 20] [--threads 16] [--api-key K]
//! [--server-hash H] SESSIONS_FILE`: polls each session until it completes (ureq + threads),
//! printing one JSON line per session as it ends; exits 1 if any ended in an error.
#![forbid(unsafe_code)]

use std::io::Write;

use bankconnect_bench_peers::{args, poll_blocking};

const USAGE: &str = "usage: poller-blocking --base-url URL [--interval-ms MS] [--threads N] [--api-key K] [--server-hash H] SESSIONS_FILE";

fn main() {
    let args = args::Args::parse(USAGE);
    let input = args::PollerInput::read(&args, USAGE);
    let sessions = input.sessions();
    let threads = args.number("threads", 16, USAGE) as usize;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut failed = false;
    poll_blocking(&input.target, sessions, threads, |ended| {
        failed |= ended.outcome != "completed";
        let _ = writeln!(out, "{}", ended.line());
    });
    let _ = out.flush();
    drop(input);
    std::process::exit(i32::from(failed));
}
