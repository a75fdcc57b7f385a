//! A CRM client: starts a run with an idempotency key (the CRM's order id)
//! and follows it with WatchWorkflow until it ends.
//!
//! Against `sagaflow dev` (in another terminal):
//!
//!     cargo run --example crm_client -- demo_saga order-42
//!
//! Arguments: workflow name (default `demo_saga`), order id (default a new
//! one), and the input as JSON (default `{}`). `SAGAFLOW_SERVER` and
//! `SAGAFLOW_TOKEN` override the server and the token (`dev-crm`).

use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::workflow_service_client::WorkflowServiceClient;

fn authorized<T>(msg: T, token: &str) -> Result<tonic::Request<T>, Box<dyn std::error::Error>> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(r)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let workflow = args.next().unwrap_or_else(|| "demo_saga".into());
    let order = args
        .next()
        .unwrap_or_else(|| format!("order-{}", std::process::id()));
    let input: serde_json::Value =
        serde_json::from_str(&args.next().unwrap_or_else(|| "{}".into()))?;
    let server =
        std::env::var("SAGAFLOW_SERVER").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let token = std::env::var("SAGAFLOW_TOKEN").unwrap_or_else(|_| "dev-crm".into());

    let mut client = WorkflowServiceClient::connect(server).await?;
    // Retrying this call with the same order id never starts a second run.
    let started = client
        .start_workflow(authorized(
            pb::StartWorkflowRequest {
                workflow_name: workflow,
                input: Some(sagaflow_proto::json::json_to_struct(&input)),
                idempotency_key: order.clone(),
                workflow_version: 0,
            },
            &token,
        )?)
        .await?
        .into_inner();
    let run = started.workflow.ok_or("no workflow in the response")?;
    println!(
        "order {order}: run {} ({})",
        run.id,
        if started.created {
            "started"
        } else {
            "already running"
        }
    );

    let mut events = client
        .watch_workflow(authorized(
            pb::WatchWorkflowRequest { id: run.id.clone() },
            &token,
        )?)
        .await?
        .into_inner();
    let mut last = pb::WorkflowState::Unspecified;
    while let Some(e) = events.message().await? {
        last = pb::WorkflowState::try_from(e.workflow_state).unwrap_or_default();
        println!(
            "  #{:<3} {:<26} {:<22} {}",
            e.sequence, e.r#type, e.step, e.message
        );
        if last == pb::WorkflowState::Failed {
            println!("run {} is FAILED and waits for an operator", run.id);
            std::process::exit(3);
        }
    }
    println!("run {} ended {}", run.id, last.as_str_name());
    if last != pb::WorkflowState::Completed {
        std::process::exit(3);
    }
    Ok(())
}
