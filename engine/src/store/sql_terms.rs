//! The run-state rules the SQL of both backends names, written once and
//! built from the state machine: which runs still carry out a recorded
//! cancel request, which runs are queued behind their concurrency key, and
//! which runs are over (the only ones retention deletes).

use crate::run::state::RunState;

/// The SQL list `('PENDING', ...)` of the states in which a recorded cancel
/// request is still to be carried out ([`RunState::carries_out_cancel`]).
pub(crate) fn cancel_carried_out_states() -> String {
    state_list(RunState::carries_out_cancel)
}

/// The SQL list `('COMPLETED', ...)` of the terminal states
/// ([`RunState::is_terminal`]): the only runs retention deletes.
pub(crate) fn terminal_states() -> String {
    state_list(RunState::is_terminal)
}

/// The SQL list `('PENDING', ...)` of the active states (not terminal), as
/// the `runs_active` partial index (migration 0017) is written, so that a
/// count of them reads that small index only.
pub(crate) fn active_states() -> String {
    state_list(|s| !s.is_terminal())
}

/// The SQL list of the states `keep` accepts.
fn state_list(keep: fn(RunState) -> bool) -> String {
    let names: Vec<String> = RunState::ALL
        .into_iter()
        .filter(|s| keep(*s))
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!("({})", names.join(", "))
}

/// The condition "the run is queued behind its concurrency key": accepted,
/// and not due until the key is handed to it. `alias` qualifies the
/// columns (`"q"` gives `q.state ...`); empty for none.
pub(crate) fn queued(alias: &str) -> String {
    let p = if alias.is_empty() {
        String::new()
    } else {
        format!("{alias}.")
    };
    format!(
        "{p}state = '{}' AND {p}next_run_at IS NULL",
        RunState::Pending.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terms_read_as_before() {
        assert_eq!(
            cancel_carried_out_states(),
            "('PENDING', 'RUNNING', 'FAILED')"
        );
        assert_eq!(
            terminal_states(),
            "('COMPLETED', 'COMPENSATED', 'CANCELLED', 'TERMINATED')"
        );
        let index = include_str!("../../../migrations/engine/postgres/0017_runs_active.sql");
        assert!(
            index.contains(&format!("WHERE state IN {}", active_states())),
            "{index}"
        );
        assert_eq!(queued(""), "state = 'PENDING' AND next_run_at IS NULL");
        assert_eq!(queued("q"), "q.state = 'PENDING' AND q.next_run_at IS NULL");
    }
}
