//! What the harness needs from the binary ([`Host`]: open a store, list the
//! handlers, start the real server) and the bench's server built with it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use sagaflow_engine::api::auth::{Role, TokenEntry, hash_token};
use sagaflow_engine::handler::Registry;
use sagaflow_engine::store::Store;
use sagaflow_proto::v1::workflow_service_client::WorkflowServiceClient;

use crate::Options;
use crate::setup::{Setup, bench_definition, sleep_definition};

/// The binary's side of the harness.
#[async_trait::async_trait]
pub trait Host: Send + Sync {
    /// Connects the store (applying migrations) and returns it with the
    /// handler dependencies it can provide.
    async fn open_store(
        &self,
        url: &str,
        max_connections: u32,
    ) -> anyhow::Result<(Arc<dyn Store>, sagaflow_steps::Deps)>;
    /// Every handler the binary ships, given its dependencies.
    fn registry(&self, deps: &sagaflow_steps::Deps) -> Registry;
    /// Starts the real server (gRPC API, executor) as `spec` says.
    async fn start_server(&self, spec: ServerSpec) -> anyhow::Result<Box<dyn RunningServer>>;
}

/// The server the bench wants: the settings it changes from the defaults.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub database_url: String,
    pub max_connections: u32,
    pub grpc_addr: String,
    pub http_addr: String,
    pub workflows: PathBuf,
    pub owner: String,
    pub schedules_enabled: bool,
    pub tokens: Vec<TokenEntry>,
}

/// A server started by [`Host::start_server`].
#[async_trait::async_trait]
pub trait RunningServer: Send {
    /// Where its gRPC API listens.
    fn grpc_addr(&self) -> SocketAddr;
    /// Stops it, waiting for in-flight work.
    async fn shutdown(self: Box<Self>);
}

const BENCH_TOKEN: &str = "bench-admin";

/// The real server (gRPC API, executor) on the bench's database, with one
/// admin token for tenant `tenant` and the bench workflows.
pub(crate) struct BenchServer {
    pub(crate) server: Box<dyn RunningServer>,
    pub(crate) client: WorkflowServiceClient<tonic::transport::Channel>,
    _dir: tempfile::TempDir,
}

pub(crate) async fn bench_server(
    s: &Setup,
    args: &Options,
    tenant: &str,
) -> anyhow::Result<BenchServer> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("bench_noop.v1.toml"), bench_definition())?;
    std::fs::write(dir.path().join("bench_sleep.v1.toml"), sleep_definition())?;
    let spec = ServerSpec {
        database_url: s.url.clone(),
        max_connections: args.connections,
        grpc_addr: "127.0.0.1:0".into(),
        http_addr: "127.0.0.1:0".into(),
        workflows: dir.path().to_path_buf(),
        owner: "bench-server".into(),
        schedules_enabled: false,
        tokens: vec![TokenEntry {
            name: "bench".into(),
            tenant: tenant.into(),
            role: Role::Admin,
            sha256: hash_token(BENCH_TOKEN),
        }],
    };
    let server = s.host.start_server(spec).await?;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc_addr()))?
            .connect()
            .await?;
    Ok(BenchServer {
        server,
        client: WorkflowServiceClient::new(channel),
        _dir: dir,
    })
}

pub(crate) fn authed<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Ok(v) = format!("Bearer {BENCH_TOKEN}").parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}
