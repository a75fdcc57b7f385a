//! The operator's repair RPCs over both transports, against an in-process
//! server on PostgreSQL: ListWorkflows by search attribute, failed step and
//! idempotency key (gRPC and the query string), the BASIC and FULL views,
//! BulkOperate's dry run, RewindWorkflow of FAILED runs, and the roles
//! (operator and above act; crm is refused; no token is unauthenticated).
#![allow(clippy::unwrap_used)]

mod common;

use common::http::Http;
use common::*;
use reqwest::Method;
use sagaflow_proto::v1 as pb;
use serde_json::json;
use tonic::Code;

fn searchable_demo() -> String {
    DEMO.replace(
        "name = \"demo_saga\"",
        "name = \"demo_saga\"\nsearch_attributes = [\"subscriber_id\", \"customer.id\"]",
    )
}

async fn history_kinds(t: &mut TestServer, id: &str) -> Vec<String> {
    t.client
        .get_workflow_history(req(
            pb::GetWorkflowHistoryRequest { id: id.into() },
            "crm-a",
        ))
        .await
        .unwrap()
        .into_inner()
        .events
        .into_iter()
        .map(|e| e.r#type)
        .collect()
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn search_bulk_dry_run_and_rewind_over_grpc_and_http(pool: sqlx::PgPool) {
    let mut t = start(&pool, &[("demo.toml", searchable_demo())]).await;
    let h = Http::new(t.server.http_addr);
    let mut ids = Vec::new();
    for (i, sub) in ["alice", "bob"].iter().enumerate() {
        let input = json!({"subscriber_id": sub, "customer": {"id": format!("C-{i}")},
            "demo": {"fail_step": "configure"}});
        let w = start_run(
            &mut t.client,
            "crm-a",
            "demo_saga",
            input,
            &format!("order-{i}"),
        )
        .await
        .unwrap()
        .workflow
        .unwrap();
        assert_eq!(w.search_attributes["subscriber_id"], *sub);
        ids.push(w.id);
    }
    for id in &ids {
        wait_state(&mut t.client, "crm-a", id, pb::WorkflowState::Failed).await;
    }
    let done = start_run(
        &mut t.client,
        "crm-a",
        "demo_saga",
        json!({"subscriber_id": "alice"}),
        "",
    )
    .await
    .unwrap()
    .workflow
    .unwrap()
    .id;
    wait_state(&mut t.client, "crm-a", &done, pb::WorkflowState::Completed).await;

    // gRPC: by search attribute, failed step, key; BASIC leaves input out.
    let list = |r: pb::ListWorkflowsRequest| req(r, "crm-a");
    let page = t
        .client
        .list_workflows(list(pb::ListWorkflowsRequest {
            search: [("subscriber_id".to_owned(), "alice".to_owned())].into(),
            failed_step: "configure".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.workflows.len(), 1);
    let w = &page.workflows[0];
    assert_eq!(w.id, ids[0]);
    assert_eq!(w.search_attributes["customer.id"], "C-0");
    assert!(w.input.is_none() && w.context.is_none(), "BASIC view");
    let full = t
        .client
        .list_workflows(list(pb::ListWorkflowsRequest {
            idempotency_key: "order-1".into(),
            view: pb::WorkflowView::Full as i32,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(full.workflows.len(), 1);
    assert_eq!(full.workflows[0].id, ids[1]);
    assert!(full.workflows[0].input.is_some(), "FULL view");
    let e = t
        .client
        .list_workflows(list(pb::ListWorkflowsRequest {
            failed_step: "nope".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("nope"), "{}", e.message());

    // HTTP: the same filters in the query string.
    let a = h
        .get(
            "/v1/workflows?search.subscriber_id=alice&state=WORKFLOW_STATE_FAILED",
            "crm-a",
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["workflows"].as_array().unwrap().len(), 1);
    assert_eq!(
        a.json["workflows"][0]["search_attributes"]["subscriber_id"], "alice",
        "{}",
        a.text
    );
    let a = h.get("/v1/workflows?search.customer.id=C-1", "crm-a").await;
    assert_eq!(a.json["workflows"][0]["id"], ids[1].as_str(), "{}", a.text);
    let a = h.get("/v1/workflows?failed_step=configure", "crm-a").await;
    assert_eq!(
        a.json["workflows"].as_array().unwrap().len(),
        2,
        "{}",
        a.text
    );
    let a = h.get("/v1/workflows?search.nope=x", "crm-a").await;
    assert_eq!(
        (a.status, a.code()),
        (400, "INVALID_ARGUMENT"),
        "{}",
        a.text
    );

    // Bulk dry run: the count and the ids, nothing written; roles.
    let before = count_rows(&pool).await;
    let body = json!({"filter": {"failed_step": "configure"}, "action": "BULK_ACTION_RETRY",
        "dry_run": true, "reason": "OLT outage"});
    let a = h
        .send(Method::POST, "/v1/workflows:bulk", None, Some(&body), &[])
        .await;
    assert_eq!(a.status, 401);
    let a = h.post("/v1/workflows:bulk", "crm-a", body.clone()).await;
    assert_eq!(
        (a.status, a.code()),
        (403, "PERMISSION_DENIED"),
        "{}",
        a.text
    );
    let a = h.post("/v1/workflows:bulk", "operator-a", body).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["matched"], 2, "{}", a.text);
    assert_eq!(a.json["workflow_ids"].as_array().unwrap().len(), 2);
    assert_eq!(count_rows(&pool).await, before, "a dry run stores nothing");
    let a = h
        .post(
            "/v1/workflows:bulk",
            "operator-a",
            json!({"action": "BULK_ACTION_UNSPECIFIED", "dry_run": true}),
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (400, "INVALID_ARGUMENT"),
        "{}",
        a.text
    );

    // Rewind over gRPC: roles and required fields first, nothing written.
    let rewind = |id: &str, reason: &str, token: &str| {
        req(
            pb::RewindWorkflowRequest {
                id: id.into(),
                to_step: "reserve".into(),
                context_patch: obj(json!({"demo": {}})),
                reason: reason.into(),
            },
            token,
        )
    };
    let e = t
        .client
        .rewind_workflow(rewind(&ids[0], "fix", "crm-a"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = t
        .client
        .rewind_workflow(rewind(&ids[0], "", "operator-a"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = t
        .client
        .rewind_workflow(rewind(&done, "fix", "operator-a"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = t
        .client
        .rewind_workflow(rewind(&ids[0], "fix", "operator-b"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "another tenant's run");
    assert_eq!(count_rows(&pool).await, before, "refusals store nothing");
    t.client
        .rewind_workflow(rewind(&ids[0], "ticket 7", "operator-a"))
        .await
        .unwrap();
    let w = wait_state(
        &mut t.client,
        "crm-a",
        &ids[0],
        pb::WorkflowState::Completed,
    )
    .await;
    assert!(w.error.is_empty());
    let kinds = history_kinds(&mut t, &ids[0]).await;
    assert!(kinds.contains(&"operator_rewind".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"run_rewound".to_owned()), "{kinds:?}");

    // Rewind over HTTP, by an admin.
    let a = h
        .post(
            &format!("/v1/workflows/{}:rewind", ids[1]),
            "admin-a",
            json!({"to_step": "reserve", "reason": "ticket 8", "context_patch": {"demo": {}}}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    wait_state(
        &mut t.client,
        "crm-a",
        &ids[1],
        pb::WorkflowState::Completed,
    )
    .await;
    let a = h
        .post(
            &format!("/v1/workflows/{}:rewind", ids[1]),
            "operator-a",
            json!({"to_step": "reserve", "reason": "again"}),
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (400, "FAILED_PRECONDITION"),
        "{}",
        a.text
    );
    t.server.shutdown().await;
}
