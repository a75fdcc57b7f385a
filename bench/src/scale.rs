//! Scale: finished runs seeded in bulk, then GetWorkflow, ListWorkflows
//! with each filter and the claim query timed, with their plans.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use sagaflow_engine::api::convert::timestamp;
use sagaflow_engine::ids::{RunId, TenantId};
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::{RunFilter, Store};
use sagaflow_proto::v1 as pb;
use serde_json::{Value, json};

use crate::Options;
use crate::host::{authed, bench_server};
use crate::setup::{Setup, time_calls};

pub(crate) async fn scale(
    s: &Setup,
    args: &Options,
    runs: u64,
    queries: usize,
    tenant: Option<String>,
) -> anyhow::Result<Value> {
    use sagaflow_engine::store::postgres::{PgStore, scale as seed};
    let pool =
        s.pg.clone()
            .context("the scale scenario needs a postgres:// database")?;
    let pg = PgStore::from_pool(pool.clone());
    let tenant = tenant.unwrap_or_else(|| format!("bench-{}", RunId::new()));
    let tid = TenantId::new(tenant.clone());
    let claim = |store: Arc<dyn Store>| async move {
        let now = chrono::Utc::now();
        store
            .claim(
                "bench-scale",
                sagaflow_engine::ids::LeaseToken::new(),
                now,
                std::time::Duration::ZERO,
                64,
            )
            .await
            .map(|_| ())
            .map_err(anyhow::Error::from)
    };
    let claim_before = time_calls(queries, |_| claim(s.store.clone())).await?;
    let def = s.engine.resolve("bench_noop", 1)?;
    let workflows: Vec<String> = [
        "provision_subscriber",
        "suspend_subscriber",
        "reactivate_subscriber",
        "deprovision_subscriber",
    ]
    .map(String::from)
    .to_vec();
    let seeded = Instant::now();
    seed::seed_finished(
        &pool,
        &tenant,
        &def.id,
        &workflows,
        runs,
        100_000,
        chrono::Utc::now(),
        365,
        |done| eprintln!("seeded {done} of {runs} runs"),
    )
    .await?;
    let seed_s = seeded.elapsed().as_secs_f64();
    let claim_after = time_calls(queries, |_| claim(s.store.clone())).await?;
    let b = bench_server(s, args, &tenant).await?;
    let ids: Vec<String> = seed::sample_ids(&pool, &tenant, queries as i64)
        .await?
        .into_iter()
        .map(|u| u.to_string())
        .collect();
    anyhow::ensure!(!ids.is_empty(), "no seeded runs to read back");
    let get = time_calls(queries, |i| {
        let mut c = b.client.clone();
        let id = ids[i % ids.len()].clone();
        async move {
            c.get_workflow(authed(pb::GetWorkflowRequest { id }))
                .await?;
            Ok(())
        }
    })
    .await?;
    let mut out = json!({
        "scenario": "scale",
        "backend": "postgres",
        "runs_seeded": runs,
        "seed_s": seed_s,
        "get_workflow": get,
        "claim_before_seeding": claim_before,
        "claim_after_seeding": claim_after,
    });
    let cursor_page = b
        .client
        .clone()
        .list_workflows(authed(pb::ListWorkflowsRequest {
            page_size: 50,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .next_page_token;
    let filters: Vec<(&str, pb::ListWorkflowsRequest, RunFilter)> = vec![
        (
            "list_all",
            pb::ListWorkflowsRequest::default(),
            RunFilter::default(),
        ),
        (
            "list_next_page",
            pb::ListWorkflowsRequest {
                page_token: cursor_page,
                ..Default::default()
            },
            RunFilter::default(),
        ),
        (
            "list_by_workflow",
            pb::ListWorkflowsRequest {
                workflow_name: "suspend_subscriber".into(),
                ..Default::default()
            },
            RunFilter {
                workflow_name: Some("suspend_subscriber".into()),
                ..Default::default()
            },
        ),
        (
            "list_by_state",
            pb::ListWorkflowsRequest {
                states: vec![pb::WorkflowState::Compensated as i32],
                ..Default::default()
            },
            RunFilter {
                states: vec![RunState::Compensated],
                ..Default::default()
            },
        ),
        (
            "list_by_two_states",
            pb::ListWorkflowsRequest {
                states: vec![
                    pb::WorkflowState::Failed as i32,
                    pb::WorkflowState::Cancelled as i32,
                ],
                ..Default::default()
            },
            RunFilter {
                states: vec![RunState::Failed, RunState::Cancelled],
                ..Default::default()
            },
        ),
        (
            "list_by_concurrency_key",
            pb::ListWorkflowsRequest {
                concurrency_key: "subscriber-4240".into(),
                ..Default::default()
            },
            RunFilter {
                concurrency_key: Some("subscriber-4240".into()),
                ..Default::default()
            },
        ),
        (
            "list_by_created_window",
            pb::ListWorkflowsRequest {
                created_after: Some(timestamp(chrono::Utc::now() - chrono::Duration::days(200))),
                created_before: Some(timestamp(chrono::Utc::now() - chrono::Duration::days(199))),
                ..Default::default()
            },
            RunFilter {
                created_after: Some(chrono::Utc::now() - chrono::Duration::days(200)),
                created_before: Some(chrono::Utc::now() - chrono::Duration::days(199)),
                ..Default::default()
            },
        ),
        (
            "list_by_search_attribute",
            pb::ListWorkflowsRequest {
                search: [("subscriber_id".to_owned(), "subscriber-4240".to_owned())].into(),
                ..Default::default()
            },
            RunFilter {
                search: vec![("subscriber_id".into(), "subscriber-4240".into())],
                ..Default::default()
            },
        ),
        (
            "list_by_idempotency_key",
            pb::ListWorkflowsRequest {
                idempotency_key: "order-424242".into(),
                ..Default::default()
            },
            RunFilter {
                idempotency_key: Some("order-424242".into()),
                ..Default::default()
            },
        ),
        (
            "list_by_failed_step",
            pb::ListWorkflowsRequest {
                failed_step: "step7".into(),
                ..Default::default()
            },
            RunFilter {
                failed_at: Some(vec![(def.id.clone(), 6)]),
                ..Default::default()
            },
        ),
        (
            "list_by_failed_step_in_window",
            pb::ListWorkflowsRequest {
                failed_step: "step7".into(),
                created_after: Some(timestamp(chrono::Utc::now() - chrono::Duration::days(2))),
                ..Default::default()
            },
            RunFilter {
                failed_at: Some(vec![(def.id.clone(), 6)]),
                created_after: Some(chrono::Utc::now() - chrono::Duration::days(2)),
                ..Default::default()
            },
        ),
    ];
    let mut plans = serde_json::Map::new();
    for (name, req, filter) in filters {
        let figures = time_calls(queries, |_| {
            let mut c = b.client.clone();
            let req = pb::ListWorkflowsRequest {
                page_size: 50,
                ..req.clone()
            };
            async move {
                c.list_workflows(authed(req)).await?;
                Ok(())
            }
        })
        .await?;
        out[name] = figures;
        let filter = RunFilter {
            limit: 51,
            ..filter
        };
        plans.insert(
            name.into(),
            Value::String(pg.explain_list(&tid, &filter).await?),
        );
    }
    let some_id = RunId(ids[0].parse()?);
    plans.insert(
        "get_workflow".into(),
        Value::String(pg.explain_get(&tid, some_id).await?),
    );
    plans.insert(
        "claim".into(),
        Value::String(pg.explain_claim(chrono::Utc::now(), 64).await?),
    );
    out["plans"] = Value::Object(plans);
    b.server.shutdown().await;
    Ok(out)
}
