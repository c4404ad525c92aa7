//! The chosen transport behind one interface, so every command has one code path whichever
//! driver `--transport` picks. The async driver runs on the command's tokio runtime; the
//! blocking one never touches it.

use bankconnect_core::{
    ClientError, ClientSettings, ProgressReport, SessionId, SessionStatusReply, TrackerEvent,
    WebhookHint, WebhookRegistration, WebhookUpdated,
};
use tokio::runtime::Handle;

use crate::args::Transport;

/// A callback that hands an accepted webhook to a running tracker.
pub(crate) type Feed = Box<dyn Fn(WebhookHint) + Send + Sync>;

/// A callback that adds a session to a running tracker (`false` once it is gone); while one
/// lives, the tracker waits for more sessions.
pub(crate) type SessionFeed = Box<dyn Fn(SessionId) -> bool + Send>;

/// The operations the command uses, whichever driver runs them.
pub(crate) trait Driver {
    /// One progress report.
    fn progress(&self, session: &SessionId) -> Result<ProgressReport, ClientError>;
    /// The accounts' verdicts.
    fn session_status(&self, session: &SessionId) -> Result<SessionStatusReply, ClientError>;
    /// Registers the webhook URL.
    fn update_webhook(
        &self,
        registration: &WebhookRegistration,
    ) -> Result<WebhookUpdated, ClientError>;
    /// A tracker of `sessions`.
    fn track(&self, sessions: Vec<SessionId>) -> Result<Tracking, ClientError>;
}

/// Where a running tracker's events go ([`Tracking::run`]).
pub(crate) trait EventSink: Send + 'static {
    /// One event.
    fn event(&mut self, event: TrackerEvent);
    /// No event has come for a moment: the time to send what is buffered.
    fn idle(&mut self);
}

/// Longest an event handed to the sink waits for [`EventSink::idle`] while others keep coming
/// (lines printed in a steady stream go out in batches, each within this of its event).
const IDLE_WITHIN: std::time::Duration = std::time::Duration::from_millis(5);

/// A running tracker, whichever driver runs it.
pub(crate) enum Tracking {
    /// The async driver's tracker and the runtime it runs on.
    Async(Box<bankconnect_http_async::Tracker>, Handle),
    /// The blocking driver's tracker (its own threads).
    Blocking(bankconnect_http_blocking::Tracker),
}

impl Tracking {
    /// A callback feeding webhooks to this tracker from any thread.
    pub(crate) fn feed(&self) -> Feed {
        match self {
            Self::Async(tracker, _) => {
                let feed = tracker.webhook_feed();
                Box::new(move |hint| {
                    feed.send(hint);
                })
            }
            Self::Blocking(tracker) => {
                let feed = tracker.webhook_feed();
                Box::new(move |hint| {
                    feed.send(hint);
                })
            }
        }
    }

    /// A callback adding sessions to this tracker from any thread.
    pub(crate) fn session_feed(&self) -> SessionFeed {
        match self {
            Self::Async(tracker, _) => {
                let feed = tracker.session_feed();
                Box::new(move |session| feed.send(session))
            }
            Self::Blocking(tracker) => {
                let feed = tracker.session_feed();
                Box::new(move |session| feed.send(session))
            }
        }
    }

    /// Tracks until nothing is left, handing every event to `sink`, and gives `sink` back
    /// (`None` only if the runtime shut down under it).
    ///
    /// The async tracker runs as one task on the runtime's workers, next to its requests'
    /// tasks, and hands its events to `sink` there: no event crosses a thread, and the calling
    /// thread sleeps until the end. A panic in the tracker is passed on.
    pub(crate) fn run<S: EventSink>(self, mut sink: S) -> Option<S> {
        match self {
            Self::Async(tracker, runtime) => {
                let task = runtime.spawn(run_async(*tracker, sink));
                match runtime.block_on(task) {
                    Ok(sink) => Some(sink),
                    Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                    Err(_) => None,
                }
            }
            Self::Blocking(mut tracker) => {
                loop {
                    let event = match tracker.try_next_event() {
                        Some(event) => event,
                        None => {
                            sink.idle();
                            match tracker.next_event() {
                                Some(event) => event,
                                None => break,
                            }
                        }
                    };
                    sink.event(event);
                }
                sink.idle();
                Some(sink)
            }
        }
    }
}

async fn run_async<S: EventSink>(mut tracker: bankconnect_http_async::Tracker, mut sink: S) -> S {
    // When the oldest event not followed by `idle` came.
    let mut since: Option<tokio::time::Instant> = None;
    loop {
        let event = match since {
            None => tracker.next_event().await,
            Some(at) => {
                let idle_at = at + IDLE_WITHIN;
                let next = tracker.next_event();
                tokio::pin!(next);
                let came = tokio::select! {
                    biased;
                    event = &mut next => Some(event),
                    () = tokio::time::sleep_until(idle_at) => None,
                };
                match came {
                    Some(event) => event,
                    None => {
                        sink.idle();
                        since = None;
                        next.await
                    }
                }
            }
        };
        let Some(event) = event else { break };
        sink.event(event);
        let now = tokio::time::Instant::now();
        match since {
            Some(at) if now >= at + IDLE_WITHIN => {
                sink.idle();
                since = None;
            }
            Some(_) => {}
            None => since = Some(now),
        }
    }
    sink.idle();
    sink
}

/// The driver `transport` names, over `settings`, with requests timing out after `timeout`.
pub(crate) fn new(
    transport: Transport,
    settings: ClientSettings,
    timeout: std::time::Duration,
    runtime: Handle,
) -> Box<dyn Driver> {
    match transport {
        Transport::Async => Box::new(AsyncDriver {
            client: bankconnect_http_async::Client::with_settings(
                settings,
                bankconnect_http_async::ReqwestTransport::new(timeout),
            ),
            runtime,
        }),
        Transport::Blocking => Box::new(bankconnect_http_blocking::Client::with_settings(
            settings,
            bankconnect_http_blocking::UreqTransport::new(timeout),
        )),
    }
}

struct AsyncDriver {
    client: bankconnect_http_async::Client,
    runtime: Handle,
}

impl Driver for AsyncDriver {
    fn progress(&self, session: &SessionId) -> Result<ProgressReport, ClientError> {
        self.runtime.block_on(self.client.progress(session))
    }

    fn session_status(&self, session: &SessionId) -> Result<SessionStatusReply, ClientError> {
        self.runtime.block_on(self.client.session_status(session))
    }

    fn update_webhook(
        &self,
        registration: &WebhookRegistration,
    ) -> Result<WebhookUpdated, ClientError> {
        self.runtime
            .block_on(self.client.update_webhook(registration))
    }

    fn track(&self, sessions: Vec<SessionId>) -> Result<Tracking, ClientError> {
        Ok(Tracking::Async(
            Box::new(self.client.track_many(sessions)?),
            self.runtime.clone(),
        ))
    }
}

impl Driver for bankconnect_http_blocking::Client {
    fn progress(&self, session: &SessionId) -> Result<ProgressReport, ClientError> {
        bankconnect_http_blocking::Client::progress(self, session)
    }

    fn session_status(&self, session: &SessionId) -> Result<SessionStatusReply, ClientError> {
        bankconnect_http_blocking::Client::session_status(self, session)
    }

    fn update_webhook(
        &self,
        registration: &WebhookRegistration,
    ) -> Result<WebhookUpdated, ClientError> {
        bankconnect_http_blocking::Client::update_webhook(self, registration)
    }

    fn track(&self, sessions: Vec<SessionId>) -> Result<Tracking, ClientError> {
        Ok(Tracking::Blocking(self.track_many(sessions)?))
    }
}
