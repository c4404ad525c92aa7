//! What the command prints: JSON lines with `--json`, plain sentences otherwise.

use std::io::Write;

use bankconnect_core::{AccountResult, ErrorDetail, Outcome, ProgressReport, SessionStatus};

use crate::failure::Failure;

/// Prints one JSON value as a line on stdout.
pub(crate) fn json_line(value: &impl serde::Serialize) {
    let mut stdout = std::io::stdout().lock();
    json_line_to(&mut stdout, value);
    let _ = stdout.flush();
}

/// Writes one JSON value as a line to `out` (a command printing many flushes when it waits).
pub(crate) fn json_line_to(out: &mut impl Write, value: &impl serde::Serialize) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        let _ = out.write_all(b"{}");
    }
    let _ = out.write_all(b"\n");
}

/// Prints a plain line on stdout, with control characters escaped (see [`escape`]).
pub(crate) fn line(text: &str) {
    let mut stdout = std::io::stdout().lock();
    line_to(&mut stdout, text);
    let _ = stdout.flush();
}

/// Writes a plain line to `out`, escaped as [`line()`] does.
pub(crate) fn line_to(out: &mut impl Write, text: &str) {
    let _ = writeln!(out, "{}", escape(text));
}

/// Escapes what a terminal would act on: control characters (escape sequences, carriage
/// returns, newlines that would forge extra lines) and Unicode bidirectional overrides, which
/// unauthenticated fields (`account_id`, `bank_name`, `error_message`…) may carry.
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Prints a line on stderr, escaped as [`line()`] does.
pub(crate) fn error_line(text: &str) {
    eprintln!("{}", escape(text));
}

/// Reports a failure: `{"error": {"kind", "message"}}` on stdout with `--json`, else a sentence on stderr.
pub(crate) fn failure(failure: &Failure, json: bool) {
    if json {
        json_line(&serde_json::json!({"error": {
            "kind": failure.kind,
            "code": failure.api_code,
            "status": failure.http_status,
            "message": failure.message,
        }}));
    } else {
        error_line(&format!("bankconnect: {}", failure.message));
    }
}

pub(crate) fn detail_text(detail: &ErrorDetail) -> String {
    match detail {
        ErrorDetail::Months(months) => {
            let months: Vec<String> = months.iter().map(ToString::to_string).collect();
            format!("months {}", months.join(", "))
        }
        ErrorDetail::Dates(dates) => {
            let parts: Vec<String> = dates
                .iter()
                .map(|(month, days)| {
                    let days: Vec<String> = days.iter().map(ToString::to_string).collect();
                    format!("{month}: days {}", days.join(", "))
                })
                .collect();
            format!("missing {}", parts.join("; "))
        }
        _ => String::new(),
    }
}

pub(crate) fn account_text(account: &AccountResult) -> String {
    let mut text = format!(
        "account {} ({}): {}",
        account.account_id.as_deref().unwrap_or("?"),
        account.bank_name.as_deref().unwrap_or("?"),
        account
            .account_status
            .as_ref()
            .map_or("unknown", |s| s.as_str())
    );
    if let Some(code) = &account.error_code {
        text.push_str(&format!(" {code}"));
    }
    if let Some(detail) = &account.error_detail {
        text.push_str(&format!(" [{}]", detail_text(detail)));
    } else if let Some(message) = &account.error_message {
        text.push_str(&format!(" - {message}"));
    }
    text
}

pub(crate) fn progress_human(report: &ProgressReport) {
    let (done, total) = report.stage_counts();
    line(&format!(
        "{}: {} ({done}/{total} stages done)",
        report.session_id, report.session_progress
    ));
    for statement in &report.statements {
        let stages: Vec<String> = statement
            .stages()
            .iter()
            .map(|(name, status)| {
                format!(
                    "{}={}",
                    name.trim_end_matches("_status"),
                    status.map_or("?", |s| s.as_str())
                )
            })
            .collect();
        let mut text = format!(
            "  statement {} ({}): {}",
            statement.statement_id.as_deref().unwrap_or("?"),
            statement.source.as_ref().map_or("?", |s| s.as_str()),
            stages.join(" ")
        );
        if let Some(message) = &statement.message {
            text.push_str(&format!(" - {message}"));
        }
        line(&text);
    }
}

pub(crate) fn status_human(status: &SessionStatus) {
    line(&format!(
        "{}: {} account(s)",
        status.session_id,
        status.accounts.len()
    ));
    for account in &status.accounts {
        line(&format!("  {}", account_text(account)));
        for statement in &account.statements {
            line(&format!(
                "    statement {}: {}{}",
                statement.statement_id.as_deref().unwrap_or("?"),
                statement
                    .statement_status
                    .as_ref()
                    .map_or("?", |s| s.as_str()),
                statement
                    .error_message
                    .as_deref()
                    .map(|m| format!(" - {m}"))
                    .unwrap_or_default()
            ));
        }
    }
}

/// Prints an outcome as sentences on stdout.
pub(crate) fn outcome_human(outcome: &Outcome) {
    let mut stdout = std::io::stdout().lock();
    outcome_human_to(&mut stdout, outcome);
    let _ = stdout.flush();
}

/// Writes an outcome as sentences to `out`.
pub(crate) fn outcome_human_to(out: &mut impl Write, outcome: &Outcome) {
    let mut line = |text: &str| line_to(out, text);
    let how = match (outcome.outcome.is_completed(), outcome.notified_by) {
        (true, bankconnect_core::NotifiedBy::Webhook) => ", learnt by webhook",
        (true, bankconnect_core::NotifiedBy::Poll) => ", learnt by polling",
        (false, _) => "",
    };
    let mut text = format!(
        "{}: {}{how} ({} polls, {} retries, {:.1}s)",
        outcome.session_id,
        outcome.outcome,
        outcome.polls,
        outcome.retries,
        outcome.elapsed_ms as f64 / 1000.0
    );
    if let Some(error) = &outcome.error {
        text.push_str(&format!(" - {}: {}", error.code, error.message));
    }
    line(&text);
    for statement in outcome.failed_statements() {
        line(&format!(
            "  statement {} failed: {}",
            statement.statement_id.as_deref().unwrap_or("?"),
            statement.message.as_deref().unwrap_or("no message")
        ));
    }
    for account in &outcome.accounts {
        line(&format!("  {}", account_text(account)));
    }
    if let Some(reason) = &outcome.accounts_error {
        line(&format!("  accounts unavailable: {reason}"));
    }
}
