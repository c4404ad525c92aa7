//! `wait` with the library alone: the blocking driver tracking the session ids of a file and
//! printing one JSON outcome line for each as it ends, which is what a back end embedding the SDK
//! writes. It takes the `bankconnect` command's own `wait` arguments, so a harness that times
//! that command (the project's independent perf harness lives outside this repository) can time
//! the library alone in its place, without the command's binary, which also carries the
//! service, the simulator and the async driver. Build it with
//! `cargo build --release -p bankconnect-http-blocking --example wait_lines`.
//!
//! Arguments: `--base-url URL --api-key K --server-hash H [--transport blocking] [--json] wait
//! --sessions-from FILE [--interval 20ms] [--max-wait 120s] [--no-accounts] [--concurrency N]`.
#![forbid(unsafe_code)]

use std::io::Write;
use std::time::Duration;

use bankconnect_core::{
    Api, BaseUrl, ClientSettings, Credentials, PollPolicy, SchedulerConfig, SessionId,
};
use bankconnect_http_blocking::Client;

/// `20ms`, `2s` or `1m` as a duration.
fn duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (ms, s or m)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number.saturating_mul(60))),
        _ => Err(format!("{text:?}: the unit is ms, s or m")),
    }
}

struct Args {
    base_url: String,
    api_key: String,
    server_hash: String,
    sessions_from: String,
    policy: PollPolicy,
    concurrency: usize,
}

fn args() -> Result<Args, String> {
    let mut base_url = None;
    let mut api_key = None;
    let mut server_hash = None;
    let mut sessions_from = None;
    let mut policy = PollPolicy::default();
    let mut concurrency = SchedulerConfig::default().max_in_flight;
    let mut rest = std::env::args().skip(1);
    while let Some(arg) = rest.next() {
        let mut value = || rest.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--base-url" => base_url = Some(value()?),
            "--api-key" => api_key = Some(value()?),
            "--server-hash" => server_hash = Some(value()?),
            "--sessions-from" => sessions_from = Some(value()?),
            "--interval" => policy.interval = duration(&value()?)?,
            "--max-wait" => policy.max_wait = duration(&value()?)?,
            "--concurrency" => {
                concurrency = value()?
                    .parse()
                    .map_err(|_| "--concurrency takes a number".to_owned())?;
            }
            "--transport" => {
                let transport = value()?;
                if transport != "blocking" {
                    return Err(format!(
                        "this example is the blocking driver, not {transport}"
                    ));
                }
            }
            "--no-accounts" => policy.fetch_accounts = false,
            // Lines are always JSON; `wait` is the only command.
            "--json" | "wait" => {}
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        base_url: base_url.ok_or("--base-url is required")?,
        api_key: api_key.ok_or("--api-key is required")?,
        server_hash: server_hash.ok_or("--server-hash is required")?,
        sessions_from: sessions_from.ok_or("--sessions-from is required")?,
        policy,
        concurrency,
    })
}

fn run() -> Result<(), String> {
    let args = args()?;
    let base = BaseUrl::parse(&args.base_url).map_err(|err| format!("--base-url: {err}"))?;
    let credentials =
        Credentials::new(&args.api_key, &args.server_hash).map_err(|err| err.to_string())?;
    let text = std::fs::read_to_string(&args.sessions_from)
        .map_err(|err| format!("cannot read {}: {err}", args.sessions_from))?;
    let sessions = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| SessionId::new(line).map_err(|err| format!("{line:?}: {err}")))
        .collect::<Result<Vec<_>, _>>()?;
    drop(text);
    let limits = SchedulerConfig {
        max_in_flight: args.concurrency,
        ..SchedulerConfig::default()
    };
    let settings = ClientSettings::new(
        Api::new(base, credentials),
        ClientSettings::seed_from(std::time::SystemTime::now()),
    )
    .with_policy(args.policy)
    .with_limits(limits);
    let mut tracker = Client::from_settings(settings)
        .track_many(sessions)
        .map_err(|err| err.to_string())?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while let Some(outcome) = tracker.next_outcome() {
        serde_json::to_writer(&mut out, &outcome).map_err(|err| err.to_string())?;
        writeln!(out).map_err(|err| err.to_string())?;
    }
    out.flush().map_err(|err| err.to_string())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("wait_lines: {err}");
            std::process::ExitCode::from(2)
        }
    }
}
