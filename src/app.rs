//! Assembling the parts: the store and the handler registry.

use std::sync::Arc;

use anyhow::Context;
use sagaflow_engine::handler::Registry;
use sagaflow_engine::store::{Store, postgres::PgStore, sqlite::SqliteStore};

/// The tenant of `sagaflow dev`: its tokens, address pools and schedules.
pub const DEV_TENANT: &str = "demo";

/// Connects the store (applying migrations) and returns it with the handler
/// dependencies it can provide.
pub async fn open_store(
    url: &str,
    max_connections: u32,
) -> anyhow::Result<(Arc<dyn Store>, sagaflow_steps::Deps)> {
    let opts = sagaflow_engine::store::postgres::PgOptions {
        max_connections,
        ..Default::default()
    };
    open_store_with(url, &opts).await
}

/// [`open_store`] with every PostgreSQL pool setting.
pub async fn open_store_with(
    url: &str,
    pg: &sagaflow_engine::store::postgres::PgOptions,
) -> anyhow::Result<(Arc<dyn Store>, sagaflow_steps::Deps)> {
    let mut deps = sagaflow_steps::Deps::default();
    let store: Arc<dyn Store> =
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let conn = url
                .parse()
                .with_context(|| format!("cannot parse {}", redact(url)))?;
            let pg = PgStore::connect_opts(conn, pg)
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
    sagaflow_steps::migrations::migrate(&deps)
        .await
        .context("applying the domain's migrations")?;
    Ok((store, deps))
}

/// Every handler this build ships, given its dependencies.
pub fn registry(deps: &sagaflow_steps::Deps) -> Registry {
    let mut r = Registry::new().with_builtins();
    sagaflow_steps::register(&mut r, deps);
    r
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
