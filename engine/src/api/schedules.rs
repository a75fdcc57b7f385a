//! `sagaflow.v1.ScheduleService`: cron schedules, for the admin role.

use std::sync::Arc;

use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::schedule_service_server::ScheduleService;
use tonic::{Request, Response, Status};

use super::audit::Audit;
use super::auth::{Authenticator, Role};
use super::convert::{catchup, overlap, schedule, schedule_id};
use super::{check_text, convert};
use crate::Engine;
use crate::schedule::NewSchedule;

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
