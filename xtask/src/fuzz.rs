//! `cargo xtask fuzz`: every cargo-fuzz target for S seconds each. cargo-fuzz is installed from
//! crates.io if missing; it needs nightly features, which a stable toolchain is allowed to use here
//! through `RUSTC_BOOTSTRAP=1` (only for this fuzz build). If that cannot work, it says so and runs
//! the property suites (the same parsers, random inputs) with many more cases instead.

use std::process::{Command, ExitCode};

const TARGETS: &[&str] = &[
    "progress_body",
    "session_status_body",
    "webhook_body",
    "signature_headers",
    "cli_inputs",
];

fn have_cargo_fuzz() -> bool {
    Command::new(crate::cargo())
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub(crate) fn run(args: &[String]) -> ExitCode {
    let seconds: u64 = args
        .windows(2)
        .find(|w| w.first().map(String::as_str) == Some("--seconds"))
        .and_then(|w| w.get(1)?.parse().ok())
        .unwrap_or(60);
    if !have_cargo_fuzz() {
        eprintln!("xtask: cargo-fuzz is missing; installing it from crates.io");
        let installed = Command::new(crate::cargo())
            .args(["install", "cargo-fuzz", "--locked"])
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            eprintln!("xtask: cargo-fuzz could not be installed; falling back to property tests");
            return proptest_fallback(seconds);
        }
    }
    for target in TARGETS {
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        let corpus = format!("corpus/{target}");
        let _ = std::fs::create_dir_all(format!("fuzz/{corpus}"));
        seed_corpus(target);
        let status = Command::new(crate::cargo())
            .current_dir("fuzz")
            .env("RUSTC_BOOTSTRAP", "1")
            .args([
                "fuzz",
                "run",
                "--sanitizer",
                "none",
                target,
                &corpus,
                "--",
                &format!("-max_total_time={seconds}"),
            ])
            .status();
        match status {
            Ok(status) if status.success() => {}
            Ok(_) => {
                eprintln!("xtask: {target} found a crash (see fuzz/artifacts/{target}); make it a regression test");
                return ExitCode::FAILURE;
            }
            Err(err) => {
                eprintln!(
                    "xtask: cargo fuzz could not run ({err}); falling back to property tests"
                );
                return proptest_fallback(seconds);
            }
        }
    }
    ExitCode::SUCCESS
}

/// Copies the documented fixtures into a target's corpus, so fuzzing starts from real payloads.
fn seed_corpus(target: &str) {
    let source = match target {
        "webhook_body" => "webhook-verify/tests/fixtures",
        "progress_body" | "session_status_body" => "core/tests/fixtures",
        _ => return,
    };
    if let Ok(entries) = std::fs::read_dir(source) {
        for entry in entries.flatten() {
            let _ = std::fs::copy(
                entry.path(),
                format!(
                    "fuzz/corpus/{target}/{}",
                    entry.file_name().to_string_lossy()
                ),
            );
        }
    }
}

fn proptest_fallback(seconds: u64) -> ExitCode {
    // About 20 000 cases per second of budget per suite, at least the suites' own defaults.
    let cases = (seconds * 20_000).max(10_000);
    eprintln!("xtask: running the property suites with PROPTEST_CASES={cases}");
    let status = Command::new(crate::cargo())
        .env("PROPTEST_CASES", cases.to_string())
        .args([
            "test",
            "--release",
            "-p",
            "bankconnect-core",
            "--test",
            "properties",
            "--test",
            "session_properties",
            "-p",
            "bankconnect-webhook-verify",
            "--test",
            "properties",
        ])
        .status();
    if status.is_ok_and(|s| s.success()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
