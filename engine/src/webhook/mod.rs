//! Run-outcome webhooks: which events a tenant's webhooks hear
//! ([`config`]), the delivery rows a checkpoint writes beside its events
//! (decided here, a pure function of the events and the configuration),
//! how a body is signed ([`signature`]), when a failed delivery is tried
//! again ([`backoff`]), and the per-replica task that sends them
//! ([`dispatcher`]).

pub mod backoff;
pub mod config;
pub mod dispatcher;
pub mod signature;

pub use config::{Webhook, WebhookEvent, Webhooks};
pub use dispatcher::{DispatcherHandle, DispatcherOptions};
