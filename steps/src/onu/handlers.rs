//! The ONU/OLT step handlers: `onu.activate`, `onu.await_online` (waits
//! until the activated ONU has ranged) and `onu.deactivate` (the undo of
//! the activation, and the deprovisioning step).

use sagaflow_engine::handler::{StepError, StepRequest};
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

    /// Whether the ONU has ranged: "not ready" (look again after
    /// `domain.onu_online_poll_ms`) while the OLT reports it offline; the
    /// step's `wait_timeout_ms` bounds the wait. It has no undo of its
    /// own: `onu.activate`'s undoes the activation.
    pub(crate) async fn onu_await_online(&self, req: StepRequest) -> StepResult {
        let serial = req.context_str("/onu_serial")?;
        let link = self
            .deps
            .onu
            .link(req.tenant_id.as_str(), &req.idempotency_key, serial)
            .await?;
        if link.online {
            Ok(output(json!({ "onu_online": true })))
        } else {
            Err(StepError::not_ready(
                self.deps.onu_online_poll,
                format!("ONU {serial} has not ranged yet"),
            ))
        }
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
