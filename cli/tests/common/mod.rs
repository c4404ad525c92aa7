//! Helpers shared by the binary's tests: a simulator on its own runtime and the built command.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::io::{Read, Write};
use std::process::{Command, Output};

use bankconnect_sim::{Scenario, SessionScript, SimConfig, Simulator};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_bankconnect");

pub struct Sim {
    pub sim: Simulator,
    _runtime: tokio::runtime::Runtime,
}

pub fn sim_with(scenario: Scenario, key: &str, hash: &str) -> Sim {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = runtime
        .block_on(Simulator::start(SimConfig {
            scenario,
            api_key: key.into(),
            server_hash: hash.into(),
            ..SimConfig::default()
        }))
        .unwrap();
    Sim {
        sim,
        _runtime: runtime,
    }
}

pub fn sim(sessions: Vec<SessionScript>) -> Sim {
    sim_with(
        Scenario {
            sessions,
            ..Scenario::default()
        },
        "sim-api-key",
        "sim-server-hash",
    )
}

pub fn bankconnect(sim: Option<&Simulator>, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_remove("BANKCONNECT_API_KEY")
        .env_remove("BANKCONNECT_SERVER_HASH")
        .env_remove("BANKCONNECT_BASE_URL")
        .env_remove("RUST_LOG");
    if let Some(sim) = sim {
        command
            .env("BANKCONNECT_BASE_URL", sim.base_url())
            .env("BANKCONNECT_API_KEY", "sim-api-key")
            .env("BANKCONNECT_SERVER_HASH", "sim-server-hash");
    }
    command.args(args);
    command
}

pub fn run(sim: Option<&Simulator>, args: &[&str]) -> Output {
    bankconnect(sim, args).output().unwrap()
}

pub fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

pub fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
        })
        .collect()
}

/// One HTTP/1.1 request over a fresh connection (`connection: close`): the status and the body
/// as JSON (`Value::Null` when it is not JSON). `headers` are whole `name: value` lines.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[&str],
) -> (u16, Value) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let body = body.unwrap_or("");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null);
    (status, json)
}
