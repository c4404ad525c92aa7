//! Regression tests through the built binary for what hostile inputs found: forged webhooks,
//! bad ports and paths, zero timeouts, oversize inputs, terminal injection, an unread stdout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bankconnect_sim::SessionScript;
use common::*;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// POSTs `body` as JSON to `addr` + `path`, returning the status line (empty if refused).
fn post(addr: &str, path: &str, body: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return String::new();
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

fn wait_until_listening(addr: &str) {
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{addr} never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const FORGED_FAILURE: &str = r#"{"session_id": "clean", "event_name": "ENRICHMENT_NOTIFICATION",
  "accounts": [{"account_id": "acc-1", "bank_name": "sbi", "account_status": "failed",
  "error_code": "INCOMPLETE_MONTHS", "error_message": "Incomplete months: Jan 2024"}]}"#;

#[test]
fn a_forged_unsigned_webhook_never_changes_the_verdict() {
    for transport in ["async", "blocking"] {
        let port = free_port();
        let sim = sim(vec![SessionScript::new("clean")
            .complete_after(Duration::from_millis(1500))
            .without_webhook()]);
        let listen = format!("127.0.0.1:{port}");
        let child = bankconnect(
            Some(&sim.sim),
            &[
                "--transport",
                transport,
                "--json",
                "wait",
                "clean",
                "--interval",
                "300ms",
                "--webhook-listen",
                &listen,
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        wait_until_listening(&listen);
        // A forged failure while the session is still processing, and again later.
        assert!(post(&listen, "/", FORGED_FAILURE).contains(" 200 "));
        // Again around completion (the wait may have ended already).
        std::thread::sleep(Duration::from_millis(1400));
        let _ = post(&listen, "/", &FORGED_FAILURE.replace("acc-1", "acc-2"));
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{transport}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let line: serde_json::Value =
            serde_json::from_slice(output.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
        assert_eq!(line["outcome"], "completed", "{transport}: {line}");
        for account in line["accounts"].as_array().unwrap() {
            assert_ne!(account["account_status"], "failed", "{transport}: {line}");
        }
    }
}

#[test]
fn a_forged_completion_for_a_processing_session_attaches_nothing() {
    let port = free_port();
    let sim = sim(vec![SessionScript::new("clean")
        .complete_after(Duration::from_secs(600))
        .without_webhook()]);
    let listen = format!("127.0.0.1:{port}");
    let child = bankconnect(
        Some(&sim.sim),
        &[
            "--json",
            "wait",
            "clean",
            "--interval",
            "200ms",
            "--max-wait",
            "2s",
            "--webhook-listen",
            &listen,
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    wait_until_listening(&listen);
    assert!(post(&listen, "/", &FORGED_FAILURE.replace("failed", "completed")).contains(" 200 "));
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(4));
    let line: serde_json::Value =
        serde_json::from_slice(output.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["outcome"], "timed_out");
    assert_eq!(line["accounts"], serde_json::json!([]));
}

#[test]
fn ports_outside_1_to_65535_and_cleartext_webhooks_are_refused() {
    for (args, what) in [
        (
            vec!["--base-url", "http://127.0.0.1:99999/x", "progress", "s"],
            "port",
        ),
        (
            vec!["--base-url", "http://127.0.0.1:0/x", "progress", "s"],
            "port",
        ),
        (
            vec!["--base-url", "http://localhost./x", "progress", "s"],
            "http://",
        ),
        (
            vec!["webhook", "set", "https://hooks.example.com:70000/x"],
            "port",
        ),
        (
            vec!["webhook", "set", "http://hooks.example.com/x"],
            "http://",
        ),
    ] {
        let output = bankconnect(None, &args)
            .env("BANKCONNECT_API_KEY", "k")
            .env("BANKCONNECT_SERVER_HASH", "h")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(what), "{args:?}: {stderr}");
    }
}

#[test]
fn bad_paths_zero_timeouts_and_missing_ids_are_usage_errors() {
    for args in [
        vec!["webhook", "listen", "--path", "hook"],
        vec!["webhook", "listen", "--path", ""],
        vec!["webhook", "listen", "--path", "/hook?t=1"],
        vec![
            "wait",
            "s",
            "--webhook-listen",
            "127.0.0.1:0",
            "--webhook-path",
            "x",
        ],
        vec!["--request-timeout", "0s", "progress", "s"],
    ] {
        let output = run(None, &args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
    let output = run(None, &["--json", "progress"]);
    assert_eq!(output.status.code(), Some(2));
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let message = line["error"]["message"].as_str().unwrap();
    assert!(message.contains("SESSION_ID"), "{message}");
}

#[test]
fn sessions_from_larger_than_the_limit_is_refused_not_cut() {
    let dir = std::env::temp_dir().join(format!("bankconnect_big_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sessions.txt");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let line = format!("{}\n", "a".repeat(127));
        for _ in 0..(64 * 1024 * 1024 / 128 + 1) {
            file.write_all(line.as_bytes()).unwrap();
        }
    }
    let output = run(None, &["wait", "--sessions-from", path.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("larger than"));
}

#[test]
fn human_output_escapes_terminal_control_characters() {
    let dir = std::env::temp_dir().join(format!("bankconnect_esc_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("event.json");
    std::fs::write(
        &path,
        r#"{"session_id": "s1", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": [
          {"account_id": "a\u001b[2J\u001b]0;pwned\u0007", "bank_name": "sbi\r\nFAKE: all accounts completed",
           "account_status": "failed", "error_code": "X", "error_message": "m\u202eevil"}]}"#,
    )
    .unwrap();
    let output = run(None, &["webhook", "verify", path.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(!stdout.contains('\u{1b}'), "{stdout:?}");
    assert!(!stdout.contains('\u{7}'), "{stdout:?}");
    assert!(!stdout.contains('\r'), "{stdout:?}");
    assert!(!stdout.contains('\u{202e}'), "{stdout:?}");
    assert!(
        !stdout.lines().any(|l| l.starts_with("FAKE")),
        "a forged line: {stdout:?}"
    );
}

#[test]
fn the_listener_answers_when_nobody_reads_its_stdout() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // stdout is a pipe nobody reads: once it is full, printing would block.
    let mut child = bankconnect(None, &["--json", "webhook", "listen", "--addr", &addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_listening(&addr);
    let started = Instant::now();
    for i in 0..1500 {
        let body = format!(
            r#"{{"session_id": "s{i}", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": [{{"account_id": "{}"}}]}}"#,
            "x".repeat(200)
        );
        let status = post(&addr, "/", &body);
        assert!(status.contains(" 200 "), "event {i}: {status:?}");
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// Reads stderr lines until the receiver's address shows up.
fn bound_address(stderr: std::process::ChildStderr) -> String {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(stderr).lines();
    let line = lines
        .find_map(|line| {
            let line = line.ok()?;
            line.contains("listening on http://").then_some(line)
        })
        .expect("the bound address on stderr");
    // Keep draining stderr so the child never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    let url = line.split("http://").nth(1).unwrap();
    url.split('/').next().unwrap().to_owned()
}

#[test]
fn wait_prints_its_receiver_address_and_trusts_a_webhook_with_the_token() {
    let sim = sim(vec![SessionScript::new("tok")
        .complete_after(Duration::from_millis(300))
        .without_webhook()]);
    let mut child = bankconnect(
        Some(&sim.sim),
        &[
            "--json",
            "wait",
            "tok",
            "--interval",
            "60s",
            "--webhook-listen",
            "127.0.0.1:0",
            "--webhook-path",
            "/hooks",
        ],
    )
    .env("BANKCONNECT_WEBHOOK_TOKEN", "s3cret-token")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let addr = bound_address(child.stderr.take().unwrap());
    assert!(!addr.ends_with(":0"), "{addr}");
    let event = r#"{"session_id": "tok", "event_name": "ENRICHMENT_NOTIFICATION",
      "accounts": [{"account_id": "acc-9", "bank_name": "sbi", "account_status": "completed"}]}"#;
    assert!(post(&addr, "/hooks", event).contains(" 401 "), "no token");
    assert!(post(&addr, "/hooks?token=wrong", event).contains(" 401 "));
    std::thread::sleep(Duration::from_millis(400));
    assert!(post(&addr, "/hooks?token=s3cret-token", event).contains(" 200 "));
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let line: serde_json::Value =
        serde_json::from_slice(output.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["notified_by"], "webhook");
    // Authenticated: its accounts decide, and no session_status request was needed.
    assert_eq!(line["accounts"][0]["account_id"], "acc-9");
    assert!(sim
        .sim
        .requests_for("tok")
        .iter()
        .all(|r| !r.path.ends_with("/session_status/")));
}

#[test]
fn sigterm_and_sigint_end_a_wait_with_a_line_per_pending_session() {
    let sim = sim(vec![
        SessionScript::new("slow-a").complete_after(Duration::from_secs(600)),
        SessionScript::new("slow-b").complete_after(Duration::from_secs(600)),
    ]);
    for (signal, code) in [("-TERM", 143), ("-INT", 130)] {
        let child = bankconnect(
            Some(&sim.sim),
            &["--json", "wait", "slow-a", "slow-b", "--interval", "200ms"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        std::thread::sleep(Duration::from_millis(800));
        let killed = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(code), "{signal}");
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        for line in &lines {
            assert_eq!(line["outcome"], "interrupted");
        }
    }
}

#[test]
fn json_errors_carry_kind_code_status_and_message() {
    let sim = sim(vec![]);
    let output = run(Some(&sim.sim), &["--json", "progress", "nobody"]);
    assert_eq!(output.status.code(), Some(5));
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let error = &line["error"];
    assert_eq!(error["kind"], "api_error");
    assert_eq!(error["code"], "SESSION_NOT_FOUND");
    assert_eq!(error["status"], 404);
    assert!(error["message"].is_string());
    let output = run(None, &["--json", "progress"]);
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(line["error"]["kind"], "usage");
    assert!(line["error"].as_object().unwrap().contains_key("code"));
}

#[test]
fn listen_reports_rejections_as_json_lines_on_stderr() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = bankconnect(None, &["--json", "webhook", "listen", "--addr", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_listening(&addr);
    // Lines are printed after the answer (through a queue): read them as they come.
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    assert!(post(&addr, "/", "{not json").contains(" 400 "));
    let line = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a rejection line on stderr");
        if line.contains("rejected") {
            break line;
        }
    };
    child.kill().unwrap();
    let _ = child.wait();
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["rejected"]["status"], 400);
}

#[test]
fn sessions_from_stdin_are_tracked_as_lines_arrive() {
    use std::io::BufRead;
    for transport in ["async", "blocking"] {
        let sim = sim(vec![
            SessionScript::new("first").complete_after(Duration::from_millis(100)),
            SessionScript::new("second").complete_after(Duration::from_millis(100)),
        ]);
        let mut child = bankconnect(
            Some(&sim.sim),
            &[
                "--transport",
                transport,
                "--json",
                "wait",
                "--sessions-from",
                "-",
                "--interval",
                "100ms",
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        writeln!(stdin, "first").unwrap();
        stdin.flush().unwrap();
        // The first outcome comes while stdin is still open.
        let line: serde_json::Value =
            serde_json::from_str(&stdout.next().unwrap().unwrap()).unwrap();
        assert_eq!(line["session_id"], "first", "{transport}");
        writeln!(stdin, "# a comment\nfirst\nsecond").unwrap();
        drop(stdin);
        let line: serde_json::Value =
            serde_json::from_str(&stdout.next().unwrap().unwrap()).unwrap();
        assert_eq!(line["session_id"], "second", "{transport}");
        assert!(stdout.next().is_none(), "no duplicate for the repeated id");
        assert_eq!(child.wait().unwrap().code(), Some(0), "{transport}");
    }
}

/// Peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Opens 300 connections to `addr`, each sending the head of a POST to one of `paths` (in turn)
/// and almost 1 MiB of its body, then stalling: 300 MiB if all were buffered. Returns the
/// process's peak RSS in KiB while they are held.
fn peak_rss_under_slow_bodies(addr: &str, paths: &[&str], pid: u32) -> u64 {
    let chunk = vec![b' '; 64 * 1024];
    let mut held = Vec::new();
    for n in 0..300 {
        let Ok(mut stream) = TcpStream::connect(addr) else {
            continue;
        };
        stream
            .set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let path = paths[n % paths.len()];
        let head = format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1048000\r\n\r\n");
        if stream.write_all(head.as_bytes()).is_err() {
            continue;
        }
        for _ in 0..15 {
            if stream.write_all(&chunk).is_err() {
                break;
            }
        }
        held.push(stream);
    }
    std::thread::sleep(Duration::from_millis(500));
    let peak = peak_rss_kib(pid);
    drop(held);
    peak
}

#[test]
fn many_slow_large_bodies_do_not_multiply_memory() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = bankconnect(None, &["webhook", "listen", "--addr", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_listening(&addr);
    let peak = peak_rss_under_slow_bodies(&addr, &["/"], child.id());
    child.kill().unwrap();
    let _ = child.wait();
    assert!(peak > 0, "no /proc reading");
    assert!(peak < 200 * 1024, "peak RSS {peak} KiB for 300 slow bodies");
}

#[test]
fn many_slow_large_bodies_do_not_multiply_serves_memory() {
    let sim = sim(vec![]);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(format!("bankconnect_rss_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = format!("sqlite:{}", dir.join("s.db").display());
    let mut child = bankconnect(
        Some(&sim.sim),
        &["serve", "--listen", &addr, "--store", &store],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    wait_until_listening(&addr);
    // Half to the API, half to the intake: one budget for both.
    let peak = peak_rss_under_slow_bodies(
        &addr,
        &["/webhooks/bankconnect", "/v1/sessions"],
        child.id(),
    );
    child.kill().unwrap();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
    assert!(peak > 0, "no /proc reading");
    assert!(peak < 200 * 1024, "peak RSS {peak} KiB for 300 slow bodies");
}

#[test]
fn help_leaves_out_the_global_options_a_command_ignores() {
    let help = |args: &[&str]| {
        let out = run(None, args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    for args in [
        &["sim", "--help"][..],
        &["help", "sim"],
        &["demo", "--help"],
        &["webhook", "listen", "--help"],
        &["webhook", "verify", "-h"],
    ] {
        let text = help(args);
        assert!(
            !text.contains("--base-url"),
            "{args:?} shows --base-url:\n{text}"
        );
        assert!(
            !text.contains("--transport"),
            "{args:?} shows --transport:\n{text}"
        );
        assert!(
            !text.contains("--request-timeout"),
            "{args:?} shows --request-timeout:\n{text}"
        );
    }
    // What a command does use stays, under its own heading.
    let sim = help(&["sim", "--help"]);
    assert!(sim.contains("--api-key") && sim.contains("--addr"), "{sim}");
    assert!(help(&["webhook", "listen", "--help"]).contains("--json"));
    for args in [
        &["wait", "--help"][..],
        &["progress", "--help"],
        &["serve", "--help"],
    ] {
        let text = help(args);
        assert!(
            text.contains("Global options") && text.contains("--base-url"),
            "{args:?}:\n{text}"
        );
    }
    // serve is async only: no --transport in its help.
    let serve = help(&["serve", "--help"]);
    assert!(!serve.contains("--transport <"), "{serve}");
    assert!(
        serve.contains("--max-connections") && serve.contains("--log-format"),
        "{serve}"
    );
    // Still accepted where ignored, and the defaults of the globals still hold when running.
    let out = bankconnect(
        None,
        &[
            "--base-url",
            "https://example.test",
            "webhook",
            "verify",
            "-",
        ],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn an_endless_line_on_stdin_is_skipped_in_bounded_memory() {
    use std::io::BufRead;
    let sim = sim(vec![
        SessionScript::new("after").complete_after(Duration::from_millis(100))
    ]);
    let mut child = bankconnect(
        Some(&sim.sim),
        &[
            "--json",
            "wait",
            "--sessions-from",
            "-",
            "--interval",
            "100ms",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // 96 MiB without a newline, then a good line.
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..96 {
        stdin.write_all(&chunk).unwrap();
    }
    writeln!(stdin, "\nafter").unwrap();
    let peak = peak_rss_kib(pid);
    drop(stdin);
    let line: serde_json::Value = serde_json::from_str(&stdout.next().unwrap().unwrap()).unwrap();
    assert_eq!(line["session_id"], "after");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("longer than 4 KiB"), "{stderr}");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(
        peak < 64 * 1024,
        "peak RSS {peak} KiB while skipping the line"
    );
}
