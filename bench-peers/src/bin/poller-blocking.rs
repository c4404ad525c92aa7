//! `poller-blocking --base-url URL [--interval-ms 20] [--threads 16] [--api-key K]
//! [--server-hash H] SESSIONS_FILE`: polls each session until it completes (ureq + threads),
//! printing one JSON line per session as it ends; exits 1 if any ended in an error.
#![forbid(unsafe_code)]

use bankconnect_bench_peers::{args, poll_blocking};

const USAGE: &str = "usage: poller-blocking --base-url URL [--interval-ms MS] [--threads N] [--api-key K] [--server-hash H] SESSIONS_FILE";

fn main() {
    let args = args::Args::parse(USAGE);
    let input = args::PollerInput::read(&args, USAGE);
    let threads = args.number("threads", 16, USAGE) as usize;
    let (target, sessions) = (input.target.clone(), input.sessions());
    input.print_each(|done| poll_blocking(&target, sessions, threads, done));
}
