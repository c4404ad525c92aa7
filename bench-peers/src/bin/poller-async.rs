//! `poller-async --base-url URL [--interval-ms 20] [--concurrency 64] [--api-key K]
//! [--server-hash H] SESSIONS_FILE`: polls each session until it completes (reqwest + tokio),
//! printing one JSON line per session as it ends; exits 1 if any ended in an error.
#![forbid(unsafe_code)]

use std::sync::Arc;

use bankconnect_bench_peers::{args, poll_async};

const USAGE: &str = "usage: poller-async --base-url URL [--interval-ms MS] [--concurrency N] [--api-key K] [--server-hash H] SESSIONS_FILE";

fn main() {
    let args = args::Args::parse(USAGE);
    let input = args::PollerInput::read(&args, USAGE);
    let cap = args.number("concurrency", 64, USAGE) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|err| args::fail(&format!("poller-async: {err}")));
    let (target, sessions) = (Arc::new(input.target.clone()), input.sessions());
    input.print_each(|done| runtime.block_on(poll_async(target, sessions, cap, done)));
}
