//! The schedule API of [`Engine`]: create, read, pause, resume, trigger and
//! delete schedules (tenant-scoped), seed the default ones, and start the
//! scheduler.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::scheduler::{self, SchedulerHandle, SchedulerOptions};
use super::seeds::SeedSchedule;
use super::{
    CatchupPolicy, CronSpec, FireOutcome, FireRecord, OverlapPolicy, Schedule, ScheduleId,
    check_name,
};
use crate::Engine;
use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::runtime::engine::{StartRequest, Started};
use crate::store::{FireBatch, FireBatchAck, FireWrite, ScheduleChange};

/// A schedule to create.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    pub tenant_id: TenantId,
    /// Unique per tenant, e.g. `ipv6-lifecycle-cleanup`.
    pub name: String,
    /// Five fields, e.g. `0 2 * * *`.
    pub cron: String,
    /// IANA name; empty means UTC.
    pub timezone: String,
    pub workflow_name: String,
    /// The input of every run (a JSON object), checked like a start's.
    pub input: Value,
    pub overlap_policy: OverlapPolicy,
    pub catchup_policy: CatchupPolicy,
    /// Created paused: it fires once resumed.
    pub paused: bool,
}

impl NewSchedule {
    /// A schedule with an empty input, in UTC, with the default policies
    /// (overlap SKIP, catch-up ONE).
    pub fn new(tenant: &TenantId, name: &str, cron: &str, workflow: &str) -> Self {
        Self {
            tenant_id: tenant.clone(),
            name: name.to_owned(),
            cron: cron.to_owned(),
            timezone: String::new(),
            workflow_name: workflow.to_owned(),
            input: json!({}),
            overlap_policy: OverlapPolicy::default(),
            catchup_policy: CatchupPolicy::default(),
            paused: false,
        }
    }
}

/// What [`Engine::seed_schedules`] did, by schedule name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// Created now.
    pub created: Vec<String>,
    /// Seeded before (possibly edited or deleted since): left alone.
    pub kept: Vec<String>,
    /// Their workflow is not loaded in this engine: not seeded.
    pub not_loaded: Vec<String>,
}

/// How many times a conditional write is retried on a schedule that keeps
/// changing before the caller is told to retry.
const ATTEMPTS: usize = 8;

impl Engine {
    /// Creates a schedule after checking its name, cron expression, time
    /// zone, workflow and input (the input as a start of the workflow
    /// would check it).
    pub async fn create_schedule(&self, req: NewSchedule) -> Result<Schedule> {
        let s = self.new_schedule(req)?;
        if !self.store().insert_schedule(&s).await? {
            return Err(Error::ScheduleExists(s.name));
        }
        self.get_schedule(&s.tenant_id, s.id).await
    }

    pub async fn get_schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<Schedule> {
        self.store()
            .get_schedule(tenant, id)
            .await?
            .ok_or(Error::ScheduleNotFound(id))
    }

    /// The tenant's schedules, by name.
    pub async fn list_schedules(&self, tenant: &TenantId) -> Result<Vec<Schedule>> {
        Ok(self.store().list_schedules(tenant).await?)
    }

    /// Pauses a schedule: it does not fire until resumed, and the fires that
    /// fall meanwhile are not caught up.
    pub async fn pause_schedule(
        &self,
        tenant: &TenantId,
        id: ScheduleId,
        reason: &str,
    ) -> Result<Schedule> {
        self.set_paused(tenant, id, Some(reason)).await
    }

    /// Resumes a paused schedule from now on: its next fire is the first
    /// cron time after now.
    pub async fn resume_schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<Schedule> {
        self.set_paused(tenant, id, None).await
    }

    async fn set_paused(
        &self,
        tenant: &TenantId,
        id: ScheduleId,
        pause: Option<&str>,
    ) -> Result<Schedule> {
        for _ in 0..ATTEMPTS {
            let s = self.get_schedule(tenant, id).await?;
            let now = self.clock().now();
            let next_fire_at = match pause {
                Some(_) => s.next_fire_at,
                None if !s.paused => return Ok(s),
                None => CronSpec::parse(&s.cron, &s.timezone)?.next_after(now),
            };
            let change = ScheduleChange {
                tenant_id: tenant.clone(),
                id,
                expected_revision: s.revision,
                now,
                paused: pause.is_some(),
                pause_reason: pause.map(str::to_owned).filter(|r| !r.is_empty()),
                next_fire_at,
            };
            if self.store().change_schedule(&change).await? {
                tracing::info!(schedule = %s.name, tenant = %tenant, paused = change.paused,
                    reason = change.pause_reason.as_deref().unwrap_or(""), "schedule paused or resumed");
                return self.get_schedule(tenant, id).await;
            }
        }
        Err(Error::ScheduleContention(id))
    }

    /// Starts a run of the schedule now, outside its cron rhythm; the next
    /// regular fire is unchanged. Under overlap SKIP or BUFFER_ONE a trigger
    /// while the schedule's last run is active is refused
    /// (`FailedPrecondition`). A paused schedule can be triggered.
    pub async fn trigger_schedule(
        &self,
        tenant: &TenantId,
        id: ScheduleId,
        actor: &str,
    ) -> Result<Started> {
        for _ in 0..ATTEMPTS {
            let s = self.get_schedule(tenant, id).await?;
            if s.overlap_policy != OverlapPolicy::Allow && s.last_run_active() {
                return Err(Error::FailedPrecondition(format!(
                    "schedule {:?} has an active run {} and its overlap policy is {}",
                    s.name,
                    s.last_workflow_id
                        .map(|r| r.to_string())
                        .unwrap_or_default(),
                    s.overlap_policy
                )));
            }
            let mut run = self.prepare_run(StartRequest {
                schedule_id: Some(id),
                actor: actor.to_owned(),
                ..StartRequest::new(tenant.as_str(), &s.workflow_name, s.input.clone())
            })?;
            run.idempotency_key = Some(format!("schedule:{id}:trigger:{}", run.id));
            let run_id = run.id;
            let key = run.concurrency.as_ref().map(|c| c.0.clone());
            let batch = FireBatch {
                tenant_id: tenant.clone(),
                schedule_id: id,
                expected_revision: s.revision,
                now: run.now,
                next_fire_at: s.next_fire_at,
                buffered_fire_at: s.buffered_fire_at,
                fires: vec![FireWrite {
                    scheduled_time: run.now,
                    outcome: FireOutcome::Started,
                    detail: Some(format!("triggered by {actor}")),
                    run: Some(run),
                    from_buffer: false,
                    manual: true,
                }],
            };
            match self.store().apply_fires(&batch).await? {
                FireBatchAck::Applied(_) => {
                    self.wake();
                    tracing::info!(schedule = %s.name, tenant = %tenant, run_id = %run_id, actor, "schedule triggered");
                    let run = self.get(tenant, run_id).await?;
                    return Ok(Started { run, created: true });
                }
                FireBatchAck::Conflict => continue,
                FireBatchAck::KeyHeld { holder } => {
                    return Err(Error::ConcurrencyKeyHeld {
                        key: key.unwrap_or_default(),
                        holder,
                    });
                }
            }
        }
        Err(Error::ScheduleContention(id))
    }

    /// Deletes a schedule and its fire records. Runs it started stay.
    pub async fn delete_schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<()> {
        if self.store().delete_schedule(tenant, id).await? {
            Ok(())
        } else {
            Err(Error::ScheduleNotFound(id))
        }
    }

    /// The schedule's recorded fires scheduled after `after`, oldest first.
    pub async fn schedule_fires(
        &self,
        tenant: &TenantId,
        id: ScheduleId,
        after: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<FireRecord>> {
        self.store()
            .schedule_fires(tenant, id, after, limit)
            .await?
            .ok_or(Error::ScheduleNotFound(id))
    }

    /// Creates each default schedule whose workflow is loaded, once: a seed
    /// whose name was seeded for its tenant before is left alone, so an
    /// operator's pause or deletion survives restarts, and replicas starting
    /// together create it once.
    pub async fn seed_schedules(&self, seeds: &[SeedSchedule]) -> Result<SeedReport> {
        let mut report = SeedReport::default();
        for seed in seeds {
            let req = &seed.schedule;
            if self.definitions().resolve(&req.workflow_name, 0).is_none() {
                report.not_loaded.push(req.name.clone());
                continue;
            }
            let s = self.new_schedule(req.clone())?;
            if self.store().seed_schedule(&s).await? {
                tracing::info!(schedule = %s.name, tenant = %s.tenant_id, cron = %s.cron, "default schedule created");
                report.created.push(s.name);
            } else {
                report.kept.push(s.name);
            }
        }
        Ok(report)
    }

    /// Starts this replica's scheduler. Its first pass runs at once (a
    /// restarted replica catches up without waiting for the poll).
    pub fn start_scheduler(&self, opts: SchedulerOptions) -> SchedulerHandle {
        scheduler::spawn(self.clone(), opts)
    }

    /// Checks a schedule to create and builds its record.
    fn new_schedule(&self, req: NewSchedule) -> Result<Schedule> {
        check_name(&req.name)?;
        let name = req.name.trim();
        let spec = CronSpec::parse(&req.cron, &req.timezone)?;
        self.prepare_run(StartRequest::new(
            req.tenant_id.as_str(),
            &req.workflow_name,
            req.input.clone(),
        ))?;
        let now = self.clock().now();
        Ok(Schedule {
            id: ScheduleId::new(),
            tenant_id: req.tenant_id,
            name: name.to_owned(),
            cron: spec.expr().to_owned(),
            timezone: spec.timezone().to_owned(),
            workflow_name: req.workflow_name,
            input: req.input,
            paused: req.paused,
            pause_reason: None,
            overlap_policy: req.overlap_policy,
            catchup_policy: req.catchup_policy,
            next_fire_at: spec.next_after(now),
            last_fire_at: None,
            last_workflow_id: None,
            buffered_fire_at: None,
            revision: 0,
            created_at: now,
            updated_at: now,
            last_run_state: None,
        })
    }
}
