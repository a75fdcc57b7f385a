//! The maintenance jobs' types: their configuration ([`MaintenanceConfig`],
//! `[domain.maintenance]`), their error and how it reaches the engine, and
//! the cleanup's counts.

use sagaflow_engine::handler::StepError;
use serde::{Deserialize, Serialize};

use super::RetentionConfig;
use crate::ipam::IpamError;
use crate::lifecycle::repo::LifecycleError;
use crate::notify::NotifyError;

/// The `[domain.maintenance]` configuration: ages, thresholds, batch size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// REVOKED records older than this are purged.
    pub revoked_retention_days: u32,
    /// ALLOCATED records older than this are reported as leaks.
    pub allocated_stale_hours: u32,
    /// REVOKING records older than this are taken to REVOKED.
    pub revoking_stuck_hours: u32,
    /// Rows per statement: each purge deletes at most this many, each page
    /// of stuck records holds at most this many.
    pub batch_size: u32,
    /// At most this many leaks are listed in the step output (all are
    /// counted and logged).
    pub leak_report_limit: u32,
    /// The warning threshold (percent) of pools that set none.
    pub warning_percent: u8,
    /// The critical threshold (percent) of pools that set none.
    pub critical_percent: u8,
    /// A pool projected to be full within this many days (at the last 30
    /// days' growth) is flagged: the `sagaflow_pool_exhaustion_horizon_days`
    /// gauge the exhaustion alert compares with.
    pub exhaustion_horizon_days: u32,
    /// How long `run_retention` keeps each kind of row.
    pub retention: RetentionConfig,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            revoked_retention_days: 90,
            allocated_stale_hours: 24,
            revoking_stuck_hours: 1,
            batch_size: 1000,
            leak_report_limit: 1000,
            warning_percent: 80,
            critical_percent: 100,
            exhaustion_horizon_days: 60,
            retention: RetentionConfig::default(),
        }
    }
}

impl MaintenanceConfig {
    /// Checks the configuration; the message names the key to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.batch_size == 0 {
            return Err("domain.maintenance.batch_size must be at least 1".into());
        }
        if self.warning_percent > self.critical_percent || self.critical_percent > 100 {
            return Err(format!(
                "domain.maintenance thresholds need warning_percent ≤ critical_percent ≤ 100, \
                 got {} and {}",
                self.warning_percent, self.critical_percent
            ));
        }
        self.retention.validate()
    }

    pub(crate) fn batch(&self) -> i64 {
        i64::from(self.batch_size.max(1))
    }
}

/// Why a maintenance step failed.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error("notification: {0}")]
    Notify(#[from] NotifyError),
    #[error("stored progress is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cancelled")]
    Cancelled,
    #[error("run store: {0}")]
    Store(#[from] sagaflow_engine::store::StoreError),
    #[error("run_retention needs the engine's store, which this process did not give the handlers")]
    NoRunStore,
}

impl From<MaintenanceError> for StepError {
    fn from(e: MaintenanceError) -> Self {
        match e {
            MaintenanceError::Lifecycle(e) => e.into(),
            MaintenanceError::Ipam(e) => e.into(),
            MaintenanceError::Notify(NotifyError::Delivery { .. }) => {
                StepError::retryable("notify_failed", e.to_string())
            }
            MaintenanceError::Notify(_) => StepError::fatal("notify_config", e.to_string()),
            MaintenanceError::Corrupt(_) => StepError::fatal("corrupt", e.to_string()),
            MaintenanceError::Database(_) => StepError::retryable("database", e.to_string()),
            MaintenanceError::Cancelled => StepError::retryable("cancelled", e.to_string()),
            MaintenanceError::Store(_) => StepError::retryable("database", e.to_string()),
            MaintenanceError::NoRunStore => StepError::fatal("no_run_store", e.to_string()),
        }
    }
}

pub(crate) type Result<T, E = MaintenanceError> = std::result::Result<T, E>;

/// The output of `lifecycle_cleanup`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupCounts {
    /// REVOKED records purged.
    pub revoked_deleted: u64,
    /// ALLOCATED records older than the stale age (leaks).
    pub allocated_stale: u64,
    /// REVOKING records older than the stuck age, found and taken on.
    pub revoking_stuck: u64,
    /// Stuck records that could not be taken to REVOKED.
    pub errors: u64,
}
