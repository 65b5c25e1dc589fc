//! HTTP metrics: a request counter and a latency histogram per method, route
//! template and status. Every label comes from a closed set (a standard method
//! name or `other`, a route template or `unmatched`, a status code), so no
//! caller can add series. Handles are looked up once per label set and kept, so
//! the hot path does an atomic add instead of building and hashing a metric key.

use std::collections::HashMap;

use axum::http::Method;
use metrics::{Counter, Histogram};
use parking_lot::RwLock;

use crate::request_line::method_label;

type Handles = (Counter, Histogram);
/// Per route template, per (method label, status).
type ByRoute = HashMap<String, HashMap<(&'static str, u16), Handles>>;

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
    /// Counts one request and records its duration. `route` must be a template
    /// (`/api/v1/connections/{id}`) or `unmatched`, never a raw path; the method
    /// is reduced to [`method_label`].
    pub fn record(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        let method = method_label(method);
        let hit = self
            .by_route
            .read()
            .get(route)
            .and_then(|m| m.get(&(method, status)).cloned());
        let (counter, histogram) = hit.unwrap_or_else(|| self.register(method, route, status));
        counter.increment(1);
        histogram.record(seconds);
    }

    fn register(&self, method: &'static str, route: &str, status: u16) -> Handles {
        let labels = [
            ("method", method.to_owned()),
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
            .insert((method, status), handles.clone());
        handles
    }
}
