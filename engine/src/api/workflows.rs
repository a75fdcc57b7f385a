//! `sagaflow.v1.WorkflowService`.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use prost::Message;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::workflow_service_server::WorkflowService;
use tonic::{Request, Response, Status};

mod bulk;

use super::audit::Audit;
use super::auth::{Authenticator, Principal, Role};
use super::{ApiOptions, check_text, convert, history, listing, run_id};
use crate::Engine;
use crate::ids::RunId;
use crate::run::OperatorAction;
use crate::runtime::engine::{SignalRequest, StartRequest};
use crate::store::RunRecord;

/// The WorkflowService implementation.
#[derive(Clone)]
pub struct WorkflowApi {
    engine: Engine,
    auth: Arc<Authenticator>,
    opts: ApiOptions,
    /// One permit per open WatchWorkflow stream.
    watches: Arc<tokio::sync::Semaphore>,
}

impl WorkflowApi {
    pub fn new(engine: Engine, auth: Arc<Authenticator>, opts: ApiOptions) -> Self {
        let watches = Arc::new(tokio::sync::Semaphore::new(opts.max_watches));
        Self {
            engine,
            auth,
            opts,
            watches,
        }
    }

    /// The tonic service, with the payload limit applied to decoding.
    pub fn into_service(self) -> pb::workflow_service_server::WorkflowServiceServer<Self> {
        let limit = self.opts.max_request_bytes();
        pb::workflow_service_server::WorkflowServiceServer::new(self)
            .max_decoding_message_size(limit)
    }

    /// The limits this service enforces.
    pub fn options(&self) -> &ApiOptions {
        &self.opts
    }

    fn principal<T>(&self, req: &Request<T>, need: Role) -> Result<Principal, Status> {
        self.auth.authorize(req.metadata(), need)
    }

    fn payload(
        &self,
        field: &str,
        s: Option<&prost_types::Struct>,
    ) -> Result<Option<serde_json::Value>, Status> {
        let Some(s) = s else { return Ok(None) };
        let len = s.encoded_len();
        if len > self.opts.max_payload_bytes {
            return Err(Status::resource_exhausted(format!(
                "{field} is {len} bytes; the limit is {} bytes",
                self.opts.max_payload_bytes
            )));
        }
        convert::struct_to_json(s).map(Some)
    }

    async fn to_proto(&self, run: &RunRecord) -> Result<pb::Workflow, Status> {
        let def = self.engine.definition_of(run).await.ok();
        Ok(convert::workflow(run, def.as_deref()))
    }

    async fn act(
        &self,
        p: &Principal,
        id: RunId,
        action: OperatorAction,
        reason: &str,
    ) -> Result<Response<pb::Workflow>, Status> {
        check_text("reason", reason, 1024)?;
        let run = self
            .engine
            .act(&p.tenant, id, action, &p.name, reason)
            .await
            .map_err(convert::status)?;
        Ok(Response::new(self.to_proto(&run).await?))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::WorkflowEvent, Status>> + Send>>;

#[tonic::async_trait]
impl WorkflowService for WorkflowApi {
    async fn start_workflow(
        &self,
        request: Request<pb::StartWorkflowRequest>,
    ) -> Result<Response<pb::StartWorkflowResponse>, Status> {
        let p = self.principal(&request, Role::Crm)?;
        let traceparent = request
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 64)
            .map(str::to_owned);
        let r = request.into_inner();
        check_text("workflow_name", &r.workflow_name, 100)?;
        if r.workflow_name.is_empty() {
            return Err(Status::invalid_argument("workflow_name is required"));
        }
        check_text("idempotency_key", &r.idempotency_key, 256)?;
        let input = self
            .payload("input", r.input.as_ref())?
            .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
        let started = self
            .engine
            .start(StartRequest {
                tenant_id: p.tenant.clone(),
                workflow_name: r.workflow_name,
                workflow_version: r.workflow_version,
                input,
                idempotency_key: (!r.idempotency_key.is_empty()).then_some(r.idempotency_key),
                schedule_id: None,
                traceparent,
                actor: p.name.clone(),
            })
            .await
            .map_err(convert::status)?;
        Ok(Response::new(pb::StartWorkflowResponse {
            workflow: Some(self.to_proto(&started.run).await?),
            created: started.created,
        }))
    }

    async fn get_workflow(
        &self,
        request: Request<pb::GetWorkflowRequest>,
    ) -> Result<Response<pb::Workflow>, Status> {
        let p = self.principal(&request, Role::Crm)?;
        let id = run_id("id", &request.get_ref().id)?;
        let run = self
            .engine
            .get(&p.tenant, id)
            .await
            .map_err(convert::status)?;
        Ok(Response::new(self.to_proto(&run).await?))
    }

    async fn list_workflows(
        &self,
        request: Request<pb::ListWorkflowsRequest>,
    ) -> Result<Response<pb::ListWorkflowsResponse>, Status> {
        let p = self.principal(&request, Role::Crm)?;
        let r = request.into_inner();
        if r.page_size > 1000 {
            return Err(Status::invalid_argument(format!(
                "page_size must be at most 1000 (0 means 50), not {}",
                r.page_size
            )));
        }
        let limit = if r.page_size == 0 { 50 } else { r.page_size };
        let full = listing::full_view(&r)?;
        let filter = listing::run_filter(&self.engine, &r, limit + 1).await?;
        let mut runs = self
            .engine
            .list(&p.tenant, &filter)
            .await
            .map_err(convert::status)?;
        let more = runs.len() > limit as usize;
        runs.truncate(limit as usize);
        let next_page_token = if more {
            runs.last()
                .map(listing::encode_page_token)
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListWorkflowsResponse {
            workflows: listing::workflows(&self.engine, &runs, full).await,
            next_page_token,
        }))
    }

    type WatchWorkflowStream = EventStream;

    async fn watch_workflow(
        &self,
        request: Request<pb::WatchWorkflowRequest>,
    ) -> Result<Response<Self::WatchWorkflowStream>, Status> {
        let p = self.principal(&request, Role::Crm)?;
        let id = run_id("id", &request.get_ref().id)?;
        // Held by the stream's task: given back when the stream ends.
        let permit = self.watches.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{} watches are open, the most this server allows; close one or retry later",
                self.opts.max_watches
            ))
        })?;
        // Fails with NOT_FOUND before the stream opens.
        self.engine
            .get(&p.tenant, id)
            .await
            .map_err(convert::status)?;
        let engine = self.engine.clone();
        let poll = self.opts.watch_poll;
        let mut changes = engine.subscribe_changes();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let _permit = permit;
            let mut after = 0;
            loop {
                let events = match engine.events(&p.tenant, id, after).await {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = tx.send(Err(convert::status(e))).await;
                        return;
                    }
                };
                let mut terminal = false;
                for e in &events {
                    after = e.seq;
                    terminal = e.run_state.is_terminal();
                    if tx.send(Ok(convert::event(e))).await.is_err() {
                        return; // the client went away
                    }
                }
                if terminal {
                    return;
                }
                // Wait for a change of this run here, or poll for changes
                // made by other replicas.
                let wait = async {
                    loop {
                        match changes.recv().await {
                            Ok(changed) if changed == id => return,
                            Ok(_) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                std::future::pending::<()>().await
                            }
                        }
                    }
                };
                tokio::select! {
                    _ = wait => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_workflow_history(
        &self,
        request: Request<pb::GetWorkflowHistoryRequest>,
    ) -> Result<Response<pb::GetWorkflowHistoryResponse>, Status> {
        let p = self.principal(&request, Role::Crm)?;
        let id = run_id("id", &request.get_ref().id)?;
        let events = self
            .engine
            .events(&p.tenant, id, 0)
            .await
            .map_err(convert::status)?;
        Ok(Response::new(pb::GetWorkflowHistoryResponse {
            events: events.iter().map(convert::event).collect(),
        }))
    }

    async fn list_workflow_history(
        &self,
        request: Request<pb::ListWorkflowHistoryRequest>,
    ) -> Result<Response<pb::ListWorkflowHistoryResponse>, Status> {
        let p = self.principal(&request, Role::Crm)?;
        let page = history::page(&self.engine, &p.tenant, request.get_ref()).await?;
        Ok(Response::new(page))
    }

    async fn retry_workflow(
        &self,
        request: Request<pb::RetryWorkflowRequest>,
    ) -> Result<Response<pb::Workflow>, Status> {
        let audit = Audit::begin(
            &self.auth,
            request.metadata(),
            "retry_workflow",
            &request.get_ref().id,
        )
        .with_reason(&request.get_ref().reason);
        let result = async {
            let p = self.principal(&request, Role::Operator)?;
            let r = request.into_inner();
            let id = run_id("id", &r.id)?;
            check_text("from_step", &r.from_step, 100)?;
            let patch = self
                .payload("context_patch", r.context_patch.as_ref())?
                .and_then(|v| v.as_object().cloned());
            let action = OperatorAction::Retry {
                from_step: (!r.from_step.is_empty()).then_some(r.from_step),
                context_patch: patch,
            };
            self.act(&p, id, action, &r.reason).await
        }
        .await;
        audit.finish(result)
    }

    async fn compensate_workflow(
        &self,
        request: Request<pb::CompensateWorkflowRequest>,
    ) -> Result<Response<pb::Workflow>, Status> {
        let audit = Audit::begin(
            &self.auth,
            request.metadata(),
            "compensate_workflow",
            &request.get_ref().id,
        )
        .with_reason(&request.get_ref().reason);
        let result = async {
            let p = self.principal(&request, Role::Operator)?;
            let r = request.into_inner();
            let id = run_id("id", &r.id)?;
            self.act(&p, id, OperatorAction::Compensate, &r.reason)
                .await
        }
        .await;
        audit.finish(result)
    }

    async fn cancel_workflow(
        &self,
        request: Request<pb::CancelWorkflowRequest>,
    ) -> Result<Response<pb::Workflow>, Status> {
        let audit = Audit::begin(
            &self.auth,
            request.metadata(),
            "cancel_workflow",
            &request.get_ref().id,
        )
        .with_reason(&request.get_ref().reason);
        let result = async {
            let p = self.principal(&request, Role::Operator)?;
            let r = request.into_inner();
            let id = run_id("id", &r.id)?;
            self.act(
                &p,
                id,
                OperatorAction::Cancel {
                    compensate: r.compensate,
                },
                &r.reason,
            )
            .await
        }
        .await;
        audit.finish(result)
    }

    async fn signal_workflow(
        &self,
        request: Request<pb::SignalWorkflowRequest>,
    ) -> Result<Response<pb::SignalWorkflowResponse>, Status> {
        let p = self.principal(&request, Role::Crm)?;
        let r = request.into_inner();
        let id = run_id("id", &r.id)?;
        check_text("signal_name", &r.signal_name, 100)?;
        if r.signal_name.is_empty() {
            return Err(Status::invalid_argument(
                "signal_name is required, e.g. \"cpe_inform\"",
            ));
        }
        check_text("idempotency_key", &r.idempotency_key, 256)?;
        let payload = self
            .payload("payload", r.payload.as_ref())?
            .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
        let done = self
            .engine
            .signal(SignalRequest {
                tenant_id: p.tenant.clone(),
                run_id: id,
                name: r.signal_name,
                payload,
                idempotency_key: r.idempotency_key,
                actor: p.name.clone(),
            })
            .await
            .map_err(convert::status)?;
        Ok(Response::new(pb::SignalWorkflowResponse {
            workflow: Some(self.to_proto(&done.run).await?),
            delivered: done.delivered,
        }))
    }

    async fn rewind_workflow(
        &self,
        request: Request<pb::RewindWorkflowRequest>,
    ) -> Result<Response<pb::Workflow>, Status> {
        let audit = Audit::begin(
            &self.auth,
            request.metadata(),
            "rewind_workflow",
            &request.get_ref().id,
        )
        .with_reason(&request.get_ref().reason);
        let result = async {
            let p = self.principal(&request, Role::Operator)?;
            let r = request.into_inner();
            let id = run_id("id", &r.id)?;
            check_text("to_step", &r.to_step, 100)?;
            if r.to_step.is_empty() {
                return Err(Status::invalid_argument(
                    "to_step is required: name the step to go back to",
                ));
            }
            if r.reason.trim().is_empty() {
                return Err(Status::invalid_argument(
                    "reason is required: say why the run goes back (e.g. the ticket)",
                ));
            }
            let patch = self
                .payload("context_patch", r.context_patch.as_ref())?
                .and_then(|v| v.as_object().cloned());
            let action = OperatorAction::Rewind {
                to_step: r.to_step,
                context_patch: patch,
            };
            self.act(&p, id, action, &r.reason).await
        }
        .await;
        audit.finish(result)
    }

    async fn bulk_operate(
        &self,
        request: Request<pb::BulkOperateRequest>,
    ) -> Result<Response<pb::BulkOperateResponse>, Status> {
        self.bulk(request).await
    }

    async fn skip_step(
        &self,
        request: Request<pb::SkipStepRequest>,
    ) -> Result<Response<pb::Workflow>, Status> {
        let audit = Audit::begin(
            &self.auth,
            request.metadata(),
            "skip_step",
            &request.get_ref().id,
        )
        .with_reason(&request.get_ref().reason);
        let result = async {
            let p = self.principal(&request, Role::Operator)?;
            let r = request.into_inner();
            let id = run_id("id", &r.id)?;
            check_text("step", &r.step, 100)?;
            if r.step.is_empty() {
                return Err(Status::invalid_argument(
                    "step is required: name the run's failed step",
                ));
            }
            let output = self
                .payload("output", r.output.as_ref())?
                .and_then(|v| v.as_object().cloned());
            self.act(
                &p,
                id,
                OperatorAction::Skip {
                    step: r.step,
                    output,
                },
                &r.reason,
            )
            .await
        }
        .await;
        audit.finish(result)
    }

    async fn list_workflow_definitions(
        &self,
        request: Request<pb::ListWorkflowDefinitionsRequest>,
    ) -> Result<Response<pb::ListWorkflowDefinitionsResponse>, Status> {
        self.principal(&request, Role::Crm)?;
        Ok(Response::new(pb::ListWorkflowDefinitionsResponse {
            definitions: self
                .engine
                .definitions()
                .all()
                .map(|d| convert::definition(d))
                .collect(),
        }))
    }
}
