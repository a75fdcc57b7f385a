//! The ONU/OLT: activation binds the subscriber's optical terminal to the
//! subscriber and gives it its service profile. `client.rs` holds the
//! adapter (trait and HTTP client), `handlers.rs` the step handlers.

mod client;
mod handlers;

pub use client::*;
