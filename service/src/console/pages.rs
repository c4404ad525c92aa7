//! The console's pages and the forms behind its buttons. Pages read the store as the API's
//! GETs do; every action calls `crate::actions`, the API's own code path.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use bankconnect_store::{DeliveryOverview, DeliveryState, Event, SessionRecord, SessionState};
use serde_json::Value;

use super::html::{esc, page, time, url_part, Nav};
use super::{field, form, may_act, path_id, query_pairs, with_login, Login};
use crate::api::sessions::ListQuery;
use crate::api::App;
use crate::error::ApiError;

/// Sessions per page.
const PAGE: usize = 50;

fn html(body: String) -> Response {
    Html(body).into_response()
}

fn status_note(message: Option<&str>, error: bool) -> String {
    match message {
        Some(text) => format!(
            "<p role=\"status\" class=\"status{}\">{}</p>",
            if error { " error" } else { "" },
            esc(text)
        ),
        None => "<p role=\"status\" class=\"status\" hidden></p>".into(),
    }
}

/// A fixed message for `?done=` (never text from the URL itself).
fn done_message(pairs: &[(String, String)]) -> Option<&'static str> {
    let done = pairs
        .iter()
        .find(|(k, _)| k == "done")
        .map(|(_, v)| v.as_str())?;
    Some(match done {
        "redeliver" => "Redelivery queued: it is attempted at once, with the same webhook-id.",
        "poll" => "Poll asked for: the replica holding the session polls it now.",
        "cancel" => "Session cancelled.",
        "pause" => "Deliveries paused for the whole fleet.",
        "resume" => "Deliveries resumed: what is due goes at once.",
        _ => return None,
    })
}

fn error_page(login: &Login, err: &ApiError) -> Response {
    let body = format!(
        "<h1>Not done</h1><p role=\"status\" class=\"status error\">{} ({})</p>",
        esc(&err.message),
        esc(err.code)
    );
    let mut response = html(page("Not done", Nav::None, Some(&login.csrf), &body));
    *response.status_mut() = err.status;
    response
}

fn hidden_csrf(login: &Login) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&login.csrf)
    )
}

fn count_rows(rows: &[(&str, u64)]) -> String {
    let mut out = String::from("<dl>");
    for (name, n) in rows {
        let _ = write!(out, "<dt>{}</dt><dd>{n}</dd>", esc(name));
    }
    out.push_str("</dl>");
    out
}

fn delivery_health(overview: &DeliveryOverview, target: Option<&str>, now: SystemTime) -> String {
    let when = |t: Option<SystemTime>| t.map_or("never".to_owned(), |t| time(t, now));
    format!(
        "<dl><dt>Target</dt><dd>{}</dd><dt>Paused</dt><dd>{}</dd><dt>Pending</dt><dd>{}</dd>\
         <dt>Failing</dt><dd>{}</dd><dt>Given up</dt><dd>{}</dd><dt>Oldest undelivered</dt><dd>{}</dd>\
         <dt>Last success</dt><dd>{}</dd><dt>Last failure</dt><dd>{}</dd><dt>Consecutive failures</dt><dd>{}</dd></dl>",
        target.map_or("none (no --deliver-to)".to_owned(), esc),
        if overview.paused { "<strong class=\"warn\">yes</strong>" } else { "no" },
        overview.counts.pending,
        overview.counts.failing,
        overview.counts.given_up,
        overview.oldest_undelivered_at.map_or("none".to_owned(), |t| time(t, now)),
        when(overview.last_success_at),
        overview
            .last_failure
            .as_ref()
            .map_or("none".to_owned(), |(at, error)| format!("{} — {}", time(*at, now), esc(error))),
        overview.consecutive_failures,
    )
}

fn live_toggle() -> &'static str {
    "<div class=\"live\"><button type=\"button\" id=\"live-toggle\" class=\"secondary\" aria-pressed=\"false\" hidden>Pause live updates</button></div>"
}

/// `/ui`: counts, the last 24 h, the delivery's health, the replicas.
pub(crate) async fn overview(State(app): State<App>, headers: HeaderMap) -> Response {
    with_login(&app.clone(), &headers.clone(), |login| async move {
        let now = SystemTime::now();
        let since = now - Duration::from_secs(86_400);
        let stats = match app.store.stats(since).await {
            Ok(stats) => stats,
            Err(err) => return error_page(&login, &ApiError::store(&err)),
        };
        let delivery = match crate::actions::delivery_overview(&app).await {
            Ok(overview) => overview,
            Err(err) => return error_page(&login, &err),
        };
        let replicas = app
            .store
            .replicas(now - app.lease * 2)
            .await
            .unwrap_or_default();
        let s = &stats.sessions;
        let d = &stats.deliveries;
        let mut outcomes: Vec<(&str, u64)> =
            stats.outcomes.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        if outcomes.is_empty() {
            outcomes.push(("none yet", 0));
        }
        let mut codes = String::from("<ul>");
        for (code, n) in &stats.top_error_codes {
            let _ = write!(
                codes,
                "<li><a href=\"/ui/sessions?error_code={}\">{}</a>: {n}</li>",
                url_part(code),
                esc(code)
            );
        }
        if stats.top_error_codes.is_empty() {
            codes.push_str("<li class=\"muted\">none</li>");
        }
        codes.push_str("</ul>");
        let mut fleet = String::from("<ul>");
        for replica in &replicas {
            let me = if replica.id.as_str() == &*app.replica { " (this one)" } else { "" };
            let _ = write!(
                fleet,
                "<li><code>{}</code>{me}<br><span class=\"muted\">heartbeat {}, up since {}</span></li>",
                esc(&replica.id),
                time(replica.heartbeat_at, now),
                time(replica.started_at, now)
            );
        }
        if replicas.is_empty() {
            let _ = write!(fleet, "<li><code>{}</code> (this one)</li>", esc(&app.replica));
        }
        fleet.push_str("</ul>");
        let body = format!(
            "<h1>Overview</h1>{live}<div data-live>\
             <div class=\"cards\">\
             <section class=\"card\"><h2>Sessions</h2>{}</section>\
             <section class=\"card\"><h2>Deliveries</h2>{}</section>\
             <section class=\"card\"><h2>Outcomes, last 24 h</h2>{}</section>\
             <section class=\"card\"><h2>Top error codes, last 24 h</h2>{codes}</section>\
             <section class=\"card wide\"><h2>Delivery target</h2>{}</section>\
             <section class=\"card\"><h2>Replicas</h2><p class=\"muted\">Heartbeat within {} s</p>{fleet}\
             <p>Oldest tracking: {}</p></section>\
             </div></div>",
            count_rows(&[("Tracking", s.tracking), ("Finished", s.finished), ("Cancelled", s.cancelled)]),
            count_rows(&[
                ("None", d.none),
                ("Pending", d.pending),
                ("Delivered", d.delivered),
                ("Failing", d.failing),
                ("Given up", d.given_up)
            ]),
            count_rows(&outcomes),
            delivery_health(&delivery, app.delivery_target.as_deref(), now),
            (app.lease * 2).as_secs(),
            stats
                .oldest_tracking_added_at
                .map_or("none".to_owned(), |t| time(t, now)),
            live = live_toggle(),
        );
        html(page("Overview", Nav::Overview, Some(&login.csrf), &body))
    })
    .await
}

fn select(name: &str, label: &str, current: Option<&str>, options: &[(&str, &str)]) -> String {
    let mut out =
        format!("<label for=\"f-{name}\">{label}</label><select id=\"f-{name}\" name=\"{name}\">");
    for (value, text) in options {
        let selected = if current == Some(*value) || (current.is_none() && value.is_empty()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, "<option value=\"{value}\"{selected}>{text}</option>");
    }
    out.push_str("</select>");
    format!("<span class=\"control\">{out}</span>")
}

/// `/ui/sessions`: the API's filters in the URL, newest first, paged.
pub(crate) async fn sessions(
    State(app): State<App>,
    headers: HeaderMap,
    query: RawQuery,
) -> Response {
    let pairs = query_pairs(&query);
    with_login(&app.clone(), &headers.clone(), |login| async move {
        let now = SystemTime::now();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        // `newer` walks back: the page before, read oldest first, shown newest first.
        let newer = get("newer");
        let order = if newer.is_some() { Some("asc".to_owned()) } else { get("order").or(Some("desc".into())) };
        let list = ListQuery {
            state: get("state"),
            delivery: get("delivery"),
            outcome: get("outcome"),
            error_code: get("error_code"),
            reference: get("reference"),
            q: get("q"),
            added_after: get("added_after"),
            added_before: get("added_before"),
            order,
            limit: Some(PAGE.to_string()),
            cursor: newer.clone().or_else(|| get("cursor")),
        };
        let mut kept = String::new();
        for name in ["state", "delivery", "outcome", "error_code", "reference", "q", "added_after", "added_before"] {
            if let Some(value) = get(name) {
                let _ = write!(kept, "&{name}={}", url_part(&value));
            }
        }
        let (filter, limit, cursor) = match list.checked() {
            Ok(checked) => checked,
            Err(err) => return error_page(&login, &err),
        };
        let reversed = newer.is_some();
        let mut page_data = match app.store.list_filtered(filter, limit, cursor.as_deref()).await {
            Ok(page) => page,
            Err(bankconnect_store::StoreError::InvalidCursor) => {
                return error_page(&login, &ApiError::invalid("bad cursor"))
            }
            Err(err) => return error_page(&login, &ApiError::store(&err)),
        };
        // Links: Older continues newest-first; Newer reads the other way from the first row.
        let (older, newer_link) = if reversed {
            page_data.sessions.reverse();
            (page_data.back_cursor.clone(), page_data.next_cursor.clone())
        } else {
            (page_data.next_cursor.clone(), page_data.back_cursor.clone().filter(|_| get("cursor").is_some()))
        };
        let mut rows = String::new();
        for record in &page_data.sessions {
            rows.push_str(&session_row(record, now));
        }
        if page_data.sessions.is_empty() {
            rows.push_str("<tr><td colspan=\"7\" class=\"muted\">No sessions match.</td></tr>");
        }
        let mut pager = String::from("<nav class=\"pager\" aria-label=\"Pages\">");
        if let Some(cursor) = newer_link {
            let _ = write!(pager, "<a href=\"/ui/sessions?newer={}{kept}\">Newer</a>", url_part(&cursor));
        }
        if let Some(cursor) = older {
            let _ = write!(pager, "<a href=\"/ui/sessions?cursor={}{kept}\">Older</a>", url_part(&cursor));
        }
        pager.push_str("</nav>");
        let current = |name: &str| get(name);
        let filters = format!(
            "<form class=\"filters\" method=\"get\" action=\"/ui/sessions\">{}{}{}\
             <span class=\"control\"><label for=\"f-error_code\">Error code</label><input id=\"f-error_code\" name=\"error_code\" value=\"{}\" maxlength=\"128\"></span>\
             <span class=\"control\"><label for=\"f-q\">Search</label><input id=\"f-q\" name=\"q\" type=\"search\" value=\"{}\" placeholder=\"session id or reference\" maxlength=\"1024\"></span>\
             <button type=\"submit\">Filter</button></form>",
            select("state", "State", current("state").as_deref(), &[("", "any"), ("tracking", "tracking"), ("finished", "finished"), ("cancelled", "cancelled")]),
            select("delivery", "Delivery", current("delivery").as_deref(), &[("", "any"), ("none", "none"), ("pending", "pending"), ("delivered", "delivered"), ("failing", "failing"), ("given_up", "given up")]),
            select("outcome", "Outcome", current("outcome").as_deref(), &[("", "any"), ("completed", "completed"), ("completed_with_failures", "completed with failures"), ("timed_out", "timed out"), ("api_error", "API error"), ("transport_error", "transport error")]),
            esc(&current("error_code").unwrap_or_default()),
            esc(&current("q").unwrap_or_default()),
        );
        let body = format!(
            "<h1>Sessions</h1>{filters}{}<div data-live><div class=\"table-wrap\"><table>\
             <thead><tr><th scope=\"col\">Session</th><th scope=\"col\">Reference</th><th scope=\"col\">State</th>\
             <th scope=\"col\">Outcome</th><th scope=\"col\">Delivery</th><th scope=\"col\">Added</th><th scope=\"col\">Updated</th></tr></thead>\
             <tbody>{rows}</tbody></table></div>{pager}</div>",
            live_toggle()
        );
        html(page("Sessions", Nav::Sessions, Some(&login.csrf), &body))
    })
    .await
}

fn session_row(record: &SessionRecord, now: SystemTime) -> String {
    let id = record.session_id.as_str();
    let outcome = record
        .outcome
        .as_ref()
        .and_then(|o| o.get("outcome"))
        .and_then(Value::as_str)
        .unwrap_or("—");
    let delivery = record.delivery.state.as_str();
    format!(
        "<tr><td><a href=\"/ui/sessions/{}\">{}</a></td><td>{}</td><td class=\"state-{}\">{}</td><td>{}</td>\
         <td class=\"state-{delivery}\">{delivery}</td><td>{}</td><td>{}</td></tr>",
        url_part(id),
        esc(id),
        esc(record.reference.as_deref().unwrap_or("—")),
        record.state.as_str(),
        record.state.as_str(),
        esc(outcome),
        time(record.added_at, now),
        time(record.updated_at, now),
    )
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "—".into(),
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

/// The outcome in words: how it ended, how that was learnt, the accounts (with their error
/// codes and what the message says of months and dates) and the statements.
fn outcome_section(outcome: Option<&Value>) -> String {
    let Some(outcome) = outcome else {
        return "<h2>Outcome</h2><p class=\"muted\">No outcome yet.</p>".into();
    };
    let kind = outcome
        .get("outcome")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let words = match kind {
        "completed" => "Processing completed and nothing failed.",
        "completed_with_failures" => {
            "Processing completed, but a statement stage or an account failed."
        }
        "timed_out" => "The max wait passed before the session ended.",
        "api_error" => "FinBox refused the session.",
        "transport_error" => "FinBox stayed unreachable past the retry budget.",
        _ => "An outcome this console does not know.",
    };
    let learnt = match outcome.get("notified_by").and_then(Value::as_str) {
        Some("webhook") => "learnt from FinBox's webhook, confirmed by a poll",
        Some("poll") => "learnt by polling",
        _ => "",
    };
    let mut out = format!(
        "<h2>Outcome</h2><p><strong class=\"state-{0}\">{0}</strong>: {words} {1}</p><dl>\
         <dt>Polls</dt><dd>{2}</dd><dt>Elapsed</dt><dd>{3} ms</dd><dt>Session progress</dt><dd>{4}</dd></dl>",
        esc(kind),
        esc(learnt),
        text(outcome.get("polls").unwrap_or(&Value::Null)),
        text(outcome.get("elapsed_ms").unwrap_or(&Value::Null)),
        text(outcome.get("session_progress").unwrap_or(&Value::Null)),
    );
    if let Some(error) = outcome.get("error").filter(|e| !e.is_null()) {
        let _ = write!(
            out,
            "<p class=\"bad\">Error <code>{}</code> (HTTP {}): {}</p>",
            text(error.get("code").unwrap_or(&Value::Null)),
            text(error.get("http_status").unwrap_or(&Value::Null)),
            text(error.get("message").unwrap_or(&Value::Null)),
        );
    }
    let accounts = outcome
        .get("accounts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !accounts.is_empty() {
        out.push_str("<h3>Accounts</h3><div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">Account</th><th scope=\"col\">Bank</th><th scope=\"col\">Status</th><th scope=\"col\">Error code</th><th scope=\"col\">Message</th><th scope=\"col\">Months and dates</th></tr></thead><tbody>");
        for account in &accounts {
            let field = |name: &str| text(account.get(name).unwrap_or(&Value::Null));
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                field("account_id"),
                field("bank_name"),
                field("account_status"),
                field("error_code"),
                field("error_message"),
                detail(account.get("error_detail")),
            );
        }
        out.push_str("</tbody></table></div>");
    }
    let statements = outcome
        .get("statements")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !statements.is_empty() {
        out.push_str("<h3>Statements</h3><div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">Statement</th><th scope=\"col\">Source</th><th scope=\"col\">Identity</th><th scope=\"col\">Transactions</th><th scope=\"col\">Processing</th><th scope=\"col\">Fraud</th><th scope=\"col\">Message</th></tr></thead><tbody>");
        for statement in &statements {
            let field = |name: &str| text(statement.get(name).unwrap_or(&Value::Null));
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                field("statement_id"),
                field("source"),
                field("identity_status"),
                field("transaction_status"),
                field("processing_status"),
                field("fraud_status"),
                field("message"),
            );
        }
        out.push_str("</tbody></table></div>");
    }
    out
}

/// An account's error detail (months, or month → days) in words.
fn detail(value: Option<&Value>) -> String {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return "—".into();
    };
    match value {
        Value::Object(map) => {
            let mut parts = Vec::new();
            for (key, inner) in map {
                parts.push(format!("{}: {}", esc(key), text(inner)));
            }
            parts.join("; ")
        }
        other => text(other),
    }
}

fn event_item(event: &Event, now: SystemTime) -> String {
    let mut fields = String::new();
    for (key, value) in &event.fields {
        if value.is_null() {
            continue;
        }
        let shown = match value {
            Value::String(s) => esc(s),
            Value::Object(map) if map.is_empty() => continue,
            other => esc(&other.to_string()),
        };
        let _ = write!(fields, "<dt>{}</dt><dd>{shown}</dd>", esc(key));
    }
    format!(
        "<li><span class=\"kind\">{}</span>{}{}<dl class=\"fields\">{fields}</dl></li>",
        esc(&event.kind),
        time(event.at, now),
        event.replica.as_deref().map_or(String::new(), |r| format!(
            " <span class=\"muted\">by {}</span>",
            esc(r)
        )),
    )
}

/// `/ui/sessions/{id}`: the record, its outcome in words, its delivery, its history.
pub(crate) async fn session(
    State(app): State<App>,
    headers: HeaderMap,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: RawQuery,
) -> Response {
    let pairs = query_pairs(&query);
    with_login(&app.clone(), &headers.clone(), |login| async move {
        let now = SystemTime::now();
        let Some(id) = path_id(id) else {
            return error_page(&login, &ApiError::invalid("bad session id"));
        };
        let record = match app.store.get_session(&id).await {
            Ok(Some(record)) => record,
            Ok(None) => return error_page(&login, &ApiError::not_found(format!("no session {id}"))),
            Err(err) => return error_page(&login, &ApiError::store(&err)),
        };
        let events = match app.store.session_events(&id, 1000, None).await {
            Ok(page) => page,
            Err(err) => return error_page(&login, &ApiError::store(&err)),
        };
        let path = format!("/ui/sessions/{}", url_part(id.as_str()));
        let mut actions = String::new();
        if login.can_act() {
            let button = |action: &str, name: &str, confirm: Option<&str>, class: &str| {
                let ask = confirm.map_or(String::new(), |q| format!(" data-confirm=\"{}\"", esc(q)));
                format!(
                    "<form method=\"post\" action=\"{path}/{action}\"{ask}>{}<button type=\"submit\" class=\"{class}\">{name}</button></form>",
                    hidden_csrf(&login)
                )
            };
            match record.state {
                SessionState::Finished if app.delivery_target.is_some() => {
                    actions.push_str(&button("redeliver", "Redeliver", None, ""));
                }
                SessionState::Tracking => {
                    actions.push_str(&button("poll", "Poll now", None, ""));
                    actions.push_str(&button("cancel", "Cancel", Some("Cancel this session? It will not be delivered."), "danger"));
                }
                _ => {}
            }
        }
        let delivery = &record.delivery;
        let mut history = String::from("<ol class=\"timeline\">");
        for event in &events.as_ref().map(|p| p.events.clone()).unwrap_or_default() {
            history.push_str(&event_item(event, now));
        }
        history.push_str("</ol>");
        let dropped = events.as_ref().map_or(0, |p| p.dropped);
        let dropped = if dropped > 0 {
            format!("<p class=\"muted\">{dropped} events between the first 20 and the last 200 were not kept.</p>")
        } else {
            String::new()
        };
        let body = format!(
            "<h1>Session <code>{}</code></h1>{}\
             <div class=\"actions\">{actions}</div>\
             <dl><dt>Reference</dt><dd>{}</dd><dt>State</dt><dd class=\"state-{}\">{}</dd>\
             <dt>Added</dt><dd>{}</dd><dt>Updated</dt><dd>{}</dd><dt>Lease</dt><dd>{}</dd></dl>\
             {}\
             <h2>Delivery</h2><dl><dt>State</dt><dd class=\"state-{}\">{}</dd><dt>Attempts</dt><dd>{}</dd>\
             <dt>Last error</dt><dd>{}</dd><dt>webhook-id</dt><dd><code>{}</code></dd><dt>Next attempt</dt><dd>{}</dd></dl>\
             <h2>History</h2>{dropped}{history}",
            esc(id.as_str()),
            status_note(done_message(&pairs), false),
            esc(record.reference.as_deref().unwrap_or("—")),
            record.state.as_str(),
            record.state.as_str(),
            time(record.added_at, now),
            time(record.updated_at, now),
            record.lease.as_ref().map_or("—".to_owned(), |l| format!("{} until {}", esc(&l.owner), time(l.until, now))),
            outcome_section(record.outcome.as_ref()),
            delivery.state.as_str(),
            delivery.state.as_str(),
            delivery.attempts,
            esc(delivery.last_error.as_deref().unwrap_or("—")),
            esc(delivery.webhook_id.as_deref().unwrap_or("—")),
            delivery.next_attempt_at.map_or("—".to_owned(), |t| time(t, now)),
        );
        html(page(&format!("Session {id}"), Nav::Sessions, Some(&login.csrf), &body))
    })
    .await
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

/// A confirmation page (the form again, with `confirm=1`, and a **Confirm** button).
fn confirm_page(
    login: &Login,
    question: &str,
    action: &str,
    fields: &[(String, String)],
) -> Response {
    let mut hidden = String::new();
    for (name, value) in fields {
        if name == "csrf" || name == "confirm" {
            continue;
        }
        let _ = write!(
            hidden,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(name),
            esc(value)
        );
    }
    let body = format!(
        "<h1>Confirm</h1><p>{}</p><form method=\"post\" action=\"{}\">{}{hidden}<input type=\"hidden\" name=\"confirm\" value=\"1\">\
         <button type=\"submit\" class=\"danger\">Confirm</button></form>",
        esc(question),
        esc(action),
        hidden_csrf(login)
    );
    html(page("Confirm", Nav::None, Some(&login.csrf), &body))
}

/// The buttons of a session's page.
pub(crate) async fn session_action(
    State(app): State<App>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    body: Body,
) -> Response {
    let fields = match form(body).await {
        Ok(fields) => fields,
        Err(response) => return *response,
    };
    let login = match may_act(&app, &headers, &fields) {
        Ok(login) => login,
        Err(response) => return *response,
    };
    let Ok(Path((id, action))) = path else {
        return error_page(&login, &ApiError::invalid("bad path"));
    };
    let Ok(id) = bankconnect_core::SessionId::new(&id) else {
        return error_page(&login, &ApiError::invalid("bad session id"));
    };
    let page_path = format!("/ui/sessions/{}", url_part(id.as_str()));
    let result = match action.as_str() {
        "redeliver" => crate::actions::redeliver(&app, &id, false)
            .await
            .map(|_| ()),
        "poll" => crate::actions::poll_now(&app, &id).await,
        "cancel" if field(&fields, "confirm") != Some("1") => {
            return confirm_page(
                &login,
                &format!("Cancel session {id}? It will not be delivered."),
                &format!("{page_path}/cancel"),
                &fields,
            );
        }
        "cancel" => crate::actions::cancel(&app, &id).await.map(|_| ()),
        _ => return error_page(&login, &ApiError::not_found("no such action")),
    };
    match result {
        Ok(()) => see_other(&format!("{page_path}?done={action}")),
        Err(err) => error_page(&login, &err),
    }
}

/// `/ui/delivery`: the target, the switch, and recovery with a preview.
pub(crate) async fn delivery(
    State(app): State<App>,
    headers: HeaderMap,
    query: RawQuery,
) -> Response {
    let pairs = query_pairs(&query);
    with_login(&app.clone(), &headers.clone(), |login| async move {
        let note = status_note(done_message(&pairs), false);
        delivery_page(&app, &login, &note, None).await
    })
    .await
}

async fn delivery_page(
    app: &App,
    login: &Login,
    note: &str,
    recover: Option<&[(String, String)]>,
) -> Response {
    let now = SystemTime::now();
    let overview = match crate::actions::delivery_overview(app).await {
        Ok(overview) => overview,
        Err(err) => return error_page(login, &err),
    };
    let switch = if login.can_act() {
        let (action, name) = if overview.paused {
            ("resume", "Resume deliveries")
        } else {
            ("pause", "Pause deliveries")
        };
        format!(
            "<div class=\"actions\"><form method=\"post\" action=\"/ui/delivery/{action}\">{}<button type=\"submit\">{name}</button></form></div>",
            hidden_csrf(login)
        )
    } else {
        String::new()
    };
    let value = |name: &str| {
        recover
            .and_then(|f| field(f, name))
            .map(esc)
            .unwrap_or_default()
    };
    let checked = |state: &str| {
        let chosen = recover.map(|f| f.iter().any(|(k, v)| k == "states" && v == state));
        match chosen {
            Some(true) => " checked",
            Some(false) => "",
            None if state == "given_up" => " checked",
            None => "",
        }
    };
    let requeue = if login.can_act() {
        "<button type=\"submit\" name=\"do\" value=\"requeue\" class=\"danger\" data-confirm=\"Requeue every matching delivery now?\">Requeue</button>"
    } else {
        ""
    };
    let body = format!(
        "<h1>Delivery</h1>{note}{switch}<section class=\"card\">{}</section>\
         <h2>Recover</h2><p class=\"muted\">Deliveries whose outcome was committed in [since, until), in the states chosen, requeued with their own webhook-id. Times in UTC (RFC 3339).</p>\
         <form class=\"stack\" method=\"post\" action=\"/ui/delivery/recover\">{}\
         <label for=\"r-since\">Since</label><input id=\"r-since\" name=\"since\" required placeholder=\"2026-12-01T06:00:00Z\" value=\"{}\">\
         <label for=\"r-until\">Until</label><input id=\"r-until\" name=\"until\" placeholder=\"now\" value=\"{}\">\
         <fieldset><legend>States</legend>\
         <label><input type=\"checkbox\" name=\"states\" value=\"given_up\"{}> given up</label>\
         <label><input type=\"checkbox\" name=\"states\" value=\"failing\"{}> failing</label></fieldset>\
         <div class=\"actions\"><button type=\"submit\" name=\"do\" value=\"preview\" class=\"secondary\">Preview</button>{requeue}</div></form>",
        delivery_health(&overview, app.delivery_target.as_deref(), now),
        hidden_csrf(login),
        value("since"),
        value("until"),
        checked("given_up"),
        checked("failing"),
    );
    html(page("Delivery", Nav::Delivery, Some(&login.csrf), &body))
}

/// `datetime-local` (read as UTC) or RFC 3339.
fn form_time(text: &str) -> Result<SystemTime, ApiError> {
    let text = text.trim();
    let full = if text.len() == 16 && text.as_bytes().get(10) == Some(&b'T') {
        format!("{text}:00Z")
    } else if text.len() == 19 && text.as_bytes().get(10) == Some(&b'T') {
        format!("{text}Z")
    } else {
        text.to_owned()
    };
    crate::api::time::parse_rfc3339(&full).map_err(ApiError::invalid)
}

/// The delivery page's buttons: pause, resume, recover (preview or requeue).
pub(crate) async fn delivery_action(
    State(app): State<App>,
    headers: HeaderMap,
    action: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Body,
) -> Response {
    let fields = match form(body).await {
        Ok(fields) => fields,
        Err(response) => return *response,
    };
    let Ok(Path(action)) = action else {
        return (StatusCode::NOT_FOUND, "no such action").into_response();
    };
    // A preview changes nothing: a read-only login may ask for one (its CSRF token still
    // required, and not cross-site).
    let preview = action == "recover" && field(&fields, "do") != Some("requeue");
    let login = if preview {
        match super::login_of(&app, &headers) {
            (Some(login), _)
                if !super::cross_site(&headers) && super::csrf_matches(&login, &fields) =>
            {
                login
            }
            _ => return (StatusCode::FORBIDDEN, "refused").into_response(),
        }
    } else {
        match may_act(&app, &headers, &fields) {
            Ok(login) => login,
            Err(response) => return *response,
        }
    };
    match action.as_str() {
        "pause" | "resume" => {
            match crate::actions::switch_delivery(&app, action == "pause").await {
                Ok(_) => see_other(&format!("/ui/delivery?done={action}")),
                Err(err) => error_page(&login, &err),
            }
        }
        "recover" => {
            let since = match field(&fields, "since").map(form_time) {
                Some(Ok(t)) => t,
                Some(Err(err)) => {
                    return delivery_page(
                        &app,
                        &login,
                        &status_note(Some(&format!("Since: {}", err.message)), true),
                        Some(&fields),
                    )
                    .await
                }
                None => {
                    return delivery_page(
                        &app,
                        &login,
                        &status_note(Some("Since is required."), true),
                        Some(&fields),
                    )
                    .await
                }
            };
            let until = match field(&fields, "until")
                .filter(|t| !t.trim().is_empty())
                .map(form_time)
            {
                Some(Ok(t)) => t,
                Some(Err(err)) => {
                    return delivery_page(
                        &app,
                        &login,
                        &status_note(Some(&format!("Until: {}", err.message)), true),
                        Some(&fields),
                    )
                    .await
                }
                None => SystemTime::now(),
            };
            let mut states = Vec::new();
            for (name, value) in &fields {
                let state = match (name.as_str(), value.as_str()) {
                    ("states", "given_up") => DeliveryState::GivenUp,
                    ("states", "failing") => DeliveryState::Failing,
                    _ => continue,
                };
                if !states.contains(&state) {
                    states.push(state);
                }
            }
            if !preview && field(&fields, "confirm") != Some("1") {
                return confirm_page(
                    &login,
                    "Requeue every matching delivery now?",
                    "/ui/delivery/recover",
                    &fields,
                );
            }
            match crate::actions::recover(&app, since, until, &states, preview).await {
                Ok(recovered) => {
                    let note = if preview {
                        format!(
                            "Preview: {} deliveries match; nothing was changed.",
                            recovered.matched
                        )
                    } else {
                        format!(
                            "Requeued {} of {} matching deliveries.",
                            recovered.requeued, recovered.matched
                        )
                    };
                    delivery_page(
                        &app,
                        &login,
                        &status_note(Some(&note), false),
                        Some(&fields),
                    )
                    .await
                }
                Err(err) => {
                    delivery_page(
                        &app,
                        &login,
                        &status_note(Some(&err.message), true),
                        Some(&fields),
                    )
                    .await
                }
            }
        }
        _ => error_page(&login, &ApiError::not_found("no such action")),
    }
}

/// `/ui/login`.
pub(crate) async fn login_form(State(app): State<App>, headers: HeaderMap) -> Response {
    if !app.console_login_needed() {
        return see_other("/ui");
    }
    if let (Some(_), _) = super::login_of(&app, &headers) {
        return see_other("/ui");
    }
    login_page(StatusCode::OK, None)
}

pub(crate) fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let body = format!(
        "<h1>Log in</h1>{}<form class=\"stack\" method=\"post\" action=\"/ui/login\">\
         <label for=\"token\">Token</label><input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required>\
         <div class=\"actions\"><button type=\"submit\">Log in</button></div></form>\
         <p class=\"muted\">The admin token, or the read-only token (which sees everything and changes nothing).</p>",
        error.map_or(String::new(), |e| status_note(Some(e), true)),
    );
    let mut response = html(page("Log in", Nav::None, None, &body));
    *response.status_mut() = status;
    response
}
