//! The workflow definitions the scenarios run.

use std::path::Path;

use crate::{ChaosError, Result};

/// The shipped provisioning workflow.
pub const PROVISION: &str = include_str!("../../workflows/provision_subscriber.v1.toml");

/// The workflow files of the provisioning scenarios.
pub fn provision() -> [(&'static str, String); 1] {
    [("provision_subscriber.v1.toml", PROVISION.to_owned())]
}

/// A workflow of `steps` steps `l1`..`ln`, each `ledger.apply` undone by
/// `ledger.revert`, with `max_attempts` forward attempts of `timeout_ms`.
pub fn ledger(
    name: &str,
    steps: usize,
    on_failure: &str,
    timeout_ms: u64,
    max_attempts: u32,
) -> String {
    let mut t = format!(
        "name = \"{name}\"\nversion = 1\non_failure = \"{on_failure}\"\n\
         [defaults]\ntimeout_ms = {timeout_ms}\n\
         [defaults.retry]\nmax_attempts = {max_attempts}\ninitial_interval_ms = 10\nmax_interval_ms = 100\n\
         [defaults.compensation_retry]\nmax_attempts = 100\ninitial_interval_ms = 10\nmax_interval_ms = 100\n"
    );
    for i in 1..=steps {
        t.push_str(&format!(
            "[[steps]]\nname = \"l{i}\"\nhandler = \"ledger.apply\"\ncompensation = \"ledger.revert\"\n"
        ));
    }
    t
}

/// Writes `(file name, text)` pairs into `dir`.
pub fn write(dir: &Path, files: &[(&str, String)]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(ChaosError::io(dir.display().to_string()))?;
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(ChaosError::io(p.display().to_string()))?;
    }
    Ok(())
}
