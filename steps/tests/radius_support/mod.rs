//! Shared by the RADIUS tests: both databases, step requests, and the
//! handlers registered on a repository.
#![allow(clippy::unwrap_used, dead_code)] // tests fail loudly on purpose

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sagaflow_engine::handler::{CallKind, Registry, StepError, StepOutput, StepRequest};
use sagaflow_engine::ids::{RunId, TenantId};
use sagaflow_steps::radius::{
    self, DynAuthClient, DynAuthKind, DynAuthOutcome, DynAuthRequest, RadiusConfig, RadiusRepo,
    Session,
};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tokio_util::sync::CancellationToken;

/// A fresh SQLite database with every migration applied, and its guard.
pub async fn sqlite_pool() -> (sqlx::SqlitePool, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteConnectOptions::from_str(&format!(
        "sqlite://{}",
        dir.path().join("radius.db").display()
    ))
    .unwrap()
    .create_if_missing(true)
    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
    .busy_timeout(std::time::Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .unwrap();
    sagaflow_steps::migrations::test_support::SQLITE_MIGRATOR
        .run(&pool)
        .await
        .unwrap();
    (pool, dir)
}

/// A step request of run `run` for `step`, with `context`, in tenant `t1`.
pub fn request(run: RunId, step: &str, kind: CallKind, context: Value) -> StepRequest {
    request_as("t1", run, step, kind, context)
}

/// A step request of tenant `tenant`'s run `run` for `step`.
pub fn request_as(
    tenant: &str,
    run: RunId,
    step: &str,
    kind: CallKind,
    context: Value,
) -> StepRequest {
    let idempotency_key = match kind {
        CallKind::Forward => format!("{run}:{step}"),
        CallKind::Compensate => format!("{run}:{step}:compensate"),
    };
    StepRequest {
        run_id: run,
        tenant_id: TenantId::new(tenant),
        workflow: "test".into(),
        step: step.into(),
        kind,
        attempt: 1,
        idempotency_key,
        context: Arc::new(context),
        cancel: CancellationToken::new(),
    }
}

/// The radius handlers on `repo`.
pub fn registry(repo: RadiusRepo, config: RadiusConfig) -> Registry {
    let mut r = Registry::new();
    radius::register_with(&mut r, repo, config);
    r
}

/// Calls handler `name` forward for `step` of `run`.
pub async fn call(
    registry: &Registry,
    name: &str,
    run: RunId,
    step: &str,
    context: &Value,
) -> Result<StepOutput, StepError> {
    registry
        .get(name)
        .unwrap_or_else(|| panic!("{name} is not registered"))
        .call(request(run, step, CallKind::Forward, context.clone()))
        .await
}

/// Calls handler `name` for `step` of tenant `tenant`'s run `run`.
pub async fn call_as(
    registry: &Registry,
    name: &str,
    tenant: &str,
    (run, step, kind): (RunId, &str, CallKind),
    context: &Value,
) -> Result<StepOutput, StepError> {
    registry
        .get(name)
        .unwrap_or_else(|| panic!("{name} is not registered"))
        .call(request_as(tenant, run, step, kind, context.clone()))
        .await
}

/// `radius.create_account` then `radius.suspend` for `run`.
pub async fn create_and_suspend(registry: &Registry, run: RunId, context: &Value) {
    call(registry, "radius.create_account", run, "create", context)
        .await
        .unwrap();
    call(registry, "radius.suspend", run, "suspend", context)
        .await
        .unwrap();
}

/// `radius.create_account` for `run`; returns the generated password.
pub async fn create_account(registry: &Registry, run: RunId, context: &Value) -> String {
    let out = call(registry, "radius.create_account", run, "create", context)
        .await
        .unwrap();
    out["radius_password"].as_str().unwrap().to_owned()
}

/// A request of `kind` for subscriber `sub-1` at 100.64.0.7.
pub fn dynauth_request(kind: DynAuthKind) -> DynAuthRequest {
    DynAuthRequest {
        kind,
        session: Session {
            user_name: "sub-1".into(),
            framed_ip: Some(Ipv4Addr::new(100, 64, 0, 7)),
            acct_session_id: None,
        },
        filter_id: None,
    }
}

/// Sends [`dynauth_request`]`(kind)` to `nas`: the result, and how long it
/// took.
pub async fn send(
    client: &DynAuthClient,
    nas: SocketAddr,
    kind: DynAuthKind,
) -> (Result<DynAuthOutcome, radius::Error>, Duration) {
    let started = Instant::now();
    let result = client
        .send(nas, &dynauth_request(kind), &CancellationToken::new())
        .await;
    (result, started.elapsed())
}
