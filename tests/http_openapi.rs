//! The OpenAPI document (`GET /v1/openapi.json`) lists exactly the routes
//! the router serves, and every route it lists is served.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::http::Http;
use common::*;
use reqwest::Method;
use serde_json::json;

const ANY_ID: &str = "0190a5d2-ac96-7d4b-bcce-b302099a8057";

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn the_openapi_document_lists_exactly_the_routes_served(pool: sqlx::PgPool) {
    let t = start(&pool, &[("demo.toml", DEMO.to_string())]).await;
    let h = Http::new(t.server.http_addr);
    let doc = h
        .send(Method::GET, "/v1/openapi.json", None, None, &[])
        .await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, ops) in doc.json["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            documented.insert((method.to_uppercase(), path.clone()));
            assert!(op["responses"].is_object(), "{method} {path}");
        }
    }
    let mut table: BTreeSet<(String, String)> = sagaflow::server::rest::routes()
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    for (path, _, _) in sagaflow::server::rest::openapi::PLAIN_ROUTES {
        table.insert(("GET".into(), (*path).to_owned()));
    }
    assert_eq!(documented, table, "the document and the route table agree");

    // The router serves every documented operation: none answers "no such
    // route" (404 with that message, or axum's empty 404) or 405.
    for (method, path) in &documented {
        let concrete = path
            .split('/')
            .map(|s| match s.split_once('}') {
                Some((_, verb)) => format!("{}{verb}", ANY_ID),
                None => s.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/");
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let body = (m == Method::POST || m == Method::PATCH).then(|| json!({}));
        let a = h
            .send(m, &concrete, Some("admin-a"), body.as_ref(), &[])
            .await;
        let unrouted = a.status == 405
            || (a.status == 404 && (a.text.is_empty() || a.text.contains("no such route")));
        assert!(!unrouted, "{method} {concrete}: {} {}", a.status, a.text);
        assert!(
            a.status < 500 || a.status == 501,
            "{method} {concrete}: {}",
            a.text
        );
    }
    // And what is not documented is not served.
    for (m, path) in [
        (Method::GET, "/v1/workflows/x/nope"),
        (Method::PUT, "/v1/workflows"),
        (Method::POST, "/v1/workflows/x:explode"),
        (Method::GET, "/v1/lifecycle"),
    ] {
        let a = h.send(m.clone(), path, Some("admin-a"), None, &[]).await;
        assert!(
            a.status == 404 || a.status == 405,
            "{m} {path}: {}",
            a.status
        );
    }
    // Every reference resolves.
    let text = doc.text.clone();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap();
        assert!(
            doc.json["components"]["schemas"][name].is_object(),
            "{name}"
        );
    }
    t.server.shutdown().await;
}
