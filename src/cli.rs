//! The command line: `sagaflow dev | serve | migrate`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sagaflow_engine::executor::ExecutorOptions;

use crate::app::{self, App, AppOptions};

#[derive(Debug, Parser)]
#[command(
    name = "sagaflow",
    version,
    about = "A durable saga engine for network operators"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "SAGAFLOW_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything in one process on the embedded SQLite store.
    Dev(DevArgs),
    /// Run an engine replica against PostgreSQL (production).
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Directory of workflow definition files.
    #[arg(long, env = "SAGAFLOW_WORKFLOWS", default_value = "workflows")]
    pub workflows: PathBuf,
    /// This replica's name in leases (default: host name and pid).
    #[arg(long, env = "SAGAFLOW_OWNER")]
    pub owner: Option<String>,
    /// How long a lease lasts without renewal, in milliseconds.
    #[arg(long, env = "SAGAFLOW_LEASE_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub lease_ms: u64,
    /// How often to look for due work when nothing wakes the executor.
    #[arg(long, env = "SAGAFLOW_POLL_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..))]
    pub poll_ms: u64,
    /// Runs driven at once by this replica.
    #[arg(long, env = "SAGAFLOW_MAX_IN_FLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..100_000))]
    pub max_in_flight: u64,
}

impl EngineArgs {
    fn executor(&self) -> ExecutorOptions {
        let mut o = ExecutorOptions {
            lease: app::millis(self.lease_ms),
            poll_interval: app::millis(self.poll_ms),
            max_in_flight: self.max_in_flight as usize,
            ..ExecutorOptions::default()
        };
        if let Some(owner) = &self.owner {
            o.owner = owner.clone();
        }
        o
    }
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// The store (SQLite by default; a postgres:// URL works too).
    #[arg(
        long,
        env = "SAGAFLOW_DATABASE_URL",
        default_value = "sqlite://.sagaflow/dev.db"
    )]
    pub database_url: String,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// PostgreSQL URL, e.g. postgres://sagaflow@db:5432/sagaflow.
    #[arg(long, env = "SAGAFLOW_DATABASE_URL")]
    pub database_url: String,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[arg(long, env = "SAGAFLOW_DATABASE_URL")]
    pub database_url: String,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Migrate(a) => {
            app::open_store(&a.database_url).await?;
            eprintln!("migrations applied to {}", app::redact(&a.database_url));
            Ok(())
        }
        Command::Dev(a) => serve(a.database_url, a.engine).await,
        Command::Serve(a) => {
            if !(a.database_url.starts_with("postgres://")
                || a.database_url.starts_with("postgresql://"))
            {
                anyhow::bail!(
                    "serve needs a PostgreSQL URL (postgres://…); use `sagaflow dev` for SQLite"
                );
            }
            serve(a.database_url, a.engine).await
        }
    }
}

async fn serve(database_url: String, engine: EngineArgs) -> anyhow::Result<()> {
    let app = App::start(AppOptions {
        database_url: database_url.clone(),
        workflows: engine.workflows.clone(),
        executor: engine.executor(),
    })
    .await?;
    let names = app.engine.definitions().names();
    if names.is_empty() {
        eprintln!("sagaflow: no workflows in {}", engine.workflows.display());
    } else {
        eprintln!("sagaflow: workflows {}", names.join(", "));
    }
    eprintln!(
        "sagaflow: engine running on {}; ctrl-c to stop",
        app::redact(&database_url)
    );
    app::shutdown_signal().await;
    eprintln!("sagaflow: shutting down");
    app.shutdown().await;
    Ok(())
}
