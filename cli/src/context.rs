//! Building the API and the chosen driver from the global options, with clear configuration errors.

use bankconnect_core::scheduler::SchedulerConfig;
use bankconnect_core::{Api, BaseUrl, BaseUrlError, Credentials, PollPolicy, SessionId};

use crate::args::{Global, Transport};
use crate::failure::Failure;

/// The API from the global options: a validated base URL and both credentials.
pub(crate) fn api(global: &Global) -> Result<Api, Failure> {
    let base = BaseUrl::parse(&global.base_url).map_err(|err| match err {
        BaseUrlError::InsecureRemote { host } => Failure::usage(format!(
            "refusing plain http:// to {host}: use https://, or http:// only for loopback hosts"
        )),
        other => Failure::usage(format!("bad --base-url: {other}")),
    })?;
    let (Some(key), Some(hash)) = (&global.api_key, &global.server_hash) else {
        return Err(Failure::usage(
            "missing credentials: set BANKCONNECT_API_KEY and BANKCONNECT_SERVER_HASH (or pass --api-key and --server-hash)",
        ));
    };
    let credentials = Credentials::new(key, hash)
        .map_err(|err| Failure::usage(format!("bad credentials: {err}")))?;
    Ok(Api::new(base, credentials))
}

/// A session ID from the command line.
pub(crate) fn session_id(text: &str) -> Result<SessionId, Failure> {
    SessionId::new(text.trim())
        .map_err(|err| Failure::usage(format!("bad session id {:?}: {err}", truncate(text))))
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

/// The chosen driver, configured the same way whichever it is.
pub(crate) enum Driver {
    Async(bankconnect_http_async::Client),
    Blocking(bankconnect_http_blocking::Client),
}

impl Driver {
    pub(crate) fn new(
        global: &Global,
        api: Api,
        policy: PollPolicy,
        limits: SchedulerConfig,
    ) -> Result<Self, Failure> {
        policy
            .validate()
            .map_err(|err| Failure::usage(format!("bad timing option: {err}")))?;
        limits
            .validate()
            .map_err(|err| Failure::usage(format!("bad limit: {err}")))?;
        Ok(match global.transport {
            Transport::Async => Self::Async(
                bankconnect_http_async::Client::with_transport(
                    api,
                    bankconnect_http_async::ReqwestTransport::new(global.request_timeout),
                )
                .with_policy(policy)
                .with_limits(limits),
            ),
            Transport::Blocking => Self::Blocking(
                bankconnect_http_blocking::Client::with_transport(
                    api,
                    bankconnect_http_blocking::UreqTransport::new(global.request_timeout),
                )
                .with_policy(policy)
                .with_limits(limits),
            ),
        })
    }
}

/// A multi-threaded tokio runtime for the async paths.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| Failure::internal(format!("cannot start the async runtime: {err}")))
}
