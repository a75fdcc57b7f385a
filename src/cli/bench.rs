//! The binary's side of `sagaflow bench`: its command-line arguments and
//! the [`sagaflow_bench::Host`] that opens stores and starts the real
//! server for the harness (crate `sagaflow-bench`).

use std::net::SocketAddr;
use std::sync::Arc;

use sagaflow_bench::{Format, Host, Options, RunningServer, Scenario, ServerSpec};
use sagaflow_engine::handler::Registry;
use sagaflow_engine::store::Store;

use crate::app;
use crate::cli::Output;
use crate::config::Config;
use crate::server::Server;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The store to measure: postgres://… or sqlite://… (default: a fresh
    /// SQLite file in a temporary directory).
    #[arg(long, env = "SAGAFLOW_DATABASE_URL")]
    pub database_url: Option<String>,
    /// PostgreSQL connections.
    #[arg(long, default_value_t = 16)]
    pub connections: u32,
    #[arg(long, short = 'o', default_value = "table")]
    pub output: Output,
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Runs `sagaflow bench …`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let options = Options {
        database_url: args.database_url,
        connections: args.connections,
        format: match args.output {
            Output::Table => Format::Table,
            Output::Json => Format::Json,
        },
        scenario: args.scenario,
    };
    sagaflow_bench::run(Arc::new(BinaryHost), options).await
}

/// Stores and servers exactly as `sagaflow serve` builds them.
struct BinaryHost;

#[async_trait::async_trait]
impl Host for BinaryHost {
    async fn open_store(
        &self,
        url: &str,
        max_connections: u32,
    ) -> anyhow::Result<(Arc<dyn Store>, sagaflow_steps::Deps)> {
        app::open_store(url, max_connections).await
    }

    fn registry(&self, deps: &sagaflow_steps::Deps) -> Registry {
        app::registry(deps)
    }

    async fn start_server(&self, spec: ServerSpec) -> anyhow::Result<Box<dyn RunningServer>> {
        let mut config = Config::default();
        config.database.url = spec.database_url;
        config.database.max_connections = spec.max_connections;
        config.grpc.addr = spec.grpc_addr;
        config.http.addr = spec.http_addr;
        config.engine.workflows = spec.workflows;
        config.engine.owner = spec.owner;
        config.schedules.enabled = spec.schedules_enabled;
        config.auth.tokens = spec.tokens;
        Ok(Box::new(Server::start(&config, false).await?))
    }
}

#[async_trait::async_trait]
impl RunningServer for Server {
    fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    async fn shutdown(self: Box<Self>) {
        Server::shutdown(*self).await;
    }
}
