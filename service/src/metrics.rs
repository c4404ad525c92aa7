//! The service's Prometheus metrics (prometheus-client): names and labels as docs/serve.md
//! lists, and the transport wrapper that counts requests to the BankConnect API.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every metric the service exports.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) sessions: Family<Labels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    pub(crate) api_requests: Family<Labels, Counter<u64, AtomicU64>>,
    pub(crate) webhooks: Family<Labels, Counter<u64, AtomicU64>>,
    pub(crate) outcomes: Family<Labels, Counter<u64, AtomicU64>>,
    pub(crate) deliveries: Family<Labels, Counter<u64, AtomicU64>>,
    pub(crate) outcome_latency: Histogram,
    /// Sessions this replica claimed (taken over from the store: at start, or a dead
    /// replica's) and handed back to the others.
    pub(crate) leases: Family<Labels, Counter<u64, AtomicU64>>,
    /// Rows removed by retention and pruning, by kind.
    pub(crate) pruned: Family<Labels, Counter<u64, AtomicU64>>,
    /// Operators' actions through the API, by action.
    pub(crate) operator_actions: Family<Labels, Counter<u64, AtomicU64>>,
    /// 1 while delivery is paused (store-wide).
    pub(crate) delivery_paused: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Deliveries by state (store-wide).
    pub(crate) delivery_backlog: Family<Labels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    /// Age of the oldest undelivered outcome (store-wide), 0 when none.
    pub(crate) delivery_oldest: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl Metrics {
    pub(crate) fn new(replica: &str) -> Self {
        let mut registry = Registry::with_labels(
            [(
                std::borrow::Cow::Borrowed("replica"),
                std::borrow::Cow::Owned(replica.to_owned()),
            )]
            .into_iter(),
        );
        let sessions = Family::<Labels, Gauge<i64, std::sync::atomic::AtomicI64>>::default();
        let api_requests = Family::<Labels, Counter<u64, AtomicU64>>::default();
        let webhooks = Family::<Labels, Counter<u64, AtomicU64>>::default();
        let outcomes = Family::<Labels, Counter<u64, AtomicU64>>::default();
        let deliveries = Family::<Labels, Counter<u64, AtomicU64>>::default();
        let outcome_latency = Histogram::new(exponential_buckets(0.005, 2.0, 16));
        let leases = Family::<Labels, Counter<u64, AtomicU64>>::default();
        let pruned = Family::<Labels, Counter<u64, AtomicU64>>::default();
        let operator_actions = Family::<Labels, Counter<u64, AtomicU64>>::default();
        let delivery_paused = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        let delivery_backlog =
            Family::<Labels, Gauge<i64, std::sync::atomic::AtomicI64>>::default();
        let delivery_oldest = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "bankconnect_pruned",
            "Rows removed by retention and pruning, by kind (sessions, dedupe, replicas)",
            pruned.clone(),
        );
        registry.register(
            "bankconnect_operator_actions",
            "Operators' actions through the API, by action",
            operator_actions.clone(),
        );
        registry.register(
            "bankconnect_delivery_paused",
            "1 while delivery is paused for the whole fleet",
            delivery_paused.clone(),
        );
        registry.register(
            "bankconnect_delivery_backlog",
            "Deliveries by state, store-wide",
            delivery_backlog.clone(),
        );
        registry.register(
            "bankconnect_delivery_oldest_undelivered_seconds",
            "Age of the oldest outcome not delivered yet (pending or failing), store-wide",
            delivery_oldest.clone(),
        );
        registry.register(
            "bankconnect_lease_changes",
            "Sessions this replica took over (claimed) or handed back, by change",
            leases.clone(),
        );
        registry.register(
            "bankconnect_sessions",
            "Sessions by state",
            sessions.clone(),
        );
        registry.register(
            "bankconnect_api_requests",
            "Requests to the BankConnect API by endpoint and status",
            api_requests.clone(),
        );
        registry.register(
            "bankconnect_webhooks",
            "FinBox webhooks received by result",
            webhooks.clone(),
        );
        registry.register(
            "bankconnect_outcomes",
            "Sessions finished by outcome and how the end was learnt",
            outcomes.clone(),
        );
        registry.register(
            "bankconnect_deliveries",
            "Delivery attempts to the lender's back end by result",
            deliveries.clone(),
        );
        registry.register(
            "bankconnect_outcome_latency_seconds",
            "From the first sign of a session's end (a webhook or a polled completion) to its outcome committed",
            outcome_latency.clone(),
        );
        Self {
            registry,
            sessions,
            api_requests,
            webhooks,
            outcomes,
            deliveries,
            outcome_latency,
            leases,
            pruned,
            operator_actions,
            delivery_paused,
            delivery_backlog,
            delivery_oldest,
        }
    }

    /// Counts one operator's action.
    pub(crate) fn operator_action(&self, action: &str) {
        self.operator_actions
            .get_or_create(&label("action", action))
            .inc();
    }

    /// Sets the store-wide delivery gauges from an overview read at `now`.
    pub(crate) fn delivery_seen(
        &self,
        overview: &bankconnect_store::DeliveryOverview,
        now: std::time::SystemTime,
    ) {
        self.delivery_paused.set(i64::from(overview.paused));
        let counts = &overview.counts;
        for (state, n) in [
            ("pending", counts.pending),
            ("failing", counts.failing),
            ("delivered", counts.delivered),
            ("given_up", counts.given_up),
        ] {
            self.delivery_backlog
                .get_or_create(&label("state", state))
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let age = overview
            .oldest_undelivered_at
            .and_then(|at| now.duration_since(at).ok())
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.delivery_oldest.set(age);
    }

    /// The text exposition format.
    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

/// One label pair.
pub(crate) fn label(name: &'static str, value: &str) -> Labels {
    vec![(name, value.to_owned())]
}

/// The BankConnect API transport, counting each request by endpoint and status.
pub(crate) struct CountingTransport {
    pub(crate) inner: std::sync::Arc<dyn bankconnect_http_async::AsyncTransport>,
    pub(crate) metrics: std::sync::Arc<Metrics>,
    /// The core's user agent plus `serve replica/ID`: FinBox's logs, an egress proxy's, or a
    /// test's can tell which replica sent a request.
    pub(crate) user_agent: Option<http::HeaderValue>,
}

impl CountingTransport {
    /// Counts the requests of `inner` and names `replica` in their user agent.
    pub(crate) fn new(
        inner: std::sync::Arc<dyn bankconnect_http_async::AsyncTransport>,
        metrics: std::sync::Arc<Metrics>,
        replica: &str,
    ) -> Self {
        let agent = format!(
            "{} serve replica/{replica}",
            bankconnect_core::USER_AGENT_VALUE
        );
        Self {
            inner,
            metrics,
            user_agent: http::HeaderValue::from_str(&agent).ok(),
        }
    }
}

#[async_trait::async_trait]
impl bankconnect_http_async::AsyncTransport for CountingTransport {
    async fn send(&self, mut request: http::Request<Vec<u8>>) -> bankconnect_core::HttpResult {
        if let Some(agent) = &self.user_agent {
            request
                .headers_mut()
                .insert(http::header::USER_AGENT, agent.clone());
        }
        let path = request.uri().path();
        let endpoint = if path.ends_with("/progress/") {
            "progress"
        } else if path.ends_with("/session_status/") {
            "session_status"
        } else if path.ends_with("/update_webhook/") {
            "update_webhook"
        } else {
            "other"
        };
        let result = self.inner.send(request).await;
        let status = match &result {
            Ok(response) => response.status().as_u16().to_string(),
            Err(err) => err.kind.as_str().to_owned(),
        };
        self.metrics
            .api_requests
            .get_or_create(&vec![("endpoint", endpoint.to_owned()), ("status", status)])
            .inc();
        result
    }
}
