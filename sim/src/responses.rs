//! The bodies the simulator answers with, in FinBox's documented shapes.

use serde_json::{json, Value};

use crate::scenario::{SessionScript, STAGES};

/// `{"error": {"code", "message"}}`.
pub(crate) fn error_body(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

/// The progress body for a session with `steps` of its 4 stages done (4 = completed).
pub(crate) fn progress_body(script: &SessionScript, steps: usize) -> Value {
    let complete = steps >= STAGES.len();
    let statements: Vec<Value> = script
        .statements
        .iter()
        .map(|statement| {
            let mut entry = serde_json::Map::new();
            entry.insert("statement_id".into(), json!(statement.statement_id));
            entry.insert("source".into(), json!(statement.source));
            let mut failed = false;
            for (index, name) in STAGES.iter().enumerate() {
                let status = match statement.fail_at {
                    Some(stage) if index >= stage.index() && steps > stage.index() => {
                        failed = true;
                        "failed"
                    }
                    _ if index < steps => "completed",
                    _ => "processing",
                };
                entry.insert((*name).into(), json!(status));
            }
            let message = failed.then(|| {
                statement
                    .message
                    .clone()
                    .unwrap_or_else(|| "Statement processing failed".into())
            });
            entry.insert("message".into(), json!(message));
            Value::Object(entry)
        })
        .collect();
    json!({
        "session_id": script.session_id,
        "session_progress": if complete { "completed" } else { "processing" },
        "progress": statements,
    })
}

/// The session_status body: accounts with their statements.
pub(crate) fn session_status_body(script: &SessionScript) -> Value {
    let accounts: Vec<Value> = script
        .accounts
        .iter()
        .map(|account| {
            let statements: Vec<Value> = script
                .statements
                .iter()
                .map(|statement| {
                    json!({
                        "statement_id": statement.statement_id,
                        "statement_status": if statement.fail_at.is_some() { "failed" } else { "completed" },
                        "error_code": Value::Null,
                        "error_message": statement.message,
                        "source": statement.source,
                        "created_at": "2024-07-01 10:15:00",
                    })
                })
                .collect();
            json!({
                "bank_name": account.bank_name,
                "account_number": account.account_number,
                "account_id": account.account_id,
                "account_status": account.status(),
                "error_code": account.error_code,
                "error_message": account.error_message,
                "created_at": "2024-07-01 10:15:00",
                "last_updated_at": "2024-07-01 10:20:00",
                "statements": statements,
            })
        })
        .collect();
    json!({"session_id": script.session_id, "accounts": accounts})
}

/// The ENRICHMENT_NOTIFICATION FinBox would POST (newer shape: `""` for absent errors).
pub(crate) fn enrichment_body(script: &SessionScript) -> Value {
    let accounts: Vec<Value> = script
        .accounts
        .iter()
        .map(|account| {
            json!({
                "bank_name": account.bank_name,
                "account_id": account.account_id,
                "account_status": account.status(),
                "error_code": account.error_code.clone().unwrap_or_default(),
                "error_message": account.error_message.clone().unwrap_or_default(),
                "account_category": "individual",
                "attempt_types": script.statements.iter().map(|s| s.source.to_ascii_uppercase()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "session_id": script.session_id,
        "event_name": "ENRICHMENT_NOTIFICATION",
        "insights_available": script.accounts.iter().all(|a| a.error_code.is_none()),
        "accounts": accounts,
    })
}

/// A gateway's HTML error page.
pub(crate) const HTML_PAGE: &str = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>";
