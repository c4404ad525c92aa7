//! `bankconnect demo`: the whole flow on the embedded simulator, no credentials, no network.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bankconnect_core::ClientSettings;
use bankconnect_core::{
    Api, BaseUrl, Credentials, PollPolicy, SessionId, WebhookMode, WebhookRegistration,
};
use bankconnect_sim::{FaultKind, Scenario, SessionScript, SimConfig, Simulator, Stage};
use bankconnect_webhook_verify::ReceiverConfig;

use crate::args::Global;
use crate::commands::webhook::{hint_feeder, serve_receiver};
use crate::context::runtime;
use crate::failure::{exit, Failure};
use crate::output;

fn scenario() -> Scenario {
    Scenario {
        sessions: vec![
            SessionScript::new("demo-clean")
                .statement("demo-clean-stmt-2", "aa")
                .complete_after(Duration::from_secs(3)),
            SessionScript::new("demo-incomplete-months")
                .account_failure(
                    "INCOMPLETE_MONTHS",
                    "Insufficient data to generate report. There are no transactions for Nov 2023, Dec 2023",
                )
                .complete_after(Duration::from_secs(4)),
            SessionScript::new("demo-flaky")
                .fault_on(1, FaultKind::ServerError)
                .fault_on(2, FaultKind::Truncated)
                .fault_on(3, FaultKind::RateLimited)
                .complete_after(Duration::from_secs(5))
                .webhook_delay(Duration::from_millis(300)),
            SessionScript::new("demo-polling-only")
                .fail_statement_stage(0, Stage::Transaction, "Statement is password protected")
                .complete_after_polls(4)
                .without_webhook(),
        ],
        ..Scenario::default()
    }
}

pub(crate) fn run(global: &Global) -> Result<u8, Failure> {
    let json = global.json;
    let say = |text: &str| {
        if !json {
            for line in text.split('\n') {
                output::line(line);
            }
        }
    };
    runtime()?.block_on(async {
        let sim = Simulator::start(SimConfig {
            scenario: scenario(),
            ..SimConfig::default()
        })
        .await
        .map_err(|err| Failure::internal(err.to_string()))?;
        say(&format!("simulator listening on {}", sim.base_url()));
        let api = Api::new(
            BaseUrl::parse(&sim.base_url()).map_err(|err| Failure::internal(err.to_string()))?,
            Credentials::new(bankconnect_sim::DEFAULT_API_KEY, bankconnect_sim::DEFAULT_SERVER_HASH)
                .map_err(|err| Failure::internal(err.to_string()))?,
        );
        let policy = PollPolicy {
            interval: Duration::from_secs(1),
            max_wait: Duration::from_secs(45),
            ..PollPolicy::default()
        };
        let seed = ClientSettings::seed_from(SystemTime::now());
        let settings = ClientSettings::new(api, seed).with_policy(policy);
        let client = bankconnect_http_async::Client::from_settings(settings);
        let ids: Vec<SessionId> = scenario()
            .sessions
            .iter()
            .filter_map(|s| SessionId::new(&s.session_id).ok())
            .collect();
        let mut tracker = client.track_many(ids)?;
        let feed = tracker.webhook_feed();
        let receiver = serve_receiver(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            ReceiverConfig::default(),
            hint_feeder(move |hint| {
                feed.send(hint);
            }),
        )
        .await?;
        let webhook_url = format!("http://{receiver}/");
        let registration = WebhookRegistration::new(&webhook_url, WebhookMode::All)
            .map_err(|err| Failure::internal(err.to_string()))?;
        client.update_webhook(&registration).await?;
        say(&format!("webhook registered: {webhook_url} (mode 1)"));
        say("tracking 4 sessions: clean, an account failure, transient faults, and one never webhooked\n");
        let mut code = exit::OK;
        while let Some(outcome) = tracker.next_outcome().await {
            if json {
                output::json_line(&outcome);
            } else {
                output::outcome_human(&outcome);
            }
            code = code.max(outcome.outcome.exit_code());
        }
        // Webhooks may still be on their way (delays, duplicates): count once they stop coming.
        let mut attempts = sim.webhook_attempts();
        let settle = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = sim.webhook_attempts();
            if now.len() == attempts.len() || settle.elapsed() > Duration::from_secs(5) {
                attempts = now;
                break;
            }
            attempts = now;
        }
        say(&format!(
            "\n{} API requests served, {} webhook deliveries ({} answered 200)",
            sim.requests().len(),
            attempts.len(),
            attempts.iter().filter(|a| a.status == Some(200)).count()
        ));
        // The demo's own sessions are meant to include failures; the demo itself succeeded.
        let _ = code;
        Ok(exit::OK)
    })
}
