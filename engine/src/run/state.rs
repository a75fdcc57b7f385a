//! The run and step state machines: enums, and one transition table each.
//!
//! Both are pure: [`RunState::apply`] maps `(state, event)` to the next state
//! and the action the executor must take; nothing here does I/O. Every pair
//! not in the table is an [`InvalidTransition`], which the API reports as
//! FAILED_PRECONDITION.
//!
//! What the executor does next is one vocabulary in two layers, both here:
//! the table decides an [`Action`], the kind of move (it knows states, not
//! steps or clocks); [`advance`](super::advance) turns it into a [`Next`],
//! the same move with its particulars (which step, which attempt, until
//! when). Two layers rather than one enum because the table must stay
//! writable as `(state, event) => (state, action)` without inventing a step
//! or a time, and the executor must get them:
//!
//! | [`Action`]            | [`Next`]                                   |
//! |-----------------------|--------------------------------------------|
//! | `ExecuteStep`         | `Execute { kind: CallKind::Forward, .. }`  |
//! | `ExecuteCompensation` | `Execute { kind: CallKind::Compensate, .. }` |
//! | `WaitForRetry`        | `Wait(at)`                                 |
//! | `AwaitOperator`       | `Stop` (the run is not terminal)           |
//! | `Finish`              | `Stop` (the run is terminal)               |
//!
//! The state predicates other modules need (terminal, executable, accepts a
//! cancel, awaits an operator) are methods of [`RunState`], read from the
//! table where the table says it; nothing else spells out a list of states.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::handler::CallKind;

/// The state of a workflow run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    /// Accepted; no step started yet (or queued behind its concurrency key).
    Pending,
    Running,
    /// Terminal.
    Completed,
    /// A required step gave up and the workflow pauses for an operator.
    Failed,
    Compensating,
    /// Terminal: every completed step was undone.
    Compensated,
    /// A compensation gave up; waits for an operator.
    CompensationFailed,
    /// Terminal: cancelled, completed steps compensated (or queued behind
    /// its concurrency key past its time-to-live, nothing run).
    Cancelled,
    /// Terminal: stopped without compensation.
    Terminated,
}

impl RunState {
    pub const ALL: [RunState; 9] = [
        RunState::Pending,
        RunState::Running,
        RunState::Completed,
        RunState::Failed,
        RunState::Compensating,
        RunState::Compensated,
        RunState::CompensationFailed,
        RunState::Cancelled,
        RunState::Terminated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "PENDING",
            RunState::Running => "RUNNING",
            RunState::Completed => "COMPLETED",
            RunState::Failed => "FAILED",
            RunState::Compensating => "COMPENSATING",
            RunState::Compensated => "COMPENSATED",
            RunState::CompensationFailed => "COMPENSATION_FAILED",
            RunState::Cancelled => "CANCELLED",
            RunState::Terminated => "TERMINATED",
        }
    }

    /// No transition leaves a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Completed
                | RunState::Compensated
                | RunState::Cancelled
                | RunState::Terminated
        )
    }

    /// States in which the executor has work to do.
    pub fn is_executable(self) -> bool {
        matches!(
            self,
            RunState::Pending | RunState::Running | RunState::Compensating
        )
    }

    /// Whether an operator's cancel (with or without compensation) is
    /// accepted in this state: read from the transition table.
    pub fn accepts_cancel(self, compensate: bool) -> bool {
        self.apply(RunEvent::Cancel { compensate }).is_ok()
    }

    /// Whether the run is paused for an operator (FAILED or
    /// COMPENSATION_FAILED): read from the table, the states an operator's
    /// retry resumes.
    pub fn awaits_operator(self) -> bool {
        self.apply(RunEvent::OperatorRetry).is_ok()
    }

    /// Whether a recorded cancel request is still to be carried out: the
    /// states that accept a cancel either way. (A COMPENSATION_FAILED run
    /// accepts only an end without compensation, carried out at once.)
    pub fn carries_out_cancel(self) -> bool {
        self.accepts_cancel(true) && self.accepts_cancel(false)
    }

    /// Applies `event`: the next state and what the executor must do next.
    pub fn apply(self, event: RunEvent) -> Result<Transition, InvalidTransition> {
        use Action::*;
        use RunEvent as E;
        use RunState as S;
        let (to, action) = match (self, event) {
            (S::Pending, E::Begin) => (S::Running, ExecuteStep),
            // Nothing ran and the key was never held: nothing to release.
            (S::Pending, E::QueueExpired) => (S::Cancelled, Finish),
            (S::Running, E::StepSucceeded) => (S::Running, ExecuteStep),
            (S::Running, E::StepRetryScheduled) => (S::Running, WaitForRetry),
            (S::Running, E::OptionalStepGaveUp) => (S::Running, ExecuteStep),
            (S::Running, E::AllStepsDone) => (S::Completed, Finish),
            (S::Running, E::RequiredStepGaveUp(OnFailure::Compensate)) => {
                (S::Compensating, ExecuteCompensation)
            }
            (S::Running, E::RequiredStepGaveUp(OnFailure::Pause)) => (S::Failed, AwaitOperator),
            (S::Compensating, E::StepCompensated) => (S::Compensating, ExecuteCompensation),
            (S::Compensating, E::CompensationRetryScheduled) => (S::Compensating, WaitForRetry),
            (S::Compensating, E::AllCompensated { cancelled: false }) => (S::Compensated, Finish),
            (S::Compensating, E::AllCompensated { cancelled: true }) => (S::Cancelled, Finish),
            (S::Compensating, E::CompensationGaveUp) => (S::CompensationFailed, AwaitOperator),
            (S::Failed, E::OperatorRetry) => (S::Running, ExecuteStep),
            (S::CompensationFailed, E::OperatorRetry) => (S::Compensating, ExecuteCompensation),
            (S::Failed, E::OperatorSkip) => (S::Running, ExecuteStep),
            (S::Failed, E::OperatorCompensate) => (S::Compensating, ExecuteCompensation),
            // A rewind undoes the steps from its target on (a FAILED run, or
            // a RUNNING one whose step waits), then goes forward again.
            (S::Failed | S::Running, E::OperatorRewind) => (S::Compensating, ExecuteCompensation),
            (S::Compensating, E::Rewound) => (S::Running, ExecuteStep),
            (S::Pending | S::Running | S::Failed, E::Cancel { compensate: true }) => {
                (S::Compensating, ExecuteCompensation)
            }
            (S::Pending | S::Running | S::Failed, E::Cancel { compensate: false }) => {
                (S::Terminated, Finish)
            }
            // Resolved by hand: a failed compensation is not run again.
            (S::CompensationFailed, E::Cancel { compensate: false }) => (S::Terminated, Finish),
            (from, event) => return Err(InvalidTransition::Run { from, event }),
        };
        Ok(Transition { to, action })
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// What the workflow does when a required step gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Undo the completed steps in reverse order; the run ends COMPENSATED.
    #[default]
    Compensate,
    /// Stay FAILED for an operator to retry, skip, compensate or cancel.
    Pause,
}

/// The inputs of the run state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunEvent {
    /// The first step starts.
    Begin,
    StepSucceeded,
    StepRetryScheduled,
    /// An optional step gave up; the run goes on.
    OptionalStepGaveUp,
    AllStepsDone,
    RequiredStepGaveUp(OnFailure),
    StepCompensated,
    CompensationRetryScheduled,
    /// No completed step is left to undo.
    AllCompensated {
        cancelled: bool,
    },
    CompensationGaveUp,
    OperatorRetry,
    OperatorSkip,
    OperatorCompensate,
    Cancel {
        compensate: bool,
    },
    /// A run queued behind its concurrency key waited longer than the
    /// workflow's `queue_ttl_ms`.
    QueueExpired,
    /// An operator's rewind that has completed steps to undo.
    OperatorRewind,
    /// A rewind's compensations are done.
    Rewound,
}

impl RunEvent {
    /// Every event, for exhaustive tests.
    pub const ALL: [RunEvent; 20] = [
        RunEvent::Begin,
        RunEvent::StepSucceeded,
        RunEvent::StepRetryScheduled,
        RunEvent::OptionalStepGaveUp,
        RunEvent::AllStepsDone,
        RunEvent::RequiredStepGaveUp(OnFailure::Compensate),
        RunEvent::RequiredStepGaveUp(OnFailure::Pause),
        RunEvent::StepCompensated,
        RunEvent::CompensationRetryScheduled,
        RunEvent::AllCompensated { cancelled: false },
        RunEvent::AllCompensated { cancelled: true },
        RunEvent::CompensationGaveUp,
        RunEvent::OperatorRetry,
        RunEvent::OperatorSkip,
        RunEvent::OperatorCompensate,
        RunEvent::Cancel { compensate: true },
        RunEvent::Cancel { compensate: false },
        RunEvent::QueueExpired,
        RunEvent::OperatorRewind,
        RunEvent::Rewound,
    ];
}

/// What the executor does after a transition: the kind of move, as the
/// table decides it. [`Next`] is the same move made concrete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run the next forward step.
    ExecuteStep,
    /// Run the next compensation (highest completed step first).
    ExecuteCompensation,
    /// Persist the retry time and release the run until then.
    WaitForRetry,
    /// Release the run; it waits for an operator.
    AwaitOperator,
    /// The run is terminal: release it and its concurrency key.
    Finish,
}

/// What the executor does after [`advance`](super::advance::advance): an
/// [`Action`] with its particulars filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Call the handler of step `step` (already marked as started): the
    /// concrete [`Action::ExecuteStep`] or [`Action::ExecuteCompensation`].
    Execute {
        step: usize,
        kind: CallKind,
        attempt: u32,
    },
    /// Nothing to do until then: a retry's backoff ([`Action::WaitForRetry`]),
    /// or now when this engine cannot start the attempt itself.
    Wait(DateTime<Utc>),
    /// Nothing to do: the run is terminal ([`Action::Finish`]) or waits for
    /// an operator ([`Action::AwaitOperator`]).
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub to: RunState,
    pub action: Action,
}

/// The state of one step of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepState {
    Pending,
    Running,
    Succeeded,
    Failed,
    FailedNonBlocking,
    Skipped,
    Compensating,
    Compensated,
    CompensationFailed,
    /// Waiting for its timer, its signal or its handler's "ready" time:
    /// held by no executor.
    Waiting,
}

impl StepState {
    pub const ALL: [StepState; 10] = [
        StepState::Pending,
        StepState::Running,
        StepState::Succeeded,
        StepState::Failed,
        StepState::FailedNonBlocking,
        StepState::Skipped,
        StepState::Compensating,
        StepState::Compensated,
        StepState::CompensationFailed,
        StepState::Waiting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "PENDING",
            StepState::Running => "RUNNING",
            StepState::Succeeded => "SUCCEEDED",
            StepState::Failed => "FAILED",
            StepState::FailedNonBlocking => "FAILED_NON_BLOCKING",
            StepState::Skipped => "SKIPPED",
            StepState::Compensating => "COMPENSATING",
            StepState::Compensated => "COMPENSATED",
            StepState::CompensationFailed => "COMPENSATION_FAILED",
            StepState::Waiting => "WAITING",
        }
    }

    /// The forward part of the run is past this step.
    pub fn is_done(self) -> bool {
        matches!(
            self,
            StepState::Succeeded | StepState::Skipped | StepState::FailedNonBlocking
        )
    }

    pub fn apply(self, event: StepEvent) -> Result<StepState, InvalidTransition> {
        use StepEvent as E;
        use StepState as S;
        let to = match (self, event) {
            // Running -> Running: an attempt interrupted by a crash or a lost
            // lease is followed by a new attempt.
            // Waiting -> Running: a handler that answered "not ready yet" is
            // called again.
            (S::Pending | S::Running | S::Waiting, E::Start) => S::Running,
            (S::Pending | S::Running, E::Wait) => S::Waiting,
            (S::Running | S::Waiting, E::Succeed) => S::Succeeded,
            (S::Running | S::Waiting, E::ScheduleRetry | E::Withdraw) => S::Pending,
            (S::Running | S::Waiting, E::Fail) => S::Failed,
            (S::Running | S::Waiting, E::FailNonBlocking) => S::FailedNonBlocking,
            (S::Pending | S::Failed, E::Skip) => S::Skipped,
            (
                S::Pending
                | S::Running
                | S::Waiting
                | S::Succeeded
                | S::Failed
                | S::FailedNonBlocking
                | S::Skipped,
                E::Reset,
            ) => S::Pending,
            // FAILED and FAILED_NON_BLOCKING steps are compensated only when
            // an attempt's outcome was unknown (its effect may exist); so are
            // PENDING ones, waiting for a retry after such an attempt, or
            // reset by an operator's retry after they had their effect.
            (
                S::Pending
                | S::Succeeded
                | S::Failed
                | S::FailedNonBlocking
                | S::Compensating
                | S::CompensationFailed,
                E::StartCompensation,
            ) => S::Compensating,
            (S::Compensating, E::Compensated) => S::Compensated,
            (S::Compensating, E::ScheduleCompensationRetry) => S::Compensating,
            (S::Compensating, E::FailCompensation) => S::CompensationFailed,
            (from, event) => return Err(InvalidTransition::Step { from, event }),
        };
        Ok(to)
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The inputs of the step state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepEvent {
    /// An attempt starts.
    Start,
    /// The step starts waiting (a timer, a signal, a "not ready yet").
    Wait,
    Succeed,
    ScheduleRetry,
    Fail,
    FailNonBlocking,
    /// Skipped by its `when` condition or by an operator.
    Skip,
    /// Made pending again by an operator's retry.
    Reset,
    /// An attempt recorded as started is withdrawn before its handler was
    /// called (an operator cancelled the run in between).
    Withdraw,
    StartCompensation,
    Compensated,
    ScheduleCompensationRetry,
    FailCompensation,
}

impl StepEvent {
    pub const ALL: [StepEvent; 13] = [
        StepEvent::Start,
        StepEvent::Wait,
        StepEvent::Withdraw,
        StepEvent::Succeed,
        StepEvent::ScheduleRetry,
        StepEvent::Fail,
        StepEvent::FailNonBlocking,
        StepEvent::Skip,
        StepEvent::Reset,
        StepEvent::StartCompensation,
        StepEvent::Compensated,
        StepEvent::ScheduleCompensationRetry,
        StepEvent::FailCompensation,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTransition {
    #[error("a {from} run does not accept {event:?}")]
    Run { from: RunState, event: RunEvent },
    #[error("a {from} step does not accept {event:?}")]
    Step { from: StepState, event: StepEvent },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for StepState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StepState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use RunEvent as E;
    use RunState as S;

    /// The run transition table written out a second time, independently.
    /// The test walks every (state, event) pair against it.
    fn expected_run(from: RunState, event: RunEvent) -> Option<(RunState, Action)> {
        Some(match (from, event) {
            (S::Pending, E::Begin) => (S::Running, ExecuteStep),
            (S::Pending, E::QueueExpired) => (S::Cancelled, Finish),
            (S::Running, E::StepSucceeded | E::OptionalStepGaveUp) => (S::Running, ExecuteStep),
            (S::Running, E::StepRetryScheduled) => (S::Running, WaitForRetry),
            (S::Running, E::AllStepsDone) => (S::Completed, Finish),
            (S::Running, E::RequiredStepGaveUp(OnFailure::Compensate)) => {
                (S::Compensating, ExecuteCompensation)
            }
            (S::Running, E::RequiredStepGaveUp(OnFailure::Pause)) => (S::Failed, AwaitOperator),
            (S::Compensating, E::StepCompensated) => (S::Compensating, ExecuteCompensation),
            (S::Compensating, E::CompensationRetryScheduled) => (S::Compensating, WaitForRetry),
            (S::Compensating, E::AllCompensated { cancelled }) => (
                if cancelled {
                    S::Cancelled
                } else {
                    S::Compensated
                },
                Finish,
            ),
            (S::Compensating, E::CompensationGaveUp) => (S::CompensationFailed, AwaitOperator),
            (S::Failed, E::OperatorRetry | E::OperatorSkip) => (S::Running, ExecuteStep),
            (S::CompensationFailed, E::OperatorRetry) => (S::Compensating, ExecuteCompensation),
            (S::Failed, E::OperatorCompensate) => (S::Compensating, ExecuteCompensation),
            (S::Failed | S::Running, E::OperatorRewind) => (S::Compensating, ExecuteCompensation),
            (S::Compensating, E::Rewound) => (S::Running, ExecuteStep),
            (S::Pending | S::Running | S::Failed, E::Cancel { compensate }) => {
                if compensate {
                    (S::Compensating, ExecuteCompensation)
                } else {
                    (S::Terminated, Finish)
                }
            }
            (S::CompensationFailed, E::Cancel { compensate: false }) => (S::Terminated, Finish),
            _ => return None,
        })
    }

    #[test]
    fn every_run_state_event_pair() {
        let mut accepted = 0;
        for from in RunState::ALL {
            for event in RunEvent::ALL {
                let got = from.apply(event);
                match expected_run(from, event) {
                    Some((to, action)) => {
                        accepted += 1;
                        assert_eq!(got, Ok(Transition { to, action }), "{from} + {event:?}");
                    }
                    None => assert_eq!(
                        got,
                        Err(InvalidTransition::Run { from, event }),
                        "{from} + {event:?} must be refused"
                    ),
                }
            }
        }
        assert_eq!(accepted, 27);
    }

    #[test]
    fn terminal_states_accept_nothing() {
        for from in RunState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for event in RunEvent::ALL {
                assert!(from.apply(event).is_err(), "{from} + {event:?}");
            }
        }
    }

    #[test]
    fn every_step_state_event_pair() {
        use StepEvent as SE;
        use StepState as T;
        let expected = |from: StepState, event: StepEvent| -> Option<StepState> {
            Some(match (from, event) {
                (T::Pending | T::Running | T::Waiting, SE::Start) => T::Running,
                (T::Pending | T::Running, SE::Wait) => T::Waiting,
                (T::Running | T::Waiting, SE::Succeed) => T::Succeeded,
                (T::Running | T::Waiting, SE::ScheduleRetry | SE::Withdraw) => T::Pending,
                (T::Running | T::Waiting, SE::Fail) => T::Failed,
                (T::Running | T::Waiting, SE::FailNonBlocking) => T::FailedNonBlocking,
                (T::Pending | T::Failed, SE::Skip) => T::Skipped,
                (
                    T::Pending
                    | T::Running
                    | T::Waiting
                    | T::Succeeded
                    | T::Failed
                    | T::FailedNonBlocking
                    | T::Skipped,
                    SE::Reset,
                ) => T::Pending,
                (
                    T::Pending
                    | T::Succeeded
                    | T::Failed
                    | T::FailedNonBlocking
                    | T::Compensating
                    | T::CompensationFailed,
                    SE::StartCompensation,
                ) => T::Compensating,
                (T::Compensating, SE::Compensated) => T::Compensated,
                (T::Compensating, SE::ScheduleCompensationRetry) => T::Compensating,
                (T::Compensating, SE::FailCompensation) => T::CompensationFailed,
                _ => return None,
            })
        };
        for from in StepState::ALL {
            for event in StepEvent::ALL {
                match expected(from, event) {
                    Some(to) => assert_eq!(from.apply(event), Ok(to), "{from} + {event:?}"),
                    None => assert!(from.apply(event).is_err(), "{from} + {event:?}"),
                }
            }
        }
        // A compensated step is final.
        for event in StepEvent::ALL {
            assert!(StepState::Compensated.apply(event).is_err());
        }
    }

    #[test]
    fn states_round_trip_through_strings() {
        for s in RunState::ALL {
            assert_eq!(s.as_str().parse::<RunState>(), Ok(s));
        }
        for s in StepState::ALL {
            assert_eq!(s.as_str().parse::<StepState>(), Ok(s));
        }
        assert!("running".parse::<RunState>().is_err());
    }
}
