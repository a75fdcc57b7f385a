//! Every route of the JSON/HTTP API against the error statuses every route
//! documents: 401 without or with an unknown token, 403 for a role below
//! the route's, 404 for another tenant's resource, 413 for a body over the
//! request limit; and nothing stored by any of them. The statuses of one
//! operation (409, FAILED_PRECONDITION, 429) are in `http_route_conflicts.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use common::http::Http;
use common::*;
use reqwest::Method;
use sagaflow::server::rest::routes;
use serde_json::json;

/// The role a route needs: 0 crm, 1 operator, 2 admin.
fn needs(rpc: &str) -> usize {
    let method = rpc.split('/').nth(1).unwrap();
    if rpc.starts_with("ScheduleService/")
        || ["CreatePool", "UpdatePool", "RetirePool"].contains(&method)
    {
        2
    } else if [
        "RetryWorkflow",
        "CompensateWorkflow",
        "CancelWorkflow",
        "SkipStep",
        "RewindWorkflow",
        "BulkOperate",
        "ReserveAddress",
        "ListReservations",
        "ReleaseReservation",
    ]
    .contains(&method)
    {
        1
    } else {
        0
    }
}

const ROLES: [&str; 3] = ["crm", "operator", "admin"];

/// The resources of tenant `a` the paths name.
struct Ids {
    run: String,
    schedule: String,
    reservation: String,
}

/// The route's path with its parameters filled in from `ids`.
fn fill(path: &str, ids: &Ids) -> String {
    path.replace("{id}:release", &format!("{}:release", ids.reservation))
        .replace("schedules/{id}", &format!("schedules/{}", ids.schedule))
        .replace("{id}", &ids.run)
        .replace("{name}", "p")
        .replace("{subscriber_id}", "s")
}

async fn setup(t: &mut TestServer, h: &Http) -> Ids {
    let run = failed_run_at(&mut t.client, "crm-a", "reserve").await;
    let a = h
        .post(
            "/v1/schedules",
            "admin-a",
            json!({"name": "nightly", "cron": "0 2 * * *", "workflow_name": "demo_saga", "input": {"demo": {}}}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let schedule = a.json["id"].as_str().unwrap().to_owned();
    let a = h
        .post(
            "/v1/pools",
            "admin-a",
            json!({"name": "p", "cidr": "10.77.0.0/24"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = h
        .post(
            "/v1/reservations",
            "operator-a",
            json!({"subscriber_id": "s", "pool": "p", "family": "ADDRESS_FAMILY_IPV4"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let reservation = a.json["id"].as_str().unwrap().to_owned();
    Ids {
        run,
        schedule,
        reservation,
    }
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn every_route_answers_401_403_404_413_and_stores_nothing(pool: sqlx::PgPool) {
    let mut t = start(&pool, &[("demo.toml", DEMO.to_string())]).await;
    let h = Http::new(t.server.http_addr);
    let ids = setup(&mut t, &h).await;
    let before = table_rows(&pool).await;
    let mut wrong = Vec::new();
    let mut covered = Vec::new();
    let huge = vec![b' '; 5 << 20];

    for route in routes() {
        let path = fill(route.path, &ids);
        let m = route.method.as_str().parse::<Method>().unwrap();
        let body = (!route.takes_query()).then(|| json!({}));
        let mut check = |what: &str, a: common::http::Answer, status: u16, code: &str| {
            if (a.status, a.code()) != (status, code) || a.json["message"].as_str().is_none() {
                wrong.push(format!(
                    "{m} {path} {what}: got {} {:.200}",
                    a.status, a.text
                ));
            } else {
                covered.push(format!("{} {status} ({what})", route.rpc));
            }
        };

        let a = h.send(m.clone(), &path, None, body.as_ref(), &[]).await;
        check("no token", a, 401, "UNAUTHENTICATED");
        let a = h
            .send(m.clone(), &path, Some("nope"), body.as_ref(), &[])
            .await;
        check("unknown token", a, 401, "UNAUTHENTICATED");
        for role in &ROLES[..needs(route.rpc)] {
            let token = format!("{role}-a");
            let a = h
                .send(m.clone(), &path, Some(&token), body.as_ref(), &[])
                .await;
            check(&format!("{role} role"), a, 403, "PERMISSION_DENIED");
        }
        // Another tenant's run, schedule, pool or reservation.
        if path.contains("/v1/workflows/")
            || path.contains("/v1/schedules/")
            || path.contains("/v1/pools/")
            || path.contains("/v1/reservations/")
        {
            let token = format!("{}-b", ROLES[needs(route.rpc)]);
            let b = if path.ends_with(":signal") {
                Some(json!({"signal_name": "s"}))
            } else if path.ends_with(":rewind") {
                Some(json!({"to_step": "reserve", "reason": "r"}))
            } else if path.ends_with(":skip") {
                Some(json!({"step": "reserve"}))
            } else if m == Method::PATCH {
                Some(json!({"warning_threshold_percent": 70}))
            } else {
                body.clone()
            };
            let a = h
                .send(m.clone(), &path, Some(&token), b.as_ref(), &[])
                .await;
            check("another tenant's", a, 404, "NOT_FOUND");
        }
        if !route.takes_query() {
            let a = h.raw(m.clone(), &path, "admin-a", huge.clone()).await;
            check("5 MiB body", a, 413, "RESOURCE_EXHAUSTED");
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        table_rows(&pool).await,
        before,
        "refused calls stored nothing"
    );
    let w = h.get(&format!("/v1/workflows/{}", ids.run), "crm-a").await;
    assert_eq!(w.json["state"], "WORKFLOW_STATE_FAILED");
    for c in &covered {
        eprintln!("{c}");
    }
    t.server.shutdown().await;
}

/// Every GET route succeeds for the lowest role it takes, storing nothing.
#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn the_read_routes_succeed_for_their_lowest_role(pool: sqlx::PgPool) {
    let mut t = start(&pool, &[("demo.toml", DEMO.to_string())]).await;
    let h = Http::new(t.server.http_addr);
    let ids = setup(&mut t, &h).await;
    let before = table_rows(&pool).await;
    for route in routes()
        .iter()
        .filter(|r| r.takes_query() && r.method == Method::GET)
    {
        let path = fill(route.path, &ids);
        let path = if route.rpc.ends_with("/ListReservations") {
            format!("{path}?subscriber_id=s")
        } else {
            path
        };
        let token = format!("{}-a", ROLES[needs(route.rpc)]);
        if route.rpc.ends_with("/WatchWorkflow") {
            // The stream's head only: the run is FAILED, the stream stays open.
            let resp = h
                .client
                .get(format!("{}{path}", h.base))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            continue;
        }
        let a = h.get(&path, &token).await;
        assert_eq!(a.status, 200, "{} {path}: {}", route.rpc, a.text);
        assert!(a.json.is_object(), "{path}: {}", a.text);
    }
    assert_eq!(table_rows(&pool).await, before, "reads stored nothing");
    t.server.shutdown().await;
}
