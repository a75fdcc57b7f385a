//! The run-state rules the SQL of both backends names, written once and
//! built from the state machine: which runs still carry out a recorded
//! cancel request.

use crate::run::state::RunState;

/// The SQL list `('PENDING', ...)` of the states in which a recorded cancel
/// request is still to be carried out ([`RunState::carries_out_cancel`]).
pub(crate) fn cancel_carried_out_states() -> String {
    let names: Vec<String> = RunState::ALL
        .into_iter()
        .filter(|s| s.carries_out_cancel())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!("({})", names.join(", "))
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
    }
}
