//! The running engine: the [`Engine`](engine::Engine) handle, the state its
//! parts share, and the executor that claims runs under a lease, calls their
//! handlers and checkpoints what the pure run logic decided.

mod batcher;
pub mod engine;
pub mod executor;
mod shared;
mod signal;
