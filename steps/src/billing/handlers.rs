//! The billing step handlers: `billing.create_service`, its undo
//! `billing.delete_service`, `billing.suspend` and `billing.resume`.

use sagaflow_engine::handler::{StepOutput, StepRequest};
use serde_json::json;

use super::NewService;
use crate::context::{StepResult, forward_key, output, subscriber_id};
use crate::deps::Isp;

impl Isp {
    pub(crate) async fn billing_create(&self, req: StepRequest) -> StepResult {
        let svc = NewService {
            subscriber_id: subscriber_id(&req)?,
            customer_id: req.context_str("/customer/id")?.to_owned(),
            plan: req.context_str("/plan")?.to_owned(),
        };
        let created = self
            .deps
            .billing
            .create_service(req.tenant_id.as_str(), &req.idempotency_key, &svc)
            .await?;
        Ok(output(
            json!({ "billing_service_id": created.service_id, "billing_state": created.state }),
        ))
    }

    /// The undo of `billing_create`: deletes only the service that step's
    /// request created (its idempotency key is `<run>:<step>`), never one
    /// the subscriber had before, also when the create's outcome is unknown.
    pub(crate) async fn billing_delete(&self, req: StepRequest) -> StepResult {
        let created_by = forward_key(&req);
        self.deps
            .billing
            .delete_service(
                req.tenant_id.as_str(),
                &req.idempotency_key,
                &subscriber_id(&req)?,
                &created_by,
            )
            .await?;
        Ok(StepOutput::new())
    }

    pub(crate) async fn billing_suspend(&self, req: StepRequest) -> StepResult {
        let svc = self
            .deps
            .billing
            .suspend(
                req.tenant_id.as_str(),
                &req.idempotency_key,
                &subscriber_id(&req)?,
            )
            .await?;
        Ok(output(json!({ "billing_state": svc.state })))
    }

    pub(crate) async fn billing_resume(&self, req: StepRequest) -> StepResult {
        let svc = self
            .deps
            .billing
            .resume(
                req.tenant_id.as_str(),
                &req.idempotency_key,
                &subscriber_id(&req)?,
            )
            .await?;
        Ok(output(json!({ "billing_state": svc.state })))
    }
}
