//! `cargo xtask`: the workspace's development tasks (the cargo-xtask pattern: plain Rust, no deps).
//!
//! - `cargo xtask ci`: what `.ci/run` checks: formatting, clippy with warnings denied, the tests.
//! - `cargo xtask bench [--quick]`: every benchmark, side by side with its baseline, then one
//!   `bench NAME: ours=X baseline=Y unit=U ratio=R` line per comparison; writes `docs/benchmarks.md`.
//! - `cargo xtask soak [--sessions N] [--fault-rate F] [--transport async|blocking]`: the fault soak.
//! - `cargo xtask chaos [--seconds 60] [--sessions 2000] [--debug]`: three `serve` replicas on
//!   PostgreSQL killed at random under load, then one on SQLite restarted in place (see
//!   `chaos/`); one `chaos:` line each.
//! - `cargo xtask fuzz [--seconds S]`: every cargo-fuzz target for S seconds each, or, where
//!   cargo-fuzz cannot run, the property suites with many more cases.

mod bench;
mod fuzz;
mod layout;

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("ci") => run_all(&[
            &["fmt", "--all", "--check"],
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            &["test", "--workspace"],
        ]),
        Some("bench") => bench::run(rest),
        Some("soak") => soak(rest),
        Some("fuzz") => fuzz::run(rest),
        Some("layout") => layout::run(rest),
        Some("chaos") => chaos(rest),
        Some("help" | "--help" | "-h") | None => {
            println!(
                "usage: cargo xtask <task>\n\ntasks:\n  ci                   fmt --check, clippy -D warnings, test --workspace\n  bench [--quick]      every benchmark against its baseline; writes docs/benchmarks.md\n  soak [--sessions N] [--fault-rate F] [--transport async|blocking]\n                       N sessions through the simulator with faults (defaults 10000, 0.2, async)\n  chaos [--seconds 60] [--sessions 2000] [--debug]\n                       replicas on PostgreSQL killed at random under load (needs BANKCONNECT_TEST_POSTGRES)\n  fuzz [--seconds S]   every fuzz target for S seconds (default 60), or many property cases\n  layout [--check]     list the functions `wait` runs for the linker to lay out first (needs valgrind);\n                       --check: how many of them the release binary still has"
            );
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("xtask: unknown task {other:?}; run `cargo xtask help`");
            ExitCode::from(2)
        }
    }
}

pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn run_all(steps: &[&[&str]]) -> ExitCode {
    for step in steps {
        eprintln!("xtask: cargo {}", step.join(" "));
        match Command::new(cargo()).args(*step).status() {
            Ok(status) if status.success() => {}
            Ok(status) => {
                eprintln!("xtask: cargo {} failed ({status})", step.join(" "));
                return ExitCode::FAILURE;
            }
            Err(err) => {
                eprintln!("xtask: could not run cargo: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn soak(args: &[String]) -> ExitCode {
    let mut command = Command::new(cargo());
    command.args([
        "run",
        "--release",
        "--quiet",
        "-p",
        "bankconnect-cli",
        "--example",
        "soak",
        "--",
    ]);
    command.args(args);
    match command.status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("xtask: could not run the soak: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the `bankconnect` binary and the chaos example (release unless `--debug`), then runs
/// the example, which finds the binary beside it.
fn chaos(args: &[String]) -> ExitCode {
    let debug = args.iter().any(|arg| arg == "--debug");
    let profile: &[&str] = if debug { &[] } else { &["--release"] };
    let build = Command::new(cargo())
        .args([
            "build",
            "--quiet",
            "-p",
            "bankconnect-cli",
            "--bin",
            "bankconnect",
        ])
        .args(profile)
        .status();
    if !matches!(build, Ok(status) if status.success()) {
        eprintln!("xtask: cannot build the bankconnect binary");
        return ExitCode::FAILURE;
    }
    // The fleet on PostgreSQL, then one node on SQLite restarted in place.
    let passed: Vec<&String> = args.iter().filter(|arg| *arg != "--debug").collect();
    for extra in [&[][..], &["--single"]] {
        let mut command = Command::new(cargo());
        command
            .args(["run", "--quiet", "-p", "bankconnect-chaos"])
            .args(profile)
            .arg("--")
            .args(&passed)
            .args(extra);
        match command.status() {
            Ok(status) if status.success() => {}
            Ok(_) => return ExitCode::FAILURE,
            Err(err) => {
                eprintln!("xtask: could not run the chaos tool: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
