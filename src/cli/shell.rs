//! What the shell and `man` know about the command line: `sagaflow
//! completions <shell>` (clap_complete) and the hidden `sagaflow man`
//! (clap_mangen), both generated from the clap tree in `mod.rs` and written
//! to standard output. The Debian package ships their output
//! (scripts/package-test.sh).

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, ClientError};

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "sagaflow", &mut out);
    out
}

/// The `sagaflow(1)` man page (roff): the top-level page with every
/// subcommand listed.
pub fn man() -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(|e| ClientError::Other(anyhow::anyhow!("cannot render the man page: {e}")))?;
    Ok(out)
}

/// Writes `bytes` to standard output (a closed pipe is an error, not a
/// panic).
pub fn print(bytes: &[u8]) -> Result<(), ClientError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| ClientError::Other(anyhow::anyhow!("cannot write to standard output: {e}")))
}
