//! GetWorkflowHistory a page at a time: over gRPC and HTTP on PostgreSQL
//! (an in-process server), and with the CLI's `--page-size` and `--all`
//! against a real `sagaflow dev` on SQLite. The pages, followed to the
//! end, are the whole history in order; bad page sizes and tokens are
//! refused with a message.
#![allow(clippy::unwrap_used)]

mod common;

use common::http::Http;
use common::*;
use sagaflow_proto::v1 as pb;
use serde_json::{Value, json};
use tonic::Code;

async fn page(
    t: &mut TestServer,
    id: &str,
    page_size: u32,
    page_token: &str,
) -> Result<pb::GetWorkflowHistoryResponse, tonic::Status> {
    t.client
        .get_workflow_history(req(
            pb::GetWorkflowHistoryRequest {
                id: id.into(),
                page_size,
                page_token: page_token.into(),
            },
            "crm-a",
        ))
        .await
        .map(|r| r.into_inner())
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn history_pages_over_grpc_and_http_are_the_whole_history(pool: sqlx::PgPool) {
    let mut t = start(&pool, &[("demo.toml", DEMO.to_owned())]).await;
    let mut c = t.client.clone();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let done = pb::WorkflowState::Completed;
        ids.push(run_until(&mut c, "crm-a", "demo_saga", json!({}), done).await);
    }
    let (id, other) = (ids[0].clone(), ids[1].clone());

    // One page of the default size holds this short history.
    let whole = page(&mut t, &id, 0, "").await.unwrap();
    assert!(whole.next_page_token.is_empty());
    assert!(whole.events.len() > 6, "{}", whole.events.len());
    let seqs = |events: &[pb::WorkflowEvent]| events.iter().map(|e| e.sequence).collect::<Vec<_>>();

    // Pages of 3, followed to the end.
    let mut got = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let p = page(&mut t, &id, 3, &token).await.unwrap();
        assert!(p.events.len() <= 3);
        pages += 1;
        got.extend(p.events);
        if p.next_page_token.is_empty() {
            break;
        }
        token = p.next_page_token;
    }
    assert_eq!(seqs(&got), seqs(&whole.events));
    assert_eq!(pages, whole.events.len().div_ceil(3));

    // Bad sizes and tokens: INVALID_ARGUMENT naming the field.
    let e = page(&mut t, &id, 10_001, "").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("page_size"), "{}", e.message());
    let first = page(&mut t, &id, 2, "").await.unwrap();
    for bad in ["zz", "not-a-token", first.next_page_token.as_str()] {
        let run = if bad == first.next_page_token {
            other.as_str()
        } else {
            id.as_str()
        };
        let e = page(&mut t, run, 2, bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
        assert!(e.message().contains("page_token"), "{}", e.message());
    }

    // The HTTP route takes the same as query parameters.
    let http = Http::new(t.server.http_addr);
    let path = format!("/v1/workflows/{id}/history");
    let a = http.get(&format!("{path}?page_size=4"), "crm-a").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["events"].as_array().unwrap().len(), 4);
    let next = a.json["next_page_token"].as_str().unwrap().to_owned();
    let b = http
        .get(&format!("{path}?page_size=4&page_token={next}"), "crm-a")
        .await;
    assert_eq!(b.status, 200, "{}", b.text);
    assert_eq!(
        b.json["events"][0]["sequence"],
        json!(whole.events[4].sequence.to_string())
    );
    let bad = http.get(&format!("{path}?page_token=zz"), "crm-a").await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(bad.code(), "INVALID_ARGUMENT");
    assert!(bad.text.contains("page_token"), "{}", bad.text);
    let bad = http.get(&format!("{path}?page_size=10001"), "crm-a").await;
    assert_eq!(bad.status, 400, "{}", bad.text);
}

#[test]
fn the_cli_pages_and_follows_every_page_on_sqlite() {
    let dev = DevProcess::start();
    let started = dev.json(
        "dev-crm",
        &["workflow", "start", "demo_saga", "--input", "{}"],
    );
    let id = started["workflow"]["id"].as_str().unwrap().to_owned();
    dev.wait_state(&id, "COMPLETED");
    let whole = dev.json("dev-crm", &["workflow", "history", &id]);
    let whole = whole.as_array().unwrap();
    assert!(whole.len() > 4, "{}", whole.len());

    let (code, out, err) = dev.cli(
        "dev-crm",
        &["workflow", "history", &id, "--page-size", "2", "-o", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let first: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(first.as_array().unwrap(), &whole[..2]);
    let token = err
        .lines()
        .find_map(|l| l.strip_prefix("more: --page-token "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no next page named: {err}"))
        .to_owned();
    let second = dev.json(
        "dev-crm",
        &[
            "workflow",
            "history",
            &id,
            "--page-size",
            "2",
            "--page-token",
            &token,
        ],
    );
    assert_eq!(second.as_array().unwrap(), &whole[2..4]);

    let all = dev.json(
        "dev-crm",
        &["workflow", "history", &id, "--page-size", "2", "--all"],
    );
    assert_eq!(all.as_array().unwrap(), whole);

    let (code, _, err) = dev.cli(
        "dev-crm",
        &["workflow", "history", &id, "--page-token", "zz"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("page_token"), "{err}");
}
