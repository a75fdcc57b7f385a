//! Traces: a StartWorkflow call carrying a W3C `traceparent` produces run
//! and step spans in the caller's trace, also after the engine was stopped
//! in the middle of the run and a new one (on the same database) finished
//! it. Spans are collected by an in-memory exporter; this file is its own
//! test binary because the subscriber is process-wide.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{req, wait_state};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use sagaflow_proto::v1 as pb;
use serde_json::json;
use sqlx::PgPool;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn install() -> InMemorySpanExporter {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .init();
    exporter
}

fn attr(s: &SpanData, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// Spans of the run `id` named `name` (`run` or `step`).
fn spans_of(exporter: &InMemorySpanExporter, name: &str, id: &str) -> Vec<SpanData> {
    exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.name == name && attr(s, "run_id").as_deref() == Some(id))
        .collect()
}

async fn history(t: &mut common::TestServer, id: &str) -> Vec<pb::WorkflowEvent> {
    t.client
        .get_workflow_history(req(
            pb::GetWorkflowHistoryRequest { id: id.into() },
            "crm-a",
        ))
        .await
        .unwrap()
        .into_inner()
        .events
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn step_spans_join_the_callers_trace_across_a_restart(pool: PgPool) {
    let exporter = install();
    let trace_id = format!("{:032x}", fastrand::u128(1..));
    let caller_span = format!("{:016x}", fastrand::u64(1..));
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let workflows = [("demo_saga.v1.toml", common::DEMO.to_owned())];
    // Stopping gives attempts in flight 50 ms: the one we interrupt is
    // abandoned (its lease given back) and runs again on the next engine.
    let tweak = |c: &mut sagaflow::config::Config| c.engine.shutdown_grace_ms = 50;
    let mut first = common::start_with(&pool, &workflows, tweak).await;

    let mut start = req(
        pb::StartWorkflowRequest {
            workflow_name: "demo_saga".into(),
            input: common::obj(json!({"demo": {"sleep_ms": 1000}})),
            idempotency_key: "traced".into(),
            workflow_version: 0,
        },
        "crm-a",
    );
    start
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    let run = first
        .client
        .start_workflow(start)
        .await
        .unwrap()
        .into_inner()
        .workflow
        .unwrap();
    let id = run.id.clone();

    // Stop the engine while the first step's attempt is in flight.
    let end = Instant::now() + Duration::from_secs(20);
    while !history(&mut first, &id)
        .await
        .iter()
        .any(|e| e.step == "validate")
    {
        assert!(Instant::now() < end, "the first step never started");
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval (loop has a deadline)
    }
    first.server.shutdown().await;
    let end = Instant::now() + Duration::from_secs(20);
    let before = loop {
        let steps = spans_of(&exporter, "step", &id);
        if !steps.is_empty() {
            break steps;
        }
        assert!(Instant::now() < end, "the interrupted attempt left no span");
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval (loop has a deadline)
    };
    let seen: Vec<_> = before.iter().map(|s| s.span_context.span_id()).collect();

    // A new engine on the same database finishes the run.
    let mut second = common::start_with(&pool, &workflows, tweak).await;
    wait_state(
        &mut second.client,
        "crm-a",
        &id,
        pb::WorkflowState::Completed,
    )
    .await;
    second.server.shutdown().await;

    let steps = spans_of(&exporter, "step", &id);
    let later: Vec<&SpanData> = steps
        .iter()
        .filter(|s| !seen.contains(&s.span_context.span_id()))
        .collect();
    let later_steps: Vec<String> = later.iter().filter_map(|s| attr(s, "step")).collect();
    for step in ["validate", "reserve", "configure", "notify", "bill"] {
        assert!(
            later_steps.iter().any(|s| s == step),
            "no span of {step} from the second engine: {later_steps:?}"
        );
    }
    for s in &steps {
        assert_eq!(
            s.span_context.trace_id().to_string(),
            trace_id,
            "step span {:?} is in another trace",
            attr(s, "step")
        );
        assert_eq!(attr(s, "workflow").as_deref(), Some("demo_saga"));
        assert_eq!(attr(s, "tenant").as_deref(), Some("a"));
        assert!(attr(s, "attempt").is_some());
    }
    // The interrupted attempt ran again on the second engine.
    assert!(
        later
            .iter()
            .any(|s| attr(s, "step").as_deref() == Some("validate")
                && attr(s, "attempt").as_deref() == Some("2"))
    );

    // Each engine's run span is a child of the caller's span.
    let runs = spans_of(&exporter, "run", &id);
    assert!(runs.len() >= 2, "one run span per engine: {}", runs.len());
    for r in &runs {
        assert_eq!(r.span_context.trace_id().to_string(), trace_id);
        assert_eq!(r.parent_span_id.to_string(), caller_span);
    }

    // The RPC's span is in the trace too, names the tenant, and no span
    // records the token.
    let all = exporter.get_finished_spans().unwrap();
    let rpc = all
        .iter()
        .find(|s| attr(s, "rpc.method").as_deref() == Some("StartWorkflow"))
        .expect("a span for the StartWorkflow call");
    assert_eq!(rpc.span_context.trace_id().to_string(), trace_id);
    assert_eq!(attr(rpc, "tenant").as_deref(), Some("a"));
    for s in &all {
        for kv in &s.attributes {
            assert!(
                !kv.value.as_str().contains("crm-a"),
                "span {} records a token in {}",
                s.name,
                kv.key
            );
        }
    }
}
