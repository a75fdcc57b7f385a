//! The `sagaflow` binary's wiring: configuration, server assembly and the
//! command line. `main.rs` only calls [`cli::main`].

pub mod app;
pub mod cli;
pub mod config;
pub mod lifecycle_api;
pub mod process_metrics;
pub mod server;
pub mod telemetry;
pub mod workflows;
