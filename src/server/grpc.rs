//! The gRPC side of the server: the workflow, schedule and lifecycle
//! services with health and reflection, TLS when configured, and the health
//! status that follows the store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sagaflow_engine::store::Store;
use sagaflow_proto::v1 as pb;
use tokio_util::sync::CancellationToken;

use super::apis::Apis;
use crate::config::Config;
use crate::telemetry;

/// Binds `grpc.addr` and serves the API until `stop`; pushes the server's
/// task and the health task onto `tasks`. Returns the bound address.
pub(super) async fn serve(
    config: &Config,
    apis: &Apis,
    store: &Arc<dyn Store>,
    stop: &CancellationToken,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<SocketAddr> {
    let grpc_listener = tokio::net::TcpListener::bind(&config.grpc.addr)
        .await
        .with_context(|| format!("cannot listen on grpc.addr {}", config.grpc.addr))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    // Reflection in both versions: v1, and v1alpha for the clients that
    // only speak it (older grpcurl, Postman, Kreya).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(sagaflow_proto::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .context("building the reflection service")?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("building the v1alpha reflection service")?;
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.grpc.tls {
        let cert = std::fs::read(&tls.cert)
            .with_context(|| format!("grpc.tls.cert {}", tls.cert.display()))?;
        let key = std::fs::read(&tls.key)
            .with_context(|| format!("grpc.tls.key {}", tls.key.display()))?;
        let mut t = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key));
        if let Some(ca) = &tls.client_ca {
            let ca = std::fs::read(ca)
                .with_context(|| format!("grpc.tls.client_ca {}", ca.display()))?;
            t = t.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        builder = builder.tls_config(t).context("grpc.tls")?;
    }
    let lifecycle = apis.lifecycle.clone().map(|l| l.into_service());
    let router = builder
        .layer(telemetry::GrpcTelemetryLayer::default())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(apis.workflows.clone().into_service())
        .add_service(apis.schedules.clone().into_service())
        .add_optional_service(lifecycle);
    let s = stop.clone();
    tasks.push(tokio::spawn(async move {
        // No Nagle delay: a small unary answer goes out at once instead
        // of waiting for the client's delayed ACK (~40 ms).
        let incoming =
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, s.cancelled())
            .await
        {
            tracing::error!(error = %e, "gRPC server stopped");
        }
    }));

    // Health, for the server ("") and each service it serves: SERVING only
    // while the store answers and is migrated.
    let mut services = vec![
        "",
        pb::workflow_service_server::SERVICE_NAME,
        pb::schedule_service_server::SERVICE_NAME,
    ];
    if apis.lifecycle.is_some() {
        services.push(pb::lifecycle_service_server::SERVICE_NAME);
    }
    let s = stop.clone();
    let st = store.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            let ok = matches!(st.ready().await, Ok(true));
            for svc in &services {
                let status = if ok {
                    tonic_health::ServingStatus::Serving
                } else {
                    tonic_health::ServingStatus::NotServing
                };
                health.set_service_status(svc, status).await;
            }
            tokio::select! {
                _ = s.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }));
    Ok(grpc_addr)
}
