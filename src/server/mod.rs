//! The server: store, engine, executor and scheduler, assembled here; the
//! ISP domain (`domain.rs`) with the simulators' inform hook (`inform.rs`),
//! the service implementations (`apis.rs`) served
//! by the gRPC API with health and reflection (`grpc.rs`) and by the
//! JSON/HTTP API (`rest/`), the operator console at `/ui` (`ui/`), and the
//! HTTP endpoints `/healthz`, `/readyz`, `/metrics` (`http.rs`) beside it.

pub mod apis;
mod domain;
mod grpc;
mod http;
mod inform;
pub mod rest;
pub mod ui;

pub use http::{HISTOGRAM_BUCKETS, Readiness, http_router, metrics_handle};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sagaflow_engine::Engine;
use sagaflow_engine::api::auth::{Authenticator, dev_tokens};
use sagaflow_engine::clock::SystemClock;
use sagaflow_engine::executor::{ExecutorHandle, ExecutorOptions};
use sagaflow_engine::ids::TenantId;
use sagaflow_engine::schedule::{SEED_FILE, SchedulerHandle, SchedulerOptions, SeedFile};
use sagaflow_engine::webhook::{DispatcherHandle, DispatcherOptions, Webhooks};
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::config::Config;
use crate::telemetry;

/// A running server.
pub struct Server {
    pub engine: Engine,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    executor: ExecutorHandle,
    scheduler: Option<SchedulerHandle>,
    webhooks: Option<DispatcherHandle>,
    domain: Option<sagaflow_steps::DomainRuntime>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Starts everything `config` describes. `dev` adds the fixed dev tokens.
    pub async fn start(config: &Config, dev: bool) -> anyhow::Result<Self> {
        config.validate()?;
        let metrics = metrics_handle();
        metrics::gauge!(
            "sagaflow_build_info",
            "version" => env!("CARGO_PKG_VERSION"),
            "rustc" => option_env!("SAGAFLOW_RUSTC").unwrap_or("unknown")
        )
        .set(1.0);
        let (store, mut deps) = app::open_store_with(
            &config.database.connect_url(),
            &config.database.pg_options(),
        )
        .await?;
        deps.radius = config.radius.clone();
        let domain_db = deps.domain_db();
        let pool_stats = match (&deps.postgres, &deps.sqlite) {
            (Some(p), _) => Some(telemetry::PoolStats::Postgres(p.clone())),
            (None, Some(p)) => Some(telemetry::PoolStats::Sqlite(p.clone())),
            (None, None) => None,
        };
        let domain = domain::start(config, dev, &mut deps).await?;
        let registry = app::registry(&deps);
        let workflows = &config.engine.workflows;
        let defs = crate::workflows::load(workflows, &registry)?;
        let seeds = default_schedules(workflows)?;
        sagaflow_engine::telemetry::zero_series(&defs);
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
        // Every replica dispatches; the outbox's leases keep each try to one.
        let webhooks = (!config.webhooks.is_empty()).then(|| {
            engine.set_webhooks(Webhooks::new(config.webhooks.clone()));
            engine.start_webhook_dispatcher(DispatcherOptions::leased_like_runs(
                Duration::from_millis(config.engine.lease_ms),
                Duration::from_millis(config.engine.poll_ms),
            ))
        });
        let scheduler = if config.schedules.enabled {
            for tenant in schedule_tenants(config, dev) {
                let report = engine
                    .seed_schedules(&seeds.for_tenant(&TenantId::new(&tenant)))
                    .await
                    .with_context(|| format!("seeding the default schedules of {tenant}"))?;
                tracing::info!(tenant, ?report, "default schedules");
            }
            Some(engine.start_scheduler(SchedulerOptions {
                poll_interval: Duration::from_millis(config.schedules.poll_ms),
                ..SchedulerOptions::default()
            }))
        } else {
            None
        };
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();

        let domain_gauges = domain_db
            .clone()
            .map(|db| (db, config.domain.maintenance.exhaustion_horizon_days));
        let ipam = domain.as_ref().map(|d| d.deps.ipam.clone());
        let apis = apis::Apis::new(config, &engine, &auth, domain_db, ipam);
        let grpc_addr = grpc::serve(config, &apis, &store, &stop, &mut tasks).await?;
        if let Some(sims) = domain.as_ref().and_then(|d| d.simulators.as_ref()) {
            inform::install(sims, config, dev, grpc_addr)?;
        }
        let app = http_router(store.clone(), metrics, Readiness::of(scheduler.as_ref()))
            .merge(ui::router(apis.clone(), auth.clone()))
            .merge(rest::router(apis));
        let http_addr = http::serve(
            config,
            app,
            store,
            pool_stats,
            domain_gauges,
            &stop,
            &mut tasks,
        )
        .await?;

        Ok(Self {
            engine,
            grpc_addr,
            http_addr,
            executor,
            scheduler,
            webhooks,
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
        if let Some(w) = self.webhooks {
            w.shutdown().await;
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

/// The default schedules: `schedules.toml` of the workflows directory when
/// one is configured and has it, else the shipped `workflows/schedules.toml`. A file that
/// does not check stops the start, saying where and what to fix.
fn default_schedules(workflows: &std::path::Path) -> anyhow::Result<SeedFile> {
    let path = workflows.join(SEED_FILE);
    let file = if !workflows.as_os_str().is_empty() && path.exists() {
        SeedFile::load(&path)
    } else {
        SeedFile::shipped()
    };
    let file = file.context("reading the default schedules")?;
    tracing::debug!(source = %file.source, schedules = ?file.names().collect::<Vec<_>>(), "default schedules read");
    Ok(file)
}

/// The tenants the default schedules are seeded for: `schedules.tenant`
/// (`demo` under `dev`) and every tenant that has an address pool, since
/// the maintenance jobs work on the pools and records of their run's
/// tenant.
pub fn schedule_tenants(config: &Config, dev: bool) -> Vec<String> {
    let base = if dev {
        app::DEV_TENANT
    } else {
        config.schedules.tenant.as_str()
    };
    let mut tenants = std::collections::BTreeSet::from([base.to_owned()]);
    tenants.extend(config.domain.pools.iter().map(|p| p.tenant.clone()));
    tenants.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagaflow_steps::DomainConfig;

    #[test]
    fn every_tenant_with_pools_gets_the_default_schedules() {
        let mut c = Config::default();
        c.schedules.tenant = "main".into();
        c.domain.pools = ["zeta", "main", "acme", "zeta"]
            .into_iter()
            .flat_map(|t| DomainConfig::dev(t).pools)
            .collect();
        assert_eq!(schedule_tenants(&c, false), ["acme", "main", "zeta"]);
        assert_eq!(schedule_tenants(&Config::default(), true), ["demo"]);
    }
}
