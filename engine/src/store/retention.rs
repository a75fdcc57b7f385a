//! Retention as the store sees it: which finished runs to delete
//! ([`RunPurge`]), what one batch deleted ([`Purged`]), and
//! [`RetentionStore`], the deletes of runs (with their events, signals and
//! webhook deliveries) and of schedule fires, one short transaction per
//! batch. Only terminal runs are ever deleted: FAILED and
//! COMPENSATION_FAILED runs wait for an operator and are kept however old.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::Result;
use crate::ids::TenantId;

/// Which workflows of the tenant a purge covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowScope {
    /// Only this workflow's runs.
    Only(String),
    /// Every workflow's runs except these (the ones with their own age).
    AllExcept(Vec<String>),
}

/// One batch of a purge: the tenant's terminal runs of `scope` that
/// finished before `finished_before`, oldest first, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPurge {
    pub tenant: TenantId,
    pub scope: WorkflowScope,
    pub finished_before: DateTime<Utc>,
    pub limit: u32,
}

/// What one batch deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub runs: u64,
    pub events: u64,
    pub signals: u64,
    pub deliveries: u64,
}

/// Deleting what retention no longer keeps, in batches: each call is one
/// short transaction that touches only rows no live run writes.
#[async_trait]
pub trait RetentionStore: Send + Sync + 'static {
    /// Deletes one batch of finished runs with their events, signals and
    /// webhook deliveries.
    async fn purge_runs(&self, p: &RunPurge) -> Result<Purged>;

    /// Deletes up to `limit` of the tenant's schedule fires scheduled
    /// before `before`; returns how many.
    async fn purge_fires(
        &self,
        tenant: &TenantId,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64>;
}

impl std::fmt::Debug for dyn RetentionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetentionStore")
    }
}
