//! `sagaflow`: the durable saga engine for network operators.

fn main() -> std::process::ExitCode {
    sagaflow::cli::main()
}
