//! `ledger.apply` / `ledger.revert`: handlers whose only effect is a row in
//! the `effect_ledger` table. They exist to verify the engine's promise end
//! to end (crash tests, chaos runs): every effect applied exactly once per
//! idempotency key, compensations only after their forward effect.
//!
//! Behaviour is driven by the run's context:
//! - `/ledger/sleep_ms`: each call takes this long (default 0);
//! - `/ledger/fail_step`: the step with this name fails for good
//!   (non-retryable), so the run compensates;
//! - `/ledger/panic_step`: the step with this name panics on every forward
//!   call (a poison step: the engine must count the crash as an attempt);
//! - `/ledger/hang_step`: the step with this name never answers and ignores
//!   cancellation (only the step's timeout ends the attempt).
//!
//! Calls of poison steps are recorded in `effect_calls` before they panic
//! or hang.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sagaflow_engine::handler::{
    CallKind, Registry, StepError, StepHandler, StepOutput, StepRequest,
};
use serde_json::json;
use sqlx::PgPool;

use crate::handlers::{HANDLERS, Run};

/// The repository of the ledger tables.
#[derive(Debug, Clone)]
pub struct LedgerRepo {
    pool: PgPool,
}

impl LedgerRepo {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Records the call, then applies the effect unless the key already has
    /// one. Returns whether this call applied it.
    pub async fn apply_once(
        &self,
        key: &str,
        run_id: uuid::Uuid,
        step: &str,
        compensation: bool,
        attempt: u32,
    ) -> Result<bool, sqlx::Error> {
        self.record_call(key, attempt).await?;
        // A compensation undoes only what was applied: with no forward
        // effect (an attempt that timed out before doing anything) there is
        // nothing to undo and nothing is recorded.
        let forward = key.strip_suffix(":compensate").unwrap_or(key);
        let applied = sqlx::query(
            "INSERT INTO effect_ledger (idempotency_key, run_id, step, compensation) \
             SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM effect_ledger WHERE idempotency_key = $1) \
               AND (NOT $4 OR EXISTS (SELECT 1 FROM effect_ledger WHERE idempotency_key = $5))",
        )
        .bind(key)
        .bind(run_id)
        .bind(step)
        .bind(compensation)
        .bind(forward)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(applied == 1)
    }

    /// Records one call of a handler, effect or not.
    pub async fn record_call(&self, key: &str, attempt: u32) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO effect_calls (idempotency_key, attempt) VALUES ($1, $2)")
            .bind(key)
            .bind(attempt as i32)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Whether the context names `step` under `/ledger/<field>`.
fn names_step(req: &StepRequest, field: &str) -> bool {
    req.context
        .pointer(&format!("/ledger/{field}"))
        .and_then(|v| v.as_str())
        == Some(req.step.as_str())
}

struct LedgerHandler {
    repo: LedgerRepo,
}

#[async_trait]
impl StepHandler for LedgerHandler {
    async fn call(&self, req: StepRequest) -> Result<StepOutput, StepError> {
        let sleep = req
            .context
            .pointer("/ledger/sleep_ms")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        if sleep > 0 {
            // Cancellation first: an attempt told to stop while its sleep
            // also ended (a replica resumed after a pause) must not go on.
            tokio::select! {
                biased;
                _ = req.cancel.cancelled() => return Err(StepError::retryable("cancelled", "cancelled")),
                _ = tokio::time::sleep(Duration::from_millis(sleep)) => {}
            }
        }
        let compensation = req.kind == CallKind::Compensate;
        if !compensation && (names_step(&req, "panic_step") || names_step(&req, "hang_step")) {
            self.repo
                .record_call(&req.idempotency_key, req.attempt)
                .await
                .map_err(|e| StepError::retryable("database", e.to_string()))?;
            if names_step(&req, "panic_step") {
                panic!("poison step {}: attempt {}", req.step, req.attempt);
            }
            // Never answers, and does not listen to cancellation.
            std::future::pending::<()>().await;
        }
        if !compensation && names_step(&req, "fail_step") {
            return Err(StepError::fatal(
                "forced",
                format!("{} is set to fail", req.step),
            ));
        }
        let applied = self
            .repo
            .apply_once(
                &req.idempotency_key,
                req.run_id.0,
                &req.step,
                compensation,
                req.attempt,
            )
            .await
            .map_err(|e| StepError::retryable("database", e.to_string()))?;
        let mut out = StepOutput::new();
        if !compensation {
            out.insert(format!("{}_applied", req.step), json!(applied));
        }
        Ok(out)
    }
}

/// Registers `ledger.apply` and `ledger.revert`.
pub fn register(registry: &mut Registry, pool: PgPool) {
    let handler = Arc::new(LedgerHandler {
        repo: LedgerRepo::new(pool),
    });
    for h in HANDLERS {
        if let Run::Ledger = h.run {
            registry.register(h.name, handler.clone());
        }
    }
}
