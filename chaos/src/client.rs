//! A gRPC client of the harness: every call carries a token and a
//! deadline, and every answer's status code is counted. A call that does
//! not answer within its deadline is counted as `Hang`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sagaflow_proto::json::json_to_struct;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::workflow_service_client::WorkflowServiceClient;
use serde_json::Value;
use tonic::transport::Channel;

use crate::{ChaosError, Result};

/// Status codes counted, by name (`Ok`, `Unavailable`, `Internal`, …,
/// and `Hang`).
#[derive(Debug, Clone, Default)]
pub struct Codes(Arc<Mutex<BTreeMap<String, u64>>>);

impl Codes {
    pub fn add(&self, code: &str) {
        self.add_n(code, 1);
    }

    pub fn add_n(&self, code: &str, n: u64) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(code.to_owned()).or_default() += n;
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Why a call failed: a status from the server (or the transport), or no
/// answer in time.
#[derive(Debug, Clone)]
pub enum CallError {
    Status(tonic::Status),
    Hang,
}

impl CallError {
    pub fn code_name(&self) -> String {
        match self {
            CallError::Status(s) => format!("{:?}", s.code()),
            CallError::Hang => "Hang".into(),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Status(s) => write!(f, "{:?}: {}", s.code(), s.message()),
            CallError::Hang => f.write_str("no answer before the deadline"),
        }
    }
}

/// A client of one engine.
#[derive(Debug, Clone)]
pub struct Api {
    client: WorkflowServiceClient<Channel>,
    token: String,
    pub codes: Codes,
    pub deadline: Duration,
}

impl Api {
    /// A lazily connecting client of `grpc` (`http://host:port`).
    pub fn new(grpc: &str, token: &str, codes: Codes) -> Result<Self> {
        let channel = Channel::from_shared(grpc.to_owned())
            .map_err(|e| ChaosError::Grpc(e.to_string()))?
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        Ok(Self {
            client: WorkflowServiceClient::new(channel),
            token: token.to_owned(),
            codes,
            deadline: Duration::from_secs(10),
        })
    }

    fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Ok(v) = format!("Bearer {}", self.token).parse() {
            r.metadata_mut().insert("authorization", v);
        }
        r
    }

    async fn call<T, F, Fut>(&self, f: F) -> Result<T, CallError>
    where
        F: FnOnce(WorkflowServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let out = match tokio::time::timeout(self.deadline, f(self.client.clone())).await {
            Err(_) => Err(CallError::Hang),
            Ok(Err(s)) => Err(CallError::Status(s)),
            Ok(Ok(r)) => Ok(r.into_inner()),
        };
        match &out {
            Ok(_) => self.codes.add("Ok"),
            Err(e) => self.codes.add(&e.code_name()),
        }
        out
    }

    /// Starts `workflow` with `input` under idempotency key `key`; the id.
    pub async fn start(
        &self,
        workflow: &str,
        input: &Value,
        key: &str,
    ) -> Result<String, CallError> {
        let req = self.req(pb::StartWorkflowRequest {
            workflow_name: workflow.to_owned(),
            input: Some(json_to_struct(input)),
            idempotency_key: key.to_owned(),
            workflow_version: 0,
        });
        let r = self
            .call(|mut c| async move { c.start_workflow(req).await })
            .await?;
        Ok(r.workflow.map(|w| w.id).unwrap_or_default())
    }

    pub async fn get(&self, id: &str) -> Result<pb::Workflow, CallError> {
        let req = self.req(pb::GetWorkflowRequest { id: id.to_owned() });
        self.call(|mut c| async move { c.get_workflow(req).await })
            .await
    }

    pub async fn retry(&self, id: &str, patch: Option<&Value>) -> Result<pb::Workflow, CallError> {
        let req = self.req(pb::RetryWorkflowRequest {
            id: id.to_owned(),
            from_step: String::new(),
            context_patch: patch.map(json_to_struct),
            reason: "chaos: retry race".into(),
        });
        self.call(|mut c| async move { c.retry_workflow(req).await })
            .await
    }

    pub async fn compensate(&self, id: &str) -> Result<pb::Workflow, CallError> {
        let req = self.req(pb::CompensateWorkflowRequest {
            id: id.to_owned(),
            reason: "chaos: compensate race".into(),
        });
        self.call(|mut c| async move { c.compensate_workflow(req).await })
            .await
    }

    pub async fn cancel(&self, id: &str, compensate: bool) -> Result<pb::Workflow, CallError> {
        let req = self.req(pb::CancelWorkflowRequest {
            id: id.to_owned(),
            compensate,
            reason: "chaos: cancel race".into(),
        });
        self.call(|mut c| async move { c.cancel_workflow(req).await })
            .await
    }
}

/// Starts `inputs` (key, input) through `api`, retrying calls refused
/// while the engine is busy or restarting (deadline 120 s per run); the
/// run ids, in order.
pub async fn start_all(
    api: &Api,
    workflow: &str,
    inputs: &[(String, Value)],
) -> Result<Vec<String>> {
    let mut ids = Vec::with_capacity(inputs.len());
    for (key, input) in inputs {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            match api.start(workflow, input, key).await {
                Ok(id) => {
                    ids.push(id);
                    break;
                }
                Err(e)
                    if std::time::Instant::now() > deadline
                        || !matches!(
                            e.code_name().as_str(),
                            "Unavailable" | "Hang" | "Aborted" | "ResourceExhausted" | "Unknown"
                        ) =>
                {
                    return Err(ChaosError::Grpc(format!("starting {key}: {e}")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await, // retry interval (loop has a deadline)
            }
        }
    }
    Ok(ids)
}
