//! The bad-input corpus over the JSON/HTTP routes that `http_bad_input.rs`
//! leaves out: Signal, Rewind, Bulk, the schedules, the pools and the
//! reservations. Bad ids, unknown fields, wrong types, NUL bytes, over-long
//! strings, enum values out of range, malformed JSON and bodies over the
//! limit: the documented status every time, never a 5xx, and nothing stored.
#![allow(clippy::unwrap_used)]

mod common;

use common::corpus::{SQLISH, bad_ids};
use common::http::{Http, seg};
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// One case: what it tries, method, path, token, raw body, allowed statuses.
struct Case {
    what: String,
    method: Method,
    path: String,
    token: &'static str,
    body: Option<Vec<u8>>,
    want: &'static [u16],
}

const BAD: &[u16] = &[400];
/// A bad id of a path segment: refused as invalid, or not found.
const BAD_ID: &[u16] = &[400, 404];
const TOO_BIG: &[u16] = &[413, 429];

/// Malformed JSON bodies, the same for every POST route.
fn malformed() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("not JSON", b"{name: x}".to_vec()),
        ("truncated JSON", br#"{"reason": "#.to_vec()),
        ("a JSON array", b"[{}]".to_vec()),
        ("a JSON string", br#""x""#.to_vec()),
        (
            "invalid UTF-8",
            vec![b'{', b'"', 0xff, b'"', b':', b'1', b'}'],
        ),
        (
            "10,000-deep JSON",
            format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000)).into_bytes(),
        ),
        ("unknown field", br#"{"nope": 1}"#.to_vec()),
        (
            "duplicate key",
            br#"{"reason": "a", "reason": "b"}"#.to_vec(),
        ),
    ]
}

fn corpus(good: &str) -> Vec<Case> {
    let long = "a".repeat(10_000);
    let mut out = Vec::new();
    let mut add = |what: &str,
                   method: Method,
                   path: &str,
                   token: &'static str,
                   body: Option<Value>,
                   want: &'static [u16]| {
        out.push(Case {
            what: format!(
                "{method} {}: {what}",
                path.chars().take(60).collect::<String>()
            ),
            method,
            path: path.to_owned(),
            token,
            body: body.map(|b| serde_json::to_vec(&b).unwrap()),
            want,
        });
    };
    let g = |verb: &str| format!("/v1/workflows/{good}:{verb}");

    // Run ids in the path.
    for id in bad_ids().into_iter().filter(|id| !id.is_empty()) {
        let p = |verb: &str| format!("/v1/workflows/{}:{verb}", seg(&id));
        add(
            "bad id",
            Method::POST,
            &p("signal"),
            "crm-a",
            Some(json!({"signal_name": "s"})),
            BAD_ID,
        );
        add(
            "bad id",
            Method::POST,
            &p("rewind"),
            "operator-a",
            Some(json!({"to_step": "reserve"})),
            BAD_ID,
        );
    }

    // SignalWorkflow.
    for (what, body, want) in [
        ("empty signal name", json!({"signal_name": ""}), BAD),
        ("NUL in the signal name", json!({"signal_name": "a\0"}), BAD),
        ("over-long signal name", json!({"signal_name": long}), BAD),
        (
            "SQL in the signal name",
            json!({"signal_name": SQLISH}),
            BAD,
        ),
        (
            "payload not an object",
            json!({"signal_name": "s", "payload": [1]}),
            BAD,
        ),
        (
            "NUL in the payload",
            json!({"signal_name": "s", "payload": {"a": "\0"}}),
            BAD,
        ),
        (
            "NUL in the idempotency key",
            json!({"signal_name": "s", "idempotency_key": "k\0"}),
            BAD,
        ),
        (
            "over-long idempotency key",
            json!({"signal_name": "s", "idempotency_key": long}),
            BAD,
        ),
        (
            "id in the body",
            json!({"signal_name": "s", "id": good}),
            BAD,
        ),
        (
            "payload over the limit",
            json!({"signal_name": "s", "payload": {"b": "y".repeat(300 * 1024)}}),
            TOO_BIG,
        ),
    ] {
        add(what, Method::POST, &g("signal"), "crm-a", Some(body), want);
    }

    // RewindWorkflow.
    for (what, body, want) in [
        ("empty step", json!({}), BAD),
        ("unknown step", json!({"to_step": SQLISH}), BAD),
        ("NUL in the step", json!({"to_step": "reserve\0"}), BAD),
        (
            "NUL in the reason",
            json!({"to_step": "reserve", "reason": "a\0"}),
            BAD,
        ),
        (
            "over-long reason",
            json!({"to_step": "reserve", "reason": long}),
            BAD,
        ),
        (
            "patch not an object",
            json!({"to_step": "reserve", "context_patch": 5}),
            BAD,
        ),
        (
            "patch over the limit",
            json!({"to_step": "reserve", "reason": "r", "context_patch": {"b": "z".repeat(300 * 1024)}}),
            TOO_BIG,
        ),
    ] {
        add(
            what,
            Method::POST,
            &g("rewind"),
            "operator-a",
            Some(body),
            want,
        );
    }

    // BulkOperate.
    for (what, body, want) in [
        (
            "no action",
            json!({"filter": {"workflow_name": "demo_saga"}}),
            BAD,
        ),
        ("unknown action", json!({"action": "BULK_ACTION_NOPE"}), BAD),
        ("action out of range", json!({"action": 42}), BAD),
        (
            "negative max_runs",
            json!({"action": "BULK_ACTION_CANCEL", "max_runs": -1}),
            BAD,
        ),
        (
            "huge max_runs",
            json!({"action": "BULK_ACTION_CANCEL", "max_runs": u32::MAX, "dry_run": false, "filter": {"workflow_name": "nope"}}),
            &[200, 400],
        ),
        (
            "unknown state in the filter",
            json!({"action": "BULK_ACTION_CANCEL", "filter": {"states": [42]}}),
            BAD,
        ),
        (
            "SQL in the filter",
            json!({"action": "BULK_ACTION_CANCEL", "filter": {"failed_step": SQLISH, "page_token": SQLISH}}),
            &[200, 400],
        ),
        (
            "bad search attribute",
            json!({"action": "BULK_ACTION_CANCEL", "filter": {"search": {"a\0": "b"}}}),
            BAD,
        ),
        (
            "NUL in the reason",
            json!({"action": "BULK_ACTION_CANCEL", "reason": "a\0"}),
            BAD,
        ),
        (
            "patch with compensate",
            json!({"action": "BULK_ACTION_COMPENSATE", "context_patch": {"a": 1}}),
            BAD,
        ),
        (
            "patch over the limit",
            json!({"action": "BULK_ACTION_RETRY", "context_patch": {"b": "z".repeat(300 * 1024)}}),
            TOO_BIG,
        ),
    ] {
        add(
            what,
            Method::POST,
            "/v1/workflows:bulk",
            "operator-a",
            Some(body),
            want,
        );
    }

    // Schedules.
    let sched = |patch: Value| {
        let mut b = json!({"name": "n", "cron": "0 2 * * *", "workflow_name": "demo_saga", "input": {"demo": {}}});
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (what, body) in [
        ("empty name", sched(json!({"name": ""}))),
        ("NUL in the name", sched(json!({"name": "n\0"}))),
        ("over-long name", sched(json!({"name": long}))),
        ("empty cron", sched(json!({"cron": ""}))),
        ("SQL as cron", sched(json!({"cron": SQLISH}))),
        (
            "seven-field cron",
            sched(json!({"cron": "0 0 2 * * * 2099 9"})),
        ),
        (
            "unknown time zone",
            sched(json!({"timezone": "Mars/Olympus"})),
        ),
        ("NUL in the time zone", sched(json!({"timezone": "UTC\0"}))),
        ("unknown workflow", sched(json!({"workflow_name": SQLISH}))),
        (
            "input against the schema",
            sched(json!({"input": {"demo": 5}})),
        ),
        ("overlap out of range", sched(json!({"overlap_policy": 42}))),
        (
            "catch-up out of range",
            sched(json!({"catchup_policy": "CATCHUP_POLICY_NOPE"})),
        ),
        ("paused not a bool", sched(json!({"paused": "yes"}))),
    ] {
        add(
            what,
            Method::POST,
            "/v1/schedules",
            "admin-a",
            Some(body),
            BAD,
        );
    }
    add(
        "input over the limit",
        Method::POST,
        "/v1/schedules",
        "admin-a",
        Some(sched(json!({"input": {"b": "y".repeat(300 * 1024)}}))),
        TOO_BIG,
    );
    for id in bad_ids().into_iter().filter(|id| !id.is_empty()) {
        let s = seg(&id);
        add(
            "bad id",
            Method::GET,
            &format!("/v1/schedules/{s}"),
            "admin-a",
            None,
            BAD_ID,
        );
        add(
            "bad id",
            Method::DELETE,
            &format!("/v1/schedules/{s}"),
            "admin-a",
            None,
            BAD_ID,
        );
        for verb in ["pause", "resume", "trigger"] {
            add(
                "bad id",
                Method::POST,
                &format!("/v1/schedules/{s}:{verb}"),
                "admin-a",
                Some(json!({})),
                BAD_ID,
            );
        }
    }

    // Pools.
    for (what, body) in [
        ("empty name", json!({"name": "", "cidr": "10.9.0.0/24"})),
        (
            "NUL in the name",
            json!({"name": "p\0", "cidr": "10.9.0.0/24"}),
        ),
        (
            "over-long name",
            json!({"name": long, "cidr": "10.9.0.0/24"}),
        ),
        ("no cidr", json!({"name": "p"})),
        ("SQL as cidr", json!({"name": "p", "cidr": SQLISH})),
        (
            "prefix over 32",
            json!({"name": "p", "cidr": "10.9.0.0/33"}),
        ),
        (
            "prefix length too long",
            json!({"name": "p", "cidr": "10.9.0.0/24", "prefix_length": 200}),
        ),
        (
            "prefix length shorter than the range",
            json!({"name": "p", "cidr": "10.9.0.0/24", "prefix_length": 8}),
        ),
        (
            "threshold over 100",
            json!({"name": "p", "cidr": "10.9.0.0/24", "warning_threshold_percent": 101}),
        ),
        (
            "warning above critical",
            json!({"name": "p", "cidr": "10.9.0.0/24", "warning_threshold_percent": 95, "critical_threshold_percent": 90}),
        ),
        (
            "negative threshold",
            json!({"name": "p", "cidr": "10.9.0.0/24", "warning_threshold_percent": -1}),
        ),
    ] {
        add(what, Method::POST, "/v1/pools", "admin-a", Some(body), BAD);
    }
    for name in [SQLISH, long.as_str(), "p\0", "nope"] {
        let n = seg(name);
        add(
            "bad pool name",
            Method::PATCH,
            &format!("/v1/pools/{n}"),
            "admin-a",
            Some(json!({"warning_threshold_percent": 80})),
            BAD_ID,
        );
        add(
            "bad pool name",
            Method::POST,
            &format!("/v1/pools/{n}:retire"),
            "admin-a",
            Some(json!({})),
            BAD_ID,
        );
    }

    // Reservations.
    for (what, body, want) in [
        (
            "no subscriber",
            json!({"family": "ADDRESS_FAMILY_IPV4"}),
            BAD,
        ),
        (
            "NUL in the subscriber",
            json!({"subscriber_id": "s\0", "family": "ADDRESS_FAMILY_IPV4"}),
            BAD,
        ),
        (
            "over-long subscriber",
            json!({"subscriber_id": long, "family": "ADDRESS_FAMILY_IPV4"}),
            BAD,
        ),
        (
            "family out of range",
            json!({"subscriber_id": "s", "family": 42}),
            BAD,
        ),
        (
            "unknown family",
            json!({"subscriber_id": "s", "family": "ADDRESS_FAMILY_IPX"}),
            BAD,
        ),
        (
            "not an address",
            json!({"subscriber_id": "s", "family": "ADDRESS_FAMILY_IPV4", "address": SQLISH}),
            BAD,
        ),
        (
            "address of the other family",
            json!({"subscriber_id": "s", "family": "ADDRESS_FAMILY_IPV4", "address": "2001:db8::1"}),
            BAD,
        ),
        (
            "unknown pool",
            json!({"subscriber_id": "s", "family": "ADDRESS_FAMILY_IPV4", "pool": SQLISH}),
            BAD_ID,
        ),
        (
            "expiry too far",
            json!({"subscriber_id": "s", "family": "ADDRESS_FAMILY_IPV4", "expires_in_days": u32::MAX}),
            BAD,
        ),
        (
            "NUL in the reason",
            json!({"subscriber_id": "s", "family": "ADDRESS_FAMILY_IPV4", "reason": "\0"}),
            BAD,
        ),
    ] {
        add(
            what,
            Method::POST,
            "/v1/reservations",
            "operator-a",
            Some(body),
            want,
        );
    }
    for q in [
        "subscriber_id=%00",
        "subscriber_id=a&subscriber_id=b",
        "nope=1",
        "%ff=1",
    ] {
        add(
            "bad query",
            Method::GET,
            &format!("/v1/reservations?{q}"),
            "operator-a",
            None,
            BAD,
        );
    }
    for id in bad_ids()
        .into_iter()
        .filter(|id| !id.is_empty())
        .chain(["-1".into(), "99999999999999999999999".into()])
    {
        add(
            "bad id",
            Method::POST,
            &format!("/v1/reservations/{}:release", seg(&id)),
            "operator-a",
            Some(json!({})),
            BAD_ID,
        );
    }

    // Malformed JSON on every POST route with a body of its own.
    for path in [
        g("signal"),
        g("rewind"),
        "/v1/workflows:bulk".into(),
        "/v1/schedules".into(),
        "/v1/pools".into(),
        "/v1/reservations".into(),
    ] {
        for (what, raw) in malformed() {
            out.push(Case {
                what: format!("POST {path}: {what}"),
                method: Method::POST,
                path: path.clone(),
                token: if path.contains("signal") {
                    "crm-a"
                } else if path.contains("v1/schedules") || path.contains("v1/pools") {
                    "admin-a"
                } else {
                    "operator-a"
                },
                body: Some(raw),
                want: BAD,
            });
        }
    }
    out
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn bad_input_on_the_operation_routes_stores_nothing(pool: sqlx::PgPool) {
    let t = start(&pool, &[("demo.toml", DEMO.to_string())]).await;
    let h = Http::new(t.server.http_addr);
    let mut c = t.client.clone();
    let good = failed_run_at(&mut c, "crm-a", "reserve").await;
    let before = table_rows(&pool).await;
    let mut wrong = Vec::new();
    let cases = corpus(&good);
    for case in &cases {
        let mut r = h
            .client
            .request(case.method.clone(), format!("{}{}", h.base, case.path))
            .bearer_auth(case.token);
        if let Some(b) = &case.body {
            r = r.header("content-type", "application/json").body(b.clone());
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let has_code = body["code"].as_str().is_some_and(|c| !c.is_empty())
            && body["message"].as_str().is_some_and(|m| !m.is_empty());
        if !case.want.contains(&status) || !has_code {
            wrong.push(format!("{}: got {status} {text:.200}", case.what));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    assert_eq!(table_rows(&pool).await, before, "nothing stored");
    let w = h.get(&format!("/v1/workflows/{good}"), "crm-a").await;
    assert_eq!(
        w.json["state"], "WORKFLOW_STATE_FAILED",
        "the good run was not touched"
    );
    eprintln!("{} bad requests", cases.len());
    t.server.shutdown().await;
}
