//! Run-outcome webhooks against a local receiver, on both backends: each
//! outcome delivered once with a valid signature; a receiver down for a
//! while gets the same delivery id when it is back; a receiver failing for
//! 24 h of injected time gets its webhook disabled.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

#[macro_use]
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use sagaflow_engine::clock::{Clock, ManualClock};
use sagaflow_engine::saga::OperatorAction;
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::{DeliveryFilter, DeliveryState, Store};
use sagaflow_engine::webhook::signature::verify_signature;
use sagaflow_engine::webhook::{DispatcherOptions, Webhook, WebhookEvent, Webhooks};
use serde_json::{Value, json};
use support::*;

on_both_backends!(
    outcomes_are_delivered_once_and_signed,
    a_receiver_down_for_a_while_gets_the_same_delivery_later,
    a_receiver_failing_for_a_day_gets_its_webhook_disabled,
    operator_cancels_are_delivered_and_unheard_events_are_not,
);

const SECRET: &str = "crm-signing-secret-0123";

/// One POST the receiver saw.
#[derive(Debug, Clone)]
struct Seen {
    delivery: String,
    event: String,
    signature: String,
    body: Vec<u8>,
}

/// A local HTTP receiver answering `status` (changeable) and recording
/// every POST.
#[derive(Clone)]
struct Receiver {
    url: String,
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    async fn start(status: u16) -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let code = Arc::new(AtomicU16::new(status));
        let (s, c) = (seen.clone(), code.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (s, c) = (s.clone(), c.clone());
                async move {
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    s.lock().unwrap().push(Seen {
                        delivery: h("x-sagaflow-delivery"),
                        event: h("x-sagaflow-event"),
                        signature: h("x-sagaflow-signature"),
                        body: body.to_vec(),
                    });
                    StatusCode::from_u16(c.load(Ordering::SeqCst)).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/hook"),
            status: code,
            seen,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn webhooks(&self) -> Webhooks {
        Webhooks::new(vec![Webhook {
            tenant: TENANT.into(),
            url: self.url.clone(),
            secret: SECRET.into(),
            events: WebhookEvent::ALL.to_vec(),
            workflows: None,
        }])
    }
}

fn tomls() -> Vec<String> {
    vec![
        saga_toml("wh", 1, 2, ""),
        saga_toml("wh_pause", 1, 2, "on_failure = \"pause\""),
    ]
}

fn fast_dispatch() -> DispatcherOptions {
    DispatcherOptions {
        poll: Duration::from_millis(20),
        lease: Duration::from_secs(10),
        batch: 8,
        timeout: Duration::from_secs(5),
    }
}

async fn deliveries(
    store: &Arc<dyn Store>,
    state: Option<DeliveryState>,
) -> Vec<sagaflow_engine::store::Delivery> {
    store
        .deliveries(&DeliveryFilter {
            state,
            limit: 100,
            ..DeliveryFilter::default()
        })
        .await
        .unwrap()
}

async fn outcomes_are_delivered_once_and_signed(store: Arc<dyn Store>) {
    let rx = Receiver::start(200).await;
    let h = Harness::new(store.clone(), &tomls()).await;
    h.engine.set_webhooks(rx.webhooks());
    let dispatcher = h.engine.start_webhook_dispatcher(fast_dispatch());

    let done = h.start("wh", json!({})).await.run.id;
    let compensated = h.start("wh", json!({"fatal": {"s2": true}})).await.run.id;
    let failed = h
        .start("wh_pause", json!({"fatal": {"s2": true}}))
        .await
        .run
        .id;
    h.wait_state(done, RunState::Completed).await;
    h.wait_state(compensated, RunState::Compensated).await;
    h.wait_state(failed, RunState::Failed).await;

    let stored = poll(
        "three deliveries acknowledged",
        Duration::from_secs(10),
        || {
            let store = store.clone();
            async move {
                let d = deliveries(&store, Some(DeliveryState::Delivered)).await;
                (d.len() == 3).then_some(d)
            }
        },
    )
    .await;
    dispatcher.shutdown().await;

    let seen = rx.seen();
    assert_eq!(seen.len(), 3, "each outcome once: {seen:#?}");
    assert!(
        deliveries(&store, None).await.len() == 3,
        "no other delivery recorded"
    );
    let mut by_run = HashMap::new();
    for s in &seen {
        assert!(
            verify_signature(SECRET.as_bytes(), &s.body, &s.signature),
            "bad signature {}",
            s.signature
        );
        let body: Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(body["delivery_id"], s.delivery.as_str());
        assert_eq!(body["event"], s.event.as_str());
        assert!(body["occurred_at"].as_str().unwrap().ends_with('Z'));
        let steps = body["workflow"]["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 2, "steps included");
        assert!(stored.iter().any(|d| d.id.to_string() == s.delivery));
        by_run.insert(
            body["workflow"]["id"].as_str().unwrap().to_owned(),
            (s.event.clone(), body["workflow"]["state"].clone()),
        );
    }
    assert_eq!(
        by_run[&done.to_string()],
        ("run_completed".into(), json!("WORKFLOW_STATE_COMPLETED"))
    );
    assert_eq!(
        by_run[&compensated.to_string()],
        (
            "run_compensated".into(),
            json!("WORKFLOW_STATE_COMPENSATED")
        )
    );
    assert_eq!(
        by_run[&failed.to_string()],
        ("run_failed".into(), json!("WORKFLOW_STATE_FAILED"))
    );
    h.shutdown().await;
}

/// Polls until the delivery of `run` has been tried `n` times.
async fn tried(store: &Arc<dyn Store>, n: u32) -> sagaflow_engine::store::Delivery {
    poll(
        &format!("a delivery tried {n} times"),
        Duration::from_secs(10),
        || {
            let store = store.clone();
            async move {
                deliveries(&store, None)
                    .await
                    .into_iter()
                    .find(|d| d.attempts >= n)
            }
        },
    )
    .await
}

async fn a_receiver_down_for_a_while_gets_the_same_delivery_later(store: Arc<dyn Store>) {
    let rx = Receiver::start(503).await;
    let clock = ManualClock::new(Utc::now());
    let h = Harness::with_clock(store.clone(), &tomls(), Arc::new(clock.clone())).await;
    h.engine.set_webhooks(rx.webhooks());
    let dispatcher = h.engine.start_webhook_dispatcher(fast_dispatch());
    let run = h.start("wh", json!({})).await.run.id;
    h.wait_state(run, RunState::Completed).await;

    let first = tried(&store, 1).await;
    assert_eq!(first.state, DeliveryState::Pending);
    assert_eq!(
        first.last_error.as_deref(),
        Some("HTTP 503 Service Unavailable")
    );
    let retry_in = first.next_attempt_at.unwrap() - clock.now();
    assert!(
        (8..=12).contains(&retry_in.num_seconds()),
        "first retry after ~10 s, got {retry_in}"
    );
    // Not before its time.
    clock.advance(Duration::from_secs(5));
    assert_eq!(deliveries(&store, None).await[0].attempts, 1);

    rx.status.store(200, Ordering::SeqCst);
    clock.advance(Duration::from_secs(10));
    let done = poll("the delivery acknowledged", Duration::from_secs(10), || {
        let store = store.clone();
        async move {
            let d = deliveries(&store, Some(DeliveryState::Delivered)).await;
            d.into_iter().next()
        }
    })
    .await;
    dispatcher.shutdown().await;
    assert_eq!(done.id, first.id);
    assert_eq!(done.attempts, 2);
    let seen = rx.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|s| s.delivery == first.id.to_string()),
        "same id every try"
    );
    h.shutdown().await;
}

async fn a_receiver_failing_for_a_day_gets_its_webhook_disabled(store: Arc<dyn Store>) {
    let rx = Receiver::start(500).await;
    let clock = ManualClock::new(Utc::now());
    let h = Harness::with_clock(store.clone(), &tomls(), Arc::new(clock.clone())).await;
    h.engine.set_webhooks(rx.webhooks());
    let dispatcher = h.engine.start_webhook_dispatcher(fast_dispatch());
    let run = h.start("wh", json!({})).await.run.id;
    h.wait_state(run, RunState::Completed).await;

    let start = clock.now();
    let mut attempts = 0;
    loop {
        let d = tried(&store, attempts + 1).await;
        attempts = d.attempts;
        if d.state == DeliveryState::Failed {
            break;
        }
        assert!(
            clock.now() - start < chrono::Duration::hours(26),
            "never gave up"
        );
        clock.set(d.next_attempt_at.unwrap());
    }
    let failing = clock.now() - start;
    assert!(
        failing >= chrono::Duration::hours(24),
        "gave up after {failing}, before 24 h"
    );
    assert!(attempts > 20, "{attempts} tries in a day");
    let disabled = store.disabled_webhooks().await.unwrap();
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0].url, rx.url);
    assert_eq!(disabled[0].reason, "HTTP 500 Internal Server Error");

    // A disabled webhook is not tried any more: a new outcome is recorded
    // but stays pending.
    let tries = rx.seen().len();
    let next = h.start("wh", json!({})).await.run.id;
    h.wait_state(next, RunState::Completed).await;
    poll("the new delivery recorded", Duration::from_secs(10), || {
        let store = store.clone();
        async move { (deliveries(&store, Some(DeliveryState::Pending)).await.len() == 1).then_some(()) }
    })
    .await;
    clock.advance(Duration::from_secs(3600));
    dispatcher.shutdown().await;
    assert_eq!(rx.seen().len(), tries);
    h.shutdown().await;
}

async fn operator_cancels_are_delivered_and_unheard_events_are_not(store: Arc<dyn Store>) {
    let rx = Receiver::start(200).await;
    let h = Harness::new(store.clone(), &tomls()).await;
    let mut hooks = rx.webhooks();
    hooks = Webhooks::new(vec![Webhook {
        events: vec![WebhookEvent::RunCancelled, WebhookEvent::RunTerminated],
        ..hooks.get(TENANT, &rx.url).unwrap().clone()
    }]);
    h.engine.set_webhooks(hooks);
    let dispatcher = h.engine.start_webhook_dispatcher(fast_dispatch());
    let broken = json!({"fatal": {"s2": true}});
    let t = tenant();
    let act = |id, compensate| {
        h.engine.act(
            &t,
            id,
            OperatorAction::Cancel { compensate },
            "ops",
            "customer withdrew",
        )
    };
    let cancelled = h.start("wh_pause", broken.clone()).await.run.id;
    let terminated = h.start("wh_pause", broken).await.run.id;
    h.wait_state(cancelled, RunState::Failed).await;
    h.wait_state(terminated, RunState::Failed).await;
    act(cancelled, true).await.unwrap();
    act(terminated, false).await.unwrap();
    h.wait_state(cancelled, RunState::Cancelled).await;
    poll(
        "two deliveries acknowledged",
        Duration::from_secs(10),
        || {
            let store = store.clone();
            async move {
                (deliveries(&store, Some(DeliveryState::Delivered))
                    .await
                    .len()
                    == 2)
                    .then_some(())
            }
        },
    )
    .await;
    dispatcher.shutdown().await;
    // run_failed is not heard: only the two operator endings were recorded.
    let all = deliveries(&store, None).await;
    assert_eq!(all.len(), 2);
    let event_of = |id| all.iter().find(|d| d.run_id == id).unwrap().event;
    assert_eq!(event_of(cancelled), WebhookEvent::RunCancelled);
    assert_eq!(event_of(terminated), WebhookEvent::RunTerminated);
    assert_eq!(rx.seen().len(), 2);
    h.shutdown().await;
}
