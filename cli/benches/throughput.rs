//! Driver overhead when throughput-bound: the release `bankconnect --json wait --no-accounts`
//! against hand-written pollers (`support/pollers.rs`), each a process of its own, against the
//! simulator in a process of its own.
//!
//! N sessions (20 000; `--quick` 2 000), each completing on its 3rd poll, 20 ms interval; 64
//! requests in flight (async: `--concurrency 64` against a tokio task per session with a
//! semaphore) and 16 threads (blocking: `--transport blocking --concurrency 16` against 16
//! threads each owning 1/16 of the sessions in a due-ordered queue). Wall time, CPU time (user +
//! system) and peak RSS of the measured process, medians of 5 rounds (`--quick`: 1), printed as
//! `bench driver_{async,blocking}_throughput_{wall,cpu,rss}` lines.
//!
//! The baseline process is this bench binary run again with `--poller MODE` (so nothing else
//! has to be built); CPU and peak RSS come from `/usr/bin/time`, and the bench says so and skips
//! if it is missing.
//!
//! Run: `cargo bench -p bankconnect-cli --bench throughput` (`-- --quick` for a short run).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

#[path = "support/pollers.rs"]
mod pollers;
use bankconnect_testkit::process;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bankconnect_sim::{Scenario, SessionScript};

const BIN: &str = env!("CARGO_BIN_EXE_bankconnect");
const TIME: &str = "/usr/bin/time";
const INTERVAL: Duration = Duration::from_millis(20);

fn arg(args: &[String], name: &str) -> Option<String> {
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone())
}

/// Run as the baseline process: poll the sessions listed in `--sessions-from`, printing one
/// JSON line per session as it completes (as `wait --json` does).
fn poller(args: &[String]) {
    let mode = arg(args, "--poller").unwrap();
    let base = arg(args, "--base").unwrap();
    let cap: usize = arg(args, "--cap").unwrap().parse().unwrap();
    let text = std::fs::read_to_string(arg(args, "--sessions-from").unwrap()).unwrap();
    let ids: Vec<String> = text.lines().map(str::to_owned).collect();
    let out = std::sync::Mutex::new(std::io::BufWriter::new(std::io::stdout()));
    let print = move |id: &str| {
        let line = serde_json::json!({"session_id": id, "outcome": "completed"});
        let mut out = out.lock().unwrap();
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    };
    if mode == "blocking" {
        pollers::poll_blocking(&base, &ids, INTERVAL, cap, &print);
    } else {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(pollers::poll_async(
            base,
            ids,
            INTERVAL,
            cap,
            Arc::new(print),
        ));
    }
}

/// The simulator, in a process of its own.
struct Sim {
    child: Child,
    base: String,
}

impl Sim {
    fn start(scenario: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args(["sim", "--addr", "127.0.0.1:0", "--scenario"])
            .arg(scenario)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = process::listening_on(&mut child);
        Self { child, base }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wall ms, CPU ms and peak RSS KiB of one measured process, from `/usr/bin/time`.
#[derive(Clone, Copy)]
struct Usage {
    wall: f64,
    cpu: f64,
    rss: f64,
}

fn measure(command: &mut Command, sessions: usize, dir: &Path) -> Usage {
    let report = dir.join("time.txt");
    let output = command
        .stderr(Stdio::null())
        .output()
        .expect("the measured process runs");
    let lines = String::from_utf8_lossy(&output.stdout).lines().count();
    assert_eq!(lines, sessions, "one line per session: {output:?}");
    let text = std::fs::read_to_string(&report).unwrap();
    let fields: Vec<f64> = text
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    assert_eq!(fields.len(), 4, "time's report: {text}");
    Usage {
        wall: fields[0] * 1000.0,
        cpu: (fields[1] + fields[2]) * 1000.0,
        rss: fields[3],
    }
}

fn timed(dir: &Path) -> Command {
    let mut command = Command::new(TIME);
    command
        .arg("-f")
        .arg("%e %U %S %M")
        .arg("-o")
        .arg(dir.join("time.txt"));
    command
}

fn ours(dir: &Path, sim: &Sim, ids: &Path, blocking: bool, sessions: usize) -> Usage {
    let mut command = timed(dir);
    command
        .arg(BIN)
        .args(["--json", "--transport"])
        .arg(if blocking { "blocking" } else { "async" })
        .args([
            "wait",
            "--no-accounts",
            "--interval",
            "20ms",
            "--max-wait",
            "10m",
        ])
        .args(["--concurrency", if blocking { "16" } else { "64" }])
        .arg("--sessions-from")
        .arg(ids)
        .env("BANKCONNECT_BASE_URL", &sim.base)
        .env("BANKCONNECT_API_KEY", "sim-api-key")
        .env("BANKCONNECT_SERVER_HASH", "sim-server-hash")
        .env_remove("RUST_LOG");
    measure(&mut command, sessions, dir)
}

fn baseline(dir: &Path, sim: &Sim, ids: &Path, blocking: bool, sessions: usize) -> Usage {
    let mut command = timed(dir);
    command
        .arg(std::env::current_exe().unwrap())
        .args(["--poller", if blocking { "blocking" } else { "async" }])
        .args(["--base", &sim.base])
        .args(["--cap", if blocking { "16" } else { "64" }])
        .arg("--sessions-from")
        .arg(ids);
    measure(&mut command, sessions, dir)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn line(name: &str, unit: &str, ours: f64, baseline: f64) {
    println!(
        "bench {name}: ours={ours:.0} baseline={baseline:.0} unit={unit} ratio={:.2}",
        ours / baseline.max(1e-9)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if arg(&args, "--poller").is_some() {
        poller(&args);
        return;
    }
    if !Path::new(TIME).exists() {
        println!("throughput: skipped ({TIME} is missing; it measures CPU and peak RSS)");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let sessions = if quick { 2_000 } else { 20_000 };
    let rounds = if quick { 1 } else { 5 };
    let dir: PathBuf =
        std::env::temp_dir().join(format!("bankconnect-throughput-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ids: Vec<String> = (0..sessions).map(|i| format!("t-{i}")).collect();
    let scenario = Scenario {
        sessions: ids
            .iter()
            .map(|id| {
                SessionScript::new(id)
                    .complete_after_polls(3)
                    .without_webhook()
            })
            .collect(),
        ..Scenario::default()
    };
    let scenario_file = dir.join("scenario.json");
    std::fs::write(&scenario_file, serde_json::to_string(&scenario).unwrap()).unwrap();
    let ids_file = dir.join("sessions.txt");
    std::fs::write(&ids_file, ids.join("\n")).unwrap();

    for blocking in [false, true] {
        let (mut ours_runs, mut base_runs) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            // A fresh simulator per run: each session completes on its 3rd poll again.
            let sim = Sim::start(&scenario_file);
            ours_runs.push(ours(&dir, &sim, &ids_file, blocking, sessions));
            drop(sim);
            let sim = Sim::start(&scenario_file);
            base_runs.push(baseline(&dir, &sim, &ids_file, blocking, sessions));
            drop(sim);
        }
        let name = if blocking { "blocking" } else { "async" };
        for (what, unit, pick) in [
            ("wall", "ms", (|u: &Usage| u.wall) as fn(&Usage) -> f64),
            ("cpu", "ms", |u: &Usage| u.cpu),
            ("rss", "KiB", |u: &Usage| u.rss),
        ] {
            line(
                &format!("driver_{name}_throughput_{what}"),
                unit,
                median(ours_runs.iter().map(pick).collect()),
                median(base_runs.iter().map(pick).collect()),
            );
        }
    }
    println!(
        "driver throughput: {sessions} sessions completing on the 3rd poll, 20 ms interval, simulator in its own process, medians of {rounds} rounds"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
