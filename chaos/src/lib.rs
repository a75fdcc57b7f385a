//! # sagaflow-chaos
//!
//! The chaos harness of sagaflow: it drives the real `sagaflow serve`
//! processes against a real PostgreSQL, injects faults (SIGKILL, SIGSTOP,
//! PostgreSQL crashes, operator races, misbehaving adapters, poison steps)
//! and runs an invariant checker ([`check`]) after every scenario.
//!
//! Two tiers: [`Tier::Quick`] (small counts, run by CI through
//! `tests/chaos.rs`) and [`Tier::Full`] (the counts of the reliability
//! programme, `cargo run -p sagaflow-chaos --release -- full --bin
//! target/release/sagaflow`, the binary built with `cargo build --release
//! -p sagaflow --features test-ledger`: its workflows need the `ledger.*`
//! handlers, which a production build does not have).
//! `docs/reliability.md` lists the scenarios, their pass bars and figures.

pub mod check;
pub mod client;
pub mod db;
pub mod process;
pub mod report;
pub mod scenarios;
pub mod stale;
pub mod workflows;

use std::path::PathBuf;

pub use report::Report;

/// Why a scenario could not be carried out (as opposed to a failed bar,
/// which is a [`Report`] finding).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("engine {name}: {message}")]
    Engine { name: String, message: String },
    #[error("gRPC: {0}")]
    Grpc(String),
    #[error("private PostgreSQL cluster: {0}")]
    Cluster(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("{0}")]
    Setup(String),
}

impl ChaosError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| ChaosError::Io { what, source }
    }
}

pub type Result<T, E = ChaosError> = std::result::Result<T, E>;

/// How big the scenarios are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Small counts, a few minutes on a small machine; CI runs it.
    Quick,
    /// The counts of the reliability programme.
    Full,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Quick => "quick",
            Tier::Full => "full",
        }
    }
}

/// The counts of each scenario, per tier.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub kill_runs: usize,
    pub kills: usize,
    pub pause_runs: usize,
    pub pg_cycles: usize,
    /// How long PostgreSQL stays up between two crashes, in milliseconds.
    pub pg_up_ms: (u64, u64),
    pub race_runs: usize,
    pub fault_runs: usize,
    pub poison_normal_runs: usize,
    pub poison_runs: usize,
}

impl Counts {
    pub fn of(tier: Tier) -> Self {
        match tier {
            Tier::Quick => Counts {
                kill_runs: 60,
                kills: 8,
                pause_runs: 30,
                pg_cycles: 3,
                pg_up_ms: (2_000, 4_000),
                race_runs: 12,
                fault_runs: 30,
                poison_normal_runs: 40,
                poison_runs: 6,
            },
            Tier::Full => Counts {
                kill_runs: 1_000,
                kills: 200,
                pause_runs: 200,
                pg_cycles: 20,
                pg_up_ms: (5_000, 20_000),
                race_runs: 100,
                fault_runs: 300,
                poison_normal_runs: 300,
                poison_runs: 30,
            },
        }
    }
}

/// What to run, and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `sagaflow` binary.
    pub bin: PathBuf,
    /// An administrative URL of the shared PostgreSQL server; every scenario
    /// gets a fresh database on it (scenario 3 makes its own cluster).
    pub database_url: String,
    pub tier: Tier,
    pub counts: Counts,
    /// Scenario names to run; empty: all.
    pub only: Vec<String>,
    /// Where engine logs and configuration files go.
    pub work_dir: PathBuf,
}

/// The scenarios, in order.
pub const SCENARIOS: [&str; 6] = ["kill", "pause", "pg-restart", "races", "faults", "poison"];

/// Runs the selected scenarios one after the other and returns their
/// reports. A scenario that cannot be carried out is reported as failed
/// with its error.
pub async fn run(opts: &Options) -> Vec<Report> {
    let mut reports = Vec::new();
    for name in SCENARIOS {
        if !opts.only.is_empty() && !opts.only.iter().any(|o| o == name) {
            continue;
        }
        let started = std::time::Instant::now();
        let result = match name {
            "kill" => scenarios::kill::run(opts).await,
            "pause" => scenarios::pause::run(opts).await,
            "pg-restart" => scenarios::pg_restart::run(opts).await,
            "races" => scenarios::races::run(opts).await,
            "faults" => scenarios::faults::run(opts).await,
            _ => scenarios::poison::run(opts).await,
        };
        let mut report = result.unwrap_or_else(|e| {
            let mut r = Report::new(name);
            r.bar("scenario carried out", false, e.to_string());
            r
        });
        report.wall = started.elapsed();
        eprintln!("{report}");
        reports.push(report);
    }
    reports
}
