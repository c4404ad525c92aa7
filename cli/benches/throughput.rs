//! Driver cost when throughput-bound, as the independent driver harness measures it: the release
//! `bankconnect --json wait --sessions-from FILE --no-accounts` against the hand-written pollers
//! of `bankconnect-bench-peers`, each a small process of its own, each against a fresh fast
//! stand-in (`standin`, one thread: processing on the first two polls, completed from the third)
//! in a process of its own.
//!
//! N uuid-shaped sessions (20 000; `--quick` 2 000), 20 ms interval; 64 requests in flight
//! (async: `--concurrency 64` against a tokio task per session with a semaphore) and 16 threads
//! (blocking: `--transport blocking --concurrency 16` against 16 threads each owning 1/16 of the
//! sessions in a due-ordered queue). Every run must print one `completed` line per session. Wall
//! time, CPU time (user + system) and peak RSS of the measured process from `/usr/bin/time`,
//! medians of 5 rounds (`--quick`: 1) alternating which side goes first, printed as
//! `bench driver_{async,blocking}_throughput_{wall,cpu,rss}` lines.
//!
//! The peers are built on their own (`cargo build --release -p bankconnect-bench-peers`, into a
//! target directory under this bench's, with cargo's default release profile), so they carry
//! only what they use and are built as a user's own poller would be: a baseline's RSS is its
//! own.
//!
//! The command measured is the release-profile `bankconnect` (built here into a target directory
//! of its own, or `BANKCONNECT_BENCH_COMMAND` if set), not this bench's build of it: the bench
//! profile keeps debug info, which changes every symbol's hash, so the layout of
//! `cli/link/symbol-order.txt` would not apply and the command would map 3 MB more code than the
//! binary users run.
//!
//! Run: `cargo bench -p bankconnect-cli --bench throughput` (`-- --quick` for a short run).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use bankconnect_testkit::process;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const TIME: &str = "/usr/bin/time";
const INTERVAL_MS: u64 = 20;
const API_KEY: &str = "test-key";
const SERVER_HASH: &str = "test-hash";

/// Runs `cargo build --release --quiet ARGS` into `dir` under this bench's target directory,
/// with `env` set; returns that build's `release` directory.
fn release_build(dir: &str, args: &[&str], env: &[(&str, &str)], what: &str) -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--release", "--quiet"])
        .args(args)
        .arg("--target-dir")
        .arg(&target)
        .envs(env.iter().copied())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {what} failed");
    target.join("release")
}

/// Builds the peers' release binaries on their own and returns the directory holding them.
fn build_peers() -> PathBuf {
    release_build(
        "bench-peers",
        &["--bins", "--manifest-path", "../bench-peers/Cargo.toml"],
        // Cargo's default release profile, as a user's own new crate gets (not this
        // workspace's fat LTO).
        &[
            ("CARGO_PROFILE_RELEASE_LTO", "false"),
            ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"),
        ],
        "bankconnect-bench-peers",
    )
}

/// The release `bankconnect`: `BANKCONNECT_BENCH_COMMAND`, or built with the workspace's release
/// profile into a target directory under this bench's.
fn build_command() -> PathBuf {
    if let Some(path) = std::env::var_os("BANKCONNECT_BENCH_COMMAND") {
        return PathBuf::from(path);
    }
    release_build(
        "release-command",
        &["-p", "bankconnect-cli", "--bin", "bankconnect"],
        &[],
        "the release bankconnect",
    )
    .join("bankconnect")
}

/// The stand-in, in a process of its own.
struct StandIn {
    child: Child,
    base: String,
}

impl StandIn {
    fn start(peers: &Path) -> Self {
        let mut child = Command::new(peers.join("standin"))
            .args(["--api-key", API_KEY, "--server-hash", SERVER_HASH])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = process::listening_on(&mut child);
        Self { child, base }
    }
}

impl Drop for StandIn {
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

/// Runs `program args…` under `/usr/bin/time`; it must exit 0 with one `completed` line for
/// each of `sessions`.
fn measure(program: &Path, args: &[String], sessions: &[String], dir: &Path) -> Usage {
    let report = dir.join("time.txt");
    // Into a file, not a pipe: a pipe's reader would pace the writer (64 KiB at a time).
    let printed = dir.join("out.jsonl");
    let status = Command::new(TIME)
        .arg("-f")
        .arg("%e %U %S %M")
        .arg("-o")
        .arg(&report)
        .arg(program)
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(std::fs::File::create(&printed).unwrap())
        .stderr(Stdio::null())
        .status()
        .expect("the measured process runs");
    assert!(status.success(), "{program:?} failed: {status:?}");
    let mut completed: Vec<String> = std::fs::read_to_string(&printed)
        .unwrap()
        .lines()
        .filter(|line| line.contains(r#""outcome":"completed""#))
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            value["session_id"].as_str().unwrap().to_owned()
        })
        .collect();
    completed.sort();
    assert!(
        completed == sessions,
        "{program:?}: {} completed lines for {} sessions",
        completed.len(),
        sessions.len()
    );
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

/// The command, as a user runs it.
fn ours(base: &str, ids: &Path, blocking: bool) -> Vec<String> {
    let (transport, concurrency) = if blocking {
        ("blocking", "16")
    } else {
        ("async", "64")
    };
    let ids = ids.display().to_string();
    let interval = format!("{INTERVAL_MS}ms");
    [
        "--base-url",
        base,
        "--api-key",
        API_KEY,
        "--server-hash",
        SERVER_HASH,
        "--transport",
        transport,
        "--json",
        "wait",
        "--sessions-from",
        &ids,
        "--interval",
        &interval,
        "--max-wait",
        "120s",
        "--no-accounts",
        "--concurrency",
        concurrency,
    ]
    .map(str::to_owned)
    .into()
}

/// The hand-written poller's arguments.
fn baseline(base: &str, ids: &Path, blocking: bool) -> Vec<String> {
    let (cap, n) = if blocking {
        ("--threads", "16")
    } else {
        ("--concurrency", "64")
    };
    let ids = ids.display().to_string();
    let interval = INTERVAL_MS.to_string();
    ["--base-url", base, "--interval-ms", &interval, cap, n, &ids]
        .map(str::to_owned)
        .into()
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
    if !Path::new(TIME).exists() {
        println!("throughput: skipped ({TIME} is missing; it measures CPU and peak RSS)");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let count = if quick { 2_000 } else { 20_000 };
    let rounds = if quick { 1 } else { 5 };
    let peers = build_peers();
    let command = build_command();
    let dir: PathBuf =
        std::env::temp_dir().join(format!("bankconnect-throughput-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // uuid-shaped, as FinBox's are: a per-run prefix and a counter.
    let prefix = format!("{:08x}-5e55-4a0d-9c1b", std::process::id());
    let mut sessions: Vec<String> = (0..count).map(|i| format!("{prefix}-{i:012x}")).collect();
    let ids = dir.join("sessions.txt");
    std::fs::write(&ids, sessions.join("\n") + "\n").unwrap();
    sessions.sort();

    for blocking in [false, true] {
        let poller = peers.join(if blocking {
            "poller-blocking"
        } else {
            "poller-async"
        });
        let (mut ours_runs, mut base_runs) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Each run against a fresh stand-in: every session needs its three polls again.
            let run_ours = |runs: &mut Vec<Usage>| {
                let standin = StandIn::start(&peers);
                runs.push(measure(
                    &command,
                    &ours(&standin.base, &ids, blocking),
                    &sessions,
                    &dir,
                ));
            };
            let run_baseline = |runs: &mut Vec<Usage>| {
                let standin = StandIn::start(&peers);
                runs.push(measure(
                    &poller,
                    &baseline(&standin.base, &ids, blocking),
                    &sessions,
                    &dir,
                ));
            };
            if round % 2 == 0 {
                run_ours(&mut ours_runs);
                run_baseline(&mut base_runs);
            } else {
                run_baseline(&mut base_runs);
                run_ours(&mut ours_runs);
            }
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
        "driver throughput: {count} sessions completing on the 3rd poll, {INTERVAL_MS} ms interval, a fresh stand-in per run in its own process, medians of {rounds} rounds"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
