//! The bad-input corpus of `tests/bad_input.rs` (`common/corpus.rs`) over
//! the JSON/HTTP API, with the malformed JSON only HTTP can carry: the
//! documented status every time, no 500, and nothing stored.
#![allow(clippy::unwrap_used)]

mod common;

use common::corpus::{Call, Case};
use common::http::{Http, seg};
use common::*;
use reqwest::Method;
use sagaflow::server::rest::http_status;
use sagaflow_engine::api::audit::code_name;
use sagaflow_proto::mapping;
use sagaflow_proto::v1 as pb;
use serde_json::Value;
use tonic::Code;

/// The request's JSON without the field the path carries.
fn body<T: prost::Message>(name: &str, msg: &T, path_field: &str) -> Value {
    let desc = mapping::pool()
        .get_message_by_name(&format!("sagaflow.v1.{name}"))
        .unwrap();
    let mut json = mapping::encode(&desc, msg).unwrap();
    json.as_object_mut().unwrap().remove(path_field);
    json
}

/// Method, path (query included) and body of a case.
fn http_of(call: &Call) -> (Method, String, Option<Value>) {
    let op = |id: &str, verb: &str| format!("/v1/workflows/{}{verb}", seg(id));
    match call {
        Call::Start(r) => (
            Method::POST,
            "/v1/workflows".into(),
            Some(body("StartWorkflowRequest", r, "")),
        ),
        Call::List(r) => {
            let mut q = vec![format!("page_size={}", r.page_size)];
            q.extend(r.states.iter().map(|s| {
                let name = pb::WorkflowState::try_from(*s)
                    .map_or(s.to_string(), |s| s.as_str_name().to_owned());
                format!("state={name}")
            }));
            if !r.page_token.is_empty() {
                q.push(format!("page_token={}", seg(&r.page_token)));
            }
            (Method::GET, format!("/v1/workflows?{}", q.join("&")), None)
        }
        Call::Get(r) => (Method::GET, op(&r.id, ""), None),
        Call::History(r) => (Method::GET, op(&r.id, "/history"), None),
        Call::Retry(r) => (
            Method::POST,
            op(&r.id, ":retry"),
            Some(body("RetryWorkflowRequest", r, "id")),
        ),
        Call::Compensate(r) => (
            Method::POST,
            op(&r.id, ":compensate"),
            Some(body("CompensateWorkflowRequest", r, "id")),
        ),
        Call::Cancel(r) => (
            Method::POST,
            op(&r.id, ":cancel"),
            Some(body("CancelWorkflowRequest", r, "id")),
        ),
        Call::Skip(r) => (
            Method::POST,
            op(&r.id, ":skip"),
            Some(body("SkipStepRequest", r, "id")),
        ),
    }
}

fn path_id(call: &Call) -> Option<&str> {
    match call {
        Call::Get(r) => Some(&r.id),
        Call::History(r) => Some(&r.id),
        Call::Retry(r) => Some(&r.id),
        Call::Compensate(r) => Some(&r.id),
        Call::Cancel(r) => Some(&r.id),
        Call::Skip(r) => Some(&r.id),
        Call::Start(_) | Call::List(_) => None,
    }
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn bad_input_over_http_gets_documented_statuses_and_stores_nothing(pool: sqlx::PgPool) {
    let t = start(&pool, &[("demo.toml", DEMO.to_string())]).await;
    let h = Http::new(t.server.http_addr);
    let mut c = t.client.clone();
    let good = failed_run_at(&mut c, "crm-a", "reserve").await;
    let before = count_rows(&pool).await;
    let mut statuses = Vec::new();

    for Case {
        what,
        token,
        call,
        want,
    } in common::corpus::corpus(&good)
    {
        let (method, path, b) = http_of(&call);
        let a = h.send(method, &path, Some(token), b.as_ref(), &[]).await;
        if path_id(&call) == Some("") {
            // An empty id leaves no path segment: no route takes it.
            assert_eq!(a.status, 404, "{what}");
        } else {
            let ok = want.iter().any(|code| {
                let status = http_status(*code).as_u16();
                let ok_status = if *code == Code::Ok {
                    a.status < 300
                } else {
                    a.status == status
                };
                ok_status && (*code == Code::Ok || a.code() == code_name(*code))
            });
            assert!(
                ok,
                "{what}: got {} {}, want one of {want:?}",
                a.status, a.text
            );
        }
        statuses.push((what, a.status));
    }

    // The JSON only HTTP can carry.
    let start = "/v1/workflows";
    for (what, raw) in [
        ("not JSON", b"{workflow_name: demo_saga}".to_vec()),
        (
            "truncated JSON",
            br#"{"workflow_name": "demo_saga", "input": {"#.to_vec(),
        ),
        (
            "a JSON array",
            br#"[{"workflow_name": "demo_saga"}]"#.to_vec(),
        ),
        (
            "lone surrogate",
            br#"{"workflow_name": "demo_saga", "idempotency_key": "k\ud800"}"#.to_vec(),
        ),
        (
            "invalid UTF-8",
            vec![b'{', b'"', 0xff, b'"', b':', b'1', b'}'],
        ),
        (
            "10,000-deep JSON",
            format!(
                r#"{{"workflow_name": "demo_saga", "input": {}1{}}}"#,
                r#"{"a":"#.repeat(10_000),
                "}".repeat(10_000)
            )
            .into_bytes(),
        ),
        (
            "65-deep input",
            format!(
                r#"{{"workflow_name": "demo_saga", "input": {}1{}}}"#,
                r#"{"a":"#.repeat(65),
                "}".repeat(65)
            )
            .into_bytes(),
        ),
        (
            "unknown field",
            br#"{"workflow_name": "demo_saga", "nope": 1}"#.to_vec(),
        ),
        (
            "wrong type",
            br#"{"workflow_name": ["demo_saga"]}"#.to_vec(),
        ),
        (
            "version out of range",
            br#"{"workflow_name": "demo_saga", "workflow_version": -1}"#.to_vec(),
        ),
        (
            "duplicate key",
            br#"{"workflow_name": "demo_saga", "workflow_name": "x"}"#.to_vec(),
        ),
        (
            "non-finite number",
            br#"{"workflow_name": "demo_saga", "input": {"n": 1e999}}"#.to_vec(),
        ),
    ] {
        let a = h.raw(Method::POST, start, "crm-a", raw).await;
        assert_eq!(
            (a.status, a.code()),
            (400, "INVALID_ARGUMENT"),
            "{what}: {}",
            a.text
        );
        statuses.push((what.to_owned(), a.status));
    }
    for q in [
        "page_size=-1",
        "page_size=1.5",
        "state=42x",
        "created_before=0000-00-00",
        "search=1",
        "%ff=1",
    ] {
        let a = h.get(&format!("/v1/workflows?{q}"), "crm-a").await;
        assert_eq!(
            (a.status, a.code()),
            (400, "INVALID_ARGUMENT"),
            "{q}: {}",
            a.text
        );
        statuses.push((q.to_owned(), a.status));
    }

    let after = count_rows(&pool).await;
    assert_eq!(
        after.0,
        before.0 + 1,
        "only the one valid 20-deep start stored a run"
    );
    assert!(
        statuses.iter().all(|(_, s)| *s < 500),
        "no 5xx: {statuses:?}"
    );
    let w = h.get(&format!("/v1/workflows/{good}"), "crm-a").await;
    assert_eq!(
        w.json["state"], "WORKFLOW_STATE_FAILED",
        "the good run was not touched"
    );
    eprintln!("{} bad requests", statuses.len());
    t.server.shutdown().await;
}
