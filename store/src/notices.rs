//! Notices of webhooks that other processes sharing a PostgreSQL store accepted for tracking
//! sessions: how the replica that polls a session hears of a webhook another replica took in.

use bankconnect_core::SessionId;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One notice from [`WebhookNotices`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookNotice {
    /// Another process accepted a webhook for this tracking session: whoever polls it should
    /// read its webhooks ([`crate::Store::webhooks_of`]).
    Webhook(SessionId),
    /// An operator asked (at any process) for this tracking session to be polled now.
    PollRequested(SessionId),
    /// Notices may have been missed (the listening connection was down, or the reader fell
    /// behind): read what was accepted meanwhile ([`crate::Store::leased_webhooks`]). Also sent
    /// each time listening (re)starts.
    Missed,
}

/// The notices of [`crate::Store::listen_webhooks`]. Dropping it stops listening.
#[derive(Debug)]
pub struct WebhookNotices {
    notices: mpsc::Receiver<WebhookNotice>,
    task: JoinHandle<()>,
}

impl WebhookNotices {
    pub(crate) fn new(notices: mpsc::Receiver<WebhookNotice>, task: JoinHandle<()>) -> Self {
        Self { notices, task }
    }

    /// The next notice; `None` only once listening has stopped for good.
    pub async fn recv(&mut self) -> Option<WebhookNotice> {
        self.notices.recv().await
    }
}

impl Drop for WebhookNotices {
    fn drop(&mut self) {
        self.task.abort();
    }
}
