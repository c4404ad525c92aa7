//! `progress`, `status` and `webhook set`: single calls with the policy's retries.

use bankconnect_core::SchedulerConfig;
use bankconnect_core::{PollPolicy, SessionStatusReply, WebhookMode, WebhookRegistration};

use crate::args::Global;
use crate::context::{api, runtime, session_id};
use crate::driver::Driver;
use crate::failure::{exit, Failure};
use crate::output;

/// Runs `call` with the chosen driver, for a single call with the default policy.
fn with_driver<T>(
    global: &Global,
    call: impl FnOnce(&dyn Driver) -> Result<T, bankconnect_core::ClientError>,
) -> Result<T, Failure> {
    let runtime = runtime()?;
    let driver = crate::context::driver(
        global,
        api(global)?,
        PollPolicy::default(),
        SchedulerConfig::default(),
        &runtime,
    )?;
    Ok(call(driver.as_ref())?)
}

pub(crate) fn progress(global: &Global, id: &str) -> Result<u8, Failure> {
    let id = session_id(id)?;
    let report = with_driver(global, |driver| driver.progress(&id))?;
    if global.json {
        output::json_line(&report);
    } else {
        output::progress_human(&report);
    }
    Ok(exit::OK)
}

pub(crate) fn status(global: &Global, id: &str) -> Result<u8, Failure> {
    let id = session_id(id)?;
    let reply = with_driver(global, |driver| driver.session_status(&id))?;
    match reply {
        SessionStatusReply::Ready(status) => {
            if global.json {
                output::json_line(&status);
            } else {
                output::status_human(&status);
            }
            Ok(exit::OK)
        }
        SessionStatusReply::NotYet(err) => Err(Failure {
            kind: "api_error",
            message: format!("{err} (processing has not finished; try again later)"),
            code: exit::API,
            api_code: Some(err.code.as_str().to_owned()),
            http_status: Some(err.http_status),
        }),
    }
}

pub(crate) fn webhook_set(global: &Global, url: &str, mode: u8) -> Result<u8, Failure> {
    let mode = if mode == 0 {
        WebhookMode::NetBankingOnly
    } else {
        WebhookMode::All
    };
    let registration =
        WebhookRegistration::new(url, mode).map_err(|err| Failure::usage(err.to_string()))?;
    let updated = with_driver(global, |driver| driver.update_webhook(&registration))?;
    if global.json {
        output::json_line(&serde_json::json!({
            "webhook_url": registration.webhook_url,
            "webhook_mode": registration.webhook_mode,
            "message": updated.message,
        }));
    } else {
        output::line(&format!(
            "webhook set to {} (mode {}): {}",
            registration.webhook_url,
            registration.webhook_mode.as_number(),
            updated.message.as_deref().unwrap_or("ok")
        ));
    }
    Ok(exit::OK)
}
