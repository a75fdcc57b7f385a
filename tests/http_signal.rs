//! `POST /v1/workflows/{id}:signal` over JSON/HTTP: the documented errors
//! store nothing (no signal row, no event), the success wakes the waiting
//! step, and a repeated idempotency key is one signal.
#![allow(clippy::unwrap_used)]

mod common;

use common::http::Http;
use common::*;
use serde_json::json;

const WAIT: &str = include_str!("../workflows/demo_wait.v1.toml");

async fn signals(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM run_signals")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn signals_over_http(pool: sqlx::PgPool) {
    let t = start(&pool, &[("wait.toml", WAIT.to_string())]).await;
    let h = Http::new(t.server.http_addr);
    let a = h
        .post(
            "/v1/workflows",
            "crm-a",
            json!({"workflow_name": "demo_wait", "input": {}}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let id = a.json["workflow"]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/workflows/{id}:signal");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let run = h.get(&format!("/v1/workflows/{id}"), "crm-a").await.json;
        if run["steps"][1]["state"] == "STEP_STATE_WAITING" {
            assert_eq!(run["steps"][1]["waiting_for"], "approve");
            break;
        }
        assert!(std::time::Instant::now() < end, "{run}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await; // poll interval
    }

    let before = (count_rows(&pool).await, signals(&pool).await);
    let payload = json!({"signal_name": "approve", "payload": {"by": "crm"}});
    for (token, body, status, code) in [
        ("", payload.clone(), 401, "UNAUTHENTICATED"),
        ("nobody", payload.clone(), 401, "UNAUTHENTICATED"),
        ("crm-b", payload.clone(), 404, "NOT_FOUND"),
        ("crm-a", json!({"payload": {}}), 400, "INVALID_ARGUMENT"),
        (
            "crm-a",
            json!({"signal_name": "approve", "extra": 1}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "crm-a",
            json!({"signal_name": "approve", "payload": "not an object"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "crm-a",
            json!({"signal_name": "approve", "id": "someone-else"}),
            400,
            "INVALID_ARGUMENT",
        ),
    ] {
        let a = if token.is_empty() {
            h.send(reqwest::Method::POST, &path, None, Some(&body), &[])
                .await
        } else {
            h.post(&path, token, body.clone()).await
        };
        assert_eq!(
            (a.status, a.code()),
            (status, code),
            "{token} {body}: {}",
            a.text
        );
        assert!(!a.json["message"].as_str().unwrap_or_default().is_empty());
    }
    let unknown = h
        .post(
            &format!("/v1/workflows/{}:signal", uuid::Uuid::now_v7()),
            "crm-a",
            payload.clone(),
        )
        .await;
    assert_eq!((unknown.status, unknown.code()), (404, "NOT_FOUND"));
    assert_eq!(
        (count_rows(&pool).await, signals(&pool).await),
        before,
        "refused signals stored nothing"
    );

    let keyed =
        json!({"signal_name": "approve", "payload": {"by": "crm"}, "idempotency_key": "s-1"});
    let a = h.post(&path, "crm-a", keyed.clone()).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["delivered"], true);
    let again = h.post(&path, "crm-a", keyed).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(signals(&pool).await, before.1 + 1, "one signal for one key");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let run = h.get(&format!("/v1/workflows/{id}"), "crm-a").await.json;
        if run["state"] == "WORKFLOW_STATE_COMPLETED" {
            assert_eq!(run["context"]["approval"]["by"], "crm");
            break;
        }
        assert!(std::time::Instant::now() < end, "{run}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await; // poll interval
    }
    t.server.shutdown().await;
}
