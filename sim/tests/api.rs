//! The simulator over real loopback HTTP: every endpoint, error code, fault and webhook delivery.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bankconnect_sim::{
    FaultKind, FaultRates, Scenario, SessionScript, SimConfig, Simulator, Stage, WebhookSettings,
};
use serde_json::Value;

async fn start(sessions: Vec<SessionScript>) -> Simulator {
    start_with(Scenario {
        sessions,
        ..Scenario::default()
    })
    .await
}

async fn start_with(scenario: Scenario) -> Simulator {
    Simulator::start(SimConfig {
        scenario,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(sim: &Simulator, path: &str) -> (u16, Value) {
    let response = client()
        .get(format!("{}{path}", sim.base_url()))
        .header("x-api-key", "sim-api-key")
        .header("server-hash", "sim-server-hash")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn progress(sim: &Simulator, id: &str) -> (u16, Value) {
    get(sim, &format!("/session_data/{id}/progress/")).await
}

#[tokio::test]
async fn credentials_are_checked_on_every_call_and_masked_in_the_log() {
    let sim = start(vec![SessionScript::new("s1")]).await;
    let url = format!("{}/session_data/s1/progress/", sim.base_url());
    for (key, hash) in [
        (None, None),
        (Some("sim-api-key"), None),
        (Some("wrong"), Some("sim-server-hash")),
        (Some("sim-api-key"), Some("wrong")),
    ] {
        let mut request = client().get(&url);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        if let Some(hash) = hash {
            request = request.header("server-hash", hash);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403);
        let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "ACCESS_DENIED");
    }
    let (status, _) = progress(&sim, "s1").await;
    assert_eq!(status, 200);
    let log = sim.requests_for("s1");
    assert_eq!(log.len(), 5);
    assert!(log
        .iter()
        .take(4)
        .all(|r| !r.credentials_ok && r.status == Some(403)));
    assert!(log[4].credentials_ok);
    assert_eq!(log[4].header("x-api-key"), Some("<redacted>"));
    assert_eq!(log[4].header("server-hash"), Some("<redacted>"));
    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains("sim-api-key") && !text.contains("sim-server-hash"));
}

#[tokio::test]
async fn progress_advances_per_poll_and_session_status_follows() {
    let sim = start(vec![SessionScript::new("s1")
        .statement("s1-stmt-2", "aa")
        .complete_after_polls(2)])
    .await;
    let (status, body) = get(&sim, "/session_data/s1/session_status/").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("PROCESSING_NOT_COMPLETED"))
    );
    let (status, body) = progress(&sim, "s1").await;
    assert_eq!(status, 200);
    assert_eq!(body["session_progress"], "processing");
    assert_eq!(body["progress"].as_array().unwrap().len(), 2);
    assert_eq!(body["progress"][0]["identity_status"], "completed");
    assert_eq!(body["progress"][0]["transaction_status"], "completed");
    assert_eq!(body["progress"][0]["processing_status"], "processing");
    assert_eq!(body["progress"][1]["source"], "aa");
    let (_, body) = progress(&sim, "s1").await;
    assert_eq!(body["session_progress"], "completed");
    assert_eq!(body["progress"][0]["fraud_status"], "completed");
    let (status, body) = get(&sim, "/session_data/s1/session_status/").await;
    assert_eq!(status, 200);
    assert_eq!(body["accounts"][0]["account_status"], "completed");
    assert_eq!(body["accounts"][0]["account_number"], "XXXXXXXX1234");
    assert_eq!(
        body["accounts"][0]["statements"].as_array().unwrap().len(),
        2
    );
    // The core reads what the simulator writes.
    let response = http::Response::builder()
        .status(200)
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let parsed = bankconnect_core::classify_session_status(Ok(response));
    assert!(matches!(
        parsed,
        bankconnect_core::Classified::Ok(bankconnect_core::SessionStatusReply::Ready(_))
    ));
}

#[tokio::test]
async fn failures_and_every_error_code() {
    let sim = start(vec![
        SessionScript::new("locked")
            .fail_statement_stage(0, Stage::Transaction, "Statement is password protected")
            .complete_after_polls(1),
        SessionScript::new("months")
            .account_failure(
                "INCOMPLETE_MONTHS",
                "There are no transactions for Nov 2023, Dec 2023",
            )
            .complete_after_polls(1),
        SessionScript::new("gone").deleted(),
        SessionScript::new("never").not_requested(None),
        SessionScript::new("later").not_requested(Some(2)),
    ])
    .await;
    let (_, body) = progress(&sim, "locked").await;
    assert_eq!(body["session_progress"], "completed");
    assert_eq!(body["progress"][0]["identity_status"], "completed");
    assert_eq!(body["progress"][0]["transaction_status"], "failed");
    assert_eq!(body["progress"][0]["fraud_status"], "failed");
    assert_eq!(
        body["progress"][0]["message"],
        "Statement is password protected"
    );

    progress(&sim, "months").await;
    let (_, body) = get(&sim, "/session_data/months/session_status/").await;
    assert_eq!(body["accounts"][0]["account_status"], "failed");
    assert_eq!(body["accounts"][0]["error_code"], "INCOMPLETE_MONTHS");

    let (status, body) = progress(&sim, "gone").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (410, Some("SESSION_DELETED"))
    );
    let (status, body) = progress(&sim, "nobody").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("SESSION_NOT_FOUND"))
    );
    assert_eq!(
        body["error"]["message"],
        "The provided session ID is invalid"
    );
    for _ in 0..3 {
        let (status, body) = progress(&sim, "never").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("PROCESSING_NOT_REQUESTED"))
        );
    }
    assert_eq!(progress(&sim, "later").await.0, 400);
    assert_eq!(progress(&sim, "later").await.0, 400);
    assert_eq!(progress(&sim, "later").await.0, 200);
    let (status, _) = get(&sim, "/nowhere").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn update_webhook_validates_its_body() {
    let sim = start(Vec::new()).await;
    let url = format!("{}/session_data/update_webhook/", sim.base_url());
    let post = |body: &'static str, content_type: &'static str| {
        client()
            .post(&url)
            .header("x-api-key", "sim-api-key")
            .header("server-hash", "sim-server-hash")
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let response = post(
        r#"{"webhook_url": "https://example.com/hook", "webhook_mode": 1}"#,
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&response.bytes().await.unwrap()).unwrap()["message"],
        "success"
    );
    let registration = sim.registration().unwrap();
    assert_eq!(
        (registration.webhook_url.as_str(), registration.webhook_mode),
        ("https://example.com/hook", 1)
    );
    let response = post(
        r#"{"webhook_url": "https://example.com/other"}"#,
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        sim.registration().unwrap().webhook_mode,
        0,
        "a missing mode resets to 0"
    );
    for (body, content_type, code) in [
        (
            r#"{"webhook_url": "https://e.com"}"#,
            "text/plain",
            "INVALID_REQUEST",
        ),
        ("{not json", "application/json", "INVALID_REQUEST"),
        ("[]", "application/json", "INVALID_REQUEST"),
        (r#"{"webhook_mode": 1}"#, "application/json", "KEY_REQUIRED"),
        (
            r#"{"webhook_url": "ftp://x"}"#,
            "application/json",
            "INVALID_REQUEST",
        ),
        (
            r#"{"webhook_url": "https://e.com", "webhook_mode": 7}"#,
            "application/json",
            "INVALID_REQUEST",
        ),
    ] {
        let response = post(body, content_type).await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(
            serde_json::from_slice::<Value>(&response.bytes().await.unwrap()).unwrap()["error"]
                ["code"],
            code,
            "{body}"
        );
    }
}

#[tokio::test]
async fn every_fault_kind() {
    let script = SessionScript::new("f")
        .fault_on(1, FaultKind::ServerError)
        .fault_on(2, FaultKind::RateLimited)
        .fault_on(3, FaultKind::Html)
        .fault_on(4, FaultKind::Garbage)
        .fault_on(5, FaultKind::Truncated)
        .fault_on(6, FaultKind::Reset)
        .fault_on(7, FaultKind::Slow);
    let sim = start_with(Scenario {
        sessions: vec![script],
        faults: FaultRates {
            slow_ms: 300,
            retry_after_secs: 4,
            ..FaultRates::default()
        },
        ..Scenario::default()
    })
    .await;
    let url = format!("{}/session_data/f/progress/", sim.base_url());
    let send = || {
        client()
            .get(&url)
            .header("x-api-key", "sim-api-key")
            .header("server-hash", "sim-server-hash")
            .send()
    };
    let response = send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.text().await.unwrap().contains("<html>"));
    let response = send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "4");
    let response = send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["content-type"], "text/html");
    let response = send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(serde_json::from_slice::<Value>(&response.bytes().await.unwrap()).is_err());
    let truncated = match send().await {
        Ok(response) => response.bytes().await.is_err(),
        Err(_) => true,
    };
    assert!(truncated, "a truncated body must fail to read");
    assert!(send().await.is_err(), "a reset gets no answer");
    let started = Instant::now();
    let response = send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let faults: Vec<_> = sim.requests_for("f").iter().map(|r| r.fault).collect();
    assert_eq!(faults.len(), 7);
    assert_eq!(faults[5], Some(FaultKind::Reset));
    // The server survives all of it.
    assert_eq!(progress(&sim, "f").await.0, 200);
}

#[tokio::test]
async fn faults_at_a_rate_over_all_requests() {
    let sim = start_with(Scenario {
        sessions: vec![SessionScript::new("s1")],
        faults: FaultRates {
            rate: 1.0,
            kinds: vec![FaultKind::ServerError],
            ..FaultRates::default()
        },
        ..Scenario::default()
    })
    .await;
    for _ in 0..5 {
        assert_eq!(progress(&sim, "s1").await.0, 503);
    }
}

/// Deliveries a test receiver saw: headers, body, arrival.
type Seen = Arc<Mutex<Vec<(http::HeaderMap, Vec<u8>, Instant)>>>;

/// A webhook receiver for the tests: records each POST's headers and body, answers `status`.
async fn receiver(status: u16) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    let app =
        axum::Router::new().fallback(move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let record = Arc::clone(&record);
            async move {
                record
                    .lock()
                    .unwrap()
                    .push((headers, body.to_vec(), Instant::now()));
                http::StatusCode::from_u16(status).unwrap()
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

async fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..500 {
        if let Some(value) = check() {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting");
}

#[tokio::test]
async fn webhooks_are_delivered_signed_duplicated_and_recorded() {
    let (url, seen) = receiver(200).await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let sim = start_with(Scenario {
        sessions: vec![
            SessionScript::new("s1")
                .complete_after_polls(1)
                .account_failure(
                    "INCOMPLETE_MONTHS",
                    "There are no transactions for Nov 2023, Dec 2023",
                )
                .duplicate_webhook(),
            SessionScript::new("quiet")
                .complete_after_polls(1)
                .without_webhook(),
            SessionScript::new("timed")
                .complete_after(Duration::from_millis(300))
                .webhook_delay(Duration::from_millis(200)),
        ],
        webhook_url: Some(url.clone()),
        webhooks: WebhookSettings {
            signing_secret: Some(secret.into()),
            ..WebhookSettings::default()
        },
        ..Scenario::default()
    })
    .await;
    progress(&sim, "s1").await;
    progress(&sim, "quiet").await;
    let first_request = Instant::now();
    progress(&sim, "timed").await;
    wait_for(|| (seen.lock().unwrap().len() >= 3).then_some(())).await;
    let deliveries = seen.lock().unwrap().clone();
    let verifier =
        bankconnect_webhook_verify::Receiver::new(bankconnect_webhook_verify::ReceiverConfig {
            path: "/hook".into(),
            auth: bankconnect_webhook_verify::Authenticator::standard_webhooks(&[secret]).unwrap(),
            ..Default::default()
        });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut sessions = Vec::new();
    let mut duplicates = 0;
    for (headers, body, _) in &deliveries {
        assert_eq!(headers["content-type"], "application/json");
        let reception = verifier.receive(&http::Method::POST, "/hook", headers, &body[..], now);
        let json = reception.event_json().expect("a verified event");
        duplicates += usize::from(json["duplicate"] == true);
        sessions.push(json["session_id"].as_str().unwrap().to_owned());
        if json["session_id"] == "s1" {
            assert_eq!(json["accounts"][0]["error_detail"]["months"][1], "2023-12");
        }
    }
    sessions.sort();
    assert_eq!(sessions, ["s1", "s1", "timed"]);
    assert_eq!(duplicates, 1);
    let timed = deliveries
        .iter()
        .find(|(_, body, _)| String::from_utf8_lossy(body).contains("timed"))
        .unwrap();
    assert!(
        timed.2 - first_request >= Duration::from_millis(500),
        "completed by time, then delayed"
    );
    // The simulator records an attempt once the receiver's answer is back, which may be a
    // moment after the receiver saw the request.
    wait_for(|| (sim.webhook_attempts().len() >= 3).then_some(())).await;
    let attempts = sim.webhook_attempts();
    assert_eq!(attempts.len(), 3);
    assert!(attempts
        .iter()
        .all(|a| a.status == Some(200) && a.url == url));
    assert!(!attempts.iter().any(|a| a.session_id == "quiet"));
}

#[tokio::test]
async fn webhook_mode_and_failed_deliveries() {
    let (url, seen) = receiver(500).await;
    let sim = start_with(Scenario {
        sessions: vec![
            SessionScript::new("pdf").complete_after_polls(1),
            SessionScript::new("netbanking")
                .statement("nb-1", "online")
                .complete_after_polls(1),
        ],
        webhooks: WebhookSettings {
            retries: 1,
            ..WebhookSettings::default()
        },
        ..Scenario::default()
    })
    .await;
    let register = client()
        .post(format!("{}/session_data/update_webhook/", sim.base_url()))
        .header("x-api-key", "sim-api-key")
        .header("server-hash", "sim-server-hash")
        .header("content-type", "application/json")
        .body(format!(r#"{{"webhook_url": "{url}", "webhook_mode": 0}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 200);
    progress(&sim, "pdf").await;
    progress(&sim, "netbanking").await;
    let attempts = wait_for(|| {
        let attempts = sim.webhook_attempts();
        (attempts.len() >= 2).then_some(attempts)
    })
    .await;
    assert!(attempts
        .iter()
        .all(|a| a.session_id == "netbanking" && a.status == Some(500)));
    assert_eq!(
        attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn scenario_files_load_and_the_example_is_valid() {
    let example = Scenario::from_json(include_str!("../scenarios/example.json")).unwrap();
    assert_eq!(example.sessions.len(), 6);
    assert!(
        Scenario::from_json(r#"{"sessions": [{"session_id": "a"}, {"session_id": "a"}]}"#).is_err()
    );
    assert!(Scenario::from_json(r#"{"sessions": [{"session_id": "a/b"}]}"#).is_err());
    assert!(Scenario::from_json(r#"{"sesions": []}"#).is_err());
    assert!(Scenario::from_json(r#"{"faults": {"rate": 2}}"#).is_err());
    let builtin = Scenario::builtin();
    builtin.validate().unwrap();
    let ids: Vec<_> = builtin
        .sessions
        .iter()
        .map(|s| s.session_id.as_str())
        .collect();
    for expected in [
        "sim-completed",
        "sim-deleted",
        "sim-not-requested",
        "sim-flaky",
        "sim-account-incomplete-months",
        "sim-account-incomplete-dates-upload",
    ] {
        assert!(ids.contains(&expected), "{expected}");
    }
}

#[tokio::test]
async fn webhook_and_session_status_report_the_same_accounts() {
    let (url, seen) = receiver(200).await;
    let mut scripts = Vec::new();
    for (code, message) in bankconnect_sim::ACCOUNT_ERROR_MESSAGES {
        scripts.push(
            SessionScript::new(&format!(
                "same-{}",
                code.to_ascii_lowercase().replace('_', "-")
            ))
            .account_failure(code, message)
            .complete_after_polls(1),
        );
    }
    scripts.push(SessionScript::new("same-clean").complete_after_polls(1));
    let count = scripts.len();
    let sim = start_with(Scenario {
        sessions: scripts.clone(),
        webhook_url: Some(url),
        ..Scenario::default()
    })
    .await;
    for script in &scripts {
        progress(&sim, &script.session_id).await;
    }
    wait_for(|| (seen.lock().unwrap().len() >= count).then_some(())).await;
    let deliveries = seen.lock().unwrap().clone();
    for script in &scripts {
        let (_, body, _) = deliveries
            .iter()
            .find(|(_, body, _)| {
                String::from_utf8_lossy(body).contains(&format!("\"{}\"", script.session_id))
            })
            .unwrap();
        let event =
            bankconnect_webhook_verify::WebhookEvent::parse(body, &Default::default()).unwrap();
        let from_webhook = event.account_results();
        let (_, status) = get(
            &sim,
            &format!("/session_data/{}/session_status/", script.session_id),
        )
        .await;
        let from_status: bankconnect_core::SessionStatus = serde_json::from_value(status).unwrap();
        assert_eq!(from_webhook.len(), from_status.accounts.len());
        for (a, b) in from_webhook.iter().zip(&from_status.accounts) {
            assert_eq!(a.account_id, b.account_id);
            assert_eq!(a.account_status, b.account_status);
            assert_eq!(a.error_code, b.error_code, "{}", script.session_id);
            assert_eq!(a.error_message, b.error_message);
            assert_eq!(a.error_detail, b.error_detail);
            assert_eq!(a.is_failed(), b.is_failed());
        }
    }
}
