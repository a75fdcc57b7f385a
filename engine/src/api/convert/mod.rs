//! The one place where proto and domain types meet: Struct ⇄ JSON (from
//! `sagaflow_proto::json`), runs,
//! steps, events and definitions to proto, and engine errors to gRPC status
//! codes. Database text never reaches a client: it is logged with a
//! reference the client gets instead.

mod json;
mod run;
mod schedule;
mod status;

pub use json::*;
pub use run::*;
pub use schedule::*;
pub use status::*;
