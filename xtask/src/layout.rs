//! `cargo xtask layout [--check]`: lists the functions a `bankconnect wait` runs, for the linker to
//! lay out first (`cli/link/symbol-order.txt`, read by `cli/build.rs`).
//!
//! The list is what callgrind saw the release binary execute while it tracked a few hundred
//! sessions against the `bench-peers` stand-in, once per transport, with and without accounts.
//! Symbol names carry hashes of the build's metadata, so a toolchain or dependency change leaves
//! names the binary no longer has: they are skipped at link time (memory, not correctness, is
//! lost). `--check` says how many of the listed names the current release binary still has and
//! fails under 90 %.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

const ORDER_FILE: &str = "cli/link/symbol-order.txt";
const HEADER: &str = "# The bankconnect binary's hot functions, laid out first by the linker (cli/build.rs).\n\
# Made by `cargo xtask layout` (callgrind over `wait` on both transports); one mangled symbol per line.\n";
const SESSIONS: usize = 300;

pub(crate) fn run(args: &[String]) -> ExitCode {
    let check = args.iter().any(|arg| arg == "--check");
    match if check { check_coverage() } else { generate() } {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask layout: {err}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn release_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), PathBuf::from)
        .join("release")
}

fn build() -> Result<(), String> {
    let status = Command::new(crate::cargo())
        .current_dir(root())
        .args(["build", "--release", "--quiet", "-p", "bankconnect-cli"])
        .args([
            "--bin",
            "bankconnect",
            "-p",
            "bankconnect-bench-peers",
            "--bin",
            "standin",
        ])
        .status()
        .map_err(|err| format!("cannot run cargo: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("the release build failed".into())
    }
}

fn generate() -> Result<(), String> {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .map_err(|err| format!("needs valgrind (apt-get install valgrind): {err}"))?;
    build()?;
    let binary = release_dir().join("bankconnect");
    let work = std::env::temp_dir().join(format!("bankconnect-layout-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|err| format!("{}: {err}", work.display()))?;
    let sessions = work.join("sessions.txt");
    let ids: String = (0..SESSIONS)
        .map(|i| format!("5e55f00d-0000-4000-8000-{i:012x}\n"))
        .collect();
    std::fs::write(&sessions, ids).map_err(|err| format!("{}: {err}", sessions.display()))?;

    let mut standin = Command::new(release_dir().join("standin"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| format!("cannot start the stand-in: {err}"))?;
    let mut line = String::new();
    if let Some(out) = standin.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let base = line.trim().strip_prefix("listening on ").map(str::to_owned);
    let result = base
        .ok_or_else(|| format!("the stand-in said {line:?}"))
        .and_then(|base| trace_all(&binary, &base, &sessions, &work));
    let _ = standin.kill();
    let _ = standin.wait();
    let _ = std::fs::remove_dir_all(&work);
    let names = result?;
    let mut text = String::from(HEADER);
    for name in &names {
        text.push_str(name);
        text.push('\n');
    }
    let path = root().join(ORDER_FILE);
    std::fs::write(&path, text).map_err(|err| format!("{}: {err}", path.display()))?;
    eprintln!(
        "xtask layout: {} functions written to {ORDER_FILE}",
        names.len()
    );
    Ok(())
}

/// The functions of `binary` that callgrind saw run, over every traced `wait`: those of the first
/// trace first, then what each later one added (so each path's code stays together).
fn trace_all(
    binary: &Path,
    base: &str,
    sessions: &Path,
    work: &Path,
) -> Result<Vec<String>, String> {
    let mut seen = BTreeSet::new();
    let mut names = Vec::new();
    for (i, (transport, accounts)) in [
        ("blocking", false),
        ("async", false),
        ("blocking", true),
        ("async", true),
    ]
    .into_iter()
    .enumerate()
    {
        let out = work.join(format!("callgrind.{i}"));
        let mut command = Command::new("valgrind");
        command
            .args(["--tool=callgrind", "--demangle=no", "--compress-strings=no"])
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(binary)
            .args(["--base-url", base, "--api-key", "test-key", "--server-hash"])
            .args(["test-hash", "--transport", transport, "--json", "wait"])
            .arg("--sessions-from")
            .arg(sessions)
            .args([
                "--interval",
                "20ms",
                "--max-wait",
                "120s",
                "--concurrency",
                "16",
            ]);
        if !accounts {
            command.arg("--no-accounts");
        }
        // The exit code is the sessions' (the stand-in has no accounts); the trace is what counts.
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|err| format!("cannot run valgrind: {err}"))?;
        let text = std::fs::read_to_string(&out)
            .map_err(|err| format!("no callgrind output for {transport}: {err}"))?;
        let before = names.len();
        for name in executed_in(&text, binary) {
            if seen.insert(name.clone()) {
                names.push(name);
            }
        }
        eprintln!(
            "xtask layout: wait --transport {transport}{}: {} new functions",
            if accounts { "" } else { " --no-accounts" },
            names.len() - before
        );
    }
    if names.is_empty() {
        return Err("callgrind saw no function of the binary run".into());
    }
    Ok(names)
}

/// Function names of `binary` in a callgrind profile written with `--compress-strings=no`.
fn executed_in(profile: &str, binary: &Path) -> BTreeSet<String> {
    let binary = binary.to_string_lossy();
    let mut names = BTreeSet::new();
    let (mut object, mut called_object): (Option<&str>, Option<&str>) = (None, None);
    for line in profile.lines() {
        if let Some(rest) = line.strip_prefix("ob=") {
            object = Some(rest);
        } else if let Some(rest) = line.strip_prefix("cob=") {
            called_object = Some(rest);
        } else if let Some(rest) = line.strip_prefix("fn=") {
            if object == Some(&*binary) {
                names.extend(symbol(rest));
            }
            called_object = None;
        } else if let Some(rest) = line.strip_prefix("cfn=") {
            if called_object.or(object) == Some(&*binary) {
                names.extend(symbol(rest));
            }
            called_object = None;
        }
    }
    names
}

/// A linker symbol from callgrind's name for a function: without its recursion mark (`'2`);
/// none for what has no symbol (`0x…`, `(below main)`).
fn symbol(name: &str) -> Option<String> {
    let name = match name.rsplit_once('\'') {
        Some((head, depth)) if depth.bytes().all(|b| b.is_ascii_digit()) => head,
        _ => name,
    };
    let plain =
        name.starts_with('_') || name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
    (plain && !name.contains(' ')).then(|| name.to_owned())
}

fn check_coverage() -> Result<(), String> {
    build()?;
    let listed: Vec<String> = std::fs::read_to_string(root().join(ORDER_FILE))
        .map_err(|err| format!("{ORDER_FILE}: {err}"))?
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let output = Command::new("nm")
        .arg("--defined-only")
        .arg(release_dir().join("bankconnect"))
        .output()
        .map_err(|err| format!("cannot run nm: {err}"))?;
    let defined: BTreeSet<&str> = std::str::from_utf8(&output.stdout)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .collect();
    let found = listed
        .iter()
        .filter(|name| defined.contains(name.as_str()))
        .count();
    let share = found as f64 / listed.len().max(1) as f64;
    println!(
        "layout: {found} of {} listed functions are in the release binary ({:.0} %)",
        listed.len(),
        share * 100.0
    );
    if share < 0.9 {
        return Err("the list is stale: run `cargo xtask layout`".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callgrind_names_of_the_binary_only_become_symbols() {
        let profile = "ob=/bin/x\nfn=_ZN1a1b17h0E\ncob=/lib/libc.so\ncfn=memcpy\ncfn=_RNv1c'2\nob=/lib/libc.so\nfn=free\ncob=/bin/x\ncfn=0x1234\ncob=/bin/x\ncfn=(below main)\n";
        let names = executed_in(profile, Path::new("/bin/x"));
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            vec!["_RNv1c".to_owned(), "_ZN1a1b17h0E".to_owned()]
        );
    }
}
