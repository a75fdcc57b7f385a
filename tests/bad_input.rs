//! The bad-input corpus (`common/corpus.rs`) against StartWorkflow,
//! ListWorkflows and the operator RPCs over gRPC, with the undecodable
//! messages only gRPC can carry: the documented status code every time,
//! never INTERNAL, never a panic, and nothing stored.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::workflow_service_client::WorkflowServiceClient;
use tonic::Code;

/// StartWorkflowRequest with its strings as raw bytes (to send invalid UTF-8).
#[derive(Clone, PartialEq, prost::Message)]
struct RawStart {
    #[prost(bytes = "vec", tag = "1")]
    workflow_name: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    input: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    idempotency_key: Vec<u8>,
}

/// ListWorkflowsRequest with a signed page size (to send a negative one).
#[derive(Clone, PartialEq, prost::Message)]
struct RawList {
    #[prost(int64, tag = "6")]
    page_size: i64,
}

async fn raw<
    M: prost::Message + Send + Sync + 'static,
    R: prost::Message + Default + Send + Sync + 'static,
>(
    channel: &tonic::transport::Channel,
    path: &'static str,
    msg: M,
) -> Result<R, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let codec: tonic_prost::ProstCodec<M, R> = tonic_prost::ProstCodec::default();
    grpc.unary(
        req(msg, "operator-a"),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        codec,
    )
    .await
    .map(|r| r.into_inner())
}

/// The encoding of `{"a": {"a": … null …}}` nested `depth` deep, built
/// back to front so it costs linear time.
fn deep_struct(depth: usize) -> Vec<u8> {
    fn varint_rev(mut n: usize, out: &mut Vec<u8>) {
        let mut bytes = Vec::new();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                bytes.push(b);
                break;
            }
            bytes.push(b | 0x80);
        }
        out.extend(bytes.iter().rev());
    }
    let mut rev: Vec<u8> = vec![0x00, 0x08]; // Value { null_value: 0 }, reversed
    for level in 0..depth {
        // MapEntry { key: "a" (1), value: Value (2) }
        varint_rev(rev.len(), &mut rev);
        rev.push(0x12);
        rev.extend([b'a', 0x01, 0x0a]);
        // Struct { fields (1): entry }
        varint_rev(rev.len(), &mut rev);
        rev.push(0x0a);
        if level + 1 < depth {
            // Value { struct_value (5): Struct }
            varint_rev(rev.len(), &mut rev);
            rev.push(0x2a);
        }
    }
    rev.reverse();
    rev
}

/// Sends one case of the corpus over gRPC.
async fn send(
    c: &mut WorkflowServiceClient<tonic::transport::Channel>,
    case: &corpus::Case,
) -> Result<(), tonic::Status> {
    use corpus::Call;
    let t = case.token;
    match case.call.clone() {
        Call::Start(r) => c.start_workflow(req(r, t)).await.map(|_| ()),
        Call::List(r) => c.list_workflows(req(r, t)).await.map(|_| ()),
        Call::Get(r) => c.get_workflow(req(r, t)).await.map(|_| ()),
        Call::History(r) => c.get_workflow_history(req(r, t)).await.map(|_| ()),
        Call::Retry(r) => c.retry_workflow(req(r, t)).await.map(|_| ()),
        Call::Compensate(r) => c.compensate_workflow(req(r, t)).await.map(|_| ()),
        Call::Cancel(r) => c.cancel_workflow(req(r, t)).await.map(|_| ()),
        Call::Skip(r) => c.skip_step(req(r, t)).await.map(|_| ()),
    }
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn bad_input_gets_documented_codes_and_stores_nothing(pool: sqlx::PgPool) {
    let t = start(&pool, &[("demo.toml", DEMO.to_string())]).await;
    let mut c = t.client.clone();
    // One good run to act on.
    let good = failed_run_at(&mut c, "crm-a", "reserve").await;
    let before = count_rows(&pool).await;
    let mut codes: Vec<(String, Code)> = Vec::new();
    let mut check = |what: &str, r: Result<(), tonic::Status>, want: &[Code]| {
        let code = r.err().map(|e| e.code()).unwrap_or(Code::Ok);
        assert!(
            want.contains(&code),
            "{what}: got {code:?}, want one of {want:?}"
        );
        codes.push((what.to_owned(), code));
    };
    let ia = [Code::InvalidArgument];
    for case in corpus::corpus(&good) {
        let r = send(&mut c, &case).await;
        check(&case.what, r, &case.want);
    }

    let name = b"demo_saga".to_vec();
    let lone_surrogate = vec![b'k', 0xED, 0xA0, 0x80]; // U+D800 in "UTF-8"
    for (what, msg) in [
        (
            "lone surrogate in the idempotency key",
            RawStart {
                workflow_name: name.clone(),
                input: vec![],
                idempotency_key: lone_surrogate.clone(),
            },
        ),
        (
            "lone surrogate in the workflow name",
            RawStart {
                workflow_name: lone_surrogate.clone(),
                input: vec![],
                idempotency_key: vec![],
            },
        ),
        (
            "10,000-deep JSON input",
            RawStart {
                workflow_name: name.clone(),
                input: deep_struct(10_000),
                idempotency_key: vec![],
            },
        ),
        (
            "truncated input",
            RawStart {
                workflow_name: name.clone(),
                input: vec![0x0a, 0x7f, 0x01],
                idempotency_key: vec![],
            },
        ),
    ] {
        let r = raw::<_, pb::StartWorkflowResponse>(
            &t.channel,
            "/sagaflow.v1.WorkflowService/StartWorkflow",
            msg,
        )
        .await;
        check(what, r.map(|_| ()), &ia);
    }
    let r = raw::<_, pb::ListWorkflowsResponse>(
        &t.channel,
        "/sagaflow.v1.WorkflowService/ListWorkflows",
        RawList { page_size: -1 },
    )
    .await;
    check("negative page size", r.map(|_| ()), &ia);

    let after = count_rows(&pool).await;
    assert_eq!(
        after.0,
        before.0 + 1,
        "only the one valid 20-deep start stored a run"
    );
    assert!(
        codes.iter().all(|(_, c)| *c != Code::Internal),
        "no INTERNAL: {codes:?}"
    );
    // The good run was never touched by the refused actions.
    let w = c
        .get_workflow(req(pb::GetWorkflowRequest { id: good.clone() }, "crm-a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&w), pb::WorkflowState::Failed);
    // And the server is still answering (no panic took it down).
    assert!(
        c.list_workflow_definitions(req(pb::ListWorkflowDefinitionsRequest {}, "crm-a"))
            .await
            .is_ok()
    );
    eprintln!(
        "{} bad requests, codes: {:?}",
        codes.len(),
        codes
            .iter()
            .map(|c| format!("{:?}", c.1))
            .collect::<std::collections::BTreeSet<_>>()
    );
    t.server.shutdown().await;
}
