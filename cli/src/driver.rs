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
    fn track(&self, sessions: Vec<SessionId>) -> Result<Box<dyn Tracking>, ClientError>;
}

/// A running tracker, whichever driver runs it.
pub(crate) trait Tracking {
    /// A callback feeding webhooks to this tracker from any thread.
    fn feed(&self) -> Feed;
    /// A callback adding sessions to this tracker from any thread.
    fn session_feed(&self) -> SessionFeed;
    /// The next event; `None` once nothing is tracked.
    fn next_event(&mut self) -> Option<TrackerEvent>;
    /// An event ready now, without waiting; `None` when the next one is yet to come.
    fn try_next_event(&mut self) -> Option<TrackerEvent>;
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

    fn track(&self, sessions: Vec<SessionId>) -> Result<Box<dyn Tracking>, ClientError> {
        let tracker = self.client.track_many(sessions)?;
        Ok(Box::new(AsyncTracking {
            webhooks: tracker.webhook_feed(),
            tracker: Some(tracker),
            events: None,
            task: None,
            runtime: self.runtime.clone(),
        }))
    }
}

/// Events queued between the tracker's task and the command before the task waits for it.
const EVENTS_IN_TRANSIT: usize = 1024;

/// The async tracker, run as a task on the runtime's workers from the first `next_event` on
/// (next to its requests' tasks, so that a request's answer wakes no other thread); the
/// command's thread receives only the events.
struct AsyncTracking {
    tracker: Option<bankconnect_http_async::Tracker>,
    webhooks: bankconnect_http_async::WebhookFeed,
    events: Option<tokio::sync::mpsc::Receiver<TrackerEvent>>,
    /// The tracker's task, to pass on its panic should it end by one.
    task: Option<tokio::task::JoinHandle<()>>,
    runtime: Handle,
}

impl Tracking for AsyncTracking {
    fn feed(&self) -> Feed {
        let feed = self.webhooks.clone();
        Box::new(move |hint| {
            feed.send(hint);
        })
    }

    fn session_feed(&self) -> SessionFeed {
        match &self.tracker {
            Some(tracker) => {
                let feed = tracker.session_feed();
                Box::new(move |session| feed.send(session))
            }
            // Running already: sessions can no longer be fed in.
            None => Box::new(|_| false),
        }
    }

    fn try_next_event(&mut self) -> Option<TrackerEvent> {
        // Before the first `next_event` nothing runs, so nothing is ready.
        self.events.as_mut()?.try_recv().ok()
    }

    fn next_event(&mut self) -> Option<TrackerEvent> {
        if let Some(mut tracker) = self.tracker.take() {
            let (tx, rx) = tokio::sync::mpsc::channel(EVENTS_IN_TRANSIT);
            self.task = Some(self.runtime.spawn(async move {
                while let Some(event) = tracker.next_event().await {
                    if tx.send(event).await.is_err() {
                        break; // The command stopped listening.
                    }
                }
            }));
            self.events = Some(rx);
        }
        let event = self.events.as_mut()?.blocking_recv();
        if event.is_none() {
            // The end, or a panic in the tracker's task: then it is the command's too.
            if let Some(task) = self.task.take() {
                if let Err(err) = self.runtime.block_on(task) {
                    if err.is_panic() {
                        std::panic::resume_unwind(err.into_panic());
                    }
                }
            }
        }
        event
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

    fn track(&self, sessions: Vec<SessionId>) -> Result<Box<dyn Tracking>, ClientError> {
        Ok(Box::new(self.track_many(sessions)?))
    }
}

impl Tracking for bankconnect_http_blocking::Tracker {
    fn feed(&self) -> Feed {
        let feed = self.webhook_feed();
        Box::new(move |hint| {
            feed.send(hint);
        })
    }

    fn session_feed(&self) -> SessionFeed {
        let feed = bankconnect_http_blocking::Tracker::session_feed(self);
        Box::new(move |session| feed.send(session))
    }

    fn next_event(&mut self) -> Option<TrackerEvent> {
        bankconnect_http_blocking::Tracker::next_event(self)
    }

    fn try_next_event(&mut self) -> Option<TrackerEvent> {
        bankconnect_http_blocking::Tracker::try_next_event(self)
    }
}
