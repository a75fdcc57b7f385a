//! `sagaflow bench <scenario>`: the performance harness. It prints figures;
//! it asserts nothing. Method and results: docs/performance.md.
//!
//! The binary hands the harness a [`Host`]: how to open a store and start
//! the real server. One file per scenario group: `throughput.rs`
//! (throughput, latency), `start.rs`, `scale.rs`, `ceiling.rs`,
//! `recovery.rs`, `waits.rs`, `retention.rs`; `setup.rs` builds the engine they share, `report.rs`
//! prints the figures.

mod ceiling;
mod host;
mod recovery;
mod report;
mod retention;
mod scale;
mod setup;
mod start;
mod throughput;
mod waits;

pub use host::{Host, RunningServer, ServerSpec};
pub use report::Format;
pub use setup::{bench_definition, sleep_definition};

use std::sync::Arc;

/// A `sagaflow bench` scenario and its sizes.
#[derive(Debug, clap::Subcommand)]
pub enum Scenario {
    /// N runs of the 10-step no-op saga at concurrency C.
    Throughput {
        #[arg(long, default_value_t = 20_000)]
        runs: usize,
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Tasks starting the runs, each one start after another (as CRM
        /// calls arrive); too few make the start rate the bound.
        #[arg(long, default_value_t = throughput::STARTERS)]
        starters: usize,
    },
    /// One run at a time: end-to-end and per-step latency.
    Latency {
        #[arg(long, default_value_t = 500)]
        runs: usize,
        #[arg(long, default_value_t = 50)]
        warmup: usize,
    },
    /// gRPC StartWorkflow at a fixed offered rate (open loop).
    Start {
        /// Starts per second; default: half the throughput measured first
        /// with `--calibrate-runs` runs.
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 4_000)]
        calibrate_runs: usize,
    },
    /// Seed finished runs in bulk, then time GetWorkflow, ListWorkflows
    /// with each filter and the claim query; print their plans.
    Scale {
        #[arg(long, default_value_t = 1_000_000)]
        runs: u64,
        /// Calls timed per query.
        #[arg(long, default_value_t = 300)]
        queries: usize,
        /// Seed into (and time the calls of) this tenant instead of a new
        /// one: seed once with `--runs N`, time again later with `--runs 0`.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// PostgreSQL: finished runs with their events seeded over past days,
    /// then sagas at a fixed rate, alone and while retention deletes those
    /// runs and drops their days of events.
    Retention {
        #[arg(long, default_value_t = 1_000_000)]
        runs: u64,
        /// Days the seeded runs are spread over (one partition each).
        #[arg(long, default_value_t = 10)]
        days: u32,
        /// Events per seeded run.
        #[arg(long, default_value_t = 20)]
        events: u32,
        /// Sagas started per second.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// Seconds of load alone, and at least as long during retention.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Runs deleted per transaction (`domain.maintenance.batch_size`).
        #[arg(long, default_value_t = 1_000)]
        batch: u32,
        /// The most of its time retention spends writing
        /// (`domain.maintenance.retention.busy_percent`); 100 never pauses.
        #[arg(long, default_value_t = 25)]
        busy_percent: u32,
    },
    /// Two engine processes; SIGKILL one with runs in flight and time
    /// until the other has resumed them all.
    Recovery {
        #[arg(long, default_value_t = 600)]
        runs: usize,
        #[arg(long, default_value_t = 5_000)]
        lease_ms: u64,
        /// How long each of the saga's three steps takes.
        #[arg(long, default_value_t = 4_000)]
        step_ms: u64,
    },
    /// N runs waiting at once (timers, then signals): the engine's memory
    /// and database connections while they wait, and the time to wake
    /// them all (timers due in the same second; N signals).
    Waits {
        #[arg(long, default_value_t = 10_000)]
        runs: usize,
        /// When the timers are due, from the start; every run must be
        /// waiting by then.
        #[arg(long, default_value_t = 60)]
        wake_in_s: u64,
        /// Signals sent at once: concurrent callers, each sending its
        /// share one after another (a fleet of CRM clients).
        #[arg(long, default_value_t = 48)]
        signal_callers: usize,
    },
    /// Raw PostgreSQL checkpoint rates next to sagaflow's, in one run.
    Ceiling {
        #[arg(long, default_value_t = 10_000)]
        runs: usize,
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Seconds per raw measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

/// What `sagaflow bench` was asked to do.
#[derive(Debug)]
pub struct Options {
    /// The store to measure (default: a fresh SQLite file in a temporary
    /// directory).
    pub database_url: Option<String>,
    /// PostgreSQL connections.
    pub connections: u32,
    pub format: Format,
    pub scenario: Scenario,
}

/// Runs the scenario and prints its figures.
pub async fn run(host: Arc<dyn Host>, args: Options) -> anyhow::Result<()> {
    let s = setup::setup(host, &args).await?;
    let v = match args.scenario {
        Scenario::Throughput {
            runs,
            concurrency,
            starters,
        } => throughput::throughput(&s, runs, concurrency, starters).await?,
        Scenario::Latency { runs, warmup } => throughput::latency(&s, runs, warmup).await?,
        Scenario::Ceiling {
            runs,
            concurrency,
            seconds,
        } => ceiling::ceiling(&s, runs, concurrency, seconds, args.connections).await?,
        Scenario::Start {
            rate,
            seconds,
            calibrate_runs,
        } => start::start(&s, &args, rate, seconds, calibrate_runs).await?,
        Scenario::Scale {
            runs,
            queries,
            ref tenant,
        } => scale::scale(&s, &args, runs, queries, tenant.clone()).await?,
        Scenario::Retention {
            runs,
            days,
            events,
            rate,
            seconds,
            batch,
            busy_percent,
        } => {
            let z = retention::Sizes {
                runs,
                days,
                events,
                rate,
                seconds,
                batch,
                busy_percent,
            };
            retention::retention(&s, z).await?
        }
        Scenario::Recovery {
            runs,
            lease_ms,
            step_ms,
        } => recovery::recovery(&s, &args, runs, lease_ms, step_ms).await?,
        Scenario::Waits {
            runs,
            wake_in_s,
            signal_callers,
        } => waits::waits(&s, runs, wake_in_s, signal_callers).await?,
    };
    report::print(&v, args.format);
    Ok(())
}
