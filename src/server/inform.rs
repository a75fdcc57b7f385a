//! The ACS simulator's notification hook in a server: CPE informs are
//! signalled over gRPC (`SignalWorkflow`) to `domain.simulators.inform_url`
//! (default: this replica's own gRPC address) with the tenant's token of
//! `domain.simulators.inform_tokens` (`dev` adds `dev-crm` for its tenant).

use std::net::SocketAddr;
use std::sync::Arc;

use sagaflow_steps::sim::{GrpcInform, SimHandle};

use crate::app;
use crate::config::Config;

/// Installs the hook on the simulators, once the gRPC server listens on
/// `grpc_addr`.
pub(super) fn install(
    sims: &SimHandle,
    config: &Config,
    dev: bool,
    grpc_addr: SocketAddr,
) -> anyhow::Result<()> {
    let sim = &config.domain.simulators;
    let url = sim
        .inform_url
        .clone()
        .unwrap_or_else(|| format!("http://{grpc_addr}"));
    let mut tokens = sim.inform_tokens.clone();
    if dev {
        tokens
            .entry(app::DEV_TENANT.to_owned())
            .or_insert_with(|| "dev-crm".to_owned());
    }
    let hook = GrpcInform::new(&url, tokens)
        .map_err(|e| anyhow::anyhow!("domain.simulators.inform_url: {e}"))?;
    sims.set_inform_hook(Arc::new(hook));
    Ok(())
}
