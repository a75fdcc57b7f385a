//! The HTTP side of the server: `/healthz`, `/readyz`, `/metrics` (the
//! process-wide Prometheus recorder), the gauge refresh loop, and the
//! JSON/HTTP API of `super::rest` beside them.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sagaflow_engine::schedule::SchedulerHandle;
use sagaflow_engine::store::Store;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::telemetry;

/// Histogram buckets, in seconds: from a fast step or claim (1 ms) to a
/// slow adapter call or a late cron fire (10 min).
pub const HISTOGRAM_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0,
];

/// The process-wide Prometheus recorder (installed once). Histograms are
/// exported as histograms (`_bucket`, `_sum`, `_count`) with
/// [`HISTOGRAM_BUCKETS`].
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = || {
                let b = PrometheusBuilder::new();
                b.set_buckets(HISTOGRAM_BUCKETS)
                    .unwrap_or_else(|_| PrometheusBuilder::new())
            };
            match builder().install_recorder() {
                Ok(handle) => {
                    sagaflow_engine::telemetry::describe();
                    handle
                }
                Err(_) => builder().build_recorder().handle(),
            }
        })
        .clone()
}

/// What `/readyz` checks besides the store.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    /// The scheduler's liveness, when this replica runs one.
    pub scheduler: Option<sagaflow_engine::schedule::scheduler::Running>,
}

impl Readiness {
    /// The readiness of a replica with `scheduler` (if it runs one).
    pub fn of(scheduler: Option<&SchedulerHandle>) -> Self {
        Self {
            scheduler: scheduler.map(SchedulerHandle::running),
        }
    }
}

/// Binds `http.addr` and serves `app` (the endpoints of [`http_router`] and
/// the JSON/HTTP API) until `stop`; pushes the gauge loop's task and the
/// server's task onto `tasks`. Returns the bound address.
pub(super) async fn serve(
    config: &Config,
    app: axum::Router,
    store: Arc<dyn Store>,
    pool_stats: Option<telemetry::PoolStats>,
    domain: Option<(sagaflow_steps::DomainDb, u32)>,
    stop: &CancellationToken,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<SocketAddr> {
    let http_listener = tokio::net::TcpListener::bind(&config.http.addr)
        .await
        .with_context(|| format!("cannot listen on http.addr {}", config.http.addr))?;
    let http_addr = http_listener.local_addr()?;
    tasks.push(tokio::spawn(telemetry::gauge_loop(
        store,
        pool_stats,
        domain,
        Duration::from_millis(config.http.gauge_refresh_ms),
        stop.clone(),
    )));
    let s = stop.clone();
    tasks.push(tokio::spawn(async move {
        let serve = axum::serve(http_listener, app)
            .with_graceful_shutdown(async move { s.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    }));
    Ok(http_addr)
}

#[derive(Clone)]
struct HttpState {
    store: Arc<dyn Store>,
    metrics: PrometheusHandle,
    readiness: Readiness,
}

/// `/healthz` (the process is up), `/readyz` (the store answers and is
/// migrated, and the scheduler runs when this replica has one), `/metrics`
/// (Prometheus text format).
pub fn http_router(
    store: Arc<dyn Store>,
    metrics: PrometheusHandle,
    readiness: Readiness,
) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(s): State<HttpState>| async move {
                match s.store.ready().await {
                    Ok(true) => {}
                    Ok(false) => {
                        return (StatusCode::SERVICE_UNAVAILABLE, "migrations not applied\n");
                    }
                    Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n"),
                }
                if s.readiness.scheduler.as_ref().is_some_and(|r| !r.get()) {
                    return (StatusCode::SERVICE_UNAVAILABLE, "scheduler not running\n");
                }
                (StatusCode::OK, "ready\n")
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<HttpState>| async move { s.metrics.render() }),
        )
        .with_state(HttpState {
            store,
            metrics,
            readiness,
        })
}
