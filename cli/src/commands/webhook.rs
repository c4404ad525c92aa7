//! `webhook listen` and `webhook verify`, and the receiver `wait --webhook-listen` runs.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bankconnect_core::WebhookHint;
use bankconnect_webhook_verify::{
    Authenticator, Limits, Receiver, ReceiverConfig, Reception, WebhookEvent, WebhookSecret,
};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::args::ListenArgs;
use crate::context::runtime;
use crate::failure::{exit, Failure};
use crate::output;

/// A receiver's configuration from the command line: path, body limit, secrets and token.
pub(crate) fn receiver_config(
    path: &str,
    max_body: Option<usize>,
    secrets: &[String],
    token: Option<&str>,
) -> Result<ReceiverConfig, Failure> {
    let token = token
        .map(|token| {
            WebhookSecret::raw(token.as_bytes().to_vec())
                .map_err(|err| Failure::usage(format!("bad --webhook-token: {err}")))
        })
        .transpose()?;
    let mut limits = Limits::default();
    if let Some(max_body) = max_body {
        limits.max_body = max_body;
    }
    Ok(ReceiverConfig {
        path: path.to_owned(),
        limits,
        auth: authenticator(secrets)?,
        token,
    })
}

fn authenticator(secrets: &[String]) -> Result<Authenticator, Failure> {
    if secrets.is_empty() {
        return Ok(Authenticator::None);
    }
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    Authenticator::standard_webhooks(&secrets)
        .map_err(|err| Failure::usage(format!("bad --secret: {err}; use whsec_<base64>")))
}

/// Binds a receiver on `addr`, serving in the current runtime; `on_hint` gets each new
/// ENRICHMENT_NOTIFICATION. Returns the bound address.
pub(crate) async fn serve_receiver(
    addr: SocketAddr,
    config: ReceiverConfig,
    on_reception: impl Fn(&Reception) + Send + Sync + 'static,
) -> Result<SocketAddr, Failure> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|err| Failure::usage(format!("cannot listen on {addr}: {err}")))?;
    let bound = listener
        .local_addr()
        .map_err(|err| Failure::usage(format!("cannot listen on {addr}: {err}")))?;
    let app = bankconnect_webhook_verify::axum_handler::router(
        Arc::new(Receiver::new(config)),
        on_reception,
    );
    tokio::spawn(bankconnect_webhook_verify::axum_handler::serve(
        listener, app,
    ));
    Ok(bound)
}

/// Feeds accepted enrichment events to `feed` and logs rejections (sampled: the 1st, 2nd, 4th,
/// 8th… so that a flood of bad requests cannot fill an unread stderr and stall the receiver).
pub(crate) fn hint_feeder(
    feed: impl Fn(WebhookHint) + Send + Sync + 'static,
) -> impl Fn(&Reception) + Send + Sync + 'static {
    let rejected = std::sync::atomic::AtomicU64::new(0);
    move |reception| match reception {
        Reception::Accepted(delivery) => {
            if let Some(hint) = delivery.hint() {
                tracing::info!(session = %hint.session_id, "webhook received");
                feed(hint);
            }
        }
        Reception::Duplicate(_) => tracing::debug!("duplicate webhook ignored"),
        Reception::Rejected(rejection) => {
            let count = rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if count.is_power_of_two() {
                tracing::warn!(status = rejection.status().as_u16(), reason = %rejection, rejected = count, "webhook rejected");
            }
        }
    }
}

fn print_reception(reception: &Reception, json: bool) {
    match reception {
        Reception::Accepted(delivery) | Reception::Duplicate(delivery) => {
            let duplicate = matches!(reception, Reception::Duplicate(_));
            if json {
                output::json_line(&delivery.event.to_json(duplicate));
            } else {
                print_event_human(&delivery.event, duplicate);
            }
        }
        Reception::Rejected(rejection) if json => {
            let line = serde_json::json!({"rejected": {
                "status": rejection.status().as_u16(),
                "reason": rejection.to_string(),
            }});
            eprintln!("{line}");
        }
        Reception::Rejected(rejection) => {
            output::error_line(&format!(
                "bankconnect: rejected a request ({}): {rejection}",
                rejection.status().as_u16()
            ));
        }
    }
}

fn print_event_human(event: &WebhookEvent, duplicate: bool) {
    let name = event.event_name().map_or("entity payload", |n| n.as_str());
    let session = event.session_id().map_or("-", |s| s.as_str());
    output::line(&format!(
        "{name} for session {session}{}",
        if duplicate { " (duplicate)" } else { "" }
    ));
    for account in event.account_results() {
        output::line(&format!("  {}", output::account_text(&account)));
    }
}

/// Receptions waiting to be printed before new ones are counted as dropped.
const PRINT_QUEUE: usize = 4096;

pub(crate) fn listen(args: &ListenArgs, json: bool) -> Result<u8, Failure> {
    let config = receiver_config(
        &args.path,
        Some(args.max_body),
        &args.secrets,
        args.webhook_token.as_deref(),
    )?;
    // Answer first, print after: receptions go to a printer thread through a bounded queue, so
    // a stdout nobody reads never holds up the receiver; what does not fit is counted.
    let (queue, printer) = std::sync::mpsc::sync_channel::<Reception>(PRINT_QUEUE);
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Queued and not printed yet: on ctrl-c every event answered is printed before the exit.
    let unprinted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let printing = Arc::clone(&unprinted);
    std::thread::Builder::new()
        .name("bankconnect-printer".into())
        .spawn(move || {
            for reception in printer {
                print_reception(&reception, json);
                printing.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            }
        })
        .map_err(|err| Failure::internal(format!("cannot start the printer: {err}")))?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let counter = Arc::clone(&dropped);
        let queued = Arc::clone(&unprinted);
        let bound = serve_receiver(args.addr, config, move |reception| {
            queued.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            if queue.try_send(reception.clone()).is_err() {
                queued.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                let before = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if before.is_power_of_two() || before == 0 {
                    tracing::warn!(
                        dropped = before + 1,
                        "output is not being read; events not printed"
                    );
                }
            }
        })
        .await?;
        eprintln!("listening on http://{bound}{}", args.path);
        tokio::signal::ctrl_c()
            .await
            .map_err(|err| Failure::internal(format!("cannot wait for ctrl-c: {err}")))?;
        // What was answered is printed before the exit (within a bound: a stdout nobody reads
        // must not hold the exit up).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while unprinted.load(std::sync::atomic::Ordering::Acquire) > 0
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Ok(exit::OK)
    })
}

fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), Failure> {
    let bad = || {
        Failure::usage(format!(
            "bad --header {:?}: use 'name: value'",
            text.chars().take(64).collect::<String>()
        ))
    };
    let (name, value) = text.split_once(':').ok_or_else(bad)?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
    let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
    Ok((name, value))
}

pub(crate) fn verify(
    secrets: &[String],
    headers: &[String],
    file: &str,
    json: bool,
) -> Result<u8, Failure> {
    let auth = authenticator(secrets)?;
    let mut map = HeaderMap::new();
    for header in headers {
        let (name, value) = parse_header(header)?;
        map.append(name, value);
    }
    let limits = Limits::default();
    let cap = u64::try_from(limits.max_body).unwrap_or(u64::MAX) + 1;
    let mut body = Vec::new();
    let read = if file == "-" {
        std::io::stdin().lock().take(cap).read_to_end(&mut body)
    } else {
        std::fs::File::open(file)
            .map_err(|err| Failure::usage(format!("cannot open {file}: {err}")))?
            .take(cap)
            .read_to_end(&mut body)
    };
    read.map_err(|err| Failure::invalid(format!("cannot read the payload: {err}")))?;
    if body.len() > limits.max_body {
        return Err(Failure::invalid(format!(
            "the payload exceeds {} bytes",
            limits.max_body
        )));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    auth.verify(&map, &body, now)
        .map_err(|err| Failure::invalid(format!("unauthenticated: {err}")))?;
    let event =
        WebhookEvent::parse(&body, &limits).map_err(|err| Failure::invalid(err.to_string()))?;
    let normalized = event.to_json(false);
    if json {
        output::json_line(&normalized);
    } else {
        output::line(&serde_json::to_string_pretty(&normalized).unwrap_or_default());
    }
    Ok(exit::OK)
}
