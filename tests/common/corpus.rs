//! The bad-input corpus, transport-neutral: the requests and the codes the
//! contract documents for them. The gRPC test (`tests/bad_input.rs`) and the
//! HTTP test (`tests/http_api.rs`) each send it their way; the wire-level
//! cases (undecodable bytes, undecodable JSON) stay with their transport.

use sagaflow_proto::v1 as pb;
use serde_json::json;
use tonic::Code;

use super::obj;

/// One request of the corpus.
#[derive(Debug, Clone)]
pub enum Call {
    Start(pb::StartWorkflowRequest),
    List(pb::ListWorkflowsRequest),
    Get(pb::GetWorkflowRequest),
    History(pb::GetWorkflowHistoryRequest),
    Retry(pb::RetryWorkflowRequest),
    Compensate(pb::CompensateWorkflowRequest),
    Cancel(pb::CancelWorkflowRequest),
    Skip(pb::SkipStepRequest),
}

/// A case: what it tries, the token it sends, the call and the codes the
/// contract allows for it.
#[derive(Debug, Clone)]
pub struct Case {
    pub what: String,
    pub token: &'static str,
    pub call: Call,
    pub want: Vec<Code>,
}

pub const SQLISH: &str = "x'; DROP TABLE runs; --";

/// The ids the corpus tries as a run id.
pub fn bad_ids() -> Vec<String> {
    vec![
        String::new(),
        "nope".into(),
        SQLISH.into(),
        "0190a5d2-ac96-7d4b-bcce-b302099a8057x".into(),
        "a".repeat(10_000),
        "0190a5d2\0ac96-7d4b-bcce-b302099a8057".into(),
    ]
}

fn start(name: &str, input: serde_json::Value, key: &str) -> Call {
    Call::Start(pb::StartWorkflowRequest {
        workflow_name: name.into(),
        input: obj(input),
        idempotency_key: key.into(),
        workflow_version: 0,
    })
}

/// The corpus; `good` is a FAILED demo_saga run (failed at `reserve`) of
/// tenant `a`. Every case but "20-deep JSON input" is refused and stores
/// nothing; that one starts a run.
pub fn corpus(good: &str) -> Vec<Case> {
    let ia = vec![Code::InvalidArgument];
    let long = "a".repeat(10_000);
    let mut out = Vec::new();
    let mut add = |what: &str, token: &'static str, call: Call, want: &[Code]| {
        out.push(Case {
            what: what.to_owned(),
            token,
            call,
            want: want.to_vec(),
        });
    };
    for (what, name, input, key, want) in [
        ("unknown workflow", "nope", json!({}), "", &ia[..]),
        ("empty workflow name", "", json!({}), "", &ia[..]),
        ("SQL in the workflow name", SQLISH, json!({}), "", &ia[..]),
        (
            "over-long workflow name",
            long.as_str(),
            json!({}),
            "",
            &ia[..],
        ),
        (
            "NUL in the workflow name",
            "demo\0saga",
            json!({}),
            "",
            &ia[..],
        ),
        (
            "schema violation",
            "demo_saga",
            json!({"demo": 5}),
            "",
            &ia[..],
        ),
        (
            "NUL in an input string",
            "demo_saga",
            json!({"x": "a\0b"}),
            "",
            &ia[..],
        ),
        (
            "NUL in an input key",
            "demo_saga",
            json!({"a\0": 1}),
            "",
            &ia[..],
        ),
        (
            "NUL in the idempotency key",
            "demo_saga",
            json!({}),
            "k\0",
            &ia[..],
        ),
        (
            "over-long idempotency key",
            "demo_saga",
            json!({}),
            long.as_str(),
            &ia[..],
        ),
        (
            "payload over the limit",
            "demo_saga",
            json!({"blob": "y".repeat(257 * 1024)}),
            "",
            &[Code::ResourceExhausted][..],
        ),
    ] {
        add(what, "crm-a", start(name, input, key), want);
    }
    add(
        "20-deep JSON input (within the limit)",
        "crm-a",
        start(
            "demo_saga",
            (0..20).fold(json!(1), |v, _| json!({"a": v})),
            "",
        ),
        &[Code::Ok],
    );
    for (what, r) in [
        (
            "huge page size",
            pb::ListWorkflowsRequest {
                page_size: u32::MAX,
                ..Default::default()
            },
        ),
        (
            "unknown state",
            pb::ListWorkflowsRequest {
                states: vec![42],
                ..Default::default()
            },
        ),
        (
            "garbage page token",
            pb::ListWorkflowsRequest {
                page_token: SQLISH.into(),
                ..Default::default()
            },
        ),
    ] {
        add(what, "crm-a", Call::List(r), &ia);
    }
    for id in bad_ids() {
        let calls = [
            (
                "bad id (get)",
                Call::Get(pb::GetWorkflowRequest { id: id.clone() }),
            ),
            (
                "bad id (retry)",
                Call::Retry(pb::RetryWorkflowRequest {
                    id: id.clone(),
                    ..Default::default()
                }),
            ),
            (
                "bad id (compensate)",
                Call::Compensate(pb::CompensateWorkflowRequest {
                    id: id.clone(),
                    reason: String::new(),
                }),
            ),
            (
                "bad id (cancel)",
                Call::Cancel(pb::CancelWorkflowRequest {
                    id: id.clone(),
                    compensate: true,
                    reason: String::new(),
                }),
            ),
            (
                "bad id (skip)",
                Call::Skip(pb::SkipStepRequest {
                    id: id.clone(),
                    step: "reserve".into(),
                    output: None,
                    reason: String::new(),
                }),
            ),
            (
                "bad id (history)",
                Call::History(pb::GetWorkflowHistoryRequest { id: id.clone() }),
            ),
        ];
        for (what, call) in calls {
            add(what, "operator-a", call, &ia);
        }
    }
    let g = || good.to_owned();
    add(
        "unknown from_step",
        "operator-a",
        Call::Retry(pb::RetryWorkflowRequest {
            id: g(),
            from_step: SQLISH.into(),
            ..Default::default()
        }),
        &ia,
    );
    add(
        "NUL in the reason",
        "operator-a",
        Call::Compensate(pb::CompensateWorkflowRequest {
            id: g(),
            reason: "a\0".into(),
        }),
        &ia,
    );
    add(
        "over-long reason",
        "operator-a",
        Call::Cancel(pb::CancelWorkflowRequest {
            id: g(),
            compensate: true,
            reason: long.clone(),
        }),
        &ia,
    );
    for (what, step, output) in [
        ("empty step", String::new(), None),
        ("unknown step", SQLISH.to_owned(), None),
        (
            "NUL in a skip output",
            "reserve".to_owned(),
            obj(json!({"o": "\0"})),
        ),
    ] {
        add(
            what,
            "operator-a",
            Call::Skip(pb::SkipStepRequest {
                id: g(),
                step,
                output,
                reason: String::new(),
            }),
            &ia,
        );
    }
    add(
        "context patch over the limit",
        "operator-a",
        Call::Retry(pb::RetryWorkflowRequest {
            id: g(),
            context_patch: obj(json!({"b": "z".repeat(300 * 1024)})),
            ..Default::default()
        }),
        &[Code::ResourceExhausted],
    );
    out
}
