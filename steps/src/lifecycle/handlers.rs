//! The address lifecycle's step handlers: `lifecycle.activate_*`,
//! `lifecycle.revoke_*`, `lifecycle.suspend` and `lifecycle.resume` move the
//! subscriber's address records through the transition table, and how the
//! lifecycle's errors reach the engine.

use sagaflow_engine::handler::{CallKind, StepError, StepRequest};
use serde_json::json;

use super::repo::{self as lifecycle, AddressRecord, LifecycleError};
use super::{AddressState, Family};
use crate::context::{StepResult, output, run, subscriber_id};
use crate::db::database_error;
use crate::deps::Isp;

impl Isp {
    /// The subscriber's records of `family` (all when `None`) in the run's
    /// tenant; with `this_run`, only those this run allocated (their
    /// allocation key starts with the run id).
    async fn records(
        &self,
        req: &StepRequest,
        family: Option<Family>,
        this_run: bool,
    ) -> Result<Vec<AddressRecord>, StepError> {
        let tenant = req.tenant_id.as_str();
        let records = lifecycle::for_subscriber(&self.db, tenant, &subscriber_id(req)?).await?;
        let prefix = format!("{}:", req.run_id);
        Ok(records
            .into_iter()
            .filter(|r| family.is_none_or(|f| f == r.family))
            .filter(|r| {
                !this_run
                    || r.allocation_key
                        .as_deref()
                        .is_some_and(|k| k.starts_with(&prefix))
            })
            .collect())
    }

    /// Moves the subscriber's records of `family` (all when `None`; only
    /// this run's allocations with `this_run`) that are in one of `from` to
    /// `to`. Returns the records moved.
    async fn move_records(
        &self,
        req: &StepRequest,
        (family, this_run): (Option<Family>, bool),
        from: &[AddressState],
        to: AddressState,
    ) -> Result<Vec<AddressRecord>, StepError> {
        let tenant = req.tenant_id.as_str();
        let records = self.records(req, family, this_run).await?;
        let mut moved = Vec::new();
        for r in records.into_iter().filter(|r| from.contains(&r.state)) {
            moved.push(
                lifecycle::transition(&self.db, tenant, r.id, to, &run(req), self.now()).await?,
            );
        }
        Ok(moved)
    }

    /// Activates what this run allocated (its allocation step ran earlier
    /// in the same run).
    pub(crate) async fn activate(&self, req: StepRequest, family: Family) -> StepResult {
        use AddressState::*;
        let moved = self
            .move_records(&req, (Some(family), true), &[Allocated], Active)
            .await?;
        if moved.is_empty() {
            let active = self
                .records(&req, Some(family), true)
                .await?
                .into_iter()
                .any(|r| r.state == Active);
            if !active {
                return match family {
                    // No prefix was asked for: nothing to do.
                    Family::Ipv6 => Ok(output(json!({ "ipv6_lifecycle": "skipped" }))),
                    Family::Ipv4 => Err(StepError::fatal(
                        "no_address",
                        "the subscriber has no allocated IPv4 address to activate",
                    )),
                };
            }
        }
        Ok(output(
            json!({ format!("{}_lifecycle", family.lower()): Active }),
        ))
    }

    /// Forward (deprovisioning): revokes the subscriber's addresses. As the
    /// undo of an activation: only what this run allocated, so an undo
    /// whose activation never ran leaves another run's addresses alone.
    pub(crate) async fn revoke(&self, req: StepRequest, family: Family) -> StepResult {
        use AddressState::*;
        let this_run = req.kind == CallKind::Compensate;
        self.move_records(
            &req,
            (Some(family), this_run),
            &[Allocated, Active, Suspended],
            Revoking,
        )
        .await?;
        Ok(output(
            json!({ format!("{}_lifecycle", family.lower()): Revoking }),
        ))
    }

    pub(crate) async fn suspend_addresses(&self, req: StepRequest) -> StepResult {
        use AddressState::*;
        let moved = self
            .move_records(&req, (None, false), &[Active], Suspended)
            .await?;
        Ok(output(json!({ "suspended_addresses": moved.len() })))
    }

    pub(crate) async fn resume_addresses(&self, req: StepRequest) -> StepResult {
        use AddressState::*;
        let moved = self
            .move_records(&req, (None, false), &[Suspended], Active)
            .await?;
        Ok(output(json!({ "resumed_addresses": moved.len() })))
    }
}

impl From<LifecycleError> for StepError {
    fn from(e: LifecycleError) -> Self {
        let kind = match &e {
            LifecycleError::Invalid(_) => "invalid_transition",
            LifecycleError::NotFound(_) => "not_found",
            LifecycleError::AddressTaken { .. } => "address_taken",
            LifecycleError::Corrupt(_) => "corrupt",
            LifecycleError::Database(d) => return database_error(d, e.to_string()),
            LifecycleError::Contention => {
                return StepError::retryable("database", e.to_string());
            }
        };
        StepError::fatal(kind, e.to_string())
    }
}
