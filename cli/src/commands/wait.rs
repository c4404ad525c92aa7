//! `bankconnect wait`: many sessions in one scheduler, webhooks as the fast path, polling as the backup.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, IsTerminal, Read};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bankconnect_core::SchedulerConfig;
use bankconnect_core::{Outcome, PollPolicy, ProgressUpdate, SessionId, TrackerEvent};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::{Global, WaitArgs};
use crate::commands::webhook::{hint_feeder, receiver_config, serve_receiver};
use crate::context::{api, driver, session_id, tracking_runtime};
use crate::failure::{exit, Failure};
use crate::output;

/// Largest `--sessions-from` input read.
const MAX_SESSIONS_INPUT: u64 = 64 * 1024 * 1024;

fn read_sessions(source: &str, into: &mut Vec<SessionId>) -> Result<(), Failure> {
    let mut text = String::new();
    // One byte past the limit tells an input that is too large from one that fits exactly.
    let read = if source == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_SESSIONS_INPUT + 1)
            .read_to_string(&mut text)
    } else {
        let file = std::fs::File::open(source).map_err(|err| {
            Failure::usage(format!("cannot open --sessions-from {source}: {err}"))
        })?;
        std::io::BufReader::new(file)
            .take(MAX_SESSIONS_INPUT + 1)
            .read_to_string(&mut text)
    };
    read.map_err(|err| Failure::usage(format!("cannot read --sessions-from {source}: {err}")))?;
    if text.len() as u64 > MAX_SESSIONS_INPUT {
        return Err(Failure::usage(format!(
            "--sessions-from {source} is larger than {} MiB; split it into several runs",
            MAX_SESSIONS_INPUT / (1024 * 1024)
        )));
    }
    for line in text.as_bytes().split(|byte| *byte == b'\n') {
        if let Some(id) = session_line(line) {
            into.push(id?);
        }
    }
    Ok(())
}

/// One line of a sessions list: `None` for a blank line or a `#` comment, else its session id
/// (surrounding whitespace trimmed) or why it is not one.
fn session_line(line: &[u8]) -> Option<Result<SessionId, Failure>> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return None;
    }
    Some(session_id(text))
}

/// The sessions known before tracking starts: the arguments and a `--sessions-from FILE`
/// (`-`, stdin, is streamed while tracking instead).
fn sessions(args: &WaitArgs) -> Result<Vec<SessionId>, Failure> {
    let mut ids = Vec::new();
    for id in &args.session_ids {
        ids.push(session_id(id)?);
    }
    if let Some(source) = args.sessions_from.as_deref().filter(|s| *s != "-") {
        read_sessions(source, &mut ids)?;
    }
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    if ids.is_empty() && args.sessions_from.as_deref() != Some("-") {
        return Err(Failure::usage(
            "no session ids: pass them as arguments or with --sessions-from FILE|-",
        ));
    }
    Ok(ids)
}

/// What the command has printed and still owes: the sessions without a final line yet, and
/// the buffered stdout their lines go to. One lock for both, shared with the signal handler,
/// so a session never gets two final lines and no buffered line is lost at a signal.
struct Printed {
    pending: BTreeSet<SessionId>,
    out: std::io::BufWriter<std::io::Stdout>,
}

type SharedPrinted = Arc<Mutex<Printed>>;

fn lock(printed: &SharedPrinted) -> std::sync::MutexGuard<'_, Printed> {
    printed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Streams session ids from stdin to the tracker as lines arrive (duplicates and ids already
/// given skipped, bad lines reported and skipped), then drops the feed at EOF. Returns how many
/// sessions it fed.
fn stream_stdin(
    feed: crate::driver::SessionFeed,
    known: Vec<SessionId>,
    printed: SharedPrinted,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut seen: std::collections::HashSet<SessionId> = known.into_iter().collect();
        let mut fed = 0;
        let stdin = std::io::stdin();
        let mut reader = stdin.lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            // Lines are bounded, so one endless line cannot exhaust memory.
            match (&mut reader).take(4096).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.len() >= 4096 && !line.ends_with(b"\n") {
                output::error_line("bankconnect: skipped a --sessions-from line longer than 4 KiB");
                // Skip the rest of that line, 4 KiB at a time (never all of it in memory).
                loop {
                    line.clear();
                    match (&mut reader).take(4096).read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => return fed,
                        Ok(_) if line.ends_with(b"\n") => break,
                        Ok(_) => {}
                    }
                }
                continue;
            }
            let Some(parsed) = session_line(&line) else {
                continue;
            };
            match parsed {
                Ok(id) if seen.insert(id.clone()) => {
                    lock(&printed).pending.insert(id.clone());
                    if !feed(id) {
                        break;
                    }
                    fed += 1;
                }
                Ok(_) => {}
                Err(failure) => output::error_line(&format!("bankconnect: skipped: {failure}")),
            }
        }
        fed
    })
}

/// Most sessions that get a bar of their own; beyond, only the overall bar.
const MAX_SESSION_BARS: usize = 20;

/// Live progress on a terminal: one bar per session (stages done of stages total, state) and
/// an overall bar, on stderr.
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    sessions: HashMap<SessionId, ProgressBar>,
}

impl Bars {
    fn new(ids: &[SessionId]) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let session_style =
            ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} stages  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        let mut sessions = HashMap::new();
        if ids.len() <= MAX_SESSION_BARS {
            for id in ids {
                let bar = multi.add(ProgressBar::new(0).with_style(session_style.clone()));
                bar.set_prefix(id.as_str().chars().take(24).collect::<String>());
                bar.set_message("waiting");
                sessions.insert(id.clone(), bar);
            }
        }
        let overall = multi.add(
            ProgressBar::new(ids.len() as u64).with_style(
                ProgressStyle::with_template(
                    "{prefix:>24} [{bar:30}] {pos}/{len} sessions ended  {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
        );
        overall.set_prefix("all sessions");
        Self {
            multi,
            overall,
            sessions,
        }
    }

    fn update(&self, update: &ProgressUpdate) {
        if let Some(bar) = self.sessions.get(&update.session_id) {
            bar.set_length(update.stages_total as u64);
            bar.set_position(update.stages_done as u64);
            bar.set_message(update.session_progress.to_string());
        }
    }

    fn ended(&self, outcome: &Outcome) {
        if let Some(bar) = self.sessions.get(&outcome.session_id) {
            bar.finish_with_message(outcome.outcome.to_string());
        }
        self.overall.inc(1);
    }
}

/// Prints each outcome as it ends, keeps the highest exit code, and drives the bars.
struct Report {
    json: bool,
    code: u8,
    /// Sessions ended so far.
    ended: usize,
    bars: Option<Bars>,
    /// Sessions not ended yet and the output, shared with the signal handler.
    printed: SharedPrinted,
}

/// SIGINT and SIGTERM, registered before tracking starts so that no signal is missed.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registers the handlers (inside the runtime).
    fn register() -> Option<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Some(Self {
                interrupt: signal(SignalKind::interrupt()).ok()?,
                terminate: signal(SignalKind::terminate()).ok()?,
            })
        }
        #[cfg(not(unix))]
        {
            Some(Self {})
        }
    }

    /// The exit code of the first signal to come: 130 (SIGINT) or 143 (SIGTERM).
    async fn next(mut self) -> Option<i32> {
        #[cfg(unix)]
        {
            tokio::select! {
                Some(()) = self.interrupt.recv() => Some(130),
                Some(()) = self.terminate.recv() => Some(143),
                else => None,
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.ok().map(|()| 130)
        }
    }
}

/// On SIGINT or SIGTERM: a final `interrupted` line for every session still pending, then exit
/// 130 or 143 (128 + the signal), as shells expect.
async fn interrupt_on_signal(
    signals: Signals,
    printed: SharedPrinted,
    json: bool,
    started: Instant,
) {
    let Some(code) = signals.next().await else {
        return;
    };
    let mut printed = lock(&printed);
    let Printed { pending, out } = &mut *printed;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    for id in pending.iter() {
        if json {
            output::json_line_to(
                out,
                &serde_json::json!({
                    "session_id": id, "outcome": "interrupted", "error": null, "statements": [],
                    "accounts": [], "notified_by": null, "polls": null, "elapsed_ms": elapsed_ms,
                }),
            );
        } else {
            output::line_to(out, &format!("{id}: interrupted"));
        }
    }
    // The lines already buffered go out first, then these: nothing printed is lost.
    let _ = std::io::Write::flush(out);
    std::process::exit(code);
}

impl crate::driver::EventSink for Report {
    fn event(&mut self, event: TrackerEvent) {
        match event {
            TrackerEvent::Progress(update) => {
                if let Some(bars) = &self.bars {
                    bars.update(&update);
                }
            }
            TrackerEvent::Outcome(outcome) => {
                self.ended += 1;
                self.outcome(&outcome);
            }
            // Kinds a newer core adds are not displayed by this version.
            _ => {}
        }
    }

    /// Sends what is buffered, so that a reader sees each line soon after it ends.
    fn idle(&mut self) {
        let _ = std::io::Write::flush(&mut lock(&self.printed).out);
    }
}

impl Report {
    fn outcome(&mut self, outcome: &Outcome) {
        let printed = Arc::clone(&self.printed);
        let mut printed = lock(&printed);
        let Printed { pending, out } = &mut *printed;
        pending.remove(&outcome.session_id);
        let json = self.json;
        let print = |out: &mut std::io::BufWriter<std::io::Stdout>| {
            if json {
                output::json_line_to(out, outcome);
            } else {
                output::outcome_human_to(out, outcome);
            }
        };
        match &self.bars {
            Some(bars) => {
                // Under the bars, each line goes out at once.
                bars.multi.suspend(|| {
                    print(out);
                    let _ = std::io::Write::flush(out);
                });
                bars.ended(outcome);
            }
            None => print(out),
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
    // Bars only on a terminal and without --json; plain lines otherwise.
    let live = !global.json && std::io::stderr().is_terminal();
    let limits = SchedulerConfig {
        max_in_flight: args.concurrency as usize,
        progress_updates: live,
        ..SchedulerConfig::default()
    };
    // Sessions streamed from stdin are not known up front: then only plain lines.
    let live = live && args.sessions_from.as_deref() != Some("-");
    let bars = live.then(|| Bars::new(&ids));
    // The receiver (when asked for) and the async driver run on this runtime.
    let runtime = tracking_runtime()?;
    let driver = driver(global, api(global)?, policy, limits, &runtime)?;
    let receiver = receiver_config(
        &args.webhook_path,
        None,
        &args.secrets,
        args.webhook_token.as_deref(),
    )?;
    // Buffered: lines written while more events are ready go out in one write.
    let printed = Arc::new(Mutex::new(Printed {
        pending: ids.iter().cloned().collect(),
        out: std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()),
    }));
    let report = Report {
        json: global.json,
        code: exit::OK,
        ended: 0,
        bars,
        printed: Arc::clone(&printed),
    };
    if let Some(signals) = runtime.block_on(async { Signals::register() }) {
        runtime.spawn(interrupt_on_signal(
            signals,
            printed,
            global.json,
            Instant::now(),
        ));
    }
    let streaming = args.sessions_from.as_deref() == Some("-");
    // Only a stream needs the ids given up front again (to skip repeats).
    let known = streaming.then(|| ids.clone());
    let tracker = driver.track(ids)?;
    let reader =
        known.map(|known| stream_stdin(tracker.session_feed(), known, Arc::clone(&report.printed)));
    if let Some(addr) = args.webhook_listen {
        let feed = tracker.feed();
        let bound = runtime.block_on(serve_receiver(addr, receiver, hint_feeder(feed)))?;
        crate::output::error_line(&format!(
            "webhook receiver listening on http://{bound}{}",
            args.webhook_path
        ));
    }
    let report = tracker
        .run(report)
        .ok_or_else(|| Failure::internal("the tracker stopped with the runtime"))?;
    let ended = report.ended;
    if let Some(reader) = reader {
        let fed = reader.join().unwrap_or(0);
        if ended == 0 && fed == 0 {
            return Err(Failure::usage(
                "no session ids: pass them as arguments or with --sessions-from FILE|-",
            ));
        }
    }
    Ok(report.code)
}
