//! The command line: the clap tree, `serve`/`dev`/`config`, and the
//! dispatch to the client commands (`workflow.rs`, `schedule.rs`,
//! `addresses.rs`, `pools.rs`, `reservations.rs`, printed by `render.rs` over
//! `client.rs`), to the bench (`bench.rs`), and to the completions and man
//! page (`shell.rs`). Exit codes: 0 ok, 1 request refused (or server
//! unreachable), 2 usage.

pub mod addresses;
pub mod bench;
pub mod client;
pub mod filter;
pub mod pools;
pub mod render;
pub mod reservations;
pub mod schedule;
pub mod shell;
pub mod webhooks;
pub mod workflow;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::app;
use crate::config::Config;
use crate::server::Server;
pub use client::{Client, ClientError, Output, json_object};

#[derive(Debug, Parser)]
#[command(
    name = "sagaflow",
    version,
    about = "A durable saga engine for network operators"
)]
pub struct Cli {
    /// A TOML configuration file (see docs/configuration.md).
    #[arg(long, global = true, env = "SAGAFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything in one process: SQLite store, gRPC on 127.0.0.1:50051,
    /// HTTP on 127.0.0.1:9471, fixed dev tokens.
    Dev(ServerArgs),
    /// Run a production replica against PostgreSQL.
    Serve(ServerArgs),
    /// Apply the database migrations and exit.
    Migrate {
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Show the effective configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Start, read and repair workflow runs.
    Workflow {
        #[command(flatten)]
        conn: ClientArgs,
        #[command(subcommand)]
        command: workflow::WorkflowCommand,
    },
    /// Manage cron schedules (admin role).
    Schedule {
        #[command(flatten)]
        conn: ClientArgs,
        #[command(subcommand)]
        command: schedule::ScheduleCommand,
    },
    /// A subscriber's IPv4 address and IPv6 prefix lifecycle records.
    Addresses {
        #[command(flatten)]
        conn: ClientArgs,
        subscriber: String,
    },
    /// Address pools, their utilization and forecast; create, grow,
    /// re-threshold and retire them (admin role).
    Pools {
        #[command(flatten)]
        conn: ClientArgs,
        #[command(subcommand)]
        command: Option<pools::PoolsCommand>,
    },
    /// Addresses and prefixes held for subscribers until they expire:
    /// reserve, list, release (operator role).
    Reservations {
        #[command(flatten)]
        conn: ClientArgs,
        #[command(subcommand)]
        command: Option<reservations::ReservationsCommand>,
    },
    /// Measure throughput and latency (see docs/performance.md).
    Bench(bench::BenchArgs),
    /// List the registered workflow definitions.
    Definitions {
        #[command(flatten)]
        conn: ClientArgs,
    },
    /// Run-outcome webhooks: the delivery log and disabled webhooks, read
    /// from the database (see docs/webhooks.md).
    Webhooks {
        #[arg(long, global = true)]
        database_url: Option<String>,
        /// `table` for people, `json` for scripts.
        #[arg(long, short = 'o', global = true, default_value = "table")]
        output: Output,
        #[command(subcommand)]
        command: webhooks::WebhooksCommand,
    },
    /// Print the shell completion script for bash, zsh, fish, elvish or
    /// PowerShell (e.g. `sagaflow completions bash >
    /// /etc/bash_completion.d/sagaflow`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the sagaflow(1) man page (roff).
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the configuration after defaults, file, environment.
    Print,
}

/// Flags over the configuration file and environment.
#[derive(Debug, Args, Default)]
pub struct ServerArgs {
    #[arg(long)]
    pub database_url: Option<String>,
    #[arg(long)]
    pub grpc_addr: Option<String>,
    #[arg(long)]
    pub http_addr: Option<String>,
    /// Directory of workflow definition files (default: the shipped ones).
    #[arg(long)]
    pub workflows: Option<PathBuf>,
    /// This replica's name in leases.
    #[arg(long)]
    pub owner: Option<String>,
    #[arg(long)]
    pub lease_ms: Option<u64>,
    #[arg(long)]
    pub poll_ms: Option<u64>,
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// `text` or `json`.
    #[arg(long)]
    pub log_format: Option<String>,
}

impl ServerArgs {
    fn apply(&self, c: &mut Config) {
        if let Some(v) = &self.database_url {
            c.database.url = v.clone();
        }
        if let Some(v) = &self.grpc_addr {
            c.grpc.addr = v.clone();
        }
        if let Some(v) = &self.http_addr {
            c.http.addr = v.clone();
        }
        if let Some(v) = &self.workflows {
            c.engine.workflows = v.clone();
        }
        if let Some(v) = &self.owner {
            c.engine.owner = v.clone();
        }
        if let Some(v) = self.lease_ms {
            c.engine.lease_ms = v;
        }
        if let Some(v) = self.poll_ms {
            c.engine.poll_ms = v;
        }
        if let Some(v) = self.max_in_flight {
            c.engine.max_in_flight = v;
        }
        if let Some(v) = &self.log_format {
            c.log.format = v.clone();
        }
    }
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The sagaflow server.
    #[arg(
        long,
        global = true,
        env = "SAGAFLOW_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// The bearer token (dev: dev-crm, dev-operator or dev-admin).
    #[arg(
        long,
        global = true,
        env = "SAGAFLOW_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    pub token: String,
    /// `table` for people, `json` for scripts.
    #[arg(long, short = 'o', global = true, default_value = "table")]
    pub output: Output,
    /// PEM file of the CA that signed the server's certificate (TLS; use an
    /// https:// --server).
    #[arg(long, global = true, env = "SAGAFLOW_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// PEM file of this client's certificate, for a server that asks for
    /// one (mutual TLS); needs --client-key.
    #[arg(
        long,
        global = true,
        env = "SAGAFLOW_CLIENT_CERT",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// PEM file of this client's private key; needs --client-cert.
    #[arg(
        long,
        global = true,
        env = "SAGAFLOW_CLIENT_KEY",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
}

impl ClientArgs {
    /// Connects to the server these flags name.
    pub async fn connect(&self) -> Result<Client, ClientError> {
        let tls = client::TlsFiles {
            ca_cert: self.ca_cert.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
        };
        Client::connect_tls(&self.server, &self.token, &tls).await
    }
}

fn init_tracing(format: &str) -> Result<crate::telemetry::TelemetryGuard, ClientError> {
    crate::telemetry::init(format).map_err(|e| ClientError::Other(e.into()))
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn usage(e: impl std::fmt::Display) -> ClientError {
    ClientError::Usage(e.to_string())
}

fn load(cli_config: Option<&PathBuf>, args: &ServerArgs) -> Result<Config, ClientError> {
    let mut c = Config::load(cli_config.map(|p| p.as_path())).map_err(usage)?;
    args.apply(&mut c);
    c.validate().map_err(usage)?;
    Ok(c)
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    match cli.command {
        Command::Completions { shell } => shell::print(&shell::completions(shell)),
        Command::Man => shell::print(&shell::man()?),
        Command::Dev(args) => {
            let mut c = load(cli.config.as_ref(), &args)?;
            if c.database.url.is_empty() {
                c.database.url = "sqlite://.sagaflow/dev.db".into();
            }
            let _telemetry = init_tracing(&c.log.format)?;
            serve(c, true).await
        }
        Command::Serve(args) => {
            let c = load(cli.config.as_ref(), &args)?;
            if !(c.database.url.starts_with("postgres://")
                || c.database.url.starts_with("postgresql://"))
            {
                return Err(usage(
                    "database.url: serve needs a PostgreSQL URL (--database-url, SAGAFLOW_DATABASE_URL or the config file); use `sagaflow dev` for SQLite",
                ));
            }
            c.validate_serve().map_err(usage)?;
            let _telemetry = init_tracing(&c.log.format)?;
            serve(c, false).await
        }
        Command::Migrate { database_url } => {
            let c = database(cli.config.as_ref(), database_url)?;
            app::open_store(&c.database.connect_url(), 2).await?;
            eprintln!("migrations applied to {}", app::redact(&c.database.url));
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Print,
        } => {
            let c = load(cli.config.as_ref(), &ServerArgs::default())?;
            print!("{}", c.to_toml());
            Ok(())
        }
        Command::Workflow { conn, command } => {
            let mut c = conn.connect().await?;
            workflow::workflow(&mut c, command, conn.output).await
        }
        Command::Schedule { conn, command } => {
            let mut c = conn.connect().await?;
            schedule::schedule(&mut c, command, conn.output).await
        }
        Command::Addresses { conn, subscriber } => {
            let mut c = conn.connect().await?;
            addresses::addresses(&mut c, subscriber, conn.output).await
        }
        Command::Pools { conn, command } => {
            let mut c = conn.connect().await?;
            pools::pools(&mut c, command, conn.output).await
        }
        Command::Reservations { conn, command } => {
            let mut c = conn.connect().await?;
            reservations::reservations(&mut c, command, conn.output).await
        }
        Command::Bench(args) => bench::run(args).await.map_err(ClientError::Other),
        Command::Definitions { conn } => {
            let mut c = conn.connect().await?;
            workflow::definitions(&mut c, conn.output).await
        }
        Command::Webhooks {
            database_url,
            output,
            command,
        } => {
            let c = database(cli.config.as_ref(), database_url)?;
            webhooks::webhooks(&c.database.connect_url(), command, output).await
        }
    }
}

/// The configuration of a command that opens the database itself
/// (`migrate`, `webhooks`): `--database-url` over the file and environment.
fn database(
    cli_config: Option<&PathBuf>,
    database_url: Option<String>,
) -> Result<Config, ClientError> {
    let mut c = Config::load(cli_config.map(|p| p.as_path())).map_err(usage)?;
    if let Some(u) = database_url {
        c.database.url = u;
    }
    if c.database.url.is_empty() {
        return Err(usage(
            "database.url: give --database-url or SAGAFLOW_DATABASE_URL",
        ));
    }
    Ok(c)
}

async fn serve(c: Config, dev: bool) -> Result<(), ClientError> {
    let server = Server::start(&c, dev).await?;
    let names = server.engine.definitions().names();
    eprintln!(
        "sagaflow {} on {}",
        if dev { "dev" } else { "serve" },
        app::redact(&c.database.url)
    );
    eprintln!("  gRPC  {}", server.grpc_addr);
    eprintln!(
        "  HTTP  http://{} (JSON API /v1/…, /v1/openapi.json, /healthz, /readyz, /metrics)",
        server.http_addr
    );
    if names.is_empty() {
        eprintln!("  no workflows in {}", c.engine.workflows.display());
    } else {
        eprintln!("  workflows: {}", names.join(", "));
    }
    if dev {
        eprintln!(
            "  tokens (tenant demo): dev-crm (crm), dev-operator (operator), dev-admin (admin)"
        );
        eprintln!("  try: sagaflow definitions --token dev-crm");
    }
    app::shutdown_signal().await;
    eprintln!("sagaflow: shutting down (draining attempts in flight)");
    server.shutdown().await;
    Ok(())
}
