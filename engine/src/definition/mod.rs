//! Workflow definitions as data: one TOML file per workflow version in
//! `workflows/`. The format is documented in `docs/workflow-definitions.md`.
//!
//! Loading validates everything and stops with a message that names the file,
//! the step and the fix. A run keeps a snapshot of the definition it started
//! on (stored by content hash), so later deploys never change a run in flight.
//!
//! `model` holds the data, `parse` reads a file, `validate` checks it,
//! `registry` holds what was loaded.

mod kinds;
pub mod model;
mod parse;
pub mod registry;
pub mod search;
mod validate;

pub use model::*;
pub use parse::*;
pub use registry::*;
pub use validate::*;

#[cfg(test)]
mod tests;
