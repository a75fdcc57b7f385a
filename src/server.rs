//! The server: store, engine and executor, the gRPC API (with health and
//! reflection) and the HTTP endpoints (`/healthz`, `/readyz`, `/metrics`).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sagaflow_engine::Engine;
use sagaflow_engine::api::auth::{Authenticator, dev_tokens};
use sagaflow_engine::api::{ApiOptions, ScheduleApi, WorkflowApi};
use sagaflow_engine::clock::SystemClock;
use sagaflow_engine::definition::Definitions;
use sagaflow_engine::executor::{ExecutorHandle, ExecutorOptions};
use sagaflow_engine::ids::TenantId;
use sagaflow_engine::schedule::{SchedulerHandle, SchedulerOptions, SeedSchedule};
use sagaflow_engine::store::Store;
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::config::Config;
use crate::lifecycle_api::LifecycleApi;
use crate::telemetry;

/// A running server.
pub struct Server {
    pub engine: Engine,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    executor: ExecutorHandle,
    scheduler: Option<SchedulerHandle>,
    domain: Option<sagaflow_steps::DomainRuntime>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

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

impl Server {
    /// Starts everything `config` describes. `dev` adds the fixed dev tokens.
    pub async fn start(config: &Config, dev: bool) -> anyhow::Result<Self> {
        config.validate()?;
        let metrics = metrics_handle();
        let (store, mut deps) =
            app::open_store_with(&config.database.url, &config.database.pg_options()).await?;
        deps.radius = config.radius.clone();
        let domain_db = deps.domain_db();
        let pool_stats = match (&deps.postgres, &deps.sqlite) {
            (Some(p), _) => Some(telemetry::PoolStats::Postgres(p.clone())),
            (None, Some(p)) => Some(telemetry::PoolStats::Sqlite(p.clone())),
            (None, None) => None,
        };
        let domain = match deps.domain_db() {
            Some(db) => {
                let mut cfg = config.domain.clone();
                if dev && cfg.pools.is_empty() {
                    cfg.pools = sagaflow_steps::DomainConfig::dev(app::DEV_TENANT).pools;
                }
                for (system, endpoint) in [
                    ("onu", &cfg.onu),
                    ("cpe", &cfg.cpe),
                    ("billing", &cfg.billing),
                ] {
                    if endpoint.is_none() && !dev {
                        tracing::warn!(
                            system,
                            "no endpoint configured; using the built-in simulator"
                        );
                    }
                }
                let rt = sagaflow_steps::DomainRuntime::start(&db, &cfg, Arc::new(SystemClock))
                    .await
                    .context("starting the ISP domain (domain.* configuration)")?;
                deps.domain = Some(rt.deps.clone());
                Some(rt)
            }
            None => None,
        };
        let registry = app::registry(&deps);
        let workflows = &config.engine.workflows;
        let defs = if workflows.exists() {
            Definitions::load_dir(workflows, &registry)?
        } else {
            tracing::warn!(dir = %workflows.display(), "workflows directory not found; no workflows loaded");
            Definitions::default()
        };
        let engine = Engine::new(
            store.clone(),
            Arc::new(registry),
            defs,
            Arc::new(SystemClock),
        )
        .await?;
        let mut tokens = config.auth.tokens.clone();
        if dev {
            tokens.extend(dev_tokens());
        }
        let auth =
            Arc::new(Authenticator::new(&tokens).map_err(|m| anyhow::anyhow!("auth.tokens: {m}"))?);
        if auth.is_empty() {
            tracing::warn!("no tokens configured (auth.tokens): every call will be refused");
        }
        let mut exec = ExecutorOptions {
            lease: Duration::from_millis(config.engine.lease_ms),
            poll_interval: Duration::from_millis(config.engine.poll_ms),
            max_in_flight: config.engine.max_in_flight,
            claim_batch: config.engine.claim_batch,
            shutdown_grace: Duration::from_millis(config.engine.shutdown_grace_ms),
            ..ExecutorOptions::default()
        };
        if !config.engine.owner.is_empty() {
            exec.owner = config.engine.owner.clone();
        }
        let executor = engine.start_executor(exec);
        let scheduler = if config.schedules.enabled {
            let tenant = if dev {
                app::DEV_TENANT
            } else {
                config.schedules.tenant.as_str()
            };
            let report = engine
                .seed_schedules(&SeedSchedule::defaults(&TenantId::new(tenant)))
                .await
                .context("seeding the default schedules")?;
            tracing::info!(?report, "default schedules");
            Some(engine.start_scheduler(SchedulerOptions {
                poll_interval: Duration::from_millis(config.schedules.poll_ms),
                ..SchedulerOptions::default()
            }))
        } else {
            None
        };
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();

        // gRPC.
        let grpc_listener = tokio::net::TcpListener::bind(&config.grpc.addr)
            .await
            .with_context(|| format!("cannot listen on grpc.addr {}", config.grpc.addr))?;
        let grpc_addr = grpc_listener.local_addr()?;
        let (health, health_service) = tonic_health::server::health_reporter();
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(sagaflow_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building the reflection service")?;
        let api = WorkflowApi::new(
            engine.clone(),
            auth.clone(),
            ApiOptions {
                max_payload_bytes: config.grpc.max_payload_bytes,
                max_watches: config.grpc.max_watch_streams,
                watch_poll: Duration::from_millis(config.grpc.watch_poll_ms),
            },
        );
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &config.grpc.tls {
            let cert = std::fs::read(&tls.cert)
                .with_context(|| format!("grpc.tls.cert {}", tls.cert.display()))?;
            let key = std::fs::read(&tls.key)
                .with_context(|| format!("grpc.tls.key {}", tls.key.display()))?;
            let mut t = tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(cert, key));
            if let Some(ca) = &tls.client_ca {
                let ca = std::fs::read(ca)
                    .with_context(|| format!("grpc.tls.client_ca {}", ca.display()))?;
                t = t.client_ca_root(tonic::transport::Certificate::from_pem(ca));
            }
            builder = builder.tls_config(t).context("grpc.tls")?;
        }
        let schedules =
            ScheduleApi::new(engine.clone(), auth.clone(), config.grpc.max_payload_bytes);
        let lifecycle = domain_db.map(|db| LifecycleApi::new(db, auth.clone()).into_service());
        let router = builder
            .layer(telemetry::GrpcTelemetryLayer::default())
            .add_service(health_service)
            .add_service(reflection)
            .add_service(api.into_service())
            .add_service(schedules.into_service())
            .add_optional_service(lifecycle);
        let s = stop.clone();
        tasks.push(tokio::spawn(async move {
            // No Nagle delay: a small unary answer goes out at once instead
            // of waiting for the client's delayed ACK (~40 ms).
            let incoming =
                tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, s.cancelled())
                .await
            {
                tracing::error!(error = %e, "gRPC server stopped");
            }
        }));

        // Health: SERVING only while the store answers and is migrated.
        let s = stop.clone();
        let st = store.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let ok = matches!(st.ready().await, Ok(true));
                for svc in ["", "sagaflow.v1.WorkflowService"] {
                    let status = if ok {
                        tonic_health::ServingStatus::Serving
                    } else {
                        tonic_health::ServingStatus::NotServing
                    };
                    health.set_service_status(svc, status).await;
                }
                tokio::select! {
                    _ = s.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }));

        // HTTP.
        let http_listener = tokio::net::TcpListener::bind(&config.http.addr)
            .await
            .with_context(|| format!("cannot listen on http.addr {}", config.http.addr))?;
        let http_addr = http_listener.local_addr()?;
        let readiness = Readiness {
            scheduler: scheduler.as_ref().map(SchedulerHandle::running),
        };
        let s = stop.clone();
        let st = store.clone();
        tasks.push(tokio::spawn(telemetry::gauge_loop(
            st,
            pool_stats,
            Duration::from_millis(config.http.gauge_refresh_ms),
            s,
        )));
        let app = http_router(store, metrics, readiness);
        let s = stop.clone();
        tasks.push(tokio::spawn(async move {
            let serve = axum::serve(http_listener, app)
                .with_graceful_shutdown(async move { s.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        }));

        Ok(Self {
            engine,
            grpc_addr,
            http_addr,
            executor,
            scheduler,
            domain,
            stop,
            tasks,
        })
    }

    /// Stops serving, drains the executor and releases its leases.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Some(s) = self.scheduler {
            s.shutdown().await;
        }
        self.executor.shutdown().await;
        if let Some(d) = self.domain {
            d.shutdown().await;
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
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
