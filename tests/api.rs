//! WorkflowService end to end over real gRPC: an in-process server on
//! 127.0.0.1:0 against a fresh PostgreSQL database per test.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sagaflow_proto::v1 as pb;
use serde_json::json;
use tonic::Code;

const RANDOM_ID: &str = "0190a5d2-ac96-7d4b-bcce-b302099a8057";

fn demo_files() -> Vec<(&'static str, String)> {
    vec![
        ("demo.toml", DEMO.to_string()),
        ("keyed_reject.toml", keyed_demo("keyed_reject", "reject")),
    ]
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn every_rpc_and_its_error_codes(pool: sqlx::PgPool) {
    let t = start(&pool, &demo_files()).await;
    let mut c = t.client.clone();

    // StartWorkflow: created, idempotent repeat, conflicting repeat.
    let input = json!({"demo": {"fail_step": "configure"}});
    let first = start_run(&mut c, "crm-a", "demo_saga", input.clone(), "order-1")
        .await
        .unwrap();
    assert!(first.created);
    let w = first.workflow.unwrap();
    assert_eq!(
        (w.tenant_id.as_str(), w.workflow_version, w.steps.len()),
        ("a", 1, 5)
    );
    let again = start_run(&mut c, "crm-a", "demo_saga", input.clone(), "order-1")
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.workflow.unwrap().id, w.id);
    let e = start_run(&mut c, "crm-a", "demo_saga", json!({"other": 1}), "order-1")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    let e = start_run(&mut c, "crm-a", "no_such_flow", json!({}), "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("demo_saga"),
        "lists the known workflows: {}",
        e.message()
    );
    let e = start_run(
        &mut c,
        "crm-a",
        "demo_saga",
        json!({"demo": "not an object"}),
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("/demo"),
        "names the field: {}",
        e.message()
    );
    let e = start_run(
        &mut c,
        "crm-a",
        "demo_saga",
        json!({"blob": "x".repeat(300 * 1024)}),
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    let e = c
        .start_workflow(tonic::Request::new(pb::StartWorkflowRequest {
            workflow_name: "demo_saga".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = start_run(&mut c, "nobody", "demo_saga", json!({}), "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // Concurrency key with policy reject.
    let held = start_run(
        &mut c,
        "crm-a",
        "keyed_reject",
        json!({"subscriber_id": "s1", "demo": {"sleep_ms": 2000}}),
        "",
    )
    .await
    .unwrap();
    let e = start_run(
        &mut c,
        "crm-a",
        "keyed_reject",
        json!({"subscriber_id": "s1"}),
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    assert!(e.message().contains(&held.workflow.unwrap().id));

    // GetWorkflow and the run pausing as FAILED.
    let failed = wait_state(&mut c, "crm-a", &w.id, pb::WorkflowState::Failed).await;
    assert_eq!(failed.current_step, "configure");
    assert!(failed.error.contains("configure"));
    assert_eq!(failed.steps[1].handler, "builtin.demo");
    let e = c
        .get_workflow(req(
            pb::GetWorkflowRequest {
                id: RANDOM_ID.into(),
            },
            "crm-a",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .get_workflow(req(
            pb::GetWorkflowRequest {
                id: "not-a-uuid".into(),
            },
            "crm-a",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Operator actions: crm may not; wrong state is FAILED_PRECONDITION.
    let retry = |token: &str, id: &str| {
        req(
            pb::RetryWorkflowRequest {
                id: id.into(),
                from_step: String::new(),
                context_patch: obj(json!({"demo": {}})),
                reason: "fixed the input".into(),
            },
            token,
        )
    };
    assert_eq!(
        c.retry_workflow(retry("crm-a", &w.id))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let e = c
        .skip_step(req(
            pb::SkipStepRequest {
                id: w.id.clone(),
                step: "validate".into(),
                output: None,
                reason: String::new(),
            },
            "operator-a",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    c.retry_workflow(retry("operator-a", &w.id)).await.unwrap();
    let done = wait_state(&mut c, "crm-a", &w.id, pb::WorkflowState::Completed).await;
    assert!(done.finished_at.is_some());
    let e = c
        .retry_workflow(retry("operator-a", &w.id))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "retry of a COMPLETED run"
    );
    let e = c
        .retry_workflow(retry("operator-a", RANDOM_ID))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // History shows the operator's action with principal and reason.
    let h = c
        .get_workflow_history(req(
            pb::GetWorkflowHistoryRequest { id: w.id.clone() },
            "crm-a",
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(
        h.iter()
            .enumerate()
            .all(|(i, e)| e.sequence == i as u64 + 1)
    );
    let op = h.iter().find(|e| e.r#type == "operator_retry").unwrap();
    assert_eq!(
        (op.actor.as_str(), op.message.as_str()),
        ("operator-a-user", "fixed the input")
    );

    // Compensate, skip and cancel.
    let r2 = failed_run(&mut c, "crm-a").await;
    c.compensate_workflow(req(
        pb::CompensateWorkflowRequest {
            id: r2.clone(),
            reason: "customer gone".into(),
        },
        "operator-a",
    ))
    .await
    .unwrap();
    wait_state(&mut c, "crm-a", &r2, pb::WorkflowState::Compensated).await;
    let r3 = failed_run(&mut c, "crm-a").await;
    c.skip_step(req(
        pb::SkipStepRequest {
            id: r3.clone(),
            step: "configure".into(),
            output: obj(json!({"by_hand": true})),
            reason: String::new(),
        },
        "operator-a",
    ))
    .await
    .unwrap();
    let w3 = wait_state(&mut c, "crm-a", &r3, pb::WorkflowState::Completed).await;
    assert_eq!(w3.steps[2].state, pb::StepState::Skipped as i32);
    let r4 = failed_run(&mut c, "crm-a").await;
    c.cancel_workflow(req(
        pb::CancelWorkflowRequest {
            id: r4.clone(),
            compensate: true,
            reason: String::new(),
        },
        "operator-a",
    ))
    .await
    .unwrap();
    wait_state(&mut c, "crm-a", &r4, pb::WorkflowState::Cancelled).await;
    let e = c
        .cancel_workflow(req(
            pb::CancelWorkflowRequest {
                id: r4.clone(),
                compensate: false,
                reason: String::new(),
            },
            "operator-a",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // WatchWorkflow: the whole history, then live events, then the end.
    let r5 = start_run(
        &mut c,
        "crm-a",
        "demo_saga",
        json!({"demo": {"sleep_ms": 30}}),
        "",
    )
    .await
    .unwrap()
    .workflow
    .unwrap()
    .id;
    let mut stream = c
        .watch_workflow(req(pb::WatchWorkflowRequest { id: r5.clone() }, "crm-a"))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        seen.push(e);
    }
    assert_eq!(seen.first().unwrap().r#type, "run_started");
    assert_eq!(seen.last().unwrap().r#type, "run_completed");
    assert!(
        seen.iter()
            .enumerate()
            .all(|(i, e)| e.sequence == i as u64 + 1),
        "gapless, in order"
    );
    let e = c
        .watch_workflow(req(
            pb::WatchWorkflowRequest {
                id: RANDOM_ID.into(),
            },
            "crm-a",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // ListWorkflows: filters and keyset pagination stable while runs arrive.
    let list = |states: Vec<i32>, name: &str, key: &str, page_size: u32, token: &str| {
        req(
            pb::ListWorkflowsRequest {
                workflow_name: name.into(),
                states,
                concurrency_key: key.into(),
                page_size,
                page_token: token.into(),
                ..Default::default()
            },
            "crm-a",
        )
    };
    let all = c
        .list_workflows(list(vec![], "", "", 0, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.workflows.len(), 6);
    assert!(all.workflows.iter().all(|w| w.steps.is_empty()));
    let completed = c
        .list_workflows(list(
            vec![pb::WorkflowState::Completed as i32],
            "",
            "",
            0,
            "",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(completed.workflows.len(), 3);
    let keyed = c
        .list_workflows(list(vec![], "keyed_reject", "s1", 0, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keyed.workflows.len(), 1);
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_workflows(list(vec![], "", "", 2, &token))
            .await
            .unwrap()
            .into_inner();
        pages.extend(page.workflows.iter().map(|w| w.id.clone()));
        // A new run arriving between pages does not disturb the walk.
        start_run(&mut c, "crm-a", "demo_saga", json!({}), "")
            .await
            .unwrap();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<String> = all.workflows.iter().map(|w| w.id.clone()).collect();
    assert_eq!(pages, expected, "every run once, newest first");
    for bad in [
        list(vec![], "", "", 5000, ""),
        list(vec![0], "", "", 0, ""),
        list(vec![], "", "", 0, "garbage"),
    ] {
        assert_eq!(
            c.list_workflows(bad).await.unwrap_err().code(),
            Code::InvalidArgument
        );
    }

    // ListWorkflowDefinitions.
    let defs = c
        .list_workflow_definitions(req(pb::ListWorkflowDefinitionsRequest {}, "crm-a"))
        .await
        .unwrap()
        .into_inner()
        .definitions;
    let demo = defs.iter().find(|d| d.name == "demo_saga").unwrap();
    assert_eq!(demo.steps.len(), 5);
    assert!(!demo.steps[3].required);
    assert!(demo.input_schema.is_some());
    t.server.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn tenants_see_only_their_own_runs(pool: sqlx::PgPool) {
    let t = start(&pool, &demo_files()).await;
    let mut c = t.client.clone();
    let mut b_ids = Vec::new();
    for i in 0..100 {
        start_run(
            &mut c,
            "crm-a",
            "demo_saga",
            json!({"i": i}),
            &format!("k{i}"),
        )
        .await
        .unwrap();
        let w = start_run(
            &mut c,
            "crm-b",
            "demo_saga",
            json!({"i": i}),
            &format!("k{i}"),
        )
        .await
        .unwrap();
        b_ids.push(w.workflow.unwrap().id);
    }
    let not_found = |e: tonic::Status, id: &str| {
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        assert_eq!(
            e.message(),
            format!("workflow run {id} not found"),
            "same answer as a run that does not exist"
        );
    };
    let e = c
        .get_workflow(req(
            pb::GetWorkflowRequest {
                id: RANDOM_ID.into(),
            },
            "operator-a",
        ))
        .await
        .unwrap_err();
    not_found(e, RANDOM_ID);
    for id in &b_ids {
        let id = id.clone();
        not_found(
            c.get_workflow(req(pb::GetWorkflowRequest { id: id.clone() }, "operator-a"))
                .await
                .unwrap_err(),
            &id,
        );
        not_found(
            c.get_workflow_history(req(
                pb::GetWorkflowHistoryRequest { id: id.clone() },
                "operator-a",
            ))
            .await
            .unwrap_err(),
            &id,
        );
        not_found(
            c.watch_workflow(req(
                pb::WatchWorkflowRequest { id: id.clone() },
                "operator-a",
            ))
            .await
            .unwrap_err(),
            &id,
        );
        not_found(
            c.retry_workflow(req(
                pb::RetryWorkflowRequest {
                    id: id.clone(),
                    ..Default::default()
                },
                "operator-a",
            ))
            .await
            .unwrap_err(),
            &id,
        );
        not_found(
            c.compensate_workflow(req(
                pb::CompensateWorkflowRequest {
                    id: id.clone(),
                    reason: String::new(),
                },
                "operator-a",
            ))
            .await
            .unwrap_err(),
            &id,
        );
        not_found(
            c.cancel_workflow(req(
                pb::CancelWorkflowRequest {
                    id: id.clone(),
                    compensate: true,
                    reason: String::new(),
                },
                "operator-a",
            ))
            .await
            .unwrap_err(),
            &id,
        );
        not_found(
            c.skip_step(req(
                pb::SkipStepRequest {
                    id: id.clone(),
                    step: "validate".into(),
                    output: None,
                    reason: String::new(),
                },
                "operator-a",
            ))
            .await
            .unwrap_err(),
            &id,
        );
    }
    let mut seen = 0;
    let mut token = String::new();
    loop {
        let page = c
            .list_workflows(req(
                pb::ListWorkflowsRequest {
                    page_size: 37,
                    page_token: token.clone(),
                    ..Default::default()
                },
                "crm-a",
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.workflows.iter().all(|w| w.tenant_id == "a"));
        assert!(page.workflows.iter().all(|w| !b_ids.contains(&w.id)));
        seen += page.workflows.len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, 100);
    // The same idempotency key in tenant B did not collide with A's.
    t.server.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn crm_tokens_cannot_repair_runs(pool: sqlx::PgPool) {
    let t = start(&pool, &demo_files()).await;
    let mut c = t.client.clone();
    let id = start_run(
        &mut c,
        "crm-a",
        "demo_saga",
        json!({"demo": {"fail_step": "reserve"}}),
        "",
    )
    .await
    .unwrap()
    .workflow
    .unwrap()
    .id;
    let before = wait_state(&mut c, "crm-a", &id, pb::WorkflowState::Failed).await;
    let (runs, events) = count_rows(&pool).await;
    let denied = [
        c.retry_workflow(req(
            pb::RetryWorkflowRequest {
                id: id.clone(),
                ..Default::default()
            },
            "crm-a",
        ))
        .await
        .unwrap_err(),
        c.compensate_workflow(req(
            pb::CompensateWorkflowRequest {
                id: id.clone(),
                reason: String::new(),
            },
            "crm-a",
        ))
        .await
        .unwrap_err(),
        c.skip_step(req(
            pb::SkipStepRequest {
                id: id.clone(),
                step: "reserve".into(),
                output: None,
                reason: String::new(),
            },
            "crm-a",
        ))
        .await
        .unwrap_err(),
        c.cancel_workflow(req(
            pb::CancelWorkflowRequest {
                id: id.clone(),
                compensate: true,
                reason: String::new(),
            },
            "crm-a",
        ))
        .await
        .unwrap_err(),
    ];
    for e in denied {
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    assert_eq!(count_rows(&pool).await, (runs, events), "nothing written");
    let after = c
        .get_workflow(req(pb::GetWorkflowRequest { id: id.clone() }, "crm-a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.updated_at, before.updated_at);
    assert_eq!(after.state, before.state);
    t.server.shutdown().await;
}
