//! The ONU/OLT step handlers: `onu.activate` and `onu.deactivate` (its
//! undo, and the deprovisioning step).

use sagaflow_engine::handler::StepRequest;
use serde_json::json;

use super::OnuActivation;
use crate::context::{StepResult, forward_key, output, owner, profile_numbers, subscriber_id};
use crate::deps::Isp;

impl Isp {
    pub(crate) async fn onu_activate(&self, req: StepRequest) -> StepResult {
        let (download_kbps, upload_kbps, service_vlan) = profile_numbers(&req)?;
        let act = OnuActivation {
            subscriber_id: subscriber_id(&req)?,
            plan: req.context_str("/plan")?.to_owned(),
            download_kbps,
            upload_kbps,
            service_vlan,
        };
        let serial = req.context_str("/onu_serial")?;
        self.deps
            .onu
            .activate(req.tenant_id.as_str(), &req.idempotency_key, serial, &act)
            .await?;
        Ok(output(json!({ "onu_state": "ACTIVE" })))
    }

    /// As the undo of `onu.activate`: deactivates only the activation that
    /// step's request made (`created_by`), also when its outcome is
    /// unknown. As a forward step (deprovisioning): deactivates the ONU if
    /// it is active for this subscriber.
    pub(crate) async fn onu_deactivate(&self, req: StepRequest) -> StepResult {
        let serial = req.context_str("/onu_serial")?;
        let (created_by, sub) = (forward_key(&req), subscriber_id(&req)?);
        let changed = self
            .deps
            .onu
            .deactivate(
                req.tenant_id.as_str(),
                &req.idempotency_key,
                serial,
                owner(&req, &created_by, &sub),
            )
            .await?;
        Ok(output(
            json!({ "onu_state": "INACTIVE", "onu_changed": changed }),
        ))
    }
}
