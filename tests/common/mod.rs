//! Shared by the end-to-end tests: an in-process server on 127.0.0.1:0
//! against a fresh PostgreSQL database, and gRPC helpers.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use sagaflow::config::Config;
use sagaflow::server::Server;
use sagaflow_engine::api::auth::{Role, TokenEntry, hash_token};
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::workflow_service_client::WorkflowServiceClient;
use serde_json::Value;
use sqlx::PgPool;
use tonic::transport::Channel;

pub const DEMO: &str = include_str!("../../workflows/demo_saga.v1.toml");

/// A demo-saga variant whose subscriber id is a concurrency key with `policy`.
pub fn keyed_demo(name: &str, policy: &str) -> String {
    DEMO.replace(
        "name = \"demo_saga\"",
        &format!(
            "name = \"{name}\"\nconcurrency = {{ key = \"/subscriber_id\", policy = \"{policy}\" }}"
        ),
    )
}

pub fn database_url(pool: &PgPool) -> String {
    let o = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or("postgres")
    )
}

/// Tokens `<role>-<tenant>` for tenants `a` and `b`.
pub fn tokens() -> Vec<TokenEntry> {
    let mut out = Vec::new();
    for tenant in ["a", "b"] {
        for role in [Role::Crm, Role::Operator, Role::Admin] {
            let token = format!("{}-{tenant}", role.as_str());
            out.push(TokenEntry {
                name: format!("{token}-user"),
                tenant: tenant.into(),
                role,
                sha256: hash_token(&token),
            });
        }
    }
    out
}

pub struct TestServer {
    pub server: Server,
    pub client: WorkflowServiceClient<Channel>,
    pub channel: Channel,
    pub dir: tempfile::TempDir,
}

pub async fn start(pool: &PgPool, workflows: &[(&str, String)]) -> TestServer {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    for (file, text) in workflows {
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let mut c = Config::default();
    c.database.url = database_url(pool);
    c.database.max_connections = 8;
    c.grpc.addr = "127.0.0.1:0".into();
    c.http.addr = "127.0.0.1:0".into();
    c.engine.workflows = dir.path().to_owned();
    c.engine.poll_ms = 50;
    c.auth.tokens = tokens();
    let server = Server::start(&c, false).await.unwrap();
    let channel = Channel::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    TestServer {
        client: WorkflowServiceClient::new(channel.clone()),
        channel,
        server,
        dir,
    }
}

pub fn req<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

pub fn obj(v: Value) -> Option<prost_types::Struct> {
    Some(sagaflow_engine::api::convert::json_to_struct(&v))
}

pub fn state(w: &pb::Workflow) -> pb::WorkflowState {
    pb::WorkflowState::try_from(w.state).unwrap()
}

/// Polls GetWorkflow until the run is in `want` (deadline 20 s).
pub async fn wait_state(
    c: &mut WorkflowServiceClient<Channel>,
    token: &str,
    id: &str,
    want: pb::WorkflowState,
) -> pb::Workflow {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let w = c
            .get_workflow(req(pb::GetWorkflowRequest { id: id.into() }, token))
            .await
            .unwrap()
            .into_inner();
        if state(&w) == want {
            return w;
        }
        assert!(
            Instant::now() < end,
            "run {id} stuck in {:?}, wanted {want:?}",
            state(&w)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn start_run(
    c: &mut WorkflowServiceClient<Channel>,
    token: &str,
    workflow: &str,
    input: Value,
    key: &str,
) -> Result<pb::StartWorkflowResponse, tonic::Status> {
    c.start_workflow(req(
        pb::StartWorkflowRequest {
            workflow_name: workflow.into(),
            input: obj(input),
            idempotency_key: key.into(),
            workflow_version: 0,
        },
        token,
    ))
    .await
    .map(|r| r.into_inner())
}

pub async fn count_rows(pool: &PgPool) -> (i64, i64) {
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM runs")
        .fetch_one(pool)
        .await
        .unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM run_events")
        .fetch_one(pool)
        .await
        .unwrap();
    (runs, events)
}
