//! `sagaflow-chaos quick|full`: runs the chaos scenarios against the real
//! `sagaflow` binary and PostgreSQL, prints a report per scenario, and exits
//! non-zero when a pass bar fails.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use sagaflow_chaos::{Counts, Options, SCENARIOS, Tier};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TierArg {
    Quick,
    Full,
}

#[derive(Debug, Parser)]
#[command(about = "Chaos scenarios for sagaflow, with an invariant checker")]
struct Args {
    /// quick (small counts, CI) or full (the reliability programme's counts).
    tier: TierArg,
    /// The sagaflow binary, built with the `test-ledger` feature (`cargo
    /// build --release -p sagaflow --features test-ledger`; the one `cargo
    /// test` builds has it too); default: target/debug/sagaflow under
    /// CARGO_TARGET_DIR (or ./target).
    #[arg(long, env = "SAGAFLOW_BIN")]
    bin: Option<PathBuf>,
    /// An administrative URL of PostgreSQL; each scenario creates (and
    /// drops) a database of its own there.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Run only these scenarios (kill, pause, pg-restart, races, faults, poison).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where logs go; default: a temporary directory, kept when a bar fails.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Override the number of runs of the kill scenario.
    #[arg(long)]
    kill_runs: Option<usize>,
    /// Override the number of SIGKILLs of the kill scenario.
    #[arg(long)]
    kills: Option<usize>,
}

fn default_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("debug").join("sagaflow")
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    for o in &args.only {
        anyhow::ensure!(
            SCENARIOS.contains(&o.as_str()),
            "unknown scenario {o:?}; known: {}",
            SCENARIOS.join(", ")
        );
    }
    let tier = match args.tier {
        TierArg::Quick => Tier::Quick,
        TierArg::Full => Tier::Full,
    };
    let mut counts = Counts::of(tier);
    if let Some(n) = args.kill_runs {
        counts.kill_runs = n;
    }
    if let Some(n) = args.kills {
        counts.kills = n;
    }
    let bin = args.bin.unwrap_or_else(default_bin);
    anyhow::ensure!(
        bin.exists(),
        "no sagaflow binary at {} (build it, or pass --bin)",
        bin.display()
    );
    let temp = tempfile::Builder::new()
        .prefix("sagaflow-chaos")
        .tempdir()?;
    let work_dir = args.work_dir.unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&work_dir)?;
    let opts = Options {
        bin,
        database_url: args.database_url,
        tier,
        counts,
        only: args.only,
        work_dir: work_dir.clone(),
    };
    eprintln!(
        "sagaflow-chaos {} tier, binary {}, logs in {}",
        tier.as_str(),
        opts.bin.display(),
        work_dir.display()
    );
    let reports = sagaflow_chaos::run(&opts).await;
    println!("\nsummary ({} tier):", tier.as_str());
    for r in &reports {
        println!(
            "  {:<11} {}  ({:.0} s)",
            r.scenario,
            if r.passed() { "PASS" } else { "FAIL" },
            r.wall.as_secs_f64()
        );
    }
    if reports.iter().all(|r| r.passed()) {
        Ok(ExitCode::SUCCESS)
    } else {
        let kept = temp.keep();
        println!("logs kept in {}", kept.display());
        Ok(ExitCode::FAILURE)
    }
}
