//! The quick tier of the chaos harness (`chaos/`): the real `sagaflow`
//! binary on PostgreSQL under SIGKILLs, a paused replica, PostgreSQL
//! crashes (a private cluster), operator races, adapter faults and poison
//! steps, with the invariant checker after each. The full tier is
//! `cargo run -p sagaflow-chaos --release -- full` against a binary built
//! with `--features test-ledger` (docs/reliability.md).
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use sagaflow_chaos::{Counts, Options, Tier};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quick_tier_holds_every_invariant() {
    let database_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        bin: env!("CARGO_BIN_EXE_sagaflow").into(),
        database_url,
        tier: Tier::Quick,
        counts: Counts::of(Tier::Quick),
        only: Vec::new(),
        work_dir: dir.path().to_owned(),
    };
    let reports = sagaflow_chaos::run(&opts).await;
    assert_eq!(reports.len(), sagaflow_chaos::SCENARIOS.len());
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.to_string())
        .collect();
    if !failed.is_empty() {
        let kept = dir.keep();
        panic!(
            "chaos scenarios failed (logs in {}):\n{}",
            kept.display(),
            failed.join("\n")
        );
    }
}
