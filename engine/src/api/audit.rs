//! Audit records: one structured `tracing` event on the target
//! [`TARGET`] for every operator action and schedule change, accepted or
//! refused, whoever asked (also callers without a valid token).
//!
//! Fields: `principal`, `tenant` and `role` (empty when the token named no
//! one), `action` (the RPC's name in snake case), `target_id` (the run or
//! schedule id as sent, at most 64 characters, control characters
//! replaced), `reason` (the operator's reason for an action on a run, as
//! sent, at most 1024 characters), `outcome` (`accepted` or `refused`),
//! `code` (the gRPC status: `OK`, `PERMISSION_DENIED`, …) and `detail` (the
//! refusal's message). The
//! token is never part of it. Accepted actions on runs are also in the run's
//! history (`run_events`, with the principal as the actor).

use tonic::Status;
use tonic::metadata::MetadataMap;

use super::auth::{Authenticator, Principal};

/// The `tracing` target of audit records.
pub const TARGET: &str = "sagaflow::audit";

/// The canonical name of a gRPC status code (`NOT_FOUND`).
pub fn code_name(c: tonic::Code) -> String {
    format!("{c:?}")
        .chars()
        .flat_map(|ch| {
            if ch.is_uppercase() {
                vec!['_', ch]
            } else {
                vec![ch.to_ascii_uppercase()]
            }
        })
        .collect::<String>()
        .trim_start_matches('_')
        .to_owned()
}

/// An action being audited: who asked for what, recorded when it ends.
#[derive(Debug)]
pub struct Audit {
    principal: Option<Principal>,
    action: &'static str,
    target_id: String,
    reason: String,
}

/// `text` cut to `max` characters, control characters replaced.
fn printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

impl Audit {
    /// Starts the record of `action` on `target_id`; the caller is whoever
    /// the request's token names, if anyone.
    pub fn begin(
        auth: &Authenticator,
        meta: &MetadataMap,
        action: &'static str,
        target_id: &str,
    ) -> Self {
        Self {
            principal: auth.identify(meta).ok(),
            action,
            target_id: printable(target_id, 64),
            reason: String::new(),
        }
    }

    /// Records the reason the operator gave.
    pub fn with_reason(mut self, reason: &str) -> Self {
        self.reason = printable(reason, 1024);
        self
    }

    /// Records the outcome and hands the result back.
    pub fn finish<T>(self, result: Result<T, Status>) -> Result<T, Status> {
        let (outcome, code, detail) = match &result {
            Ok(_) => ("accepted", tonic::Code::Ok, ""),
            Err(s) => ("refused", s.code(), s.message()),
        };
        let (principal, tenant, role) = match &self.principal {
            Some(p) => (p.name.as_str(), p.tenant.as_str(), p.role.as_str()),
            None => ("", "", ""),
        };
        tracing::info!(
            target: TARGET,
            principal,
            tenant,
            role,
            action = self.action,
            target_id = %self.target_id,
            reason = %self.reason,
            outcome,
            code = %code_name(code),
            detail,
            "audit"
        );
        result
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn code_names_are_the_canonical_ones() {
        assert_eq!(super::code_name(tonic::Code::Ok), "OK");
        assert_eq!(
            super::code_name(tonic::Code::PermissionDenied),
            "PERMISSION_DENIED"
        );
        assert_eq!(
            super::code_name(tonic::Code::FailedPrecondition),
            "FAILED_PRECONDITION"
        );
    }
}
