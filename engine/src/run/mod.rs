//! The run, pure: its model, the state tables, and the functions that move
//! it (advance, compensation, cancellation, operator actions). No I/O, no
//! store, no tokio: the executor and the engine persist what these decide.
//! This is the ground floor the rest of the engine builds on.

pub mod advance;
mod attempt;
pub mod cancel;
pub mod compensation;
pub mod model;
pub mod operator;
mod record;
pub mod rewind;
pub mod start;
pub mod state;
pub mod wait;

pub use advance::{Advance, Outcome, advance, advance_with_handlers, advance_with_signals};
pub use cancel::withdraw_attempt;
pub use operator::{ActionError, OperatorAction, OperatorChange, operate};
pub use record::merge_into;
pub use state::{Action, Next};
pub use wait::Signal;
