//! `bankconnect sim`: the simulator as a process.

use bankconnect_sim::{Scenario, SimConfig, Simulator, DEFAULT_API_KEY, DEFAULT_SERVER_HASH};

use crate::args::{Global, SimArgs};
use crate::context::runtime;
use crate::failure::{exit, Failure};
use crate::output;

pub(crate) fn run(global: &Global, args: &SimArgs) -> Result<u8, Failure> {
    let scenario = match &args.scenario {
        Some(path) => Scenario::from_file(path).map_err(|err| Failure::usage(err.to_string()))?,
        None => Scenario::builtin(),
    };
    let config = SimConfig {
        addr: args.addr,
        api_key: global
            .api_key
            .clone()
            .unwrap_or_else(|| DEFAULT_API_KEY.into()),
        server_hash: global
            .server_hash
            .clone()
            .unwrap_or_else(|| DEFAULT_SERVER_HASH.into()),
        scenario,
    };
    runtime()?.block_on(async {
        let sim = Simulator::start(config)
            .await
            .map_err(|err| Failure::usage(err.to_string()))?;
        output::line(&format!("listening on {}", sim.base_url()));
        for id in sim.session_ids() {
            output::line(&format!("session {id}"));
        }
        // The built-in credentials are public test values; credentials given are never shown.
        if global.api_key.is_none() && global.server_hash.is_none() {
            output::line(&format!(
                "credentials: api key {DEFAULT_API_KEY}, server hash {DEFAULT_SERVER_HASH}"
            ));
        } else {
            output::line("credentials: the --api-key and --server-hash given");
        }

        tokio::signal::ctrl_c()
            .await
            .map_err(|err| Failure::internal(format!("cannot wait for ctrl-c: {err}")))?;
        Ok(exit::OK)
    })
}
