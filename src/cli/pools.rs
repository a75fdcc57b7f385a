//! `sagaflow pools`: the tenant's pools with their use and capacity
//! forecast, and `sagaflow pools create|update|retire` (admin role), the
//! run-time changes LifecycleService audits.

use clap::Subcommand;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::lifecycle_service_client::LifecycleServiceClient;
use serde_json::{Value, json};

use super::client::{Client, ClientError, Output};
use super::render::*;

#[derive(Debug, Subcommand)]
pub enum PoolsCommand {
    /// Every pool of the tenant (the default).
    List,
    /// Create a pool.
    Create {
        /// The pool's name, unique per tenant.
        name: String,
        /// The range, e.g. 100.64.0.0/16 or 2001:db8:1000::/40.
        #[arg(long)]
        cidr: String,
        /// What is handed out: 32 for IPv4 (default), e.g. 56 for IPv6 (default).
        #[arg(long, default_value_t = 0)]
        prefix_length: u32,
        /// Warning threshold, percent (default: the configured one).
        #[arg(long, default_value_t = 0)]
        warning: u32,
        /// Critical threshold, percent (default: the configured one).
        #[arg(long, default_value_t = 0)]
        critical: u32,
    },
    /// Grow a pool's range (from its first address) or change thresholds.
    Update {
        /// The pool's name.
        name: String,
        /// A range containing the old one, e.g. 100.64.0.0/15 for 100.64.0.0/16
        /// (default: unchanged).
        #[arg(long, default_value = "")]
        cidr: String,
        /// Warning threshold, percent (default: unchanged).
        #[arg(long, default_value_t = 0)]
        warning: u32,
        /// Critical threshold, percent (default: unchanged).
        #[arg(long, default_value_t = 0)]
        critical: u32,
    },
    /// Retire a pool: no new allocations, existing ones kept.
    Retire {
        /// The pool's name.
        name: String,
    },
}

/// `sagaflow pools [list|create|update|retire]`.
pub async fn pools(
    c: &mut Client,
    cmd: Option<PoolsCommand>,
    out: Output,
) -> Result<(), ClientError> {
    let mut l = LifecycleServiceClient::new(c.channel.clone());
    let one = match cmd.unwrap_or(PoolsCommand::List) {
        PoolsCommand::List => {
            let all = l
                .list_pools(c.req(pb::ListPoolsRequest {}))
                .await?
                .into_inner()
                .pools;
            print_pools(&all, out);
            return Ok(());
        }
        PoolsCommand::Create {
            name,
            cidr,
            prefix_length,
            warning,
            critical,
        } => {
            l.create_pool(c.req(pb::CreatePoolRequest {
                name,
                cidr,
                prefix_length,
                warning_threshold_percent: warning,
                critical_threshold_percent: critical,
            }))
            .await?
        }
        PoolsCommand::Update {
            name,
            cidr,
            warning,
            critical,
        } => {
            l.update_pool(c.req(pb::UpdatePoolRequest {
                name,
                cidr,
                warning_threshold_percent: warning,
                critical_threshold_percent: critical,
            }))
            .await?
        }
        PoolsCommand::Retire { name } => {
            l.retire_pool(c.req(pb::RetirePoolRequest { name })).await?
        }
    }
    .into_inner();
    print_pools(std::slice::from_ref(&one), out);
    Ok(())
}

fn pool_json(p: &pb::Pool) -> Value {
    json!({
        "id": p.id, "name": p.name, "cidr": p.cidr, "prefix_length": p.prefix_length,
        "capacity": p.capacity, "in_use": p.in_use, "utilization_percent": p.utilization_percent,
        "warning_threshold_percent": p.warning_threshold_percent,
        "critical_threshold_percent": p.critical_threshold_percent,
        "retired": p.retired, "backend": p.backend,
        "growth_per_day": p.growth_per_day,
        "exhaustion_forecast": ts(&p.exhaustion_forecast),
    })
}

fn print_pools(all: &[pb::Pool], out: Output) {
    if out == Output::Json {
        return print_json(&Value::Array(all.iter().map(pool_json).collect()));
    }
    println!(
        "{:<16} {:<22} {:>4} {:>12} {:>10} {:>7} {:>9} {:<20} {:<8}",
        "POOL", "CIDR", "LEN", "CAPACITY", "IN USE", "USED %", "GROWTH/D", "FULL BY", "STATE"
    );
    for p in all {
        let full_by = ts_str(&p.exhaustion_forecast);
        let state = if p.retired { "retired" } else { "active" };
        println!(
            "{:<16} {:<22} {:>4} {:>12} {:>10} {:>6.1}% {:>9.1} {:<20} {:<8}",
            p.name,
            p.cidr,
            p.prefix_length,
            p.capacity,
            p.in_use,
            p.utilization_percent,
            p.growth_per_day,
            full_by,
            state
        );
    }
}
