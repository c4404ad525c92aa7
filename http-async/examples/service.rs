//! A long-running tracker inside a service: sessions are added while it runs (through a
//! `SessionFeed`), FinBox's webhooks arrive on an axum route (the `webhook-verify` router) and are
//! fed in through a `WebhookFeed`, and each outcome is handled as it happens. Runs against the
//! simulator, which sends its webhooks to the route.
//! Run: `cargo run -p bankconnect-http-async --example service`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bankconnect_core::{
    Api, BaseUrl, Credentials, PollPolicy, SessionId, WebhookMode, WebhookRegistration,
};
use bankconnect_http_async::{Client, ClientSettings};
use bankconnect_sim::{Scenario, SessionScript, SimConfig, Simulator};
use bankconnect_webhook_verify::{axum_handler, Receiver, ReceiverConfig, Reception};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // FinBox, simulated: three sessions that finish in a second or two.
    let sim = Simulator::start(SimConfig {
        scenario: Scenario {
            sessions: ["a", "b", "c"]
                .iter()
                .map(|id| SessionScript::new(id).complete_after(Duration::from_secs(1)))
                .collect(),
            ..Scenario::default()
        },
        ..SimConfig::default()
    })
    .await?;
    let api = Api::new(
        BaseUrl::parse(&sim.base_url())?,
        Credentials::new(
            bankconnect_sim::DEFAULT_API_KEY,
            bankconnect_sim::DEFAULT_SERVER_HASH,
        )?,
    );
    let client = Client::from_settings(
        ClientSettings::new(api, ClientSettings::seed_from(SystemTime::now())).with_policy(
            PollPolicy {
                interval: Duration::from_millis(500),
                ..PollPolicy::default()
            },
        ),
    );

    // The tracker runs in its own task for the life of the service.
    let mut tracker = client.tracker()?;
    let sessions = tracker.session_feed();
    let webhooks = tracker.webhook_feed();
    let tracking = tokio::spawn(async move {
        while let Some(outcome) = tracker.next_outcome().await {
            // Your service's reaction: update a loan application, notify someone…
            println!(
                "{} ended: {} (learnt by {:?})",
                outcome.session_id, outcome.outcome, outcome.notified_by
            );
        }
    });

    // The webhook route, inside the service's own router.
    let receiver = Arc::new(Receiver::new(ReceiverConfig {
        path: "/hooks/finbox".into(),
        ..ReceiverConfig::default()
    }));
    let route = axum_handler::router(receiver, move |reception: &Reception| {
        if let Reception::Accepted(delivery) = reception {
            if let Some(hint) = delivery.hint() {
                webhooks.send(hint); // a hint: the tracker confirms it with one poll
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(axum_handler::serve(listener, route));
    client
        .update_webhook(&WebhookRegistration::new(
            &format!("http://{addr}/hooks/finbox"),
            WebhookMode::All,
        )?)
        .await?;

    // Sessions arrive while the tracker runs (here: one every 300 ms).
    for id in ["a", "b", "c"] {
        sessions.send(SessionId::new(id)?);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // No more sessions: once these end, the tracker's loop ends.
    drop(sessions);
    tracking.await?;
    Ok(())
}
