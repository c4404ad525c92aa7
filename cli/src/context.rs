//! Building the API and the chosen driver from the global options, with clear configuration errors.

use bankconnect_core::SchedulerConfig;
use std::time::SystemTime;

use bankconnect_core::{
    Api, BaseUrl, BaseUrlError, ClientSettings, Credentials, PollPolicy, SessionId,
};

use crate::args::Global;
use crate::driver::Driver;
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

/// The driver `--transport` picks, with the policy and limits checked first.
pub(crate) fn driver(
    global: &Global,
    api: Api,
    policy: PollPolicy,
    limits: SchedulerConfig,
    runtime: &tokio::runtime::Runtime,
) -> Result<Box<dyn Driver>, Failure> {
    policy
        .validate()
        .map_err(|err| Failure::usage(format!("bad timing option: {err}")))?;
    limits
        .validate()
        .map_err(|err| Failure::usage(format!("bad limit: {err}")))?;
    let settings = ClientSettings::new(api, ClientSettings::seed_from(SystemTime::now()))
        .with_policy(policy)
        .with_limits(limits);
    Ok(crate::driver::new(
        global.transport,
        settings,
        global.request_timeout,
        runtime.handle().clone(),
    ))
}

/// A multi-threaded tokio runtime for the async paths (servers: the receiver, the simulator).
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    runtime_of(2)
}

/// The runtime `wait` tracks on: one worker thread, beside the command's own.
///
/// The tracker is one task and its requests' tasks run beside it; on one worker a request is
/// built, sent, answered and dropped on the thread that handles it. With two workers every
/// request and answer crossed between them, and freeing on one thread what the other allocated
/// kept glibc's arena locks contended: 22% of the CPU of a 20 000-session `wait` (perf), and
/// 1.3x the CPU of one worker for the same work.
pub(crate) fn tracking_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    runtime_of(1)
}

fn runtime_of(workers: usize) -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(|err| Failure::internal(format!("cannot start the async runtime: {err}")))
}
