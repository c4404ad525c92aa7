//! What the service's in-process tests share: the service over a SQLite temp file and the
//! simulator, requests through its router.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use bankconnect_core::{Api, BaseUrl, Credentials};
use bankconnect_service::{Service, ServiceConfig, ServiceTasks};
use bankconnect_sim::{Scenario, SessionScript, SimConfig, Simulator};
use bankconnect_store::Store;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub struct Running {
    pub router: Router,
    pub tasks: ServiceTasks,
    pub sim: Simulator,
    pub dir: PathBuf,
}

pub async fn start(name: &str, sessions: Vec<SessionScript>, config: ServiceConfig) -> Running {
    start_in(
        bankconnect_testkit::temp_dir(&format!("service_{name}")),
        sessions,
        config,
    )
    .await
}

/// The service over the SQLite file `s.db` in `dir` (which a test may have filled first).
pub async fn start_in(
    dir: PathBuf,
    sessions: Vec<SessionScript>,
    config: ServiceConfig,
) -> Running {
    let sim = Simulator::start(SimConfig {
        scenario: Scenario {
            sessions,
            ..Scenario::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let api = Api::new(
        BaseUrl::parse(&sim.base_url()).unwrap(),
        Credentials::new(
            bankconnect_sim::DEFAULT_API_KEY,
            bankconnect_sim::DEFAULT_SERVER_HASH,
        )
        .unwrap(),
    );
    let client = bankconnect_http_async::Client::new(api);
    let store = Store::open(&format!("sqlite:{}", dir.join("s.db").display()))
        .await
        .unwrap();
    let (service, tasks) = Service::start(config, store, client).await.unwrap();
    Running {
        router: service.router(),
        tasks,
        sim,
        dir,
    }
}

pub fn fast() -> ServiceConfig {
    ServiceConfig {
        interval: Duration::from_millis(100),
        lease: Duration::from_secs(3),
        ..ServiceConfig::default()
    }
}

pub async fn call(router: &Router, request: http::Request<Body>) -> (u16, http::HeaderMap, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, value)
}

pub fn post(path: &str, body: &str) -> http::Request<Body> {
    http::Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

pub fn get(path: &str) -> http::Request<Body> {
    http::Request::get(path).body(Body::empty()).unwrap()
}

pub async fn wait_state(router: &Router, id: &str, want: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (_, _, record) = call(router, get(&format!("/v1/sessions/{id}"))).await;
        if record["state"] == want || Instant::now() > deadline {
            return record;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Running {
    pub async fn stop(self) {
        self.tasks.shutdown(Duration::from_secs(5)).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
