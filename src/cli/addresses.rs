//! `sagaflow addresses <subscriber>`: the lifecycle service's view of a
//! subscriber's address assignments (pools are in `pools.rs`).

use sagaflow_proto::v1 as pb;
use serde_json::{Value, json};

use super::client::{Client, ClientError, Output};
use super::render::*;

/// `sagaflow addresses <subscriber>`.
pub async fn addresses(c: &mut Client, subscriber: String, out: Output) -> Result<(), ClientError> {
    use sagaflow_proto::v1::lifecycle_service_client::LifecycleServiceClient;
    let mut l = LifecycleServiceClient::new(c.channel.clone());
    let all = l
        .get_subscriber_addresses(c.req(pb::GetSubscriberAddressesRequest {
            subscriber_id: subscriber,
        }))
        .await?
        .into_inner()
        .addresses;
    let fam = |n: i32| {
        pb::AddressFamily::try_from(n)
            .map(|f| enum_name(f.as_str_name(), "ADDRESS_FAMILY_"))
            .unwrap_or_default()
    };
    let st = |n: i32| {
        pb::LifecycleState::try_from(n)
            .map(|f| enum_name(f.as_str_name(), "LIFECYCLE_STATE_"))
            .unwrap_or_default()
    };
    if out == Output::Json {
        let v: Vec<Value> = all
            .iter()
            .map(|a| {
                json!({
                    "id": a.id, "subscriber_id": a.subscriber_id, "pool_id": a.pool_id, "family": fam(a.family),
                    "address": a.address, "state": st(a.state), "allocated_at": ts(&a.allocated_at),
                    "activated_at": ts(&a.activated_at), "suspended_at": ts(&a.suspended_at),
                    "revoked_at": ts(&a.revoked_at), "metadata": struct_json(&a.metadata), "workflow_id": a.workflow_id,
                })
            })
            .collect();
        print_json(&Value::Array(v));
    } else {
        println!(
            "{:<6} {:<28} {:<11} {:<26} WORKFLOW",
            "FAMILY", "ADDRESS", "STATE", "ACTIVATED"
        );
        for a in &all {
            println!(
                "{:<6} {:<28} {:<11} {:<26} {}",
                fam(a.family),
                a.address,
                st(a.state),
                ts_str(&a.activated_at),
                a.workflow_id
            );
        }
    }
    Ok(())
}
