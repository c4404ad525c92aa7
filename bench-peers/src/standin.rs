//! A fast stand-in for BankConnect's progress endpoint: every session is processing on its
//! first two polls and completed from the third, so a run's work is exactly three polls per
//! session whoever polls. One thread, HTTP/1.1 keep-alive, no scenario engine: the stand-in
//! costs as little as it can, so what a run measures is the poller.
//!
//! Under `/bank-connect/v1/session_data/`: `GET <id>/progress/` and `GET <id>/session_status/`
//! (no accounts). Both need `x-api-key` and `server-hash` to match (else 403); anything else
//! is 404.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

/// Where the API lives under the stand-in's address.
pub const API_PATH: &str = "/bank-connect/v1";

const SESSIONS: &str = "/bank-connect/v1/session_data/";

/// The credentials the stand-in accepts.
#[derive(Debug, Clone)]
#[allow(clippy::exhaustive_structs)] // plain data for this crate's own binaries and benches
pub struct Credentials {
    /// Expected `x-api-key`.
    pub api_key: String,
    /// Expected `server-hash`.
    pub server_hash: String,
}

struct State {
    credentials: Credentials,
    polls: Mutex<HashMap<String, u32>>,
}

/// Serves on `listener` until the process ends, on the calling thread.
pub fn serve(listener: std::net::TcpListener, credentials: Credentials) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let state = Arc::new(State {
        credentials,
        polls: Mutex::new(HashMap::new()),
    });
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let answer = answer(&state, &request);
                    async move { Ok::<_, Infallible>(answer) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    reply(status, body.to_string())
}

fn answer<B>(state: &State, request: &Request<B>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let route = path
        .strip_prefix(SESSIONS)
        .filter(|_| request.method() == Method::GET)
        .and_then(|rest| {
            rest.strip_suffix("/progress/")
                .map(|id| (id, true))
                .or_else(|| rest.strip_suffix("/session_status/").map(|id| (id, false)))
        })
        .filter(|(id, _)| !id.is_empty() && !id.contains('/'));
    let Some((id, progress)) = route else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "Not found");
    };
    let header = |name: &str| request.headers().get(name).map(HeaderValue::as_bytes);
    if header("x-api-key") != Some(state.credentials.api_key.as_bytes())
        || header("server-hash") != Some(state.credentials.server_hash.as_bytes())
    {
        return error(
            StatusCode::FORBIDDEN,
            "ACCESS_DENIED",
            "Authentication credentials were not provided",
        );
    }
    if !progress {
        let body = serde_json::json!({"session_id": id, "accounts": []});
        return reply(StatusCode::OK, body.to_string());
    }
    let polls = {
        let mut polls = state.polls.lock().unwrap_or_else(PoisonError::into_inner);
        let count = polls.entry(id.to_owned()).or_insert(0);
        *count += 1;
        *count
    };
    let stage = if polls >= 3 {
        "completed"
    } else {
        "processing"
    };
    // Written out rather than built as a `Value`: the stand-in should cost as little as it can.
    let id = serde_json::to_string(id).unwrap_or_default();
    let body = format!(
        concat!(
            r#"{{"session_id":{id},"session_progress":"{stage}","progress":[{{"#,
            r#""statement_id":"4164bc05-7b3f-4a5c-8e31-ca3c2648ec6b","source":"pdf","#,
            r#""identity_status":"completed","transaction_status":"completed","#,
            r#""processing_status":"{stage}","fraud_status":"{stage}","message":null}}]}}"#
        ),
        id = id,
        stage = stage
    );
    reply(StatusCode::OK, body)
}
