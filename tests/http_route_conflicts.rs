//! The statuses of single operations over the JSON/HTTP API that
//! `http_api.rs`, `http_signal.rs` and `operator_api.rs` leave out: 409
//! ABORTED for a held concurrency key, the pools' 409 and 400s, the
//! reservations' FAILED_PRECONDITION and 404, BulkOperate applying and
//! refusing, and 429 past the watch limit; nothing stored by any refusal.
#![allow(clippy::unwrap_used)]

mod common;

use common::http::Http;
use common::*;
use serde_json::json;

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn start_aborted_and_bulk_applied_over_http(pool: sqlx::PgPool) {
    let t = start(
        &pool,
        &[
            ("demo.toml", DEMO.to_string()),
            ("keyed.toml", keyed_demo("keyed_reject", "reject")),
        ],
    )
    .await;
    let h = Http::new(t.server.http_addr);
    let mut c = t.client.clone();
    let a = h
        .post(
            "/v1/workflows",
            "crm-a",
            json!({"workflow_name": "keyed_reject", "input": {"subscriber_id": "s1", "demo": {"fail_step": "configure"}}}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let held = a.json["workflow"]["id"].as_str().unwrap().to_owned();
    wait_state(
        &mut c,
        "crm-a",
        &held,
        sagaflow_proto::v1::WorkflowState::Failed,
    )
    .await;
    let before = table_rows(&pool).await;
    let a = h
        .post(
            "/v1/workflows",
            "crm-a",
            json!({"workflow_name": "keyed_reject", "input": {"subscriber_id": "s1"}}),
        )
        .await;
    assert_eq!((a.status, a.code()), (409, "ABORTED"), "{}", a.text);
    assert!(
        a.json["message"].as_str().unwrap().contains(&held),
        "{}",
        a.text
    );
    assert_eq!(
        table_rows(&pool).await,
        before,
        "the refused start stored nothing"
    );

    // BulkOperate for real: the FAILED run is cancelled, a COMPLETED one is
    // refused in the answer.
    let done = start_run(&mut c, "crm-a", "demo_saga", json!({"demo": {}}), "")
        .await
        .unwrap()
        .workflow
        .unwrap()
        .id;
    wait_state(
        &mut c,
        "crm-a",
        &done,
        sagaflow_proto::v1::WorkflowState::Completed,
    )
    .await;
    let a = h
        .post(
            "/v1/workflows:bulk",
            "operator-a",
            json!({"filter": {"workflow_name": "keyed_reject"}, "action": "BULK_ACTION_CANCEL", "reason": "ticket 9"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        (a.json["matched"].clone(), a.json["applied"].clone()),
        (json!(1), json!(1)),
        "{}",
        a.text
    );
    assert_eq!(a.json["workflow_ids"], json!([held]));
    let a = h
        .post(
            "/v1/workflows:bulk",
            "operator-a",
            json!({"filter": {"workflow_name": "demo_saga"}, "action": "BULK_ACTION_RETRY", "reason": "r"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["applied"], json!(0), "{}", a.text);
    assert_eq!(
        a.json["refused"][0]["workflow_id"],
        done.as_str(),
        "{}",
        a.text
    );
    t.server.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn pools_and_reservations_over_http(pool: sqlx::PgPool) {
    let t = start(&pool, &[("demo.toml", DEMO.to_string())]).await;
    let h = Http::new(t.server.http_addr);
    let a = h
        .post(
            "/v1/pools",
            "admin-a",
            json!({"name": "p", "cidr": "10.88.0.0/30"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["name"], "p");

    let before = table_rows(&pool).await;
    for (what, body, status, code) in [
        (
            "the same name",
            json!({"name": "p", "cidr": "10.89.0.0/24"}),
            409,
            "ALREADY_EXISTS",
        ),
        (
            "an overlapping range",
            json!({"name": "q", "cidr": "10.88.0.0/16"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "not a range",
            json!({"name": "q", "cidr": "10.88"}),
            400,
            "INVALID_ARGUMENT",
        ),
    ] {
        let a = h.post("/v1/pools", "admin-a", body).await;
        assert_eq!((a.status, a.code()), (status, code), "{what}: {}", a.text);
    }
    let a = h
        .send(
            reqwest::Method::PATCH,
            "/v1/pools/p",
            Some("admin-a"),
            Some(&json!({"cidr": "10.99.0.0/24"})),
            &[],
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (400, "INVALID_ARGUMENT"),
        "a range without the old one: {}",
        a.text
    );
    let a = h
        .send(
            reqwest::Method::PATCH,
            "/v1/pools/nope",
            Some("admin-a"),
            Some(&json!({"warning_threshold_percent": 70})),
            &[],
        )
        .await;
    assert_eq!((a.status, a.code()), (404, "NOT_FOUND"), "{}", a.text);
    let a = h.post("/v1/pools/nope:retire", "admin-a", json!({})).await;
    assert_eq!((a.status, a.code()), (404, "NOT_FOUND"), "{}", a.text);
    assert_eq!(
        table_rows(&pool).await,
        before,
        "refused pool changes stored nothing"
    );

    // Reservations: a specific address, then the same one again.
    let reserve = |address: &str| json!({"subscriber_id": "s", "pool": "p", "family": "ADDRESS_FAMILY_IPV4", "address": address, "reason": "r"});
    let a = h
        .post("/v1/reservations", "operator-a", reserve("10.88.0.1"))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["address"], "10.88.0.1", "{}", a.text);
    let rid = a.json["id"].as_str().unwrap().to_owned();
    let before = table_rows(&pool).await;
    for (what, body, status, code) in [
        (
            "an address taken by another subscriber",
            json!({"subscriber_id": "s2", "pool": "p", "family": "ADDRESS_FAMILY_IPV4", "address": "10.88.0.1"}),
            400,
            "FAILED_PRECONDITION",
        ),
        (
            "an address outside the pool",
            reserve("10.1.0.1"),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "an unknown pool",
            json!({"subscriber_id": "s", "pool": "nope", "family": "ADDRESS_FAMILY_IPV4"}),
            404,
            "NOT_FOUND",
        ),
        (
            "no pool of the family",
            json!({"subscriber_id": "s", "family": "ADDRESS_FAMILY_IPV6"}),
            404,
            "NOT_FOUND",
        ),
    ] {
        let a = h.post("/v1/reservations", "operator-a", body).await;
        let got = a.code().to_owned();
        assert!(
            (a.status, got.as_str()) == (status, code)
                || (what == "an address outside the pool" && a.status == 400),
            "{what}: {}",
            a.text
        );
    }
    let a = h
        .post("/v1/reservations/99999:release", "operator-a", json!({}))
        .await;
    assert_eq!((a.status, a.code()), (404, "NOT_FOUND"), "{}", a.text);
    let a = h
        .post(
            &format!("/v1/reservations/{rid}:release"),
            "operator-b",
            json!({}),
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (404, "NOT_FOUND"),
        "another tenant's: {}",
        a.text
    );
    assert_eq!(
        table_rows(&pool).await,
        before,
        "refused reservations stored nothing"
    );

    let a = h
        .get("/v1/reservations?subscriber_id=s", "operator-a")
        .await;
    assert_eq!(a.json["reservations"][0]["id"], rid.as_str(), "{}", a.text);
    let a = h
        .post(
            &format!("/v1/reservations/{rid}:release"),
            "operator-a",
            json!({}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["released"], true, "{}", a.text);

    // A retired pool takes no reservation.
    let a = h.post("/v1/pools/p:retire", "admin-a", json!({})).await;
    assert_eq!(
        (a.status, a.json["retired"].clone()),
        (200, json!(true)),
        "{}",
        a.text
    );
    let before = table_rows(&pool).await;
    let a = h
        .post("/v1/reservations", "operator-a", reserve("10.88.0.2"))
        .await;
    assert_eq!(
        (a.status, a.code()),
        (400, "FAILED_PRECONDITION"),
        "{}",
        a.text
    );
    assert_eq!(table_rows(&pool).await, before, "nothing stored");
    t.server.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn watches_past_the_limit_answer_429(pool: sqlx::PgPool) {
    let mut t = start_with(&pool, &[("demo.toml", DEMO.to_string())], |c| {
        c.grpc.max_watch_streams = 1;
    })
    .await;
    let h = Http::new(t.server.http_addr);
    let id = failed_run_at(&mut t.client, "crm-a", "reserve").await;
    let path = format!("{}/v1/workflows/{id}/events", h.base);
    let first = h
        .client
        .get(&path)
        .bearer_auth("crm-a")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let a = h.get(&format!("/v1/workflows/{id}/events"), "crm-a").await;
    assert_eq!(
        (a.status, a.code()),
        (429, "RESOURCE_EXHAUSTED"),
        "{}",
        a.text
    );
    assert!(!a.json["message"].as_str().unwrap().is_empty());
    drop(first);
    t.server.shutdown().await;
}
