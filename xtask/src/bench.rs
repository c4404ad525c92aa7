//! `cargo xtask bench`: runs every benchmark, collects their `bench …` lines, prints them last and
//! writes `docs/benchmarks.md` with the table, the goals (met or not), the machine and the command.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};

/// (package, bench target) in the order they run.
const BENCHES: &[(&str, &str)] = &[
    ("bankconnect-core", "scheduler"),
    ("bankconnect-webhook-verify", "intake"),
    ("bankconnect-cli", "drivers"),
    ("bankconnect-cli", "throughput"),
    ("bankconnect-cli", "receiver"),
    ("bankconnect-store", "store"),
    ("bankconnect-store", "operations"),
    ("bankconnect-service", "retention"),
    ("bankconnect-service", "console"),
    ("bankconnect-cli", "serve"),
];

/// A goal: which comparisons it covers (name prefix, and `_rss` for memory) and the largest
/// ratio that meets it.
const GOALS: &[(&str, f64, &str)] = &[
    (
        "driver_",
        1.10,
        "drivers within 1.10x of hand-written loops (wall and CPU time)",
    ),
    (
        "driver_*_rss",
        1.50,
        "drivers within 1.5x of hand-written loops' peak RSS (throughput-bound)",
    ),
    (
        "webhook_parse_",
        1.00,
        "webhook parsing at least as fast as serde_json::Value",
    ),
    (
        "webhook_verify_",
        1.00,
        "Standard Webhooks verification at least as fast as the standardwebhooks crate",
    ),
    (
        "scheduler_decision_100k_vs_1k",
        2.00,
        "scheduler cost per decision at 100 000 sessions within 2x of 1 000",
    ),
    (
        "store_sqlite_finish",
        2.00,
        "finishing a session with its outbox row within 2x of a bare one-row commit (SQLite)",
    ),
    (
        "store_postgres_finish",
        2.00,
        "finishing a session with its outbox row within 2x of a bare one-row commit (PostgreSQL)",
    ),
    (
        "store_sqlite_claim_100k",
        3.00,
        "claiming 1 000 of 100 000 sessions within 3x of a bare indexed SELECT (SQLite)",
    ),
    (
        "store_postgres_claim_100k",
        3.00,
        "claiming 1 000 of 100 000 sessions within 3x of a bare indexed SELECT (PostgreSQL)",
    ),
    (
        "store_sqlite_list_filter_1m_p99",
        1.00,
        "a page of 100 with each listing filter, a million sessions stored: p99 within 50 ms (SQLite)",
    ),
    (
        "store_postgres_list_filter_1m_p99",
        1.00,
        "a page of 100 with each listing filter, a million sessions stored: p99 within 50 ms (PostgreSQL)",
    ),
    (
        "store_size_steady",
        1.10,
        "the store's size flat under a steady load after the first retention period (three periods within 1.1x of one)",
    ),
    (
        "console_render_1m_p99",
        1.00,
        "each console page's server-side render, a million sessions stored: p99 within 50 ms (SQLite)",
    ),
    (
        "serve_add_during_prune_p99",
        2.00,
        "add latency p99 while 100 000 expired sessions are pruned within 2x of the same without pruning",
    ),
    (
        "serve_add_session",
        1.50,
        "serve's add within 1.5x of a bare axum handler's one-row SQLite insert",
    ),
    (
        "serve_webhook_intake",
        1.50,
        "serve's webhook intake within 1.5x of a bare axum handler's one-row SQLite insert",
    ),
    (
        "serve_restart_100k",
        1.00,
        "restart on 100 000 tracking sessions to the first progress request under 3 s",
    ),
    (
        "serve_notice_latency_p99",
        1.00,
        "webhook in to delivery received, p99 at most 50 ms",
    ),
    (
        "serve_delivery_throughput",
        1.50,
        "deliveries from finished sessions to a local receiver within 1.5x of a bare reqwest loop's time per delivery (and at least 1 000/s)",
    ),
    (
        "fleet_scaling",
        1.25,
        "CPU per session with 3 replicas within 1.25x of 1 (at least 0.8x the work per replica)",
    ),
    (
        "scheduler_bytes_per_session",
        1.00,
        "under 1 KiB per tracked session with two statements",
    ),
];

struct Line {
    name: String,
    ours: String,
    baseline: String,
    unit: String,
    ratio: f64,
    text: String,
}

fn parse(line: &str) -> Option<Line> {
    let rest = line.strip_prefix("bench ")?;
    let (name, fields) = rest.split_once(": ")?;
    let field = |key: &str| {
        fields
            .split_whitespace()
            .find_map(|f| f.strip_prefix(key).map(str::to_owned))
    };
    Some(Line {
        name: name.to_owned(),
        ours: field("ours=")?,
        baseline: field("baseline=")?,
        unit: field("unit=")?,
        ratio: field("ratio=")?.parse().ok()?,
        text: line.to_owned(),
    })
}

pub(crate) fn run(args: &[String]) -> ExitCode {
    let quick = args.iter().any(|a| a == "--quick");
    let mut lines = Vec::new();
    let mut context = Vec::new();
    for (package, bench) in BENCHES {
        eprintln!(
            "xtask: cargo bench -p {package} --bench {bench}{}",
            if quick { " -- --quick" } else { "" }
        );
        let mut command = Command::new(crate::cargo());
        if std::env::var_os("BANKCONNECT_TEST_POSTGRES").is_none() {
            // The project's machines run PostgreSQL here; the store bench says if it is not.
            command.env(
                "BANKCONNECT_TEST_POSTGRES",
                "postgres://postgres@127.0.0.1:5432/test",
            );
        }
        command.args(["bench", "-q", "-p", package, "--bench", bench, "--"]);
        if quick {
            command.arg("--quick");
        }
        let mut child = match command.stdout(Stdio::piped()).spawn() {
            Ok(child) => child,
            Err(err) => {
                eprintln!("xtask: could not run cargo bench: {err}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("{line}");
                match parse(&line) {
                    Some(parsed) => lines.push(parsed),
                    None if !line.trim().is_empty() => context.push(line),
                    None => {}
                }
            }
        }
        match child.wait() {
            Ok(status) if status.success() => {}
            _ => {
                eprintln!("xtask: the {bench} benchmark failed");
                return ExitCode::FAILURE;
            }
        }
    }
    println!();
    for line in &lines {
        println!("{}", line.text);
    }
    if let Err(err) = write_report(&lines, &context, quick) {
        eprintln!("xtask: could not write docs/benchmarks.md: {err}");
        return ExitCode::FAILURE;
    }
    eprintln!("xtask: wrote docs/benchmarks.md");
    ExitCode::SUCCESS
}

/// Whether a goal's pattern covers a comparison: `PREFIX*SUFFIX`, or a bare prefix (which
/// leaves out the `_rss` lines: memory has a goal of its own).
fn covers(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((prefix, suffix)) => name.starts_with(prefix) && name.ends_with(suffix),
        None => name.starts_with(pattern) && !name.ends_with("_rss"),
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cores} cores, {cpu}, {rustc}")
}

fn write_report(lines: &[Line], context: &[String], quick: bool) -> std::io::Result<()> {
    let mut out = String::new();
    out.push_str("# Benchmarks\n\n");
    out.push_str("Generated by `cargo xtask bench");
    out.push_str(if quick { " --quick" } else { "" });
    out.push_str("`; do not edit by hand (notes below come from `docs/benchmark-notes.md`).\n\n");
    out.push_str(&format!("Machine: {}. Shared machines are noisy: compare ratios, measured side by side in one run, not absolute times.\n\n", machine()));
    out.push_str("| comparison | ours | baseline | unit | ratio (ours / baseline, lower is better) |\n|---|---|---|---|---|\n");
    for line in lines {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} |\n",
            line.name, line.ours, line.baseline, line.unit, line.ratio
        ));
    }
    out.push_str("\n## Goals\n\n| goal | limit | worst ratio | met |\n|---|---|---|---|\n");
    for (prefix, limit, text) in GOALS {
        let worst = lines
            .iter()
            .filter(|l| covers(prefix, &l.name))
            .map(|l| l.ratio)
            .fold(f64::NAN, f64::max);
        let met = if worst.is_nan() {
            "not measured"
        } else if worst <= *limit {
            "yes"
        } else {
            "**no**"
        };
        out.push_str(&format!("| {text} | {limit:.2} | {worst:.2} | {met} |\n"));
    }
    if !context.is_empty() {
        out.push_str("\n## Run details\n\n```\n");
        for line in context {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("```\n");
    }
    out.push_str("\n## Raw lines\n\n```\n");
    for line in lines {
        out.push_str(&line.text);
        out.push('\n');
    }
    out.push_str("```\n");
    if let Ok(notes) = std::fs::read_to_string("docs/benchmark-notes.md") {
        out.push('\n');
        out.push_str(&notes);
    }
    std::fs::create_dir_all("docs")?;
    std::fs::write("docs/benchmarks.md", out)
}
