//! The JSON/HTTP API against an in-process server on PostgreSQL: every
//! route's success and documented errors, nothing stored on failure, and
//! the Server-Sent Events watch with `Last-Event-ID`.
#![allow(clippy::unwrap_used)]

mod common;

use common::http::{Http, seg};
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

async fn wait_http_state(h: &Http, id: &str, want: &str) -> Value {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let a = h.get(&format!("/v1/workflows/{id}"), "crm-a").await;
        assert_eq!(a.status, 200, "{}", a.text);
        if a.json["state"] == want {
            return a.json;
        }
        assert!(
            std::time::Instant::now() < end,
            "run {id} is {}",
            a.json["state"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await; // poll interval
    }
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn starting_reading_and_watching_runs(pool: sqlx::PgPool) {
    let t = start(&pool, &[("demo.toml", DEMO.to_string())]).await;
    let h = Http::new(t.server.http_addr);
    let before = count_rows(&pool).await;
    let body = json!({"workflow_name": "demo_saga", "input": {"demo": {"sleep_ms": 1}}});

    // Refused starts store nothing.
    let key = [("Idempotency-Key", "order-1")];
    for (what, token, b, headers, status, code) in [
        (
            "no token",
            None,
            body.clone(),
            &[][..],
            401,
            "UNAUTHENTICATED",
        ),
        (
            "unknown token",
            Some("nope"),
            body.clone(),
            &[][..],
            401,
            "UNAUTHENTICATED",
        ),
        (
            "unknown field",
            Some("crm-a"),
            json!({"workflow_name": "demo_saga", "inptu": {}}),
            &[][..],
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "wrong type",
            Some("crm-a"),
            json!({"workflow_name": "demo_saga", "input": 5}),
            &[][..],
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "unknown workflow",
            Some("crm-a"),
            json!({"workflow_name": "nope"}),
            &[][..],
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "keys differ",
            Some("crm-a"),
            json!({"workflow_name": "demo_saga", "idempotency_key": "other"}),
            &key[..],
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "payload over the limit",
            Some("crm-a"),
            json!({"workflow_name": "demo_saga", "input": {"b": "y".repeat(300 * 1024)}}),
            &[][..],
            429,
            "RESOURCE_EXHAUSTED",
        ),
    ] {
        let a = h
            .send(Method::POST, "/v1/workflows", token, Some(&b), headers)
            .await;
        assert_eq!((a.status, a.code()), (status, code), "{what}: {}", a.text);
        assert!(!a.json["message"].as_str().unwrap().is_empty(), "{what}");
    }
    let huge = vec![b' '; 5 << 20];
    let a = h.raw(Method::POST, "/v1/workflows", "crm-a", huge).await;
    assert_eq!(
        (a.status, a.code()),
        (413, "RESOURCE_EXHAUSTED"),
        "{}",
        a.text
    );
    assert_eq!(
        count_rows(&pool).await,
        before,
        "refused starts stored nothing"
    );

    // 201 when created, 200 when the key matched, 409 for another input.
    let a = h
        .send(
            Method::POST,
            "/v1/workflows",
            Some("crm-a"),
            Some(&body),
            &key,
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.json["created"], true);
    let w = &a.json["workflow"];
    assert_eq!(w["idempotency_key"], "order-1");
    assert_eq!(w["tenant_id"], "a");
    assert!(w["state"].as_str().unwrap().starts_with("WORKFLOW_STATE_"));
    let id = w["id"].as_str().unwrap().to_owned();
    let again = json!({"workflow_name": "demo_saga", "input": {"demo": {"sleep_ms": 1}}, "idempotency_key": "order-1"});
    let a = h
        .send(
            Method::POST,
            "/v1/workflows",
            Some("crm-a"),
            Some(&again),
            &key,
        )
        .await;
    assert_eq!(
        (a.status, a.json["created"].clone()),
        (200, json!(false)),
        "{}",
        a.text
    );
    assert_eq!(a.json["workflow"]["id"], id.as_str());
    let other = json!({"workflow_name": "demo_saga", "input": {"demo": {"sleep_ms": 2}}});
    let a = h
        .send(
            Method::POST,
            "/v1/workflows",
            Some("crm-a"),
            Some(&other),
            &key,
        )
        .await;
    assert_eq!((a.status, a.code()), (409, "ALREADY_EXISTS"), "{}", a.text);

    // GetWorkflow.
    let done = wait_http_state(&h, &id, "WORKFLOW_STATE_COMPLETED").await;
    assert_eq!(done["steps"].as_array().unwrap().len(), 5);
    assert_eq!(done["steps"][0]["state"], "STEP_STATE_SUCCEEDED");
    assert!(done["finished_at"].as_str().unwrap().ends_with('Z'));
    for (path, token, status, code) in [
        (format!("/v1/workflows/{id}"), "crm-b", 404, "NOT_FOUND"),
        (
            "/v1/workflows/nope".into(),
            "crm-a",
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/v1/workflows/0190a5d2-ac96-7d4b-bcce-b302099a8057".into(),
            "crm-a",
            404,
            "NOT_FOUND",
        ),
        (format!("/v1/workflows/{id}"), "", 401, "UNAUTHENTICATED"),
    ] {
        let a = h.get(&path, token).await;
        assert_eq!((a.status, a.code()), (status, code), "{path}: {}", a.text);
    }

    // ListWorkflows with the query parameters of the contract.
    let a = h
        .get("/v1/workflows?workflow_name=demo_saga&state=WORKFLOW_STATE_COMPLETED&state=WORKFLOW_STATE_FAILED&idempotency_key=order-1&created_after=2020-01-01T00:00:00Z&page_size=10", "crm-a")
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["workflows"][0]["id"], id.as_str());
    assert_eq!(a.json["next_page_token"], "");
    let a = h
        .get("/v1/workflows?state=WORKFLOW_STATE_RUNNING", "crm-a")
        .await;
    assert_eq!(a.json["workflows"], json!([]), "{}", a.text);
    for q in [
        "state=BOGUS",
        "page_size=5000",
        "page_size=-1",
        "nope=1",
        "page_token=zz",
        "created_after=yesterday",
        "page_size=1&page_size=2",
    ] {
        let a = h.get(&format!("/v1/workflows?{q}"), "crm-a").await;
        assert_eq!(
            (a.status, a.code()),
            (400, "INVALID_ARGUMENT"),
            "{q}: {}",
            a.text
        );
    }

    // History and the watch.
    let a = h.get(&format!("/v1/workflows/{id}/history"), "crm-a").await;
    assert_eq!(a.status, 200, "{}", a.text);
    let events = a.json["events"].as_array().unwrap().clone();
    assert_eq!(events[0]["sequence"], "1");
    assert_eq!(events.last().unwrap()["type"], "run_completed");
    let sse = h.get(&format!("/v1/workflows/{id}/events"), "crm-a").await;
    assert_eq!(sse.status, 200);
    assert!(
        sse.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (ids, data) = parse_sse(&sse.text);
    assert_eq!(ids, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        data, events,
        "the stream carries the history, one event per data: line"
    );
    let resumed = h
        .send(
            Method::GET,
            &format!("/v1/workflows/{id}/events"),
            Some("crm-a"),
            None,
            &[("Last-Event-ID", "2")],
        )
        .await;
    let (ids, _) = parse_sse(&resumed.text);
    assert_eq!(ids.first(), Some(&3), "{}", resumed.text);
    assert_eq!(ids.len(), events.len() - 2);
    let a = h
        .send(
            Method::GET,
            &format!("/v1/workflows/{id}/events"),
            Some("crm-a"),
            None,
            &[("Last-Event-ID", "x")],
        )
        .await;
    assert_eq!((a.status, a.code()), (400, "INVALID_ARGUMENT"));
    let a = h.get(&format!("/v1/workflows/{id}/events"), "crm-b").await;
    assert_eq!((a.status, a.code()), (404, "NOT_FOUND"));

    // Definitions.
    let a = h.get("/v1/definitions", "crm-a").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json["definitions"][0]["name"], "demo_saga");

    // No such route; a path that takes other methods.
    let a = h.get("/v1/nope", "crm-a").await;
    assert_eq!((a.status, a.code()), (404, "NOT_FOUND"));
    let a = h
        .send(Method::DELETE, "/v1/workflows", Some("crm-a"), None, &[])
        .await;
    assert_eq!(a.status, 405);
    assert_eq!(a.headers["allow"], "POST, GET");
    t.server.shutdown().await;
}

/// The `id:` and the JSON `data:` of each event of a finished stream.
fn parse_sse(text: &str) -> (Vec<u64>, Vec<Value>) {
    let mut ids = Vec::new();
    let mut data = Vec::new();
    for line in text.lines() {
        if let Some(i) = line.strip_prefix("id:") {
            ids.push(i.trim().parse().unwrap());
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push(serde_json::from_str(d.trim()).unwrap());
        }
    }
    (ids, data)
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn operator_actions(pool: sqlx::PgPool) {
    let t = start(&pool, &[("demo.toml", DEMO.to_string())]).await;
    let h = Http::new(t.server.http_addr);
    let mut c = t.client.clone();

    // Retry: the role, the body's id, then the fix.
    let failed = failed_run(&mut c, "crm-a").await;
    let before = count_rows(&pool).await;
    let path = format!("/v1/workflows/{failed}:retry");
    for (token, body, status, code) in [
        ("crm-a", json!({}), 403, "PERMISSION_DENIED"),
        ("operator-b", json!({}), 404, "NOT_FOUND"),
        ("operator-a", json!({"id": failed}), 400, "INVALID_ARGUMENT"),
        (
            "operator-a",
            json!({"from_step": "nope"}),
            400,
            "INVALID_ARGUMENT",
        ),
        ("operator-a", json!({"reason": 5}), 400, "INVALID_ARGUMENT"),
    ] {
        let a = h.post(&path, token, body.clone()).await;
        assert_eq!((a.status, a.code()), (status, code), "{body}: {}", a.text);
    }
    assert_eq!(
        count_rows(&pool).await,
        before,
        "refused actions stored nothing"
    );
    let a = h
        .post(
            &path,
            "operator-a",
            json!({"reason": "fixed", "context_patch": {"demo": {}}}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["id"], failed.as_str());
    wait_http_state(&h, &failed, "WORKFLOW_STATE_COMPLETED").await;
    let a = h.post(&path, "operator-a", json!({})).await;
    assert_eq!(
        (a.status, a.code()),
        (400, "FAILED_PRECONDITION"),
        "{}",
        a.text
    );

    // Compensate, cancel, skip.
    let f = failed_run(&mut c, "crm-a").await;
    let a = h
        .post(
            &format!("/v1/workflows/{f}:compensate"),
            "operator-a",
            json!({"reason": "undo"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    wait_http_state(&h, &f, "WORKFLOW_STATE_COMPENSATED").await;
    let a = h
        .post(
            &format!("/v1/workflows/{f}:compensate"),
            "operator-a",
            json!({}),
        )
        .await;
    assert_eq!((a.status, a.code()), (400, "FAILED_PRECONDITION"));
    let f = failed_run(&mut c, "crm-a").await;
    let a = h
        .post(
            &format!("/v1/workflows/{f}:cancel"),
            "operator-a",
            json!({"compensate": false, "reason": "ticket 7"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    wait_http_state(&h, &f, "WORKFLOW_STATE_TERMINATED").await;
    let f = failed_run(&mut c, "crm-a").await;
    let a = h
        .post(
            &format!("/v1/workflows/{f}:skip"),
            "operator-a",
            json!({"step": "reserve"}),
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (400, "FAILED_PRECONDITION"),
        "not the failed step: {}",
        a.text
    );
    let a = h
        .post(
            &format!("/v1/workflows/{f}:skip"),
            "operator-a",
            json!({"step": "configure", "output": {"done": true}}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    wait_http_state(&h, &f, "WORKFLOW_STATE_COMPLETED").await;

    let a = h
        .post(
            &format!("/v1/workflows/{f}:signal"),
            "crm-a",
            json!({"signal_name": "x"}),
        )
        .await;
    // SignalWorkflow: open to the crm role; a finished run takes no signal.
    assert_eq!(
        (a.status, a.code()),
        (400, "FAILED_PRECONDITION"),
        "{}",
        a.text
    );
    t.server.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn schedules_and_address_lifecycle(pool: sqlx::PgPool) {
    let t = start(&pool, &[("demo.toml", DEMO.to_string())]).await;
    let h = Http::new(t.server.http_addr);
    let body = json!({"name": "nightly", "cron": "0 2 * * *", "workflow_name": "demo_saga", "input": {"demo": {}}, "overlap_policy": "OVERLAP_POLICY_ALLOW"});
    for (token, b, status, code) in [
        ("operator-a", body.clone(), 403, "PERMISSION_DENIED"),
        (
            "admin-a",
            json!({"name": "x", "cron": "not cron", "workflow_name": "demo_saga"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "admin-a",
            json!({"name": "x", "cron": "0 2 * * *", "workflow_name": "demo_saga", "overlap_policy": "NOPE"}),
            400,
            "INVALID_ARGUMENT",
        ),
    ] {
        let a = h.post("/v1/schedules", token, b).await;
        assert_eq!((a.status, a.code()), (status, code), "{}", a.text);
    }
    let a = h.get("/v1/schedules", "admin-a").await;
    assert_eq!(
        a.json["schedules"],
        json!([]),
        "refused creates stored nothing"
    );
    let a = h.post("/v1/schedules", "admin-a", body.clone()).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["overlap_policy"], "OVERLAP_POLICY_ALLOW");
    let sid = a.json["id"].as_str().unwrap().to_owned();
    let a = h.post("/v1/schedules", "admin-a", body).await;
    assert_eq!((a.status, a.code()), (409, "ALREADY_EXISTS"));
    let a = h.get("/v1/schedules", "admin-a").await;
    assert_eq!(a.json["schedules"][0]["id"], sid.as_str(), "{}", a.text);
    let a = h.get(&format!("/v1/schedules/{sid}"), "admin-a").await;
    assert_eq!((a.status, a.json["name"].clone()), (200, json!("nightly")));
    let a = h
        .post(
            &format!("/v1/schedules/{sid}:pause"),
            "admin-a",
            json!({"reason": "maintenance"}),
        )
        .await;
    assert_eq!(
        (a.status, a.json["paused"].clone()),
        (200, json!(true)),
        "{}",
        a.text
    );
    let a = h
        .post(&format!("/v1/schedules/{sid}:resume"), "admin-a", json!({}))
        .await;
    assert_eq!((a.status, a.json["paused"].clone()), (200, json!(false)));
    let a = h
        .post(
            &format!("/v1/schedules/{sid}:trigger"),
            "admin-a",
            json!({}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.json["workflow"]["schedule_id"], sid.as_str());
    let a = h
        .send(
            Method::DELETE,
            &format!("/v1/schedules/{sid}"),
            Some("admin-a"),
            None,
            &[],
        )
        .await;
    assert_eq!((a.status, a.json.clone()), (200, json!({})), "{}", a.text);
    for (m, path) in [
        (Method::GET, format!("/v1/schedules/{sid}")),
        (Method::DELETE, format!("/v1/schedules/{sid}")),
        (Method::POST, format!("/v1/schedules/{sid}:pause")),
    ] {
        let a = h
            .send(
                m,
                &path,
                Some("admin-a"),
                Some(&json!({})).filter(|_| path.contains(':')),
                &[],
            )
            .await;
        assert_eq!(
            (a.status, a.code()),
            (404, "NOT_FOUND"),
            "{path}: {}",
            a.text
        );
    }
    let a = h.get("/v1/schedules/nope", "admin-a").await;
    assert_eq!(a.status, 400);

    // Address lifecycle: the reads, pool administration and reservations.
    let a = h
        .get(
            &format!("/v1/subscribers/{}/addresses", seg("sub 1")),
            "crm-a",
        )
        .await;
    assert_eq!(
        (a.status, a.json.clone()),
        (200, json!({"addresses": []})),
        "{}",
        a.text
    );
    let a = h.get("/v1/pools", "crm-a").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.json["pools"].is_array());
    for (m, path, token, body, expected) in [
        (
            Method::POST,
            "/v1/pools".to_owned(),
            "admin-a",
            json!({"name": "p", "cidr": "10.0.0.0/24"}),
            &[200][..],
        ),
        (
            Method::PATCH,
            "/v1/pools/p".to_owned(),
            "admin-a",
            json!({"warning_threshold_percent": 80}),
            &[200][..],
        ),
        (
            Method::POST,
            "/v1/pools/p:retire".to_owned(),
            "admin-a",
            json!({}),
            &[200][..],
        ),
        (
            Method::POST,
            "/v1/reservations".to_owned(),
            "operator-a",
            json!({"subscriber_id": "s", "family": "ADDRESS_FAMILY_IPV4"}),
            // The tenant's only pool is retired: no pool to reserve from,
            // unless the server seeds others.
            &[200, 404][..],
        ),
        (
            Method::GET,
            "/v1/reservations?subscriber_id=s".to_owned(),
            "operator-a",
            Value::Null,
            &[200][..],
        ),
        (
            Method::POST,
            format!("/v1/reservations/{}:release", uuid_like()),
            "operator-a",
            json!({}),
            // Reservation ids are numbers.
            &[400][..],
        ),
    ] {
        let b = (!body.is_null()).then_some(&body);
        let a = h.send(m.clone(), &path, Some("crm-a"), b, &[]).await;
        assert_eq!(
            (a.status, a.code()),
            (403, "PERMISSION_DENIED"),
            "{m} {path}"
        );
        let a = h.send(m.clone(), &path, Some(token), b, &[]).await;
        assert!(expected.contains(&a.status), "{m} {path}: {}", a.text);
    }
    let a = h.get("/v1/pools", "crm-a").await;
    let p = &a.json["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "p")
        .cloned()
        .unwrap();
    assert_eq!(
        (&p["cidr"], &p["retired"], &p["backend"]),
        (&json!("10.0.0.0/24"), &json!(true), &json!("builtin")),
        "{p}"
    );
    t.server.shutdown().await;
}

fn uuid_like() -> &'static str {
    "0190a5d2-ac96-7d4b-bcce-b302099a8057"
}
