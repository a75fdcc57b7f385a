//! Run-outcome webhooks against a local receiver, on both backends: each
//! outcome delivered once with a valid signature; a receiver down for a
//! while gets the same delivery id when it is back; a receiver failing for
//! 24 h of injected time gets its webhook disabled, and enabled again gets
//! what was held; a step waiting for a signal is heard (a timer is not); a
//! run cancelled for waiting too long in its queue is heard.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

#[macro_use]
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use sagaflow_engine::clock::{Clock, ManualClock};
use sagaflow_engine::saga::OperatorAction;
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::{DeliveryState, Reenable, Store};
use sagaflow_engine::webhook::signature::verify_signature;
use sagaflow_engine::webhook::{Webhook, WebhookEvent, Webhooks};
use serde_json::{Value, json};
use support::receiver::*;
use support::*;

on_both_backends!(
    outcomes_are_delivered_once_and_signed,
    a_receiver_down_for_a_while_gets_the_same_delivery_later,
    a_receiver_failing_for_a_day_gets_its_webhook_disabled,
    operator_cancels_are_delivered_and_unheard_events_are_not,
    a_step_waiting_for_a_signal_is_heard_and_a_timer_is_not,
    a_run_expired_in_its_queue_is_heard_cancelled,
);

fn tomls() -> Vec<String> {
    vec![
        saga_toml("wh", 1, 2, ""),
        saga_toml("wh_pause", 1, 2, "on_failure = \"pause\""),
    ]
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

    let stored = delivered(&store, 3).await;
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
    assert_eq!(rx.seen().len(), tries);

    // Enabled again once the receiver is fixed: the delivery that gave up
    // (same id) and the one held are both delivered.
    rx.status.store(200, Ordering::SeqCst);
    let gave_up = deliveries(&store, Some(DeliveryState::Failed)).await;
    assert_eq!(gave_up.len(), 1);
    let enable = |tenant: &str| Reenable {
        tenant: Some(sagaflow_engine::ids::TenantId::new(tenant)),
        url: rx.url.clone(),
        at: clock.now(),
        actor: "ops".into(),
        reason: "receiver fixed".into(),
    };
    assert!(
        store
            .enable_webhooks(&enable("other"))
            .await
            .unwrap()
            .is_empty(),
        "another tenant's webhook at the URL is not this one"
    );
    let enabled = store.enable_webhooks(&enable(TENANT)).await.unwrap();
    assert_eq!(enabled.len(), 1);
    assert_eq!(enabled[0].webhook.url, rx.url);
    assert_eq!(enabled[0].requeued, 1);
    assert!(store.disabled_webhooks().await.unwrap().is_empty());
    assert!(
        store
            .enable_webhooks(&enable(TENANT))
            .await
            .unwrap()
            .is_empty(),
        "enabled once"
    );
    delivered(&store, 2).await;
    dispatcher.shutdown().await;
    let after: Vec<_> = rx.seen().into_iter().skip(tries).collect();
    assert_eq!(after.len(), 2, "{after:#?}");
    assert!(
        after
            .iter()
            .any(|s| s.delivery == gave_up[0].id.to_string())
    );
    assert!(
        after
            .iter()
            .all(|s| verify_signature(SECRET.as_bytes(), &s.body, &s.signature))
    );
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
    delivered(&store, 2).await;
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

/// The run's deliveries once `n` of them are delivered.
async fn delivered_of(
    store: &Arc<dyn Store>,
    run: sagaflow_engine::ids::RunId,
    n: usize,
) -> Vec<sagaflow_engine::store::Delivery> {
    poll(
        &format!("{n} deliveries of {run}"),
        Duration::from_secs(10),
        || {
            let store = store.clone();
            async move {
                let d: Vec<_> = deliveries(&store, Some(DeliveryState::Delivered))
                    .await
                    .into_iter()
                    .filter(|d| d.run_id == run)
                    .collect();
                (d.len() == n).then_some(d)
            }
        },
    )
    .await
}

/// The receiver's requests about `run`, their bodies parsed; each signed.
fn seen_of(rx: &Receiver, run: sagaflow_engine::ids::RunId) -> Vec<(Seen, Value)> {
    rx.seen()
        .into_iter()
        .map(|s| {
            assert!(verify_signature(SECRET.as_bytes(), &s.body, &s.signature));
            let body: Value = serde_json::from_slice(&s.body).unwrap();
            (s, body)
        })
        .filter(|(_, b)| b["workflow"]["id"] == run.to_string())
        .collect()
}

async fn a_step_waiting_for_a_signal_is_heard_and_a_timer_is_not(store: Arc<dyn Store>) {
    let rx = Receiver::start(200).await;
    let wait = |name: &str, step: &str| {
        format!(
            "name = \"{name}\"\nversion = 1\n[[steps]]\nname = \"first\"\nhandler = \"test.do\"\n\
             [[steps]]\nname = \"wait\"\n{step}\n[[steps]]\nname = \"last\"\nhandler = \"test.do\"\n"
        )
    };
    let tomls = [
        wait("approval", "kind = \"signal\"\nsignal = \"approve\""),
        wait("nap", "kind = \"sleep\"\nduration_ms = 3600000"),
    ];
    let h = Harness::new(store.clone(), &tomls).await;
    h.engine.set_webhooks(rx.webhooks());
    let dispatcher = h.engine.start_webhook_dispatcher(fast_dispatch());
    let napping = h.start("nap", json!({})).await.run.id;
    let approval = h.start("approval", json!({})).await.run.id;

    let waiting = delivered_of(&store, approval, 1).await;
    assert_eq!(waiting[0].event, WebhookEvent::StepWaiting);
    let seen = seen_of(&rx, approval);
    assert_eq!(seen.len(), 1, "once");
    assert_eq!(seen[0].0.event, "step_waiting");
    assert_eq!(seen[0].0.delivery, waiting[0].id.to_string());
    let steps = seen[0].1["workflow"]["steps"].as_array().unwrap();
    assert_eq!(steps[1]["state"], "STEP_STATE_WAITING");
    assert_eq!(steps[1]["waiting_for"], "approve");

    let signalled = h
        .engine
        .signal(sagaflow_engine::engine::SignalRequest {
            tenant_id: tenant(),
            run_id: approval,
            name: "approve".into(),
            payload: json!({"by": "crm"}),
            idempotency_key: String::new(),
            actor: "crm".into(),
        })
        .await
        .unwrap();
    assert!(signalled.delivered);
    h.wait_state(approval, RunState::Completed).await;
    let all = delivered_of(&store, approval, 2).await;
    assert!(all.iter().any(|d| d.event == WebhookEvent::RunCompleted));
    dispatcher.shutdown().await;

    // The sleeping run waits too, on a timer: nothing is sent for it.
    assert!(
        h.get(napping)
            .await
            .steps
            .iter()
            .any(|s| s.state == sagaflow_engine::state::StepState::Waiting)
    );
    let all = deliveries(&store, None).await;
    assert!(all.iter().all(|d| d.run_id != napping), "{all:#?}");
    assert_eq!(seen_of(&rx, approval).len(), 2);
    assert!(seen_of(&rx, napping).is_empty());
    h.shutdown().await;
}

async fn a_run_expired_in_its_queue_is_heard_cancelled(store: Arc<dyn Store>) {
    let rx = Receiver::start(200).await;
    let (h, clock, _holder) = key_held_with_queue_ttl(store.clone(), "ttl", 1, 1500, "bob").await;
    h.engine.set_webhooks(rx.webhooks());
    let dispatcher = h.engine.start_webhook_dispatcher(fast_dispatch());
    let queued = h.start("ttl", json!({"subscriber_id": "bob"})).await.run.id;
    clock.advance(Duration::from_millis(2000));
    let run = h.wait_state(queued, RunState::Cancelled).await;
    assert!(run.error.unwrap().starts_with("queued longer than"));

    let d = delivered_of(&store, queued, 1).await;
    assert_eq!(d[0].event, WebhookEvent::RunCancelled);
    dispatcher.shutdown().await;
    let seen = seen_of(&rx, queued);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0.event, "run_cancelled");
    assert_eq!(seen[0].1["workflow"]["state"], "WORKFLOW_STATE_CANCELLED");
    assert_eq!(
        deliveries(&store, None).await.len(),
        1,
        "the holder's FAILED was before the webhook"
    );
    h.shutdown().await;
}
