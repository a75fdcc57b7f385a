//! The ACS simulator's notification hook over gRPC: a CPE's bootstrap
//! inform is signalled to the run that configured it with sagaflow's
//! `SignalWorkflow`, as a real ACS's hook does (docs/domain.md), with the
//! tenant's bearer token. The address can change while running (a harness
//! whose engine restarts elsewhere). Only the server's own refusal gives an
//! inform up ([`outcome`]); anything else is tried again.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::workflow_service_client::WorkflowServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use super::{Inform, InformError, InformHook};

/// Signals informs to a sagaflow server over gRPC.
pub struct GrpcInform {
    channel: Mutex<Channel>,
    /// Per tenant, the bearer token (crm role or above).
    tokens: BTreeMap<String, String>,
}

fn channel(url: &str) -> Result<Channel, String> {
    Channel::from_shared(url.to_owned())
        .map(|c| c.connect_lazy())
        .map_err(|e| format!("{url:?} is not a gRPC address: {e}"))
}

impl GrpcInform {
    /// Signals to `url` (`http://host:port`) with `tokens` by tenant.
    pub fn new(url: &str, tokens: BTreeMap<String, String>) -> Result<Self, String> {
        Ok(Self {
            channel: Mutex::new(channel(url)?),
            tokens,
        })
    }

    /// Signals to `url` from now on.
    pub fn set_url(&self, url: &str) -> Result<(), String> {
        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = channel(url)?;
        Ok(())
    }
}

#[async_trait]
impl InformHook for GrpcInform {
    async fn deliver(&self, inform: &Inform) -> Result<(), InformError> {
        let token = self.tokens.get(&inform.tenant).ok_or_else(|| {
            InformError::Refused(format!("no inform token for tenant {}", inform.tenant))
        })?;
        let mut req = tonic::Request::new(pb::SignalWorkflowRequest {
            id: inform.run_id.clone(),
            signal_name: inform.signal.clone(),
            payload: Some(sagaflow_proto::json::json_to_struct(&inform.payload)),
            idempotency_key: inform.key.clone(),
        });
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|_| InformError::Refused("the inform token is not a header value".into()))?;
        req.metadata_mut().insert("authorization", bearer);
        let channel = self
            .channel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match WorkflowServiceClient::new(channel)
            .signal_workflow(req)
            .await
        {
            Ok(_) => Ok(()),
            Err(s) => Err(outcome(&s)),
        }
    }
}

/// What a failed `SignalWorkflow` means for the inform: refused for good
/// only when the server answered that it never will take it (the run is
/// finished or unknown, the request or token is bad); tried again
/// otherwise. CANCELLED is among the retried: the client answers it when
/// the connection closed before the request went out (the engine was
/// killed as the inform was sent), which says nothing of the run.
fn outcome(s: &tonic::Status) -> InformError {
    match s.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::Unauthenticated => InformError::Refused(s.to_string()),
        Code::Ok
        | Code::Cancelled
        | Code::Unknown
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Internal
        | Code::Unavailable
        | Code::DataLoss => InformError::Retry(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use tonic::{Code, Status};

    use super::{InformError, outcome};

    #[test]
    fn a_connection_lost_as_the_inform_is_sent_is_tried_again() {
        for code in [
            Code::Cancelled,
            Code::Unknown,
            Code::Unavailable,
            Code::Internal,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Aborted,
        ] {
            let got = outcome(&Status::new(code, "connection closed"));
            assert!(matches!(got, InformError::Retry(_)), "{code:?}: {got:?}");
        }
    }

    #[test]
    fn only_the_servers_refusal_gives_an_inform_up() {
        for code in [
            Code::FailedPrecondition,
            Code::NotFound,
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
        ] {
            let got = outcome(&Status::new(code, "refused"));
            assert!(matches!(got, InformError::Refused(_)), "{code:?}: {got:?}");
        }
    }
}
