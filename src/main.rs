//! `sagaflow`: the durable saga engine for network operators.
//!
//! The binary allocates with mimalloc: on the executor's hot path the C
//! library's allocator took a fifth of the engine's CPU
//! (docs/performance-history.md, "The allocator"), and mimalloc gives 11 % more sagas per second.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sagaflow::cli::main()
}
