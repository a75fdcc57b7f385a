//! ListWorkflowHistory: a run with a long history (over a thousand events)
//! read a page at a time over gRPC and HTTP, on PostgreSQL and on SQLite
//! (in-process servers), and with the CLI's `--page-size`, `--page-token`
//! and `--all` against a real `sagaflow dev`. The pages, followed to the
//! end, are GetWorkflowHistory's whole history, gaplessly and in order;
//! bad page sizes and tokens are refused with a message saying what to
//! pass, and another tenant's run is not found.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::http::Http;
use common::*;
use sagaflow_proto::v1 as pb;
use serde_json::{Value, json};
use tonic::Code;

/// Steps of the long saga: two events each, so its history passes the
/// default page of 1000.
const STEPS: usize = 520;

/// A saga of [`STEPS`] demo steps.
fn long_saga() -> String {
    let mut toml = String::from(
        "name = \"long_saga\"\nversion = 1\non_failure = \"pause\"\n\
         [input_schema]\ntype = \"object\"\n",
    );
    for i in 0..STEPS {
        toml.push_str(&format!(
            "[[steps]]\nname = \"s{i}\"\nhandler = \"builtin.demo\"\n"
        ));
    }
    toml
}

fn workflows() -> Vec<(&'static str, String)> {
    vec![("demo.toml", DEMO.to_owned()), ("long.toml", long_saga())]
}

async fn page(
    t: &mut TestServer,
    token: &str,
    id: &str,
    page_size: u32,
    page_token: &str,
) -> Result<pb::ListWorkflowHistoryResponse, tonic::Status> {
    t.client
        .list_workflow_history(req(
            pb::ListWorkflowHistoryRequest {
                id: id.into(),
                page_size,
                page_token: page_token.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

/// Every page of `page_size` events, from the first to the one without a
/// next token.
async fn all_pages(t: &mut TestServer, id: &str, page_size: u32) -> Vec<Vec<pb::WorkflowEvent>> {
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let p = page(t, "crm-a", id, page_size, &token).await.unwrap();
        pages.push(p.events);
        if p.next_page_token.is_empty() {
            return pages;
        }
        token = p.next_page_token;
    }
}

fn seqs(events: &[pb::WorkflowEvent]) -> Vec<u64> {
    events.iter().map(|e| e.sequence).collect()
}

/// Starts the long saga and waits (deadline 120 s: it is long) until it
/// COMPLETED.
async fn long_run(t: &mut TestServer) -> String {
    let started = start_run(&mut t.client, "crm-a", "long_saga", json!({}), "")
        .await
        .unwrap();
    let id = started.workflow.unwrap().id;
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let w = get_run(&mut t.client, "crm-a", &id).await;
        if state(&w) == pb::WorkflowState::Completed {
            return id;
        }
        assert!(Instant::now() < end, "still {:?}", state(&w));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The same on either backend: gRPC pages, refusals, and the HTTP route.
async fn pages_are_the_whole_history(t: &mut TestServer) {
    let id = long_run(t).await;
    let other = run_until(
        &mut t.client,
        "crm-a",
        "demo_saga",
        json!({}),
        pb::WorkflowState::Completed,
    )
    .await;
    let whole = history_of(&mut t.client, "crm-a", &id).await;
    assert!(whole.len() > 1000, "{} events", whole.len());
    eprintln!("the long run: {} events", whole.len());
    let n = whole.len() as u64;
    assert_eq!(seqs(&whole), (1..=n).collect::<Vec<_>>(), "no gaps");

    // The default page holds 1000; pages of 7 and of the largest size;
    // each chain is the whole history.
    for (size, holds) in [(0, 1000), (7, 7), (10_000, 10_000)] {
        let pages = all_pages(t, &id, size).await;
        assert_eq!(pages.len(), whole.len().div_ceil(holds), "size {size}");
        assert!(pages.iter().all(|p| !p.is_empty() && p.len() <= holds));
        assert_eq!(pages[0].len(), whole.len().min(holds));
        assert_eq!(pages.concat(), whole, "size {size}");
    }

    // Bad sizes and tokens: INVALID_ARGUMENT saying what to pass.
    let e = page(t, "crm-a", &id, 10_001, "").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("page_size must be at most 10000"),
        "{e:?}"
    );
    let first = page(t, "crm-a", &id, 2, "").await.unwrap();
    for (run, bad) in [
        (&id, "zz"),
        (&id, "not-a-token"),
        (&id, &"ab".repeat(150)),
        (&other, first.next_page_token.as_str()),
    ] {
        let e = page(t, "crm-a", run, 2, bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
        assert!(e.message().contains("pass next_page_token"), "{e:?}");
    }
    let e = page(t, "crm-a", "nope", 0, "").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // The same roles and tenancy as GetWorkflowHistory: another tenant's
    // run is not found (with or without a token of its pages), no token
    // is unauthenticated.
    for token in ["", first.next_page_token.as_str()] {
        let e = page(t, "crm-b", &id, 2, token).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
    }
    let e = t
        .client
        .list_workflow_history(pb::ListWorkflowHistoryRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    // HTTP: without page parameters the whole history, as always; with
    // them a page and the next page's token.
    let http = Http::new(t.server.http_addr);
    let path = format!("/v1/workflows/{id}/history");
    let a = http.get(&path, "crm-a").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["events"].as_array().unwrap().len(), whole.len());
    assert_eq!(
        a.json
            .get("next_page_token")
            .and_then(Value::as_str)
            .unwrap_or(""),
        ""
    );
    let mut got = Vec::new();
    let mut query = "page_size=400".to_owned();
    loop {
        let a = http.get(&format!("{path}?{query}"), "crm-a").await;
        assert_eq!(a.status, 200, "{}", a.text);
        let events = a.json["events"].as_array().unwrap();
        assert!(events.len() <= 400);
        got.extend(
            events
                .iter()
                .map(|e| e["sequence"].as_str().unwrap().parse::<u64>().unwrap()),
        );
        match a.json["next_page_token"].as_str() {
            Some(next) if !next.is_empty() => query = format!("page_size=400&page_token={next}"),
            _ => break,
        }
    }
    assert_eq!(got, seqs(&whole));
    let a = http.get(&format!("{path}?page_size=0"), "crm-a").await;
    assert_eq!(a.json["events"].as_array().unwrap().len(), 1000);
    for bad in ["page_token=zz", "page_size=10001", "page_size=-1"] {
        let a = http.get(&format!("{path}?{bad}"), "crm-a").await;
        assert_eq!(a.status, 400, "{bad}: {}", a.text);
        assert_eq!(a.code(), "INVALID_ARGUMENT");
        assert!(a.text.contains("page_"), "{bad}: {}", a.text);
    }
    let a = http.get(&format!("{path}?page_size=5"), "crm-b").await;
    assert_eq!(a.status, 404, "{}", a.text);
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn history_pages_on_postgres(pool: sqlx::PgPool) {
    let mut t = start(&pool, &workflows()).await;
    pages_are_the_whole_history(&mut t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("pages.db").display());
    let mut t = start_on(&url, &workflows(), |_| {}).await;
    pages_are_the_whole_history(&mut t).await;
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
    // Without page options: the whole history, no token.
    let (code, out, err) = dev.cli("dev-crm", &["workflow", "history", &id, "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("more:"), "{err}");
    let whole: Value = serde_json::from_str(&out).unwrap();
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
