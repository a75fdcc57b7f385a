//! BulkOperate: retry, compensate or cancel every run a ListWorkflows
//! filter matches. Each run goes through the single action's own method
//! (same authorization, checks, audit record and history event), at most
//! `bulk_per_second` runs a second, so that a bulk retry after an outage
//! leaves room for new starts; a run the action does not fit is reported
//! with the reason and the others go on.

use std::time::Duration;

use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::workflow_service_server::WorkflowService;
use tonic::{Extensions, Request, Response, Status};

use super::super::audit::{Audit, code_name};
use super::super::auth::Role;
use super::super::{check_text, convert, listing};
use super::WorkflowApi;

/// A single action's request, with the bulk call's metadata (its token).
fn with_meta<T>(meta: &tonic::metadata::MetadataMap, msg: T) -> Request<T> {
    Request::from_parts(meta.clone(), Extensions::default(), msg)
}

/// The most runs one call may name in `max_runs`.
pub const MAX_BULK_RUNS: u32 = 10_000;

impl WorkflowApi {
    pub(super) async fn bulk(
        &self,
        request: Request<pb::BulkOperateRequest>,
    ) -> Result<Response<pb::BulkOperateResponse>, Status> {
        let audit = Audit::begin(&self.auth, request.metadata(), "bulk_operate", "")
            .with_reason(&request.get_ref().reason);
        let result = async {
            let p = self.principal(&request, Role::Operator)?;
            let meta = request.metadata().clone();
            let r = request.into_inner();
            let action = match pb::BulkAction::try_from(r.action) {
                Ok(pb::BulkAction::Unspecified) | Err(_) => {
                    return Err(Status::invalid_argument(
                        "action is required: BULK_ACTION_RETRY, BULK_ACTION_COMPENSATE or BULK_ACTION_CANCEL",
                    ));
                }
                Ok(a) => a,
            };
            if r.max_runs > MAX_BULK_RUNS {
                return Err(Status::invalid_argument(format!(
                    "max_runs must be at most {MAX_BULK_RUNS} (0 means 1000), not {}",
                    r.max_runs
                )));
            }
            check_text("reason", &r.reason, 1024)?;
            if r.context_patch.is_some() && action != pb::BulkAction::Retry {
                return Err(Status::invalid_argument(
                    "context_patch applies to BULK_ACTION_RETRY only",
                ));
            }
            self.payload("context_patch", r.context_patch.as_ref())?;
            let max_runs = if r.max_runs == 0 { 1000 } else { r.max_runs };
            let mut filter = r.filter.unwrap_or_default();
            filter.page_token.clear();
            let f = listing::run_filter(&self.engine, &filter, max_runs).await?;
            let runs = self
                .engine
                .list(&p.tenant, &f)
                .await
                .map_err(convert::status)?;
            let ids: Vec<String> = runs.iter().map(|r| r.id.to_string()).collect();
            let mut answer = pb::BulkOperateResponse {
                matched: ids.len() as u32,
                workflow_ids: ids.clone(),
                applied: 0,
                refused: Vec::new(),
            };
            if r.dry_run {
                return Ok(Response::new(answer));
            }
            let mut pace = tokio::time::interval(Duration::from_secs_f64(
                1.0 / f64::from(self.opts.bulk_per_second.max(1)),
            ));
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for id in ids {
                pace.tick().await;
                let done = match action {
                    pb::BulkAction::Retry => self
                        .retry_workflow(with_meta(&meta, pb::RetryWorkflowRequest {
                            id: id.clone(),
                            from_step: String::new(),
                            context_patch: r.context_patch.clone(),
                            reason: r.reason.clone(),
                        }))
                        .await
                        .map(drop),
                    pb::BulkAction::Compensate => self
                        .compensate_workflow(with_meta(&meta, pb::CompensateWorkflowRequest {
                            id: id.clone(),
                            reason: r.reason.clone(),
                        }))
                        .await
                        .map(drop),
                    pb::BulkAction::Cancel | pb::BulkAction::Unspecified => self
                        .cancel_workflow(with_meta(&meta, pb::CancelWorkflowRequest {
                            id: id.clone(),
                            compensate: true,
                            reason: r.reason.clone(),
                        }))
                        .await
                        .map(drop),
                };
                match done {
                    Ok(()) => answer.applied += 1,
                    Err(s) => answer.refused.push(pb::BulkRefusal {
                        workflow_id: id,
                        reason: format!("{}: {}", code_name(s.code()), s.message()),
                    }),
                }
            }
            Ok(Response::new(answer))
        }
        .await;
        audit.finish(result)
    }
}
