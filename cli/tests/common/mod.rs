//! Helpers shared by the binary's tests: a simulator on its own runtime and the built command.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

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
