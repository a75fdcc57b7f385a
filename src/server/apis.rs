//! The service implementations, built once and served by both transports:
//! the gRPC server and the JSON/HTTP API call the very same values.

use std::sync::Arc;
use std::time::Duration;

use sagaflow_engine::Engine;
use sagaflow_engine::api::auth::Authenticator;
use sagaflow_engine::api::{ApiOptions, ScheduleApi, WorkflowApi};

use crate::config::Config;
use crate::lifecycle_api::LifecycleApi;

/// The API's services.
#[derive(Clone)]
pub struct Apis {
    pub workflows: WorkflowApi,
    pub schedules: ScheduleApi,
    /// Only when the store has a domain database.
    pub lifecycle: Option<LifecycleApi>,
}

impl Apis {
    pub fn new(
        config: &Config,
        engine: &Engine,
        auth: &Arc<Authenticator>,
        domain_db: Option<sagaflow_steps::DomainDb>,
        ipam: Option<Arc<sagaflow_steps::ipam::IpamBackends>>,
    ) -> Self {
        let workflows = WorkflowApi::new(
            engine.clone(),
            auth.clone(),
            ApiOptions {
                max_payload_bytes: config.grpc.max_payload_bytes,
                max_watches: config.grpc.max_watch_streams,
                watch_poll: Duration::from_millis(config.grpc.watch_poll_ms),
                bulk_per_second: config.grpc.bulk_actions_per_second,
            },
        );
        let schedules =
            ScheduleApi::new(engine.clone(), auth.clone(), config.grpc.max_payload_bytes);
        Self {
            workflows,
            schedules,
            lifecycle: domain_db.map(|db| {
                LifecycleApi::new(db, auth.clone())
                    .with_domain(
                        config.domain.ipam.clone(),
                        (
                            config.domain.maintenance.warning_percent,
                            config.domain.maintenance.critical_percent,
                        ),
                    )
                    .with_notifier(notifier(config))
                    .with_backends(ipam.unwrap_or_default())
            }),
        }
    }
}

/// The notifier of `[domain.notify]`; the log when it is invalid (the
/// domain's start refuses that configuration before the API is served).
fn notifier(config: &Config) -> Arc<dyn sagaflow_steps::notify::Notifier> {
    config
        .domain
        .notify
        .notifier()
        .unwrap_or_else(|_| Arc::new(sagaflow_steps::notify::LogNotifier))
}
