//! The HTTP server: the documented endpoints on axum, a hand-run accept loop (so a fault can drop
//! a connection without answering), the completion ticker, and the handle tests hold.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bankconnect_core::Credentials;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

use crate::faults::FaultKind;
use crate::responses::{error_body, progress_body, session_status_body, HTML_PAGE};
use crate::scenario::{Scenario, SessionScript, STAGES};
use crate::state::{LoggedRequest, Registration, SimState, WebhookAttempt};
use crate::webhook_delivery;

/// The path prefix of the API.
pub const API_PREFIX: &str = "/bank-connect/v1";

/// Default API key when none is given.
pub const DEFAULT_API_KEY: &str = "sim-api-key";
/// Default server hash when none is given.
pub const DEFAULT_SERVER_HASH: &str = "sim-server-hash";

/// How to start a simulator.
#[derive(Debug, Clone)]
#[allow(clippy::exhaustive_structs)] // plain data, built with `..Default::default()`
pub struct SimConfig {
    /// Where to listen (default `127.0.0.1:0`: a free port).
    pub addr: SocketAddr,
    /// The API key clients must send (default `sim-api-key`).
    pub api_key: String,
    /// The server hash clients must send (default `sim-server-hash`).
    pub server_hash: String,
    /// What happens.
    pub scenario: Scenario,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key: DEFAULT_API_KEY.into(),
            server_hash: DEFAULT_SERVER_HASH.into(),
            scenario: Scenario::builtin(),
        }
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The credentials are not valid header values.
    #[error(transparent)]
    Credentials(#[from] bankconnect_core::CredentialsError),
    /// The scenario is invalid.
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
}

/// A running simulator. Dropping it stops the server.
#[derive(Debug)]
pub struct Simulator {
    addr: SocketAddr,
    state: Arc<SimState>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Simulator {
    /// Binds and starts serving in the current tokio runtime.
    pub async fn start(config: SimConfig) -> Result<Self, SimError> {
        config.scenario.validate()?;
        let credentials = Credentials::new(&config.api_key, &config.server_hash)?;
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| SimError::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: config.addr,
            source,
        })?;
        let state = SimState::new(config.scenario, credentials);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let router = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let accept = tokio::spawn(accept_loop(
            listener,
            router,
            shutdown_rx.clone(),
            Arc::clone(&state),
        ));
        let ticker = tokio::spawn(completion_ticker(Arc::clone(&state), shutdown_rx));
        Ok(Self {
            addr,
            state,
            shutdown,
            tasks: vec![accept, ticker],
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API base URL: `http://IP:PORT/bank-connect/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}{API_PREFIX}", self.addr)
    }

    /// Adds (or replaces) a scripted session while running.
    pub fn add_session(&self, script: SessionScript) {
        self.state.add_session(script);
    }

    /// The scripted sessions' IDs, sorted.
    pub fn session_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.state.lock().sessions.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Every API request so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state.lock().log.clone()
    }

    /// The API requests for one session.
    pub fn requests_for(&self, session_id: &str) -> Vec<LoggedRequest> {
        self.state
            .lock()
            .log
            .iter()
            .filter(|r| r.session_id.as_deref() == Some(session_id))
            .cloned()
            .collect()
    }

    /// Every webhook delivery attempt so far.
    pub fn webhook_attempts(&self) -> Vec<WebhookAttempt> {
        self.state.lock().attempts.clone()
    }

    /// Connections accepted so far (to check that clients reuse them).
    pub fn connections(&self) -> u64 {
        self.state
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The registered webhook, if any.
    pub fn registration(&self) -> Option<Registration> {
        self.state.lock().registration.clone()
    }

    /// Stops serving.
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A per-connection switch a handler pulls to drop the connection without answering.
#[derive(Clone)]
struct KillSwitch(Arc<Notify>);

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
    state: Arc<SimState>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, _peer)) = accepted else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        state
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let kill = Arc::new(Notify::new());
        let router = router.clone();
        let switch = KillSwitch(Arc::clone(&kill));
        let service =
            hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(switch.clone());
                let router = router.clone();
                async move {
                    router
                        .oneshot(request.map(Body::new))
                        .await
                        .map_err(|never: Infallible| never)
                }
            });
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = kill.notified() => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}

async fn completion_ticker(state: Arc<SimState>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = shutdown.changed() => return,
        }
        let now = Instant::now();
        let completed: Vec<SessionScript> = {
            let mut inner = state.lock();
            inner
                .sessions
                .values_mut()
                .filter(|s| {
                    !s.completed && s.first_request.is_some() && s.steps(now) >= STAGES.len()
                })
                .map(|s| {
                    s.completed = true;
                    s.script.clone()
                })
                .collect()
        };
        for script in completed {
            webhook_delivery::schedule(&state, &script);
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn masked_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let shown = if name == "x-api-key" || name == "server-hash" {
                "<redacted>".to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), shown)
        })
        .collect()
}

/// Which endpoint a path names.
enum Endpoint {
    UpdateWebhook,
    Progress(String),
    SessionStatus(String),
    SimRequests,
    SimWebhooks,
    Unknown,
}

fn route(path: &str) -> Endpoint {
    match path {
        "/_sim/requests" => return Endpoint::SimRequests,
        "/_sim/webhooks" => return Endpoint::SimWebhooks,
        _ => {}
    }
    let Some(rest) = path
        .strip_prefix(API_PREFIX)
        .and_then(|p| p.strip_prefix("/session_data/"))
    else {
        return Endpoint::Unknown;
    };
    let rest = rest.trim_end_matches('/');
    if rest == "update_webhook" {
        return Endpoint::UpdateWebhook;
    }
    match rest.split_once('/') {
        Some((id, "progress")) if !id.is_empty() => Endpoint::Progress(id.to_owned()),
        Some((id, "session_status")) if !id.is_empty() => Endpoint::SessionStatus(id.to_owned()),
        _ => Endpoint::Unknown,
    }
}

async fn handle(State(state): State<Arc<SimState>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let endpoint = route(&path);
    match endpoint {
        Endpoint::SimRequests => {
            let log = serde_json::to_value(&state.lock().log).unwrap_or_default();
            return json_response(StatusCode::OK, &log);
        }
        Endpoint::SimWebhooks => {
            let attempts = serde_json::to_value(&state.lock().attempts).unwrap_or_default();
            return json_response(StatusCode::OK, &attempts);
        }
        _ => {}
    }
    let headers = request.headers().clone();
    let credentials_ok = state.credentials.matches(
        headers
            .get("x-api-key")
            .map(|v| v.as_bytes())
            .unwrap_or_default(),
        headers
            .get("server-hash")
            .map(|v| v.as_bytes())
            .unwrap_or_default(),
    );
    let session_id = match &endpoint {
        Endpoint::Progress(id) | Endpoint::SessionStatus(id) => Some(id.clone()),
        _ => None,
    };
    let fault = draw_fault(&state, session_id.as_deref());
    let mut entry = LoggedRequest {
        at_ms: state.since_start(),
        method: method.as_str().to_owned(),
        path: path.chars().take(512).collect(),
        session_id: session_id.clone(),
        headers: masked_headers(&headers),
        credentials_ok,
        status: None,
        fault,
    };
    let kill = request.extensions().get::<KillSwitch>().cloned();
    let response = match fault {
        Some(FaultKind::Reset) => {
            state.lock().log.push(entry);
            if let Some(KillSwitch(notify)) = kill {
                notify.notify_one();
                // The connection task drops the connection; never answer.
                std::future::pending::<()>().await;
            }
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Some(FaultKind::Slow) => {
            tokio::time::sleep(Duration::from_millis(state.faults.slow_ms)).await;
            answer(&state, &method, endpoint, credentials_ok, request).await
        }
        Some(kind) => fault_response(&state, kind),
        None => answer(&state, &method, endpoint, credentials_ok, request).await,
    };
    entry.status = Some(response.status().as_u16());
    state.lock().log.push(entry);
    response
}

/// Decides the fault for a request: a scripted one for this session's n-th request, else a draw.
fn draw_fault(state: &SimState, session_id: Option<&str>) -> Option<FaultKind> {
    let mut inner = state.lock();
    if let Some(runtime) = session_id.and_then(|id| inner.sessions.get_mut(id)) {
        runtime.requests = runtime.requests.saturating_add(1);
        let n = runtime.requests;
        if let Some(scripted) = runtime.script.faults.iter().find(|f| f.on_request == n) {
            return Some(scripted.kind);
        }
    }
    let rates = &state.faults;
    if rates.rate <= 0.0 || rates.kinds.is_empty() {
        return None;
    }
    let roll = (inner.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    if roll >= rates.rate {
        return None;
    }
    let index = usize::try_from(inner.rng.next_u64() % rates.kinds.len() as u64).unwrap_or(0);
    rates.kinds.get(index).copied()
}

/// A response with a fixed body and content type.
fn typed_response(status: StatusCode, content_type: &'static str, body: &'static str) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response
}

fn fault_response(state: &SimState, kind: FaultKind) -> Response {
    match kind {
        FaultKind::ServerError => typed_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/html",
            "<html><body><h1>503 Service Unavailable</h1></body></html>",
        ),
        FaultKind::RateLimited => {
            let mut response = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                &error_body("RATE_LIMITED", "Too many requests"),
            );
            if let Ok(value) = HeaderValue::from_str(&state.faults.retry_after_secs.to_string()) {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, value);
            }
            response
        }
        FaultKind::Html => typed_response(StatusCode::BAD_GATEWAY, "text/html", HTML_PAGE),
        FaultKind::Garbage => typed_response(
            StatusCode::OK,
            "application/json",
            "{\"session_id\": \"oops\", \"session_progress\": ",
        ),
        FaultKind::Truncated => {
            // Send half a body (chunked), then fail it: the connection closes mid-body, without
            // the final chunk, so the client sees a truncated response.
            let body =
                r#"{"session_id": "truncated", "session_progress": "processing", "progress": []}"#;
            let half =
                bytes::Bytes::from(body.get(..body.len() / 2).unwrap_or_default().to_owned());
            let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
                Ok(half),
                Err(std::io::Error::other("truncated by the simulator")),
            ];
            let mut response = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        FaultKind::NotFound => json_response(
            StatusCode::NOT_FOUND,
            &error_body("SESSION_NOT_FOUND", "The provided session ID is invalid"),
        ),
        FaultKind::Slow | FaultKind::Reset => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn answer(
    state: &Arc<SimState>,
    method: &Method,
    endpoint: Endpoint,
    credentials_ok: bool,
    request: Request,
) -> Response {
    if !credentials_ok && !matches!(endpoint, Endpoint::Unknown) {
        return json_response(
            StatusCode::FORBIDDEN,
            &error_body(
                "ACCESS_DENIED",
                "Authentication credentials were not provided or are invalid",
            ),
        );
    }
    match endpoint {
        Endpoint::UpdateWebhook if method == Method::POST => update_webhook(state, request).await,
        Endpoint::Progress(id) if method == Method::GET => progress(state, &id),
        Endpoint::SessionStatus(id) if method == Method::GET => session_status(state, &id),
        Endpoint::UpdateWebhook | Endpoint::Progress(_) | Endpoint::SessionStatus(_) => {
            json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &error_body("METHOD_NOT_ALLOWED", "Method not allowed"),
            )
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            &error_body("NOT_FOUND", "No such endpoint"),
        ),
    }
}

fn session_refusal(runtime: Option<&crate::state::SessionRuntime>) -> Option<Response> {
    match runtime {
        None => Some(json_response(
            StatusCode::NOT_FOUND,
            &error_body("SESSION_NOT_FOUND", "The provided session ID is invalid"),
        )),
        Some(runtime) if runtime.script.deleted => Some(json_response(
            StatusCode::GONE,
            &error_body("SESSION_DELETED", "The session has been deleted"),
        )),
        Some(_) => None,
    }
}

fn progress(state: &Arc<SimState>, id: &str) -> Response {
    let now = Instant::now();
    let (body, newly_completed) = {
        let mut inner = state.lock();
        let runtime = inner.sessions.get_mut(id);
        if let Some(refusal) = session_refusal(runtime.as_deref()) {
            return refusal;
        }
        let Some(runtime) = runtime else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        if let Some(limit) = runtime.script.not_requested_polls {
            if runtime.not_requested_answers < limit {
                runtime.not_requested_answers += 1;
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &error_body(
                        "PROCESSING_NOT_REQUESTED",
                        "Processing has not been requested for this session",
                    ),
                );
            }
        }
        runtime.first_request.get_or_insert(now);
        runtime.polls = runtime.polls.saturating_add(1);
        let steps = runtime.steps(now);
        let newly_completed = steps >= STAGES.len() && !runtime.completed;
        if newly_completed {
            runtime.completed = true;
        }
        (
            progress_body(&runtime.script, steps),
            newly_completed.then(|| runtime.script.clone()),
        )
    };
    if let Some(script) = newly_completed {
        webhook_delivery::schedule(state, &script);
    }
    json_response(StatusCode::OK, &body)
}

fn session_status(state: &Arc<SimState>, id: &str) -> Response {
    let mut inner = state.lock();
    let runtime = inner.sessions.get_mut(id);
    if let Some(refusal) = session_refusal(runtime.as_deref()) {
        return refusal;
    }
    let Some(runtime) = runtime else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    runtime.first_request.get_or_insert_with(Instant::now);
    if !runtime.completed {
        return json_response(
            StatusCode::BAD_REQUEST,
            &error_body(
                "PROCESSING_NOT_COMPLETED",
                "Processing is not completed for this session yet",
            ),
        );
    }
    json_response(StatusCode::OK, &session_status_body(&runtime.script))
}

/// Largest update_webhook body read.
const MAX_UPDATE_BODY: usize = 64 * 1024;

async fn update_webhook(state: &Arc<SimState>, request: Request) -> Response {
    let bad = |message: &str| {
        json_response(
            StatusCode::BAD_REQUEST,
            &error_body("INVALID_REQUEST", message),
        )
    };
    let is_json = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    if !is_json {
        return bad("content-type must be application/json");
    }
    let Ok(bytes) = axum::body::to_bytes(request.into_body(), MAX_UPDATE_BODY).await else {
        return bad("the body is too large or could not be read");
    };
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&bytes) else {
        return bad("the body must be a JSON object");
    };
    let Some(url) = body
        .get("webhook_url")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
    else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &error_body("KEY_REQUIRED", "A valid webhook_url is required"),
        );
    };
    if bankconnect_core::WebhookRegistration::new(url, bankconnect_core::WebhookMode::All).is_err()
    {
        return bad("webhook_url must be an absolute http(s) URL");
    }
    // An update without webhook_mode resets it to 0, as FinBox documents.
    let mode = match body.get("webhook_mode") {
        None | Some(Value::Null) => 0,
        Some(value) => match value.as_u64() {
            Some(mode @ (0 | 1)) => mode as u8,
            _ => return bad("webhook_mode must be 0 or 1"),
        },
    };
    state.lock().registration = Some(Registration {
        webhook_url: url.to_owned(),
        webhook_mode: mode,
    });
    json_response(StatusCode::OK, &serde_json::json!({"message": "success"}))
}
