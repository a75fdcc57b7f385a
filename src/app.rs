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
    let runs: Arc<dyn sagaflow_engine::store::RetentionStore> = store.clone();
    deps.runs = Some(runs);
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

/// The URL without its password, for messages: the password of its
/// userinfo and the values of its `password`-like query parameters become
/// `***`.
pub fn redact(url: &str) -> String {
    let Some(s) = url.find("://").map(|s| s + 3) else {
        return url.to_owned();
    };
    let authority_end = url[s..].find(['/', '?', '#']).map_or(url.len(), |i| s + i);
    let mut out = match url[s..authority_end].rfind('@') {
        Some(at) => {
            let creds = &url[s..s + at];
            match creds.find(':') {
                Some(c) => format!(
                    "{}{}:***{}",
                    &url[..s],
                    &creds[..c],
                    &url[s + at..authority_end]
                ),
                None => url[..authority_end].to_owned(),
            }
        }
        None => url[..authority_end].to_owned(),
    };
    let rest = &url[authority_end..];
    match rest.find('?') {
        Some(q) => {
            out.push_str(&rest[..=q]);
            let (query, fragment) = match rest[q + 1..].find('#') {
                Some(h) => (&rest[q + 1..q + 1 + h], &rest[q + 1 + h..]),
                None => (&rest[q + 1..], ""),
            };
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((name, _)) if secret_param(name) => format!("{name}=***"),
                    _ => p.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
            out.push_str(fragment);
        }
        None => out.push_str(rest),
    }
    out
}

/// Whether a URL query parameter carries a secret.
fn secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("password") || matches!(name.as_str(), "secret" | "token" | "access_token")
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
        assert_eq!(
            super::redact("postgres://u@h/db?sslmode=require&password=secret&x=1"),
            "postgres://u@h/db?sslmode=require&password=***&x=1"
        );
        assert_eq!(
            super::redact("postgresql://u:p@ss@h:5/db?sslpassword=k#f"),
            "postgresql://u:***@h:5/db?sslpassword=***#f"
        );
        assert_eq!(
            super::redact("http://h/hook?token=t&a=b"),
            "http://h/hook?token=***&a=b"
        );
    }
}
