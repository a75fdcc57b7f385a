//! The subscriber domain's step handlers: `customer.*`, `subscriber.*` and
//! `network_profile.*` (the records, and `subscriber.verify`, which loads a
//! stored subscriber into the run's context), and how the domain's errors
//! reach the engine.

use sagaflow_engine::handler::{StepError, StepOutput, StepRequest};
use serde_json::{Value, json};

use super::repo as subscribers;
use super::{NewCustomer, NewProfile, NewSubscriber, SubscriberError, SubscriberState};
use crate::context::{StepResult, flag, invalid, opt_i64, output, profile_numbers, subscriber_id};
use crate::db::database_error;
use crate::deps::Isp;
use crate::lifecycle::Family;
use crate::lifecycle::repo::{self as lifecycle, AddressRecord};

impl Isp {
    pub(crate) async fn create_customer(&self, req: StepRequest) -> StepResult {
        let c: NewCustomer = req
            .context
            .pointer("/customer")
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| invalid("customer needs id, name and email"))?;
        let tenant = req.tenant_id.as_str();
        let stored =
            subscribers::create_customer(&self.db, tenant, &c, req.run_id, self.now()).await?;
        Ok(output(json!({ "customer_id": stored.id })))
    }

    pub(crate) async fn delete_customer(&self, req: StepRequest) -> StepResult {
        let id = req.context_str("/customer/id")?;
        subscribers::delete_customer_created_by(&self.db, req.tenant_id.as_str(), id, req.run_id)
            .await?;
        Ok(StepOutput::new())
    }

    pub(crate) async fn create_subscriber(&self, req: StepRequest) -> StepResult {
        let (download_kbps, upload_kbps, service_vlan) = profile_numbers(&req)?;
        let s = NewSubscriber {
            subscriber_id: subscriber_id(&req)?,
            customer_id: req.context_str("/customer/id")?.to_owned(),
            plan: req.context_str("/plan")?.to_owned(),
            onu_serial: req.context_str("/onu_serial")?.to_owned(),
            cpe_serial: req.context_str("/cpe_serial")?.to_owned(),
            nas: req.context.pointer("/nas").cloned().unwrap_or(Value::Null),
            enable_ipv6: flag(&req, "/enable_ipv6"),
            details: json!({
                "download_kbps": download_kbps,
                "upload_kbps": upload_kbps,
                "service_vlan": service_vlan,
                "ipv6_pd_size": opt_i64(&req, "/ipv6_pd_size"),
            }),
        };
        let tenant = req.tenant_id.as_str();
        let stored =
            subscribers::create_subscriber(&self.db, tenant, &s, req.run_id, self.now()).await?;
        Ok(output(json!({ "subscriber_state": stored.state })))
    }

    pub(crate) async fn delete_subscriber(&self, req: StepRequest) -> StepResult {
        let (tenant, sub) = target(&req)?;
        subscribers::delete_subscriber_created_by(&self.db, tenant, &sub, req.run_id).await?;
        Ok(StepOutput::new())
    }

    pub(crate) async fn create_profile(&self, req: StepRequest) -> StepResult {
        let (download_kbps, upload_kbps, service_vlan) = profile_numbers(&req)?;
        let p = NewProfile {
            subscriber_id: subscriber_id(&req)?,
            plan: req.context_str("/plan")?.to_owned(),
            download_kbps,
            upload_kbps,
            service_vlan,
            ipv6: flag(&req, "/enable_ipv6"),
        };
        let tenant = req.tenant_id.as_str();
        let stored =
            subscribers::create_profile(&self.db, tenant, &p, req.run_id, self.now()).await?;
        Ok(output(json!({ "network_profile": stored })))
    }

    pub(crate) async fn delete_profile(&self, req: StepRequest) -> StepResult {
        let (tenant, sub) = target(&req)?;
        subscribers::delete_profile_created_by(&self.db, tenant, &sub, req.run_id).await?;
        Ok(StepOutput::new())
    }

    pub(crate) async fn archive_profile(&self, req: StepRequest) -> StepResult {
        let (tenant, sub) = target(&req)?;
        subscribers::archive_profile(&self.db, tenant, &sub, self.now()).await?;
        Ok(StepOutput::new())
    }

    pub(crate) async fn archive_subscriber(&self, req: StepRequest) -> StepResult {
        let (tenant, sub) = target(&req)?;
        let archived = subscribers::archive_subscriber(&self.db, tenant, &sub, self.now()).await?;
        Ok(output(
            json!({ "subscriber_state": SubscriberState::Archived, "archived": archived }),
        ))
    }

    pub(crate) async fn set_state(&self, req: StepRequest, state: SubscriberState) -> StepResult {
        let (tenant, sub) = target(&req)?;
        subscribers::set_subscriber_state(&self.db, tenant, &sub, state, self.now())
            .await?
            .ok_or_else(|| unknown_subscriber(&sub))?;
        Ok(output(json!({ "subscriber_state": state })))
    }

    /// Loads a live subscriber into the context.
    pub(crate) async fn verify(&self, req: StepRequest) -> StepResult {
        let (tenant, sub) = target(&req)?;
        let s = subscribers::get_subscriber(&self.db, tenant, &sub)
            .await?
            .ok_or_else(|| unknown_subscriber(&sub))?;
        let held: Vec<AddressRecord> = lifecycle::for_subscriber(&self.db, tenant, &sub)
            .await?
            .into_iter()
            .filter(|r| r.state.holds_address())
            .collect();
        let address = |f: Family| {
            held.iter()
                .find(|r| r.family == f)
                .map(|r| r.address.clone())
        };
        let mut out = json!({
            "customer": { "id": s.customer_id },
            "plan": s.plan,
            "onu_serial": s.onu_serial,
            "cpe_serial": s.cpe_serial,
            "nas": s.nas,
            "enable_ipv6": s.enable_ipv6,
            "subscriber_state": s.state,
            "ipv4_address": address(Family::Ipv4),
            "ipv6_prefix": address(Family::Ipv6),
        });
        for k in ["download_kbps", "upload_kbps", "service_vlan"] {
            if let Some(v) = s.details.get(k).filter(|v| !v.is_null()) {
                out[k] = v.clone();
            }
        }
        Ok(output(out))
    }
}

/// The tenant and the subscriber id a step acts on.
fn target(req: &StepRequest) -> Result<(&str, String), StepError> {
    Ok((req.tenant_id.as_str(), subscriber_id(req)?))
}

/// The error of a step that needs a live subscriber and found none.
fn unknown_subscriber(sub: &str) -> StepError {
    StepError::fatal("unknown_subscriber", format!("no live subscriber {sub}"))
}

impl From<SubscriberError> for StepError {
    fn from(e: SubscriberError) -> Self {
        let kind = match &e {
            SubscriberError::Exists(..) => "subscriber_exists",
            SubscriberError::ProfileExists(..) => "profile_exists",
            SubscriberError::Corrupt(_) => "corrupt",
            SubscriberError::Database(d) => return database_error(d, e.to_string()),
        };
        StepError::fatal(kind, e.to_string())
    }
}
