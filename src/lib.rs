//! The `sagaflow` binary's wiring: command line, and assembling an engine
//! from the engine crate and the step handlers. `main.rs` only calls [`cli::main`].

pub mod app;
pub mod cli;
