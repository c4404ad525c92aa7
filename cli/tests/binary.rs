//! The built `bankconnect` binary against the simulator: every exit code, the JSON shapes,
//! `--sessions-from -`, the webhook shortcut, webhook listen/verify, `sim`, and a secrets canary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bankconnect_sim::{FaultKind, FaultRates, Scenario, SessionScript, Stage};

mod common;
use common::*;

const FAST: &[&str] = &["--interval", "100ms"];

#[test]
fn wait_exit_codes_for_each_outcome_with_both_transports() {
    let scripts = vec![
        SessionScript::new("ok").complete_after_polls(2),
        SessionScript::new("months")
            .account_failure(
                "INCOMPLETE_MONTHS",
                "There are no transactions for Nov 2023, Dec 2023",
            )
            .complete_after_polls(1),
        SessionScript::new("stage")
            .fail_statement_stage(0, Stage::Transaction, "Statement is password protected")
            .complete_after_polls(1),
        SessionScript::new("slow").complete_after(Duration::from_secs(600)),
        SessionScript::new("gone").deleted(),
        SessionScript::new("down")
            .fault_on(1, FaultKind::ServerError)
            .fault_on(2, FaultKind::ServerError),
    ];
    let sim = sim(scripts.clone());
    for transport in ["async", "blocking"] {
        // Fresh scripts for each transport: the fault scripts count requests per session.
        for script in &scripts {
            sim.sim.add_session(script.clone());
        }
        let cases: &[(&[&str], i32, &str)] = &[
            (&["ok"], 0, "completed"),
            (&["months"], 3, "completed_with_failures"),
            (&["stage"], 3, "completed_with_failures"),
            (&["slow", "--max-wait", "400ms"], 4, "timed_out"),
            (&["gone"], 5, "api_error"),
            (&["nobody"], 5, "api_error"),
            (&["down", "--retries", "1"], 6, "transport_error"),
        ];
        for (args, expected, outcome) in cases {
            let mut all = vec!["--transport", transport, "--json", "wait"];
            all.extend_from_slice(FAST);
            all.extend_from_slice(args);
            let output = run(Some(&sim.sim), &all);
            assert_eq!(
                code(&output),
                *expected,
                "{transport} {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let lines = json_lines(&output);
            assert_eq!(lines.len(), 1);
            assert_eq!(lines[0]["outcome"], *outcome);
        }
    }
}

#[test]
fn the_highest_code_wins_and_json_lines_have_the_contract_shape() {
    let sim = sim(vec![
        SessionScript::new("a").complete_after_polls(1),
        SessionScript::new("b")
            .account_failure(
                "INCOMPLETE_MONTHS",
                "There are no transactions for Nov 2023, Dec 2023",
            )
            .complete_after_polls(1)
            .without_webhook(),
    ]);
    let output = run(
        Some(&sim.sim),
        &["--json", "wait", "--interval", "100ms", "a", "b", "missing"],
    );
    assert_eq!(code(&output), 5);
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 3);
    for line in &lines {
        for key in [
            "session_id",
            "outcome",
            "error",
            "statements",
            "accounts",
            "notified_by",
            "polls",
            "elapsed_ms",
        ] {
            assert!(line.get(key).is_some(), "{key} missing in {line}");
        }
    }
    let b = lines.iter().find(|l| l["session_id"] == "b").unwrap();
    assert_eq!(b["notified_by"], "poll");
    assert_eq!(b["accounts"][0]["error_code"], "INCOMPLETE_MONTHS");
    assert_eq!(
        b["accounts"][0]["error_detail"],
        serde_json::json!({"months": ["2023-11", "2023-12"]})
    );
    let missing = lines.iter().find(|l| l["session_id"] == "missing").unwrap();
    assert_eq!(
        missing["error"],
        serde_json::json!({"code": "SESSION_NOT_FOUND", "http_status": 404, "message": "The provided session ID is invalid"})
    );
    assert!(lines.iter().find(|l| l["session_id"] == "a").unwrap()["error"].is_null());
}

#[test]
fn sessions_from_stdin() {
    let sim = sim(vec![
        SessionScript::new("x1").complete_after_polls(1),
        SessionScript::new("x2").complete_after_polls(1),
    ]);
    let mut child = bankconnect(
        Some(&sim.sim),
        &[
            "--json",
            "wait",
            "--interval",
            "100ms",
            "--sessions-from",
            "-",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"# tracked sessions\nx1\n\n  x2  \nx1\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        code(&output),
        0,
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut ids: Vec<String> = json_lines(&output)
        .iter()
        .map(|l| l["session_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["x1", "x2"]);
}

#[test]
fn progress_status_and_webhook_set_shapes() {
    let sim = sim(vec![SessionScript::new("p1")
        .statement("p1-stmt-2", "aa")
        .complete_after_polls(1)]);
    for transport in ["async", "blocking"] {
        let output = run(
            Some(&sim.sim),
            &["--transport", transport, "--json", "status", "nobody"],
        );
        assert_eq!(code(&output), 5);
        let output = run(
            Some(&sim.sim),
            &["--transport", transport, "--json", "progress", "p1"],
        );
        assert_eq!(code(&output), 0);
        let progress = &json_lines(&output)[0];
        assert_eq!(progress["session_id"], "p1");
        assert_eq!(progress["session_progress"], "completed");
        let statement = &progress["statements"][1];
        for key in [
            "statement_id",
            "source",
            "identity_status",
            "transaction_status",
            "processing_status",
            "fraud_status",
            "message",
        ] {
            assert!(statement.get(key).is_some(), "{key}");
        }
        let output = run(
            Some(&sim.sim),
            &["--transport", transport, "--json", "status", "p1"],
        );
        assert_eq!(code(&output), 0);
        let status = &json_lines(&output)[0];
        assert_eq!(status["session_id"], "p1");
        assert_eq!(status["accounts"][0]["account_number"], "XXXXXXXX1234");
        assert_eq!(
            status["accounts"][0]["statements"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let output = run(
            Some(&sim.sim),
            &[
                "--transport",
                transport,
                "--json",
                "webhook",
                "set",
                "https://example.com/hook",
                "--mode",
                "0",
            ],
        );
        assert_eq!(code(&output), 0);
        assert_eq!(sim.sim.registration().unwrap().webhook_mode, 0);
    }
    let output = run(Some(&sim.sim), &["progress", "p1"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("p1: completed"));
}

#[test]
fn configuration_errors_exit_2_with_one_sentence() {
    let sim = sim(vec![SessionScript::new("s")]);
    let cases: Vec<(Vec<&str>, bool, &str)> = vec![
        (vec!["progress", "s"], false, "missing credentials"),
        (
            vec![
                "--base-url",
                "http://example.com/bank-connect/v1",
                "progress",
                "s",
            ],
            true,
            "http://",
        ),
        (
            vec!["--base-url", "not a url", "progress", "s"],
            true,
            "base-url",
        ),
        (
            vec!["wait", "--interval", "2x", "s"],
            true,
            "invalid duration",
        ),
        (vec!["wait", "--max-wait", "0s", "s"], true, "max_wait"),
        (vec!["progress", "../etc"], true, "bad session id"),
        (vec!["wait"], true, "no session ids"),
        (vec!["--bogus-flag", "progress", "s"], true, ""),
        (
            vec!["webhook", "listen", "--secret", "whsec_"],
            true,
            "secret",
        ),
    ];
    for (args, with_credentials, needle) in cases {
        let mut command = bankconnect(with_credentials.then_some(&sim.sim), &args);
        if !with_credentials {
            command.env("BANKCONNECT_BASE_URL", sim.sim.base_url());
        }
        let output = command.output().unwrap();
        assert_eq!(code(&output), 2, "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
        // --json puts the error on stdout as JSON.
        let mut json_args = vec!["--json"];
        json_args.extend_from_slice(&args);
        let mut command = bankconnect(with_credentials.then_some(&sim.sim), &json_args);
        if !with_credentials {
            command.env("BANKCONNECT_BASE_URL", sim.sim.base_url());
        }
        let output = command.output().unwrap();
        assert_eq!(code(&output), 2);
        let error = &json_lines(&output)[0]["error"];
        assert!(
            error["kind"].is_string() && error["message"].is_string(),
            "{error}"
        );
    }
}

#[test]
fn the_webhook_shortcut_ends_a_wait_in_about_the_webhook_delay() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let sim = sim_with(
        Scenario {
            sessions: vec![SessionScript::new("hooked").complete_after(Duration::from_millis(800))],
            webhook_url: Some(format!("http://127.0.0.1:{port}/hooks")),
            ..Scenario::default()
        },
        "sim-api-key",
        "sim-server-hash",
    );
    for transport in ["async", "blocking"] {
        sim.sim
            .add_session(SessionScript::new("hooked").complete_after(Duration::from_millis(800)));
        let started = Instant::now();
        let listen = format!("127.0.0.1:{port}");
        let output = run(
            Some(&sim.sim),
            &[
                "--transport",
                transport,
                "--json",
                "wait",
                "hooked",
                "--interval",
                "60s",
                "--webhook-listen",
                &listen,
                "--webhook-path",
                "/hooks",
            ],
        );
        let took = started.elapsed();
        assert_eq!(
            code(&output),
            0,
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let line = &json_lines(&output)[0];
        assert_eq!(line["notified_by"], "webhook");
        assert_eq!(line["polls"], 2);
        assert!(
            took < Duration::from_secs(5),
            "{transport}: took {took:?} with a 60 s interval"
        );
    }
}

#[test]
fn secrets_never_appear_even_at_trace_level() {
    let key = "canary-key-4f1d9";
    let hash = "canary-hash-77ab2";
    let sim = sim_with(
        Scenario {
            sessions: vec![SessionScript::new("c")
                .complete_after_polls(2)
                .fault_on(1, FaultKind::ServerError)],
            ..Scenario::default()
        },
        key,
        hash,
    );
    for (transport, args) in [
        ("async", vec!["wait", "c", "--interval", "100ms"]),
        ("blocking", vec!["progress", "c"]),
        ("async", vec!["--json", "status", "nobody"]),
        ("blocking", vec!["webhook", "set", "https://example.com/x"]),
    ] {
        let mut all = vec!["--transport", transport];
        all.extend_from_slice(&args);
        let output = Command::new(BIN)
            .env("BANKCONNECT_BASE_URL", sim.sim.base_url())
            .env("BANKCONNECT_API_KEY", key)
            .env("BANKCONNECT_SERVER_HASH", hash)
            .env("RUST_LOG", "trace")
            .args(&all)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !text.contains(key) && !text.contains(hash),
            "secret leaked by {all:?}"
        );
        assert!(!text.is_empty());
    }
    // A wrong key in a flag is not echoed in the refusal either.
    let output = Command::new(BIN)
        .args([
            "--base-url",
            &sim.sim.base_url(),
            "--api-key",
            "wrong-canary-99",
            "--server-hash",
            hash,
            "--json",
            "progress",
            "c",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&output), 5);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!text.contains("wrong-canary-99") && !text.contains(hash));
}

#[test]
fn webhook_verify_offline() {
    let dir = std::env::temp_dir().join(format!("bankconnect-verify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let payload = dir.join("event.json");
    std::fs::write(&payload, r#"{"session_id": "abcd", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": [{"bank_name": "sbi", "account_id": "a1", "account_status": "failed", "error_code": "INCOMPLETE_DATES_UPLOAD", "error_message": "Missing dates present for {\"Jan 2024\": [1, 2, 3, 4]}"}]}"#).unwrap();
    let output = run(
        None,
        &["--json", "webhook", "verify", payload.to_str().unwrap()],
    );
    assert_eq!(code(&output), 0);
    let event = &json_lines(&output)[0];
    assert_eq!(event["event_name"], "ENRICHMENT_NOTIFICATION");
    assert_eq!(event["duplicate"], false);
    assert_eq!(
        event["accounts"][0]["error_detail"],
        serde_json::json!({"dates": {"2024-01": [1, 2, 3, 4]}})
    );

    let mut child = bankconnect(None, &["webhook", "verify", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"session_id": "a", "session_id": "b", "event_name": "X"}"#)
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(code(&output), 1);
    assert!(String::from_utf8_lossy(&output.stderr).contains("duplicate key"));

    // Signed: the known-answer vector passes, a tampered body fails.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let signed = dir.join("signed.json");
    std::fs::write(&signed, r#"{"test": 2432232314}"#).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let key = bankconnect_webhook_verify::WebhookSecret::standard(secret).unwrap();
    let body = br#"{"session_id": "s1", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": []}"#;
    std::fs::write(&signed, body).unwrap();
    let signature = bankconnect_webhook_verify::sign_standard(&key, "msg_1", now, body);
    let headers = [
        "webhook-id: msg_1".to_string(),
        format!("webhook-timestamp: {now}"),
        format!("webhook-signature: {signature}"),
    ];
    let mut args = vec!["webhook", "verify", "--secret", secret];
    for header in &headers {
        args.extend_from_slice(&["--header", header]);
    }
    args.push(signed.to_str().unwrap());
    assert_eq!(code(&run(None, &args)), 0);
    std::fs::write(
        &signed,
        br#"{"session_id": "s2", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": []}"#,
    )
    .unwrap();
    let output = run(None, &args);
    assert_eq!(code(&output), 1);
    assert!(String::from_utf8_lossy(&output.stderr).contains("unauthenticated"));
    std::fs::remove_dir_all(&dir).ok();
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn webhook_listen_answers_every_status_and_survives_a_100_mib_body() {
    let mut child = bankconnect(
        None,
        &[
            "--json",
            "webhook",
            "listen",
            "--addr",
            "127.0.0.1:0",
            "--path",
            "/hook",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let post = |body: Vec<u8>, content_type: &'static str, path: &str, method: reqwest::Method| {
        let base = url.trim_end_matches("/hook").to_owned();
        let request = client
            .request(method, format!("{base}{path}"))
            .header("content-type", content_type)
            .body(body);
        runtime.block_on(async move { request.send().await.map(|r| r.status().as_u16()) })
    };
    let event = br#"{"session_id": "s1", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": [{"account_status": "completed", "error_code": "", "error_message": ""}]}"#.to_vec();
    assert_eq!(
        post(
            event.clone(),
            "application/json",
            "/hook",
            reqwest::Method::POST
        )
        .unwrap(),
        200
    );
    assert_eq!(
        post(
            event.clone(),
            "application/json",
            "/hook",
            reqwest::Method::POST
        )
        .unwrap(),
        200
    );
    assert_eq!(
        post(
            b"{".to_vec(),
            "application/json",
            "/hook",
            reqwest::Method::POST
        )
        .unwrap(),
        400
    );
    assert_eq!(
        post(
            event.clone(),
            "application/json",
            "/other",
            reqwest::Method::POST
        )
        .unwrap(),
        404
    );
    assert_eq!(
        post(
            event.clone(),
            "application/json",
            "/hook",
            reqwest::Method::GET
        )
        .unwrap(),
        405
    );
    assert_eq!(
        post(event.clone(), "text/plain", "/hook", reqwest::Method::POST).unwrap(),
        415
    );
    // A declared length over the limit is answered 413 before the body is read; the client may
    // see that answer or, racing it, a broken pipe while still sending.
    match post(
        vec![b' '; 2 * 1024 * 1024],
        "application/json",
        "/hook",
        reqwest::Method::POST,
    ) {
        Ok(status) => assert_eq!(status, 413),
        Err(err) => assert!(err.is_request() || err.is_body(), "{err}"),
    }
    // 100 MiB streamed without a length: refused at the limit, never buffered.
    let chunks = (0..100).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024 * 1024]));
    let stream = reqwest::Body::wrap_stream(futures_util_stream(chunks));
    let base = url.clone();
    let status = runtime.block_on(async move {
        client
            .post(&base)
            .header("content-type", "application/json")
            .body(stream)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    if let Ok(status) = status {
        assert_eq!(status, 413);
    }
    let rss = rss_kib(child.id()).unwrap();
    assert!(
        rss < 64 * 1024,
        "listener RSS {rss} KiB after a 100 MiB body"
    );
    // Still alive and answering.
    let again = reqwest::Client::new();
    let base = url.clone();
    let body = event.clone();
    let status = runtime.block_on(async move {
        again
            .post(&base)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 200);
    // Ctrl-C: every event answered is printed before the exit (the printer runs after the
    // answer, so a SIGKILL here could lose the last line).
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let output = child.wait_with_output().unwrap();
    let lines = json_lines(&output);
    assert_eq!(
        lines.len(),
        3,
        "two accepted/duplicate events and the last one"
    );
    assert_eq!(lines[0]["duplicate"], false);
    assert_eq!(lines[1]["duplicate"], true);
    assert!(lines[0]["accounts"][0]["error_code"].is_null());
}

fn futures_util_stream<I: Iterator>(items: I) -> impl futures_util::stream::Stream<Item = I::Item> {
    futures_util::stream::iter(items)
}

#[test]
fn sim_command_prints_its_address_first() {
    let mut child = bankconnect(None, &["sim", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let base = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    assert!(
        base.starts_with("http://127.0.0.1:") && base.ends_with("/bank-connect/v1"),
        "{base}"
    );
    let mut second = String::new();
    stdout.read_line(&mut second).unwrap();
    assert!(second.starts_with("session "), "{second}");
    let output = Command::new(BIN)
        .args([
            "--base-url",
            &base,
            "--api-key",
            "sim-api-key",
            "--server-hash",
            "sim-server-hash",
            "--json",
            "progress",
            "sim-completed",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&output), 0);
    child.kill().ok();
    child.wait().ok();
}

#[test]
fn faults_at_a_rate_are_survived() {
    let sim = sim_with(
        Scenario {
            sessions: (0..20)
                .map(|i| SessionScript::new(&format!("f{i}")).complete_after_polls(2))
                .collect(),
            faults: FaultRates {
                rate: 0.3,
                kinds: vec![
                    FaultKind::ServerError,
                    FaultKind::Truncated,
                    FaultKind::Reset,
                    FaultKind::Garbage,
                    FaultKind::Html,
                ],
                ..FaultRates::default()
            },
            seed: 3,
            ..Scenario::default()
        },
        "sim-api-key",
        "sim-server-hash",
    );
    let ids: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    for transport in ["async", "blocking"] {
        let mut args = vec![
            "--transport",
            transport,
            "--json",
            "wait",
            "--interval",
            "100ms",
        ];
        args.extend(ids.iter().map(String::as_str));
        let output = run(Some(&sim.sim), &args);
        assert_eq!(
            code(&output),
            0,
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
        for id in &ids {
            sim.sim
                .add_session(SessionScript::new(id).complete_after_polls(2));
        }
    }
}

#[test]
fn polling_only_and_webhook_waits_agree_on_a_failing_session() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let script = || {
        SessionScript::new("agree")
            .account_failure("INCOMPLETE_MONTHS_UPLOAD", "Statement(s) uploaded contain incomplete months. Missing data present for Nov 2023, Dec 2023")
            .complete_after(Duration::from_millis(600))
    };
    let sim = sim_with(
        Scenario {
            sessions: vec![script()],
            webhook_url: Some(format!("http://127.0.0.1:{port}/")),
            ..Scenario::default()
        },
        "sim-api-key",
        "sim-server-hash",
    );
    let listen = format!("127.0.0.1:{port}");
    let mut seen = Vec::new();
    for transport in ["async", "blocking"] {
        for webhook in [true, false] {
            sim.sim.add_session(script());
            let mut args = vec!["--transport", transport, "--json", "wait", "agree"];
            if webhook {
                args.extend_from_slice(&["--interval", "30s", "--webhook-listen", &listen]);
            } else {
                args.extend_from_slice(&["--interval", "200ms"]);
            }
            let output = run(Some(&sim.sim), &args);
            assert_eq!(code(&output), 3, "{transport} webhook={webhook}");
            let line = json_lines(&output).remove(0);
            assert_eq!(
                line["notified_by"],
                if webhook { "webhook" } else { "poll" }
            );
            let account = &line["accounts"][0];
            seen.push((
                line["outcome"].clone(),
                account["account_id"].clone(),
                account["account_status"].clone(),
                account["error_code"].clone(),
                account["error_message"].clone(),
                account["error_detail"].clone(),
            ));
        }
    }
    assert!(seen.windows(2).all(|pair| pair[0] == pair[1]), "{seen:#?}");
    assert_eq!(
        seen[0].5,
        serde_json::json!({"months": ["2023-11", "2023-12"]})
    );
}

#[test]
fn sim_command_runs_the_documented_example_scenario() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../sim/scenarios/example.json");
    let mut child = bankconnect(None, &["sim", "--scenario", example])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let base = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let mut ids = Vec::new();
    for _ in 0..6 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        ids.push(line.trim().strip_prefix("session ").unwrap().to_owned());
    }
    assert!(ids.contains(&"months-missing".to_owned()), "{ids:?}");
    let output = Command::new(BIN)
        .args([
            "--base-url",
            &base,
            "--api-key",
            "sim-api-key",
            "--server-hash",
            "sim-server-hash",
            "--json",
            "wait",
            "gone",
            "--interval",
            "100ms",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&output), 5);
    let bad = run(None, &["sim", "--scenario", "/nonexistent/scenario.json"]);
    assert_eq!(code(&bad), 2);
    child.kill().ok();
    child.wait().ok();
}

#[test]
fn an_unreachable_api_exits_6() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let base = format!("http://{closed}/bank-connect/v1");
    for transport in ["async", "blocking"] {
        let started = Instant::now();
        let output = Command::new(BIN)
            .args([
                "--base-url",
                &base,
                "--api-key",
                "k",
                "--server-hash",
                "h",
                "--transport",
                transport,
                "--json",
                "progress",
                "s1",
            ])
            .output()
            .unwrap();
        assert_eq!(
            code(&output),
            6,
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert_eq!(json_lines(&output)[0]["error"]["kind"], "transport_error");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a single call gives up within seconds"
        );
        // A wait whose max wait passes with nothing but failures is a transport error too.
        let output = Command::new(BIN)
            .args([
                "--base-url",
                &base,
                "--api-key",
                "k",
                "--server-hash",
                "h",
                "--transport",
                transport,
                "--json",
                "wait",
                "s1",
                "--max-wait",
                "1s",
                "--interval",
                "250ms",
            ])
            .output()
            .unwrap();
        assert_eq!(code(&output), 6);
        let line = &json_lines(&output)[0];
        assert_eq!(line["outcome"], "transport_error");
        assert_eq!(line["error"]["code"], "CONNECT");
    }
}
