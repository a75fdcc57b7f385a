//! The `run_retention` job: its configuration ([`RetentionConfig`],
//! `[domain.maintenance.retention]`), its figures ([`RetentionCounts`]) and
//! the step that deletes, for the run's tenant and in batches of
//! `batch_size` (one short transaction each), finished runs with their
//! events, schedule fires, lifecycle snapshots, address audit rows and
//! maintenance progress older than their own ages. FAILED and
//! COMPENSATION_FAILED runs wait for an operator and are never deleted.
//! On PostgreSQL it also adds the days of events ahead and drops whole days
//! of events past [`RetentionConfig::event_days`] instead of deleting them
//! run by run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use sagaflow_engine::handler::StepRequest;
use sagaflow_engine::ids::TenantId;
use sagaflow_engine::store::postgres::partitions::DAYS_AHEAD;
use sagaflow_engine::store::{
    DroppedDay, EventRows, Pace, Purged, RetentionStore, RunPurge, WorkflowScope,
};
use serde::{Deserialize, Serialize};

use super::handlers::Maintenance;
use super::{MaintenanceError, Result, repo};

/// `[domain.maintenance.retention]`: how long each kind of row is kept, in
/// days; 0 keeps it for ever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Finished runs (COMPLETED, COMPENSATED, CANCELLED, TERMINATED) and
    /// their events, signals and webhook deliveries, by `finished_at`.
    pub runs_days: u32,
    /// Schedule fire records, by scheduled time.
    pub fires_days: u32,
    /// Lifecycle snapshots (`lifecycle_metrics`), by time taken.
    pub snapshots_days: u32,
    /// Address audit rows (expired reservations), by time.
    pub address_audit_days: u32,
    /// Maintenance steps' stored progress, by last update.
    pub progress_days: u32,
    /// Ages of finished runs per tenant and/or workflow
    /// (`[[domain.maintenance.retention.runs]]`); the most specific rule
    /// wins: tenant and workflow, then workflow, then tenant, then
    /// `runs_days`.
    pub runs: Vec<RunRetentionRule>,
    /// The most of its time retention spends writing, in percent (1–100):
    /// after each batch it pauses three times as long as the batch took at
    /// 25, so that the runs in flight keep their latency while it deletes
    /// (see docs/operations.md); 100 never pauses.
    pub busy_percent: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            runs_days: 90,
            fires_days: 90,
            snapshots_days: 90,
            address_audit_days: 365,
            progress_days: 90,
            runs: Vec::new(),
            busy_percent: 25,
        }
    }
}

/// One `[[domain.maintenance.retention.runs]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRetentionRule {
    /// The tenant it applies to; every tenant when unset.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The workflow it applies to; every workflow when unset.
    #[serde(default)]
    pub workflow: Option<String>,
    /// Days finished runs are kept; 0 keeps them for ever.
    pub days: u32,
}

/// The ages that apply to one tenant's runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRunAges {
    /// Workflows with an age of their own.
    pub workflows: BTreeMap<String, u32>,
    /// Every other workflow.
    pub default_days: u32,
}

impl RetentionConfig {
    /// Checks the rules; the message names what to fix.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(1..=100).contains(&self.busy_percent) {
            return Err(format!(
                "domain.maintenance.retention.busy_percent must be between 1 and 100, got {}",
                self.busy_percent
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for r in &self.runs {
            if r.tenant.is_none() && r.workflow.is_none() {
                return Err(
                    "a [[domain.maintenance.retention.runs]] rule needs a tenant, a \
                            workflow or both (runs_days is the age of every other run)"
                        .into(),
                );
            }
            if !seen.insert((r.tenant.clone(), r.workflow.clone())) {
                return Err(format!(
                    "[[domain.maintenance.retention.runs]] has two rules for tenant {:?} and \
                     workflow {:?}: keep one",
                    r.tenant, r.workflow
                ));
            }
        }
        Ok(())
    }

    /// PostgreSQL: the age in days past which a whole day of events is
    /// dropped: one more than the longest age of a tenant's runs (each
    /// tenant's runs of that day were deletable in the previous day's
    /// retention), so only the events of runs kept longer by their
    /// workflow, unresolved or still active are moved out first. `None`
    /// (events deleted run by run) when some tenant keeps its runs for ever.
    pub fn event_days(&self) -> Option<u32> {
        let mut days = self.runs_days;
        for d in std::iter::once(self.runs_days).chain(
            self.runs
                .iter()
                .filter(|r| r.workflow.is_none())
                .map(|r| r.days),
        ) {
            if d == 0 {
                return None;
            }
            days = days.max(d);
        }
        Some(days + 1)
    }

    /// The ages of `tenant`'s runs.
    pub fn run_ages(&self, tenant: &str) -> TenantRunAges {
        let of = |t: Option<&str>, w: Option<&str>| {
            self.runs
                .iter()
                .find(|r| r.tenant.as_deref() == t && r.workflow.as_deref() == w)
                .map(|r| r.days)
        };
        let default_days = of(Some(tenant), None).unwrap_or(self.runs_days);
        let mut workflows = BTreeMap::new();
        for w in self.runs.iter().filter_map(|r| r.workflow.as_deref()) {
            if let Some(days) = of(Some(tenant), Some(w)).or_else(|| of(None, Some(w))) {
                workflows.insert(w.to_owned(), days);
            }
        }
        TenantRunAges {
            workflows,
            default_days,
        }
    }
}

/// The output of `run_retention`: rows deleted of each kind, the batches
/// (transactions) it took and the longest of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionCounts {
    pub runs_deleted: u64,
    pub events_deleted: u64,
    pub signals_deleted: u64,
    pub deliveries_deleted: u64,
    pub fires_deleted: u64,
    pub snapshots_deleted: u64,
    pub address_audit_deleted: u64,
    pub progress_deleted: u64,
    pub batches: u64,
    pub longest_batch_ms: u64,
    /// PostgreSQL: partitions of days of events replaced (days past the
    /// age, and kept days rechecked), the events they held, those of runs
    /// still stored kept in a kept day, and the longest exclusive lock a
    /// replacement took on `run_events`.
    pub event_days_dropped: u64,
    pub events_dropped_with_days: u64,
    pub events_kept: u64,
    pub longest_day_lock_ms: u64,
    /// The time spent pausing between batches (`busy_percent`).
    #[serde(default)]
    pub paused_ms: u64,
}

impl RetentionCounts {
    fn add_runs(&mut self, p: Purged) {
        self.runs_deleted += p.runs;
        self.events_deleted += p.events;
        self.signals_deleted += p.signals;
        self.deliveries_deleted += p.deliveries;
    }

    fn add_day(&mut self, d: &DroppedDay) {
        self.event_days_dropped += 1;
        self.events_dropped_with_days += d.events;
        self.events_kept += d.moved;
        self.longest_day_lock_ms = self.longest_day_lock_ms.max(d.locked_ms);
    }
}

/// What one kind of row retention deletes besides runs: schedule fires
/// (through the engine's store) or a maintenance table.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Fires,
    Table(repo::Purge),
}

fn cutoff(now: DateTime<Utc>, days: u32) -> Option<DateTime<Utc>> {
    (days > 0).then(|| now - Duration::days(i64::from(days)))
}

impl Maintenance {
    /// The start of a batch, unless the step was cancelled.
    fn batch_start(&self, req: &StepRequest) -> Result<Instant> {
        if req.cancel.is_cancelled() {
            return Err(MaintenanceError::Cancelled);
        }
        Ok(Instant::now())
    }

    /// Records a batch that deleted `n` rows (its time; the counts, saved
    /// so that a repeated step continues from them); true when another
    /// batch is needed (this one was full), after the pause the pace asks.
    async fn batch_end(
        &self,
        req: &StepRequest,
        c: &mut RetentionCounts,
        started: Instant,
        n: u64,
    ) -> Result<bool> {
        let took = started.elapsed();
        c.batches += 1;
        c.longest_batch_ms = c.longest_batch_ms.max(took.as_millis() as u64);
        if n > 0 {
            self.save_retention(req, c, false).await?;
        }
        let more = n >= u64::from(self.limit());
        if more {
            let pause = self.pace().pause_after(took);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {} // the pace, not a wait for an event
                _ = req.cancel.cancelled() => return Err(MaintenanceError::Cancelled),
            }
            c.paused_ms += pause.as_millis() as u64;
        }
        Ok(more)
    }

    fn pace(&self) -> Pace {
        Pace::new(self.cfg().retention.busy_percent)
    }

    fn limit(&self) -> u32 {
        self.cfg().batch_size.max(1)
    }

    async fn save_retention(
        &self,
        req: &StepRequest,
        c: &RetentionCounts,
        done: bool,
    ) -> Result<()> {
        repo::save_progress(
            &self.db,
            req.tenant_id.as_str(),
            &req.idempotency_key,
            &req.workflow,
            &serde_json::to_value(c)?,
            done,
            self.now(),
        )
        .await?;
        Ok(())
    }

    fn store(&self) -> Result<&Arc<dyn RetentionStore>> {
        self.runs.as_ref().ok_or(MaintenanceError::NoRunStore)
    }

    /// Deletes the tenant's finished runs of `scope` older than `days`.
    async fn purge_runs(
        &self,
        req: &StepRequest,
        c: &mut RetentionCounts,
        scope: WorkflowScope,
        days: u32,
        events: EventRows,
    ) -> Result<()> {
        let Some(before) = cutoff(self.now(), days) else {
            return Ok(());
        };
        let mut purge = RunPurge {
            tenant: TenantId::new(req.tenant_id.as_str()),
            scope,
            finished_before: before,
            from: None,
            limit: self.limit(),
            events,
        };
        loop {
            let started = self.batch_start(req)?;
            let p = self.store()?.purge_runs(&purge).await?;
            purge.from = p.last_finished;
            c.add_runs(p);
            if !self.batch_end(req, c, started, p.runs).await? {
                return Ok(());
            }
        }
    }

    /// PostgreSQL: drops the days of events older than `days`, one per
    /// batch.
    async fn drop_event_days(
        &self,
        req: &StepRequest,
        c: &mut RetentionCounts,
        days: u32,
    ) -> Result<()> {
        let Some(before) = cutoff(self.now(), days) else {
            return Ok(());
        };
        loop {
            let started = self.batch_start(req)?;
            let Some(d) = self.store()?.drop_event_day(before, self.pace()).await? else {
                return Ok(());
            };
            c.add_day(&d);
            self.batch_end(req, c, started, 1).await?;
        }
    }

    /// PostgreSQL: rechecks the kept days (one batch).
    async fn recheck_kept_days(&self, req: &StepRequest, c: &mut RetentionCounts) -> Result<()> {
        let started = self.batch_start(req)?;
        let days = self.store()?.recheck_kept_days(self.pace()).await?;
        days.iter().for_each(|d| c.add_day(d));
        if !days.is_empty() {
            self.batch_end(req, c, started, days.len() as u64).await?;
        }
        Ok(())
    }

    /// Deletes the tenant's rows of `kind` older than `days`.
    async fn purge_kind(
        &self,
        req: &StepRequest,
        c: &mut RetentionCounts,
        kind: Kind,
        days: u32,
    ) -> Result<()> {
        let Some(before) = cutoff(self.now(), days) else {
            return Ok(());
        };
        let tenant = req.tenant_id.as_str();
        loop {
            let started = self.batch_start(req)?;
            let n = match kind {
                Kind::Fires => {
                    let t = TenantId::new(tenant);
                    self.store()?.purge_fires(&t, before, self.limit()).await?
                }
                Kind::Table(t) => repo::purge(&self.db, t, tenant, before, self.limit()).await?,
            };
            *match kind {
                Kind::Fires => &mut c.fires_deleted,
                Kind::Table(repo::Purge::Snapshots) => &mut c.snapshots_deleted,
                Kind::Table(repo::Purge::AddressAudit) => &mut c.address_audit_deleted,
                Kind::Table(repo::Purge::Progress) => &mut c.progress_deleted,
            } += n;
            if !self.batch_end(req, c, started, n).await? {
                return Ok(());
            }
        }
    }

    /// The `run_retention` step: every kind of row, by its own age.
    pub(super) async fn retention(&self, req: &StepRequest) -> Result<RetentionCounts> {
        let tenant = req.tenant_id.as_str();
        let mut c = match repo::progress(&self.db, tenant, &req.idempotency_key).await? {
            Some(p) if p.done => return Ok(serde_json::from_value(p.output)?),
            Some(p) => serde_json::from_value(p.output)?,
            None => RetentionCounts::default(),
        };
        let cfg = self.cfg().retention.clone();
        self.store()?
            .add_event_days(self.now().date_naive(), DAYS_AHEAD)
            .await?;
        let event_days = cfg.event_days();
        let events = match event_days {
            Some(_) => EventRows::OutsideDailyPartitions,
            None => EventRows::All,
        };
        let ages = cfg.run_ages(tenant);
        for (w, days) in &ages.workflows {
            let scope = WorkflowScope::Only(w.clone());
            self.purge_runs(req, &mut c, scope, *days, events).await?;
        }
        let others = WorkflowScope::AllExcept(ages.workflows.keys().cloned().collect());
        self.purge_runs(req, &mut c, others, ages.default_days, events)
            .await?;
        if let Some(days) = event_days {
            self.recheck_kept_days(req, &mut c).await?;
            self.drop_event_days(req, &mut c, days).await?;
        }
        self.purge_kind(req, &mut c, Kind::Fires, cfg.fires_days)
            .await?;
        self.purge_kind(
            req,
            &mut c,
            Kind::Table(repo::Purge::Snapshots),
            cfg.snapshots_days,
        )
        .await?;
        self.purge_kind(
            req,
            &mut c,
            Kind::Table(repo::Purge::AddressAudit),
            cfg.address_audit_days,
        )
        .await?;
        self.purge_kind(
            req,
            &mut c,
            Kind::Table(repo::Purge::Progress),
            cfg.progress_days,
        )
        .await?;
        self.save_retention(req, &c, true).await?;
        for (kind, n) in [
            ("runs", c.runs_deleted),
            (
                "events",
                c.events_deleted + c.events_dropped_with_days.saturating_sub(c.events_kept),
            ),
            ("fires", c.fires_deleted),
            ("snapshots", c.snapshots_deleted),
            ("address_audit", c.address_audit_deleted),
            ("progress", c.progress_deleted),
        ] {
            metrics::counter!("sagaflow_retention_deleted_total", "kind" => kind).increment(n);
        }
        tracing::info!(tenant, ?c, "run retention");
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(t: Option<&str>, w: Option<&str>, days: u32) -> RunRetentionRule {
        RunRetentionRule {
            tenant: t.map(str::to_owned),
            workflow: w.map(str::to_owned),
            days,
        }
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let cfg = RetentionConfig {
            runs: vec![
                rule(None, Some("capacity_check"), 7),
                rule(Some("acme"), Some("capacity_check"), 2),
                rule(Some("acme"), None, 30),
                rule(Some("acme"), Some("provision_subscriber"), 0),
            ],
            ..RetentionConfig::default()
        };
        assert_eq!(cfg.validate(), Ok(()));
        let acme = cfg.run_ages("acme");
        assert_eq!(acme.default_days, 30);
        assert_eq!(
            acme.workflows,
            BTreeMap::from([
                ("capacity_check".to_owned(), 2),
                ("provision_subscriber".to_owned(), 0)
            ])
        );
        let other = cfg.run_ages("other");
        assert_eq!(other.default_days, 90);
        assert_eq!(
            other.workflows,
            BTreeMap::from([("capacity_check".to_owned(), 7)])
        );
    }

    #[test]
    fn days_of_events_go_a_day_after_the_longest_tenant_age() {
        let mut cfg = RetentionConfig {
            runs: vec![
                rule(None, Some("capacity_check"), 400),
                rule(Some("acme"), None, 120),
            ],
            ..RetentionConfig::default()
        };
        assert_eq!(
            cfg.event_days(),
            Some(121),
            "a workflow's own age does not count"
        );
        cfg.runs.push(rule(Some("other"), None, 0));
        assert_eq!(cfg.event_days(), None, "a tenant keeps its runs for ever");
        cfg.runs.clear();
        cfg.runs_days = 0;
        assert_eq!(cfg.event_days(), None);
    }

    #[test]
    fn a_rule_without_scope_or_twice_is_refused() {
        let mut cfg = RetentionConfig {
            runs: vec![rule(None, None, 3)],
            ..RetentionConfig::default()
        };
        assert!(cfg.validate().unwrap_err().contains("needs a tenant"));
        cfg.runs = vec![rule(Some("a"), None, 3), rule(Some("a"), None, 4)];
        assert!(cfg.validate().unwrap_err().contains("two rules"));
    }
}
