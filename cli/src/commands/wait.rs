//! `bankconnect wait`: many sessions in one scheduler, webhooks as the fast path, polling as the backup.

use std::io::{BufRead, Read};

use bankconnect_core::scheduler::SchedulerConfig;
use bankconnect_core::{Outcome, PollPolicy, SessionId};
use bankconnect_webhook_verify::ReceiverConfig;

use crate::args::{Global, WaitArgs};
use crate::commands::webhook::{hint_feeder, serve_receiver};
use crate::context::{api, runtime, session_id, Driver};
use crate::failure::{exit, Failure};
use crate::output;

/// Largest `--sessions-from` input read.
const MAX_SESSIONS_INPUT: u64 = 64 * 1024 * 1024;

fn read_sessions(source: &str, into: &mut Vec<SessionId>) -> Result<(), Failure> {
    let mut text = String::new();
    let read = if source == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_SESSIONS_INPUT)
            .read_to_string(&mut text)
    } else {
        let file = std::fs::File::open(source).map_err(|err| {
            Failure::usage(format!("cannot open --sessions-from {source}: {err}"))
        })?;
        std::io::BufReader::new(file)
            .take(MAX_SESSIONS_INPUT)
            .read_to_string(&mut text)
    };
    read.map_err(|err| Failure::usage(format!("cannot read --sessions-from {source}: {err}")))?;
    for line in text.as_bytes().lines() {
        let line = line.map_err(|err| Failure::usage(err.to_string()))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        into.push(session_id(line)?);
    }
    Ok(())
}

fn sessions(args: &WaitArgs) -> Result<Vec<SessionId>, Failure> {
    let mut ids = Vec::new();
    for id in &args.session_ids {
        ids.push(session_id(id)?);
    }
    if let Some(source) = &args.sessions_from {
        read_sessions(source, &mut ids)?;
    }
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    if ids.is_empty() {
        return Err(Failure::usage(
            "no session ids: pass them as arguments or with --sessions-from FILE|-",
        ));
    }
    Ok(ids)
}

/// Prints an outcome as it ends and keeps the highest exit code.
struct Report {
    json: bool,
    code: u8,
}

impl Report {
    fn outcome(&mut self, outcome: &Outcome) {
        if self.json {
            output::json_line(outcome);
        } else {
            output::outcome_human(outcome);
        }
        self.code = self.code.max(outcome.outcome.exit_code());
    }
}

pub(crate) fn run(global: &Global, args: &WaitArgs) -> Result<u8, Failure> {
    let ids = sessions(args)?;
    let policy = PollPolicy {
        interval: args.interval,
        max_wait: args.max_wait,
        not_requested_grace: args.not_requested_grace,
        fetch_accounts: !args.no_accounts,
        retry_budget: args.retries,
        ..PollPolicy::default()
    };
    let limits = SchedulerConfig {
        max_in_flight: args.concurrency as usize,
        ..SchedulerConfig::default()
    };
    let driver = Driver::new(global, api(global)?, policy, limits)?;
    let receiver = ReceiverConfig {
        path: args.webhook_path.clone(),
        ..ReceiverConfig::default()
    };
    let mut report = Report {
        json: global.json,
        code: exit::OK,
    };
    // The receiver (when asked for) runs on this runtime; the blocking driver never touches it.
    let runtime = runtime()?;
    match driver {
        Driver::Async(client) => runtime.block_on(async {
            let mut tracker = client.track_many(ids)?;
            if let Some(addr) = args.webhook_listen {
                let feed = tracker.webhook_feed();
                let bound = serve_receiver(
                    addr,
                    receiver,
                    hint_feeder(move |hint| {
                        feed.send(hint);
                    }),
                )
                .await?;
                tracing::info!(addr = %bound, "webhook receiver listening");
            }
            while let Some(outcome) = tracker.next_outcome().await {
                report.outcome(&outcome);
            }
            Ok::<(), Failure>(())
        })?,
        Driver::Blocking(client) => {
            let mut tracker = client.track_many(ids)?;
            if let Some(addr) = args.webhook_listen {
                let feed = tracker.webhook_feed();
                let bound = runtime.block_on(serve_receiver(
                    addr,
                    receiver,
                    hint_feeder(move |hint| {
                        feed.send(hint);
                    }),
                ))?;
                tracing::info!(addr = %bound, "webhook receiver listening");
            }
            while let Some(outcome) = tracker.next_outcome() {
                report.outcome(&outcome);
            }
        }
    }
    Ok(report.code)
}
