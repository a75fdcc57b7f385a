//! `sagaflow.v1.ScheduleService`: cron schedules, for the admin role.

use std::sync::Arc;

use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::schedule_service_server::ScheduleService;
use tonic::{Request, Response, Status};

use super::audit::Audit;
use super::auth::{Authenticator, Role};
use super::{check_text, convert};
use crate::Engine;
use crate::schedule::{CatchupPolicy, NewSchedule, OverlapPolicy, Schedule, ScheduleId};

/// The ScheduleService implementation.
#[derive(Clone)]
pub struct ScheduleApi {
    engine: Engine,
    auth: Arc<Authenticator>,
    max_payload_bytes: usize,
}

impl ScheduleApi {
    pub fn new(engine: Engine, auth: Arc<Authenticator>, max_payload_bytes: usize) -> Self {
        Self {
            engine,
            auth,
            max_payload_bytes,
        }
    }

    pub fn into_service(self) -> pb::schedule_service_server::ScheduleServiceServer<Self> {
        pb::schedule_service_server::ScheduleServiceServer::new(self)
    }
}

fn schedule_id(s: &str) -> Result<ScheduleId, Status> {
    if s.len() == 36
        && let Ok(id) = s.parse()
    {
        return Ok(id);
    }
    let shown: String = s.chars().take(40).collect();
    Err(Status::invalid_argument(format!(
        "id must be a schedule id (a UUID such as 0190a5d2-ac96-7d4b-bcce-b302099a8057), not {shown:?}"
    )))
}

fn overlap(n: i32) -> Result<OverlapPolicy, Status> {
    match pb::OverlapPolicy::try_from(n) {
        Ok(pb::OverlapPolicy::Unspecified | pb::OverlapPolicy::Skip) => Ok(OverlapPolicy::Skip),
        Ok(pb::OverlapPolicy::Allow) => Ok(OverlapPolicy::Allow),
        Ok(pb::OverlapPolicy::BufferOne) => Ok(OverlapPolicy::BufferOne),
        Err(_) => Err(Status::invalid_argument(format!(
            "{n} is not an overlap policy"
        ))),
    }
}

fn catchup(n: i32) -> Result<CatchupPolicy, Status> {
    match pb::CatchupPolicy::try_from(n) {
        Ok(pb::CatchupPolicy::Unspecified | pb::CatchupPolicy::One) => Ok(CatchupPolicy::One),
        Ok(pb::CatchupPolicy::None) => Ok(CatchupPolicy::None),
        Ok(pb::CatchupPolicy::All) => Ok(CatchupPolicy::All),
        Err(_) => Err(Status::invalid_argument(format!(
            "{n} is not a catch-up policy"
        ))),
    }
}

/// A schedule as proto.
pub fn schedule(s: &Schedule) -> pb::Schedule {
    pb::Schedule {
        id: s.id.to_string(),
        name: s.name.clone(),
        cron: s.cron.clone(),
        timezone: s.timezone.clone(),
        workflow_name: s.workflow_name.clone(),
        input: Some(convert::json_to_struct(&s.input)),
        paused: s.paused,
        overlap_policy: match s.overlap_policy {
            OverlapPolicy::Skip => pb::OverlapPolicy::Skip,
            OverlapPolicy::Allow => pb::OverlapPolicy::Allow,
            OverlapPolicy::BufferOne => pb::OverlapPolicy::BufferOne,
        } as i32,
        catchup_policy: match s.catchup_policy {
            CatchupPolicy::None => pb::CatchupPolicy::None,
            CatchupPolicy::One => pb::CatchupPolicy::One,
            CatchupPolicy::All => pb::CatchupPolicy::All,
        } as i32,
        next_fire_at: s.next_fire_at.map(convert::timestamp),
        last_fire_at: s.last_fire_at.map(convert::timestamp),
        last_workflow_id: s
            .last_workflow_id
            .map(|r| r.to_string())
            .unwrap_or_default(),
        created_at: Some(convert::timestamp(s.created_at)),
    }
}

#[tonic::async_trait]
impl ScheduleService for ScheduleApi {
    async fn create_schedule(
        &self,
        request: Request<pb::CreateScheduleRequest>,
    ) -> Result<Response<pb::Schedule>, Status> {
        let audit = Audit::begin(
            &self.auth,
            request.metadata(),
            "create_schedule",
            &request.get_ref().name,
        );
        let result = async {
            let p = self.auth.authorize(request.metadata(), Role::Admin)?;
            let r = request.into_inner();
            check_text("name", &r.name, 200)?;
            check_text("cron", &r.cron, 200)?;
            check_text("timezone", &r.timezone, 100)?;
            check_text("workflow_name", &r.workflow_name, 100)?;
            let input = match &r.input {
                None => serde_json::json!({}),
                Some(s) => {
                    let len = prost::Message::encoded_len(s);
                    if len > self.max_payload_bytes {
                        return Err(Status::resource_exhausted(format!(
                            "input is {len} bytes; the limit is {} bytes",
                            self.max_payload_bytes
                        )));
                    }
                    convert::struct_to_json(s)?
                }
            };
            let s = self
                .engine
                .create_schedule(NewSchedule {
                    tenant_id: p.tenant,
                    name: r.name,
                    cron: r.cron,
                    timezone: r.timezone,
                    workflow_name: r.workflow_name,
                    input,
                    overlap_policy: overlap(r.overlap_policy)?,
                    catchup_policy: catchup(r.catchup_policy)?,
                    paused: r.paused,
                })
                .await
                .map_err(convert::status)?;
            Ok(Response::new(schedule(&s)))
        }
        .await;
        audit.finish(result)
    }

    async fn get_schedule(
        &self,
        request: Request<pb::GetScheduleRequest>,
    ) -> Result<Response<pb::Schedule>, Status> {
        let p = self.auth.authorize(request.metadata(), Role::Admin)?;
        let id = schedule_id(&request.get_ref().id)?;
        let s = self
            .engine
            .get_schedule(&p.tenant, id)
            .await
            .map_err(convert::status)?;
        Ok(Response::new(schedule(&s)))
    }

    async fn list_schedules(
        &self,
        request: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        let p = self.auth.authorize(request.metadata(), Role::Admin)?;
        let all = self
            .engine
            .list_schedules(&p.tenant)
            .await
            .map_err(convert::status)?;
        Ok(Response::new(pb::ListSchedulesResponse {
            schedules: all.iter().map(schedule).collect(),
        }))
    }

    async fn pause_schedule(
        &self,
        request: Request<pb::PauseScheduleRequest>,
    ) -> Result<Response<pb::Schedule>, Status> {
        let audit = Audit::begin(
            &self.auth,
            request.metadata(),
            "pause_schedule",
            &request.get_ref().id,
        );
        let result = async {
            let p = self.auth.authorize(request.metadata(), Role::Admin)?;
            let r = request.into_inner();
            let id = schedule_id(&r.id)?;
            check_text("reason", &r.reason, 1024)?;
            let s = self
                .engine
                .pause_schedule(&p.tenant, id, &r.reason)
                .await
                .map_err(convert::status)?;
            Ok(Response::new(schedule(&s)))
        }
        .await;
        audit.finish(result)
    }

    async fn resume_schedule(
        &self,
        request: Request<pb::ResumeScheduleRequest>,
    ) -> Result<Response<pb::Schedule>, Status> {
        let audit = Audit::begin(
            &self.auth,
            request.metadata(),
            "resume_schedule",
            &request.get_ref().id,
        );
        let result = async {
            let p = self.auth.authorize(request.metadata(), Role::Admin)?;
            let id = schedule_id(&request.get_ref().id)?;
            let s = self
                .engine
                .resume_schedule(&p.tenant, id)
                .await
                .map_err(convert::status)?;
            Ok(Response::new(schedule(&s)))
        }
        .await;
        audit.finish(result)
    }

    async fn trigger_schedule(
        &self,
        request: Request<pb::TriggerScheduleRequest>,
    ) -> Result<Response<pb::StartWorkflowResponse>, Status> {
        let audit = Audit::begin(
            &self.auth,
            request.metadata(),
            "trigger_schedule",
            &request.get_ref().id,
        );
        let result = async {
            let p = self.auth.authorize(request.metadata(), Role::Admin)?;
            let id = schedule_id(&request.get_ref().id)?;
            let started = self
                .engine
                .trigger_schedule(&p.tenant, id, &p.name)
                .await
                .map_err(convert::status)?;
            let def = self.engine.definition_of(&started.run).await.ok();
            Ok(Response::new(pb::StartWorkflowResponse {
                workflow: Some(convert::workflow(&started.run, def.as_deref())),
                created: started.created,
            }))
        }
        .await;
        audit.finish(result)
    }

    async fn delete_schedule(
        &self,
        request: Request<pb::DeleteScheduleRequest>,
    ) -> Result<Response<pb::DeleteScheduleResponse>, Status> {
        let audit = Audit::begin(
            &self.auth,
            request.metadata(),
            "delete_schedule",
            &request.get_ref().id,
        );
        let result = async {
            let p = self.auth.authorize(request.metadata(), Role::Admin)?;
            let id = schedule_id(&request.get_ref().id)?;
            self.engine
                .delete_schedule(&p.tenant, id)
                .await
                .map_err(convert::status)?;
            Ok(Response::new(pb::DeleteScheduleResponse {}))
        }
        .await;
        audit.finish(result)
    }
}
