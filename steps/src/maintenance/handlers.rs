//! The maintenance jobs' step handlers (see the table in the module's
//! opening comment): each runs on the run's tenant, in pages of at most
//! `batch_size` records, through the lifecycle, IPAM and progress
//! repositories.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sagaflow_engine::handler::{Registry, StepError, StepHandler, StepOutput, StepRequest};
use sagaflow_engine::store::RetentionStore;
use serde_json::{Value, json};

use super::{CleanupCounts, MaintenanceConfig, MaintenanceError, Result, repo};
use crate::context::{output, run};
use crate::db::DomainDb;
use crate::deps::DomainDeps;
use crate::handlers::{HANDLERS, Run};
use crate::ipam::forecast::{self, Forecast};
use crate::ipam::repo as ipam;
use crate::ipam::reservations;
use crate::ipam::{CapacityLevel, PoolUsage};
use crate::lifecycle::repo as lifecycle;
use crate::lifecycle::{AddressState, Family};
use crate::notify::{Notification, NotificationKind};

pub(super) struct Maintenance {
    pub(super) db: DomainDb,
    deps: DomainDeps,
    /// The engine's store, for the runs and fires retention deletes.
    pub(super) runs: Option<Arc<dyn RetentionStore>>,
}

fn hours(h: u32) -> Duration {
    Duration::hours(i64::from(h))
}

/// The pages of a tenant's records in one state since before a time, by
/// id: each page is one short query of at most `batch` records, and the next
/// starts after the last id seen, so every record is visited once even when
/// some stay in the state.
struct Pages<'a> {
    db: &'a DomainDb,
    req: &'a StepRequest,
    state: AddressState,
    before: DateTime<Utc>,
    batch: i64,
    after: Option<i64>,
}

impl Pages<'_> {
    async fn next(&mut self) -> Result<Option<Vec<lifecycle::AddressRecord>>> {
        let Some(after) = self.after else {
            return Ok(None);
        };
        if self.req.cancel.is_cancelled() {
            return Err(MaintenanceError::Cancelled);
        }
        let page = lifecycle::in_state_before_page(
            self.db,
            self.req.tenant_id.as_str(),
            self.state,
            self.before,
            after,
            self.batch,
        )
        .await?;
        self.after = match page.last() {
            Some(last) if page.len() as i64 == self.batch => Some(last.id),
            _ => None,
        };
        Ok((!page.is_empty()).then_some(page))
    }
}

impl Maintenance {
    fn pages<'a>(
        &'a self,
        req: &'a StepRequest,
        state: AddressState,
        before: DateTime<Utc>,
    ) -> Pages<'a> {
        Pages {
            db: &self.db,
            req,
            state,
            before,
            batch: self.cfg().batch(),
            after: Some(0),
        }
    }

    pub(super) fn cfg(&self) -> &MaintenanceConfig {
        &self.deps.maintenance
    }

    pub(super) fn now(&self) -> DateTime<Utc> {
        self.deps.clock.now()
    }

    /// Lists (and logs) the tenant's leaks: ALLOCATED records never
    /// activated within the stale age.
    async fn report_leaks(&self, req: &StepRequest) -> Result<Value> {
        let tenant = req.tenant_id.as_str();
        let before = self.now() - hours(self.cfg().allocated_stale_hours);
        let limit = usize::try_from(self.cfg().leak_report_limit).unwrap_or(usize::MAX);
        let (mut listed, mut total) = (Vec::new(), 0u64);
        let mut pages = self.pages(req, AddressState::Allocated, before);
        while let Some(page) = pages.next().await? {
            for r in &page {
                tracing::warn!(
                    tenant,
                    record = r.id,
                    subscriber = %r.subscriber_id,
                    address = %r.address,
                    allocated_at = ?r.allocated_at,
                    "address leak: allocated but never activated"
                );
                total += 1;
                if listed.len() < limit {
                    listed.push(json!({
                        "record_id": r.id,
                        "subscriber_id": r.subscriber_id,
                        "family": r.family,
                        "address": r.address,
                        "pool_id": r.pool_id,
                        "allocated_at": r.allocated_at,
                    }));
                }
            }
        }
        Ok(json!({ "leaks": listed, "leaks_truncated": total > listed.len() as u64 }))
    }

    async fn save(&self, req: &StepRequest, counts: &CleanupCounts, done: bool) -> Result<()> {
        let v = serde_json::to_value(counts)?;
        repo::save_progress(
            &self.db,
            req.tenant_id.as_str(),
            &req.idempotency_key,
            &req.workflow,
            &v,
            done,
            self.now(),
        )
        .await?;
        Ok(())
    }

    /// Purges old REVOKED records (one short statement per batch), counts
    /// leaks, and takes stuck REVOKING records to REVOKED.
    async fn cleanup(&self, req: &StepRequest) -> Result<CleanupCounts> {
        let tenant = req.tenant_id.as_str();
        let mut counts = match repo::progress(&self.db, tenant, &req.idempotency_key).await? {
            Some(p) if p.done => return Ok(serde_json::from_value(p.output)?),
            Some(p) => serde_json::from_value(p.output)?,
            None => CleanupCounts::default(),
        };
        let now = self.now();
        let batch = self.cfg().batch();

        let purge_before = now - Duration::days(i64::from(self.cfg().revoked_retention_days));
        loop {
            if req.cancel.is_cancelled() {
                return Err(MaintenanceError::Cancelled);
            }
            let started = Instant::now();
            let n =
                lifecycle::purge_revoked_in(&self.db, Some(tenant), purge_before, batch).await?;
            tracing::debug!(
                tenant,
                deleted = n,
                took_ms = started.elapsed().as_millis() as u64,
                "purge batch"
            );
            counts.revoked_deleted += n;
            if n > 0 {
                self.save(req, &counts, false).await?;
            }
            if (n as i64) < batch {
                break;
            }
        }

        let stale_before = now - hours(self.cfg().allocated_stale_hours);
        counts.allocated_stale = lifecycle::count_in_state_before(
            &self.db,
            tenant,
            AddressState::Allocated,
            stale_before,
        )
        .await?
        .max(0) as u64;
        // Each found leak, counted once per cleanup run (the alert reads
        // its increase).
        metrics::counter!("sagaflow_lifecycle_leaks_found_total").increment(counts.allocated_stale);

        let stuck_before = now - hours(self.cfg().revoking_stuck_hours);
        let run = run(req);
        let mut pages = self.pages(req, AddressState::Revoking, stuck_before);
        while let Some(page) = pages.next().await? {
            for r in &page {
                counts.revoking_stuck += 1;
                match self
                    .deps
                    .ipam
                    .for_tenant(tenant)
                    .release(&self.db, r, &run, now)
                    .await
                {
                    Ok(done) if done.state == AddressState::Revoked => {}
                    Ok(other) => {
                        counts.errors += 1;
                        tracing::warn!(tenant, record = r.id, state = %other.state, "stuck revocation ended elsewhere");
                    }
                    Err(e) => {
                        counts.errors += 1;
                        tracing::warn!(tenant, record = r.id, error = %e, "cannot finish a stuck revocation");
                    }
                }
            }
            self.save(req, &counts, false).await?;
        }
        self.save(req, &counts, true).await?;
        tracing::info!(tenant, ?counts, "lifecycle cleanup");
        Ok(counts)
    }

    /// Record counts per family and state and pool use: gauges, and a
    /// snapshot stored once per step.
    async fn metrics(&self, req: &StepRequest) -> Result<Value> {
        let tenant = req.tenant_id.as_str();
        let counts = lifecycle::counts(&self.db, tenant).await?;
        let usage = ipam::utilization(&self.db, Some(tenant)).await?;
        let mut by_family: BTreeMap<Family, BTreeMap<AddressState, i64>> = Family::ALL
            .into_iter()
            .map(|f| (f, AddressState::ALL.into_iter().map(|s| (s, 0)).collect()))
            .collect();
        for c in &counts {
            by_family
                .entry(c.family)
                .or_default()
                .insert(c.state, c.count);
        }
        let mut records = Vec::new();
        for (family, states) in &by_family {
            for (state, n) in states {
                records.push(json!({"family": family, "state": state, "count": n}));
            }
        }
        let pools: Vec<Value> = usage.iter().map(pool_summary).collect();
        let records = Value::Array(records);
        let pools = Value::Array(pools);
        let snap = lifecycle::insert_snapshot(
            &self.db,
            tenant,
            &req.idempotency_key,
            self.now(),
            &records,
            &pools,
        )
        .await?;
        Ok(json!({
            "snapshot_id": snap.id,
            "records": snap.records,
            "pools": snap.pools,
        }))
    }

    /// The forecast gauge: days to exhaustion (+Inf when not growing); the
    /// horizon the alert compares it with is [`super::gauges`]'s.
    fn forecast_gauges(&self, tenant: &str, u: &PoolUsage, f: &Forecast) {
        let (t, p) = (tenant.to_owned(), u.pool.name.clone());
        metrics::gauge!("sagaflow_pool_days_to_exhaustion", "tenant" => t, "pool" => p)
            .set(f.days_to_exhaustion.unwrap_or(f64::INFINITY));
    }

    /// Compares each pool's level with the stored one; a change is notified
    /// first and stored after, so a failed notification is tried again (by
    /// this step's retry or the next check) and a level is notified once.
    async fn capacity(&self, req: &StepRequest) -> Result<Value> {
        let tenant = req.tenant_id.as_str();
        let usage = ipam::utilization(&self.db, Some(tenant)).await?;
        let stored = ipam::capacity_levels(&self.db, tenant).await?;
        let forecasts = forecast::forecasts(&self.db, tenant, &usage, self.now()).await?;
        let (mut pools, mut crossings) = (Vec::new(), Vec::new());
        for u in &usage {
            let level = u.level();
            let percent = u.percent();
            let f = forecasts.get(&u.pool.id).copied().unwrap_or(Forecast::NONE);
            self.forecast_gauges(tenant, u, &f);
            let summary = f.describe(&u.pool.name, percent);
            pools.push(json!({
                "pool": u.pool.name, "percent": percent, "level": level,
                "growth_per_day": f.growth_per_day,
                "days_to_exhaustion": f.days_to_exhaustion,
                "exhaustion_at": f.exhaustion_at,
                "summary": summary,
            }));
            let previous = stored.get(&u.pool.id).copied();
            if previous == Some(level) {
                continue;
            }
            let from = previous.unwrap_or(CapacityLevel::Ok);
            if from != level {
                let kind = match level {
                    CapacityLevel::Ok => NotificationKind::CapacityRecovered,
                    CapacityLevel::Warning => NotificationKind::CapacityWarning,
                    CapacityLevel::Critical => NotificationKind::CapacityCritical,
                };
                let data = json!({
                    "pool": u.pool.name,
                    "family": u.pool.family,
                    "capacity": u.capacity(),
                    "in_use": u.in_use,
                    "percent": percent,
                    "level": level,
                    "previous_level": from,
                    "warning_percent": u.pool.warning_percent,
                    "critical_percent": u.pool.critical_percent,
                    "growth_per_day": f.growth_per_day,
                    "days_to_exhaustion": f.days_to_exhaustion,
                    "exhaustion_at": f.exhaustion_at,
                    "summary": summary,
                });
                tracing::warn!(tenant, pool = %u.pool.name, %from, to = %level, percent, "pool capacity crossing");
                self.deps
                    .notifier
                    .notify(&Notification {
                        id: format!("{}:{}:{}", req.idempotency_key, u.pool.name, level),
                        kind,
                        tenant_id: tenant.to_owned(),
                        at: self.now(),
                        data: data.clone(),
                    })
                    .await?;
                crossings.push(json!({"kind": kind, "pool": u.pool.name, "from": from, "to": level, "percent": percent}));
            }
            ipam::set_capacity_level(&self.db, tenant, u.pool.id, level, percent, self.now())
                .await?;
        }
        Ok(json!({ "pools": pools, "crossings": crossings }))
    }

    /// Releases expired reservations (first in the tenant's IPAM backend,
    /// then the records, each audited in the same transaction) and tells
    /// each owner, once.
    async fn reservations(&self, req: &StepRequest) -> Result<Value> {
        let tenant = req.tenant_id.as_str();
        let key = &req.idempotency_key;
        let now = self.now();
        let backend = self.deps.ipam.for_tenant(tenant);
        reservations::unreserve_expired(&self.db, backend.as_ref(), tenant, now).await?;
        ipam::expire_reservations_audited(&self.db, tenant, key, now).await?;
        let audit = ipam::audit_of(&self.db, tenant, key).await?;
        let mut expired = Vec::with_capacity(audit.len());
        for a in &audit {
            if a.notified_at.is_none() {
                self.deps
                    .notifier
                    .notify(&Notification {
                        id: format!("{key}:{}", a.record_id),
                        kind: NotificationKind::ReservationExpired,
                        tenant_id: a.tenant_id.clone(),
                        at: a.at,
                        data: json!({
                            "subscriber_id": a.subscriber_id,
                            "address": a.address,
                            "record_id": a.record_id,
                        }),
                    })
                    .await?;
                ipam::mark_audit_notified(&self.db, tenant, a.id, self.now()).await?;
            }
            expired.push(json!({"subscriber_id": a.subscriber_id, "address": a.address, "record_id": a.record_id}));
        }
        Ok(json!({ "reservations_expired": expired.len(), "expired": expired }))
    }
}

/// The job a handler runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Job {
    ReportLeaks,
    Cleanup,
    Metrics,
    Capacity,
    Reservations,
    Retention,
}

struct JobHandler {
    m: Arc<Maintenance>,
    job: Job,
}

#[async_trait]
impl StepHandler for JobHandler {
    async fn call(&self, req: StepRequest) -> std::result::Result<StepOutput, StepError> {
        let m = &self.m;
        let v = match self.job {
            Job::ReportLeaks => m.report_leaks(&req).await,
            Job::Cleanup => m
                .cleanup(&req)
                .await
                .and_then(|c| Ok(serde_json::to_value(c)?)),
            Job::Metrics => m.metrics(&req).await,
            Job::Capacity => m.capacity(&req).await,
            Job::Reservations => m.reservations(&req).await,
            Job::Retention => m
                .retention(&req)
                .await
                .and_then(|c| Ok(serde_json::to_value(c)?)),
        }?;
        Ok(output(v))
    }
}

/// Registers the maintenance handlers (those of [`HANDLERS`] that run a
/// [`Job`]); `runs` is the engine's store, which `run_retention` deletes
/// runs and fires through.
pub fn register(
    registry: &mut Registry,
    db: DomainDb,
    deps: DomainDeps,
    runs: Option<Arc<dyn RetentionStore>>,
) {
    let m = Arc::new(Maintenance { db, deps, runs });
    for handler in HANDLERS {
        if let Run::Maintenance(job) = handler.run {
            registry.register(handler.name, Arc::new(JobHandler { m: m.clone(), job }));
        }
    }
}

/// One pool's use, as stored in a lifecycle snapshot.
fn pool_summary(u: &PoolUsage) -> Value {
    json!({
        "pool": u.pool.name,
        "family": u.pool.family,
        "capacity": u.capacity(),
        "in_use": u.in_use,
        "utilization": u.percent() / 100.0,
    })
}
