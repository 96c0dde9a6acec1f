//! `/healthz` (the process answers and the scheduler's loop is alive), `/readyz` (the configuration
//! is loaded and the jobs are scheduled; never tied to a job's success, so a failing backup does not
//! take the metrics endpoint out of a Service) and `/metrics` (OpenMetrics).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::Metrics;

/// What the endpoints report on.
pub struct Probe {
    pub metrics: Arc<Metrics>,
    /// Set once every job is scheduled and the scheduler started; cleared when it stops.
    pub scheduling: AtomicBool,
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn router(probe: Arc<Probe>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(probe)
}

async fn healthz(State(p): State<Arc<Probe>>) -> Response {
    if p.scheduling.load(Ordering::Acquire) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "scheduler stopped\n").into_response()
    }
}

async fn readyz(State(p): State<Arc<Probe>>) -> Response {
    // The configuration was loaded before the server started: ready as long as jobs are scheduled.
    healthz(State(p)).await
}

async fn metrics(State(p): State<Arc<Probe>>) -> Response {
    ([(header::CONTENT_TYPE, OPENMETRICS)], p.metrics.encode()).into_response()
}
