//! Telemetry of a real `sagaflow dev` process.
//!
//! JSON logs name their trace: with `SAGAFLOW_LOG_FORMAT=json` it is sent
//! a StartWorkflow and a CancelWorkflow over gRPC carrying the caller's
//! `traceparent`; the audit line the cancel writes inside its RPC span
//! carries the caller's trace id and a span id of its own, and lines
//! outside every span carry neither.
//!
//! OTLP/HTTP: with `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf` the spans
//! of a run reach an in-process HTTP receiver that decodes each protobuf
//! export request; an unknown protocol stops the start with a message.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{obj, req};
use opentelemetry_proto::tonic as otlp;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::workflow_service_client::WorkflowServiceClient;
use serde_json::{Value, json};

struct Dev {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sagaflow dev` with JSON logs at `info` and the variables `env`;
/// every stderr line is kept. Returns it and its gRPC address.
fn start_dev(env: &[(&str, &str)]) -> (Dev, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("dev.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sagaflow"))
        .args(["dev", "--database-url", &db, "--workflows"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/workflows"))
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args(["--poll-ms", "50"])
        .env("SAGAFLOW_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let keep = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(addr) = line.trim().strip_prefix("gRPC") {
                let _ = tx.send(addr.trim().to_owned());
            }
            keep.lock().unwrap().push(line);
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("sagaflow dev printed its gRPC address");
    let dev = Dev {
        child,
        lines,
        _dir: dir,
    };
    (dev, format!("http://{addr}"))
}

/// The JSON log lines so far.
fn json_lines(dev: &Dev) -> Vec<Value> {
    dev.lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

fn traced<T>(msg: T, token: &str, traceparent: &str) -> tonic::Request<T> {
    let mut r = req(msg, token);
    r.metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    r
}

#[tokio::test]
async fn json_log_lines_of_a_traced_request_carry_its_trace_id() {
    let (dev, server) = start_dev(&[]);
    let mut client = WorkflowServiceClient::connect(server).await.unwrap();
    let trace_id = format!("{:032x}", fastrand::u128(1..));
    let start_span = format!("{:016x}", fastrand::u64(1..));
    let cancel_span = format!("{:016x}", fastrand::u64(1..));

    let run = client
        .start_workflow(traced(
            pb::StartWorkflowRequest {
                workflow_name: "demo_saga".into(),
                input: obj(json!({"demo": {"sleep_ms": 30000}})),
                idempotency_key: String::new(),
                workflow_version: 0,
            },
            "dev-crm",
            &format!("00-{trace_id}-{start_span}-01"),
        ))
        .await
        .unwrap()
        .into_inner()
        .workflow
        .unwrap();
    client
        .cancel_workflow(traced(
            pb::CancelWorkflowRequest {
                id: run.id.clone(),
                compensate: true,
                reason: "log trace ids".into(),
            },
            "dev-operator",
            &format!("00-{trace_id}-{cancel_span}-01"),
        ))
        .await
        .unwrap();

    // The cancel's audit line, written inside the RPC's span.
    let end = Instant::now() + Duration::from_secs(20);
    let audit = loop {
        let found = json_lines(&dev).into_iter().find(|l| {
            l["fields"]["message"] == "audit"
                && l["fields"]["target_id"].as_str() == Some(run.id.as_str())
        });
        if let Some(l) = found {
            break l;
        }
        assert!(Instant::now() < end, "no audit line for the cancel");
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval (loop has a deadline)
    };
    assert_eq!(audit["trace_id"], trace_id.as_str(), "{audit}");
    let span_id = audit["span_id"].as_str().expect("a span_id");
    assert_eq!(span_id.len(), 16, "{audit}");
    assert!(span_id.chars().all(|c| c.is_ascii_hexdigit()), "{audit}");
    assert_ne!(span_id, cancel_span, "the RPC's own span, not the caller's");
    assert_ne!(span_id, "0000000000000000");
    assert_eq!(audit["span"]["name"], "rpc", "{audit}");

    // A line written outside every span names no trace.
    let lines = json_lines(&dev);
    let outside = lines
        .iter()
        .find(|l| l.get("span").is_none() && l.get("spans").is_none_or(|s| s == &json!([])))
        .expect("a line outside every span (start-up)");
    assert!(outside.get("trace_id").is_none(), "{outside}");
    assert!(outside.get("span_id").is_none(), "{outside}");
}

/// The spans an OTLP/HTTP receiver was sent, decoded, with the content
/// type of each export request.
#[derive(Default)]
struct Received {
    spans: Vec<otlp::trace::v1::Span>,
    content_types: Vec<String>,
}

/// An OTLP/HTTP receiver on 127.0.0.1:0 decoding each protobuf export
/// request; returns its base URL.
async fn otlp_receiver() -> (String, Arc<Mutex<Received>>) {
    use axum::http::{HeaderMap, header};
    let got = Arc::new(Mutex::new(Received::default()));
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).unwrap();
                let mut got = keep.lock().unwrap();
                got.content_types.push(
                    headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                );
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        got.spans.extend(ss.spans);
                    }
                }
                (
                    [(header::CONTENT_TYPE, "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), got)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(s: &otlp::trace::v1::Span, key: &str) -> Option<String> {
    use otlp::common::v1::any_value::Value as V;
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            V::StringValue(s) => s.clone(),
            V::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
}

#[tokio::test]
async fn spans_of_a_run_are_exported_over_otlp_http_protobuf() {
    let (endpoint, got) = otlp_receiver().await;
    let (_dev, server) = start_dev(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]);
    let mut client = WorkflowServiceClient::connect(server).await.unwrap();
    let trace_id = format!("{:032x}", fastrand::u128(1..));
    let caller_span = format!("{:016x}", fastrand::u64(1..));
    let run = client
        .start_workflow(traced(
            pb::StartWorkflowRequest {
                workflow_name: "demo_saga".into(),
                input: obj(json!({})),
                idempotency_key: String::new(),
                workflow_version: 0,
            },
            "dev-crm",
            &format!("00-{trace_id}-{caller_span}-01"),
        ))
        .await
        .unwrap()
        .into_inner()
        .workflow
        .unwrap();

    // Every step of the run arrives as a span in the caller's trace.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let steps: Vec<String> = {
            let got = got.lock().unwrap();
            got.spans
                .iter()
                .filter(|s| s.name == "step" && attr(s, "run_id").as_deref() == Some(&run.id))
                .filter_map(|s| attr(s, "step"))
                .collect()
        };
        if ["validate", "reserve", "configure", "notify", "bill"]
            .iter()
            .all(|want| steps.iter().any(|s| s == want))
        {
            break;
        }
        assert!(Instant::now() < end, "step spans received: {steps:?}");
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval (loop has a deadline)
    }
    let got = got.lock().unwrap();
    for s in got
        .spans
        .iter()
        .filter(|s| attr(s, "run_id").as_deref() == Some(&run.id))
    {
        assert_eq!(
            hex(&s.trace_id),
            trace_id,
            "span {} in another trace",
            s.name
        );
    }
    let rpc = got
        .spans
        .iter()
        .find(|s| attr(s, "rpc.method").as_deref() == Some("StartWorkflow"))
        .expect("the StartWorkflow call's span");
    assert_eq!(hex(&rpc.trace_id), trace_id);
    assert_eq!(hex(&rpc.parent_span_id), caller_span);
    assert!(
        got.content_types
            .iter()
            .all(|c| c == "application/x-protobuf"),
        "{:?}",
        got.content_types
    );
}

#[test]
fn an_unknown_otlp_protocol_stops_the_start_with_the_variable_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("dev.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sagaflow"))
        .args(["dev", "--database-url", &db])
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/xml")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("sagaflow dev started with an unknown OTLP protocol");
        }
        std::thread::sleep(Duration::from_millis(20)); // poll interval (loop has a deadline)
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{err}");
    assert!(err.contains("http/xml"), "{err}");
    assert!(err.contains("http/protobuf"), "{err}");
}
