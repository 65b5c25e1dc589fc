//! HTTP metrics: a request counter and a latency histogram per method, route
//! template and status. Handles are looked up once per label set and kept, so
//! the hot path does an atomic add instead of building and hashing a metric key.

use std::collections::HashMap;

use axum::http::Method;
use metrics::{Counter, Histogram};
use parking_lot::RwLock;

type Handles = (Counter, Histogram);
/// Per route template, per (method, status).
type ByRoute = HashMap<String, HashMap<(Method, u16), Handles>>;

/// The cache of metric handles.
#[derive(Default)]
pub struct HttpMetrics {
    by_route: RwLock<ByRoute>,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetrics")
            .field("routes", &self.by_route.read().len())
            .finish()
    }
}

impl HttpMetrics {
    /// Counts one request and records its duration. Routes are templates
    /// (`/api/v1/connections/{id}`), never raw paths, so label sets stay few.
    pub fn record(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        let hit = self
            .by_route
            .read()
            .get(route)
            .and_then(|m| m.get(&(method.clone(), status)).cloned());
        let (counter, histogram) = hit.unwrap_or_else(|| self.register(method, route, status));
        counter.increment(1);
        histogram.record(seconds);
    }

    fn register(&self, method: &Method, route: &str, status: u16) -> Handles {
        let labels = [
            ("method", method.to_string()),
            ("route", route.to_owned()),
            ("status", status.to_string()),
        ];
        let handles = (
            metrics::counter!("patchbay_http_requests_total", &labels),
            metrics::histogram!("patchbay_http_request_duration_seconds", &labels[..2]),
        );
        self.by_route
            .write()
            .entry(route.to_owned())
            .or_default()
            .insert((method.clone(), status), handles.clone());
        handles
    }
}
