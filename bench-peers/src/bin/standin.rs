//! `standin [--addr 127.0.0.1:0] [--api-key test-key] [--server-hash test-hash]`: serves the
//! fast progress stand-in; its first stdout line is `listening on <base URL>`.
#![forbid(unsafe_code)]

use std::io::Write;

use bankconnect_bench_peers::args;
use bankconnect_bench_peers::standin::{self, Credentials, API_PATH};

const USAGE: &str = "usage: standin [--addr HOST:PORT] [--api-key KEY] [--server-hash HASH]";

fn main() {
    let args = args::Args::parse(USAGE);
    let listener = std::net::TcpListener::bind(args.get("addr", "127.0.0.1:0"))
        .unwrap_or_else(|err| args::fail(&format!("standin: cannot listen: {err}")));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|err| args::fail(&format!("standin: {err}")));
    let credentials = Credentials {
        api_key: args.get("api-key", "test-key").to_owned(),
        server_hash: args.get("server-hash", "test-hash").to_owned(),
    };
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on http://{addr}{API_PATH}");
    let _ = out.flush();
    if let Err(err) = standin::serve(listener, credentials) {
        args::fail(&format!("standin: {err}"));
    }
}
