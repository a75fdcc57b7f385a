//! Telemetry of the server process: log output (text or JSON), OpenTelemetry
//! export over OTLP (gRPC or HTTP/protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set, the gRPC layer
//! that gives every RPC a span and its metrics, and the gauges refreshed
//! from the store. The metrics are listed in `docs/metrics.md`.

use sagaflow_steps::DomainDb;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prost::Message;
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::Store;
use sagaflow_engine::telemetry::{join_trace, parse_traceparent};
use tonic::codegen::http;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub mod logs;
pub mod otlp;

pub const GRPC_REQUESTS: &str = "sagaflow_grpc_requests_total";
pub const GRPC_DURATION: &str = "sagaflow_grpc_request_duration_seconds";
pub const RUNS: &str = "sagaflow_runs";
pub const POOL_CONNECTIONS: &str = "sagaflow_store_pool_connections";
pub const POOL_MAX_CONNECTIONS: &str = "sagaflow_store_pool_max_connections";

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter (OTEL_EXPORTER_OTLP_ENDPOINT): {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error(
        "{var}={value:?} is not an OTLP protocol sagaflow exports with: use grpc (the default) or http/protobuf"
    )]
    Protocol { var: &'static str, value: String },
}

/// Flushes and stops the OTLP export when dropped. Keep it alive for as
/// long as the process runs.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.force_flush() {
                eprintln!("warning: flushing traces failed: {e}");
            }
            if let Err(e) = p.shutdown() {
                eprintln!("warning: stopping the trace exporter failed: {e}");
            }
        }
    }
}

/// Whether OTLP trace export is asked for: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
/// or `OTEL_EXPORTER_OTLP_ENDPOINT` is set and not empty (`var` reads the
/// environment).
fn otlp_endpoint_set(var: impl Fn(&str) -> Option<String>) -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .into_iter()
    .any(|k| var(k).is_some_and(|v| !v.is_empty()))
}

/// Installs the global `tracing` subscriber: logs on stderr (`format` is
/// `text` or `json`; JSON lines written inside a span carry its
/// `trace_id` and `span_id`, see [`logs`]), filtered by `RUST_LOG`, and
/// OTLP trace export when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, over gRPC or HTTP/protobuf (see
/// [`otlp`]; standard `OTEL_*` variables configure it;
/// `OTEL_SERVICE_NAME` defaults to `sagaflow`). Without an
/// endpoint the spans still get their OpenTelemetry ids (for the logs and
/// the trace joined from a `traceparent`) and are dropped when they end.
/// Call inside the Tokio runtime. Nothing secret is recorded: spans carry
/// run ids, names and tenants, never metadata, tokens or connection
/// strings.
pub fn init(format: &str) -> Result<TelemetryGuard, TelemetryError> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,h2=warn,tower=warn"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if format == "json" {
        fmt.fmt_fields(logs::fields())
            .event_format(logs::JsonWithTraceIds::default())
            .boxed()
    } else {
        fmt.boxed()
    };
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("sagaflow");
    }
    let mut provider = SdkTracerProvider::builder().with_resource(resource.build());
    // Checked whether or not an endpoint is set, so a wrong value is found
    // at the first start.
    let protocol = otlp::protocol(|k| std::env::var(k).ok())?;
    if otlp_endpoint_set(|k| std::env::var(k).ok()) {
        provider = provider.with_batch_exporter(otlp::exporter(protocol)?);
    }
    let provider = provider.build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("sagaflow"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

/// A gRPC status code as its canonical name (`OK`, `NOT_FOUND`, …).
fn code_label(code: tonic::Code) -> String {
    crate::cli::client::code_name(code)
}

/// The methods the server serves, as `/package.Service/Method` paths: the
/// only values the `service` and `method` labels take (anything else is
/// counted as `unknown`, so a client cannot grow the label set).
fn known_methods() -> HashSet<String> {
    let mut out: HashSet<String> = [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.health.v1.Health/List",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    if let Ok(set) = prost_types::FileDescriptorSet::decode(sagaflow_proto::FILE_DESCRIPTOR_SET) {
        for file in &set.file {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    out.insert(format!("/{package}.{}/{}", service.name(), method.name()));
                }
            }
        }
    }
    out
}

/// A tower layer for the gRPC server: every RPC gets a span (joined to the
/// caller's `traceparent`; the tenant is filled in once the call is
/// authenticated) and is counted by service, method and status code.
#[derive(Clone)]
pub struct GrpcTelemetryLayer {
    methods: Arc<HashSet<String>>,
}

impl Default for GrpcTelemetryLayer {
    fn default() -> Self {
        Self {
            methods: Arc::new(known_methods()),
        }
    }
}

impl<S> tower::Layer<S> for GrpcTelemetryLayer {
    type Service = GrpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTelemetry {
            inner,
            methods: self.methods.clone(),
        }
    }
}

/// The service [`GrpcTelemetryLayer`] wraps around the gRPC router.
#[derive(Clone)]
pub struct GrpcTelemetry<S> {
    inner: S,
    methods: Arc<HashSet<String>>,
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcTelemetry<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        let (service, method) = match path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .filter(|_| self.methods.contains(path))
        {
            Some((s, m)) => (s.to_owned(), m.to_owned()),
            None => ("unknown".to_owned(), "unknown".to_owned()),
        };
        let span = tracing::info_span!(
            "rpc",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
            tenant = tracing::field::Empty,
        );
        if let Some(tp) = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .filter(|tp| parse_traceparent(tp).is_some())
        {
            join_trace(&span, tp);
        }
        let fut = span.in_scope(|| self.inner.call(req));
        let started = Instant::now();
        Box::pin(
            async move {
                let res = fut.await;
                // Errors come back "trailers-only", with the status in the
                // headers; a success carries it in the trailers (always OK
                // for unary calls).
                let code = match &res {
                    Ok(r) => r
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map(tonic::Code::from)
                        .unwrap_or(tonic::Code::Ok),
                    Err(_) => tonic::Code::Unavailable,
                };
                tracing::Span::current().record("rpc.grpc.status_code", code as i32);
                let code = code_label(code);
                histogram!(GRPC_DURATION, "service" => service.clone(), "method" => method.clone())
                    .record(started.elapsed().as_secs_f64());
                counter!(GRPC_REQUESTS, "service" => service, "method" => method, "code" => code)
                    .increment(1);
                res
            }
            .instrument(span),
        )
    }
}

/// A connection pool the gauges report on.
#[derive(Debug, Clone)]
pub enum PoolStats {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl PoolStats {
    fn sample(&self) -> (u32, usize, u32) {
        match self {
            PoolStats::Postgres(p) => (p.size(), p.num_idle(), p.options().get_max_connections()),
            PoolStats::Sqlite(p) => (p.size(), p.num_idle(), p.options().get_max_connections()),
        }
    }
}

/// Sets the gauges read from the store: runs by active state (of every
/// tenant, the same on every replica; counted from the `runs_active`
/// partial index, never a scan of the finished runs) and the store's
/// connection pool; the domain's record and pool gauges, from the
/// database (`domain`: its database and the exhaustion horizon in days);
/// and the process metrics.
pub async fn refresh_gauges(
    store: &dyn Store,
    pool: Option<&PoolStats>,
    domain: Option<&(DomainDb, u32)>,
) {
    crate::process_metrics::refresh();
    if let Some((db, horizon_days)) = domain
        && let Err(e) = sagaflow_steps::maintenance::gauges::refresh(db, *horizon_days).await
    {
        tracing::warn!(error = %e, "reading the record and pool gauges failed");
    }
    match store.count_active().await {
        Ok(counts) => {
            for s in RunState::ALL.into_iter().filter(|s| !s.is_terminal()) {
                let n = counts
                    .iter()
                    .find(|(state, _)| *state == s)
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
                gauge!(RUNS, "state" => s.as_str().to_ascii_lowercase()).set(n as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "counting runs by state for the metrics failed"),
    }
    if let Some(pool) = pool {
        let (size, idle, max) = pool.sample();
        let idle = idle.min(size as usize) as f64;
        gauge!(POOL_CONNECTIONS, "state" => "idle").set(idle);
        gauge!(POOL_CONNECTIONS, "state" => "in_use").set(f64::from(size) - idle);
        gauge!(POOL_MAX_CONNECTIONS).set(f64::from(max));
    }
}

/// Refreshes the store gauges every `every` until `stop`.
pub async fn gauge_loop(
    store: Arc<dyn Store>,
    pool: Option<PoolStats>,
    domain: Option<(DomainDb, u32)>,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        refresh_gauges(store.as_ref(), pool.as_ref(), domain.as_ref()).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_method_labels_are_the_served_methods() {
        let m = known_methods();
        assert!(m.contains("/sagaflow.v1.WorkflowService/StartWorkflow"));
        assert!(m.contains("/grpc.health.v1.Health/Check"));
        assert!(!m.contains("/sagaflow.v1.WorkflowService/Nope"));
    }

    #[test]
    fn either_otlp_endpoint_variable_turns_export_on() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert!(!otlp_endpoint_set(env(&[])));
        assert!(!otlp_endpoint_set(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            ""
        )])));
        assert!(otlp_endpoint_set(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4317"
        )])));
        assert!(otlp_endpoint_set(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector:4317"
        )])));
    }

    #[test]
    fn codes_have_their_canonical_names() {
        assert_eq!(code_label(tonic::Code::Ok), "OK");
        assert_eq!(code_label(tonic::Code::NotFound), "NOT_FOUND");
        assert_eq!(
            code_label(tonic::Code::FailedPrecondition),
            "FAILED_PRECONDITION"
        );
    }
}
