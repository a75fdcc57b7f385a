//! The CPE step handlers: `cpe.configure` and `cpe.unconfigure` (its undo,
//! and the deprovisioning step), through the TR-069 ACS. The configuration
//! names the run, so that the ACS signals it the CPE's bootstrap inform
//! (`cpe_inform`, the workflow's next step waits for it).

use sagaflow_engine::handler::StepRequest;
use serde_json::json;

use super::{CPE_INFORM, CpeConfig, InformTarget};
use crate::context::{StepResult, forward_key, opt_str, output, owner, subscriber_id};
use crate::deps::Isp;

impl Isp {
    pub(crate) async fn cpe_configure(&self, req: StepRequest) -> StepResult {
        let sub = subscriber_id(&req)?;
        let cfg = CpeConfig {
            pppoe_username: opt_str(&req, "/radius/username").unwrap_or_else(|| sub.clone()),
            subscriber_id: sub,
            plan: req.context_str("/plan")?.to_owned(),
            ipv4_address: opt_str(&req, "/ipv4_address"),
            ipv6_prefix: opt_str(&req, "/ipv6_prefix"),
            inform: Some(InformTarget {
                run_id: req.run_id.to_string(),
                signal: CPE_INFORM.into(),
            }),
        };
        let serial = req.context_str("/cpe_serial")?;
        self.deps
            .cpe
            .configure(req.tenant_id.as_str(), &req.idempotency_key, serial, &cfg)
            .await?;
        Ok(output(json!({ "cpe_configured": true })))
    }

    /// Like `onu_deactivate`: as an undo, removes only the configuration
    /// `cpe.configure`'s request made; forward, the subscriber's.
    pub(crate) async fn cpe_unconfigure(&self, req: StepRequest) -> StepResult {
        let serial = req.context_str("/cpe_serial")?;
        let (created_by, sub) = (forward_key(&req), subscriber_id(&req)?);
        let changed = self
            .deps
            .cpe
            .unconfigure(
                req.tenant_id.as_str(),
                &req.idempotency_key,
                serial,
                owner(&req, &created_by, &sub),
            )
            .await?;
        Ok(output(
            json!({ "cpe_configured": false, "cpe_changed": changed }),
        ))
    }
}
