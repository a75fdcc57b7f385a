//! The signals a driven run's waiting steps look at: read once for a
//! whole claimed batch (only for runs with a signal step at or after their
//! cursor), read again for a run whose batch read failed, and looked for
//! once more when a run is released waiting for one.

use std::collections::HashMap;

use tracing::warn;

use super::Exec;
use crate::definition::{StepKind, WorkflowDefinition};
use crate::ids::RunId;
use crate::store::{RunRecord, Signal};

/// Whether a signal step lies at or after `cursor`: only such a step can
/// take a signal.
pub(super) fn signal_ahead(def: &WorkflowDefinition, cursor: u32) -> bool {
    def.steps
        .iter()
        .skip(cursor as usize)
        .any(|s| s.kind == StepKind::Signal)
}

/// The signals not yet taken of the claimed runs that can take one, in one
/// read: an entry (empty when none came) for each run looked up. On a
/// failed read, none: each run reads its own.
pub(super) async fn for_batch(exec: &Exec, runs: &[RunRecord]) -> HashMap<RunId, Vec<Signal>> {
    let mut wanted = Vec::new();
    for r in runs.iter().filter(|r| !r.state.is_terminal()) {
        if let Ok(def) = exec.shared.definition(&r.definition_id).await
            && signal_ahead(&def, r.cursor)
        {
            wanted.push(r.id);
        }
    }
    if wanted.is_empty() {
        return HashMap::new();
    }
    match exec.shared.store.pending_signals_of(&wanted).await {
        Ok(mut found) => {
            for id in wanted {
                found.entry(id).or_default();
            }
            found
        }
        Err(e) => {
            warn!(error = %e, "reading the claimed runs' signals failed; each reads its own");
            HashMap::new()
        }
    }
}

/// The run's signals for this advance: those read with its batch if given,
/// else read now. None: the read failed.
pub(super) async fn for_run(
    exec: &Exec,
    run: &RunRecord,
    def: &WorkflowDefinition,
    read_with_batch: Option<Vec<Signal>>,
) -> Option<Vec<Signal>> {
    if !signal_ahead(def, run.cursor) || run.state.is_terminal() {
        return Some(Vec::new());
    }
    if let Some(s) = read_with_batch {
        return Some(s);
    }
    match exec.shared.store.pending_signals(run.id).await {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "reading the run's signals failed; leaving it until its lease expires");
            None
        }
    }
}

/// The run was just released waiting for signal `name`. A signal stored
/// while this executor held it (too late for the read before the
/// checkpoint, too early to make the released run due) is looked for once
/// more: if there is one, the run is made due at once.
pub(super) async fn recheck(exec: &Exec, run: RunId, name: &str) {
    let found = match exec.shared.store.pending_signals(run).await {
        Ok(s) => s.iter().any(|s| s.name == name),
        Err(e) => {
            warn!(error = %e, "re-reading the run's signals failed; the next signal or timeout wakes it");
            return;
        }
    };
    if !found {
        return;
    }
    match exec
        .shared
        .store
        .wake_run(run, exec.shared.clock.now())
        .await
    {
        Ok(true) => exec.wake.notify_one(),
        Ok(false) => {}
        Err(e) => warn!(error = %e, "waking the run for its signal failed"),
    }
}
