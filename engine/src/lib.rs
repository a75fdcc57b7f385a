//! # sagaflow-engine
//!
//! The durable saga engine: workflow definitions, the run and step state
//! machines, the executor that claims runs under a lease and drives their
//! steps, and the [`Store`](store::Store) trait with its PostgreSQL and SQLite
//! backends. It knows nothing about ISPs: step handlers are registered into a
//! [`Registry`](handler::Registry) by whoever embeds the engine.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sagaflow_engine::{clock::SystemClock, definition::Definitions, handler::Registry,
//!     executor::ExecutorOptions, store, Engine};
//!
//! let registry = Registry::new();
//! let defs = Definitions::load_dir("workflows".as_ref(), &registry)?;
//! let store = store::connect("sqlite://.sagaflow/dev.db").await?;
//! let engine = Engine::new(store, Arc::new(registry), defs, Arc::new(SystemClock)).await?;
//! let executor = engine.start_executor(ExecutorOptions::default());
//! # executor.shutdown().await;
//! # Ok(()) }
//! ```

pub mod api;
pub mod clock;
pub mod definition;
pub mod error;
pub mod handler;
pub mod ids;
pub mod retry;
pub mod run;
pub mod runtime;
pub mod schedule;
pub mod store;
pub mod telemetry;
pub mod webhook;

pub use engine::Engine;
pub use run::state;
pub use runtime::{engine, executor};

/// The pure run logic under its earlier name.
pub mod saga {
    pub use crate::run::{
        ActionError, Advance, Next, OperatorAction, OperatorChange, Outcome, advance,
        advance_with_handlers, merge_into, operate, withdraw_attempt,
    };
}
pub use error::{Error, Result};
