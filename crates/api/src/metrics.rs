//! Prometheus metrics of the process, exposed at `/metrics`.

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use registro_store::ProjectionLag;

use crate::AppState;

/// The media type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionLabels {
    projection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CopyLabels {
    outcome: &'static str,
}

/// The registry and the metrics the middleware updates.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    lag_events: Family<ProjectionLabels, Gauge>,
    lag_seconds: Family<ProjectionLabels, Gauge<f64, AtomicU64>>,
    stopped: Family<ProjectionLabels, Gauge>,
    overview_copies: Family<CopyLabels, Counter>,
}

impl Metrics {
    /// A registry with the HTTP metrics and the build information.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("registro");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            requests.clone(),
        );
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route",
            durations.clone(),
        );
        // Read from the database when scraped (`crate::projections::observe`): the projectors
        // may run in other processes.
        let lag_events = Family::<ProjectionLabels, Gauge>::default();
        registry.register(
            "projection_lag_events",
            "Committed events a projection has not applied yet",
            lag_events.clone(),
        );
        let lag_seconds = Family::<ProjectionLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "projection_lag_seconds",
            "Seconds since the next event a projection has to apply was recorded (0 when none)",
            lag_seconds.clone(),
        );
        let stopped = Family::<ProjectionLabels, Gauge>::default();
        registry.register(
            "projection_stopped",
            "1 when a projection's projector stopped at an event it cannot apply, else 0",
            stopped.clone(),
        );
        let overview_copies = Family::<CopyLabels, Counter>::default();
        registry.register(
            "family_overviews",
            "Family overviews answered, by outcome: used (a copy whose rows had not changed) or \
             computed",
            overview_copies.clone(),
        );
        registry.register(
            "build",
            "The running version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Self {
            registry,
            requests,
            durations,
            lag_events,
            lag_seconds,
            stopped,
            overview_copies,
        }
    }

    /// Counts a family overview answered from a copy (`used`) or computed.
    pub(crate) fn overview(&self, used: bool) {
        let outcome = if used { "used" } else { "computed" };
        self.overview_copies
            .get_or_create(&CopyLabels { outcome })
            .inc();
    }

    /// Sets the projection metrics of `name` from its lag and seconds behind; `None` (its
    /// state could not be read) removes them, so that a stale value is never scraped.
    pub(crate) fn set_projection(&self, name: &str, lag: Option<(&ProjectionLag, f64)>) {
        let labels = ProjectionLabels {
            projection: name.to_owned(),
        };
        match lag {
            Some((lag, seconds)) => {
                self.lag_events
                    .get_or_create(&labels)
                    .set(i64::try_from(lag.events).unwrap_or(i64::MAX));
                self.lag_seconds.get_or_create(&labels).set(seconds);
                self.stopped
                    .get_or_create(&labels)
                    .set(i64::from(lag.stopped.is_some()));
            }
            None => {
                self.lag_events.remove(&labels);
                self.lag_seconds.remove(&labels);
                self.stopped.remove(&labels);
            }
        }
    }

    /// The exposition text.
    ///
    /// # Errors
    /// When encoding fails (it writes to a string, so it does not).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware: counts and times every request by its route template (never the raw path, so
/// that ids do not explode the label space).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let m = &state.metrics;
    m.requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    m.durations
        .get_or_create(&RouteLabels { method, route })
        .observe(started.elapsed().as_secs_f64());
    response
}
