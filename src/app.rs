//! Assembles a running engine: store, registry, definitions, executor.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sagaflow_engine::Engine;
use sagaflow_engine::clock::SystemClock;
use sagaflow_engine::definition::Definitions;
use sagaflow_engine::executor::{ExecutorHandle, ExecutorOptions};
use sagaflow_engine::handler::Registry;
use sagaflow_engine::store::{Store, postgres::PgStore, sqlite::SqliteStore};
use sagaflow_steps::{DomainConfig, DomainRuntime};

/// What it takes to run an engine in this process.
#[derive(Debug, Clone)]
pub struct AppOptions {
    pub database_url: String,
    pub workflows: PathBuf,
    pub executor: ExecutorOptions,
}

/// An engine with its executor running.
pub struct App {
    pub engine: Engine,
    pub executor: ExecutorHandle,
    /// The ISP domain (pools, adapters, simulators).
    pub domain: Option<DomainRuntime>,
}

/// The tenant `sagaflow dev`'s address pools belong to.
pub const DEV_TENANT: &str = "default";

/// Connects the store (applying migrations) and returns it with the handler
/// dependencies it can provide.
pub async fn open_store(url: &str) -> anyhow::Result<(Arc<dyn Store>, sagaflow_steps::Deps)> {
    let mut deps = sagaflow_steps::Deps::default();
    let store: Arc<dyn Store> =
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pg = PgStore::connect(url)
                .await
                .with_context(|| format!("cannot connect to {}", redact(url)))?;
            deps.postgres = Some(pg.pool().clone());
            Arc::new(pg)
        } else if url.starts_with("sqlite:") {
            let lite = SqliteStore::connect(url)
                .await
                .with_context(|| format!("cannot open {}", redact(url)))?;
            deps.sqlite = Some(lite.pool().clone());
            Arc::new(lite)
        } else {
            anyhow::bail!(
                "unsupported database URL {}: use postgres://… or sqlite://…",
                redact(url)
            );
        };
    store.migrate().await.context("applying migrations")?;
    Ok((store, deps))
}

/// Every handler this build ships, given its dependencies.
pub fn registry(deps: &sagaflow_steps::Deps) -> Registry {
    let mut r = Registry::new().with_builtins();
    sagaflow_steps::register(&mut r, deps);
    r
}

impl App {
    pub async fn start(opts: AppOptions) -> anyhow::Result<Self> {
        let (store, mut deps) = open_store(&opts.database_url).await?;
        // The domain's defaults (built-in pools and simulators) until its
        // configuration is read from the config file.
        let domain = match deps.domain_db() {
            Some(db) => {
                let rt = DomainRuntime::start(
                    &db,
                    &DomainConfig::dev(DEV_TENANT),
                    Arc::new(SystemClock),
                )
                .await
                .context("starting the ISP domain")?;
                deps.domain = Some(rt.deps.clone());
                Some(rt)
            }
            None => None,
        };
        let registry = registry(&deps);
        let defs = if opts.workflows.exists() {
            Definitions::load_dir(&opts.workflows, &registry)?
        } else {
            tracing::warn!(dir = %opts.workflows.display(), "workflows directory not found; no workflows loaded");
            Definitions::default()
        };
        if defs.is_empty() {
            tracing::warn!("no workflows loaded");
        }
        for d in defs.all() {
            tracing::info!(workflow = %d.definition.name, version = d.definition.version, id = %d.id, "workflow loaded");
        }
        let engine = Engine::new(store, Arc::new(registry), defs, Arc::new(SystemClock)).await?;
        let executor = engine.start_executor(opts.executor);
        Ok(Self {
            engine,
            executor,
            domain,
        })
    }

    /// Drains the executor and releases its leases, then stops the domain's
    /// simulators.
    pub async fn shutdown(self) {
        self.executor.shutdown().await;
        if let Some(d) = self.domain {
            d.shutdown().await;
        }
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Waits for SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
    }
}
