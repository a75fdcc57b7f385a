//! The HTTP adapters against the simulators: idempotency keys, injected
//! failures, latency and timeouts, and how each failure is classified.
#![allow(clippy::unwrap_used)]

mod support;

use sagaflow_engine::handler::StepError;
use sagaflow_steps::adapters::{AdapterError, EndpointConfig, Owner};
use sagaflow_steps::billing::{BillingAdapter, HttpBilling, NewService, ServiceState};
use sagaflow_steps::cpe::{CpeAdapter, CpeConfig, HttpCpe};
use sagaflow_steps::onu::{HttpOnu, OnuAdapter};
use sagaflow_steps::sim::{Fault, SimConfig, SimHandle, Simulators};
use support::sims::{T, activation, sims};

#[tokio::test]
async fn a_repeated_key_gets_the_same_answer_and_one_effect() {
    let s = sims().await;
    let onu = HttpOnu::new(&s.endpoints().0).unwrap();
    let a = onu
        .activate(T, "run:activate_onu", "ONU1", &activation("s1"))
        .await
        .unwrap();
    let b = onu
        .activate(T, "run:activate_onu", "ONU1", &activation("s1"))
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(s.snapshot().applied["onu.activate"], 1);
    // Same serial for another subscriber: a conflict, which is fatal.
    let e = onu
        .activate(T, "other:activate_onu", "ONU1", &activation("s2"))
        .await
        .unwrap_err();
    assert!(matches!(e, AdapterError::Conflict { .. }), "{e}");
    let step: StepError = e.into();
    assert_eq!((step.kind(), step.is_retryable()), ("conflict", false));
    let undo = Owner::Request("run:activate_onu");
    assert!(
        onu.deactivate(T, "run:deactivate", "ONU1", undo)
            .await
            .unwrap()
    );
    assert!(
        onu.deactivate(T, "run:deactivate", "ONU1", undo)
            .await
            .unwrap(),
        "the repeat gets the same answer"
    );
    assert!(
        !onu.deactivate(T, "again:deactivate", "ONU1", undo)
            .await
            .unwrap()
    );
    let snap = s.snapshot();
    assert!(snap.tenant(T).onus.is_empty());
    assert_eq!(snap.applied["onu.deactivate"], 2, "one per key");
    s.shutdown().await;
}

#[tokio::test]
async fn a_503_is_uncertain_and_retryable_even_without_an_effect() {
    let s = sims().await;
    let cpe = HttpCpe::new(&s.endpoints().1).unwrap();
    let cfg = CpeConfig {
        subscriber_id: "s1".into(),
        pppoe_username: "s1".into(),
        plan: "fiber".into(),
        ipv4_address: Some("10.0.0.1".into()),
        ipv6_prefix: None,
        inform: None,
    };
    s.set_fault("cpe.configure", Fault::always());
    let e = cpe.configure(T, "k", "CPE1", &cfg).await.unwrap_err();
    // A 5xx does not prove that nothing was applied.
    assert!(matches!(e, AdapterError::Uncertain { .. }), "{e}");
    let step: StepError = e.into();
    assert_eq!((step.kind(), step.is_retryable()), ("uncertain", true));
    assert!(step.outcome_unknown());
    let snap = s.snapshot();
    assert!(snap.tenant(T).cpes.is_empty());
    assert_eq!(snap.injected_failures["cpe.configure"], 1);
    // The retry with the same key, once the system is back, applies it.
    s.set_fault("cpe.configure", Fault::default());
    cpe.configure(T, "k", "CPE1", &cfg).await.unwrap();
    assert_eq!(s.snapshot().tenant(T).cpes["CPE1"].config, cfg);
    // Other operations were not affected by the per-operation fault.
    cpe.unconfigure(T, "k2", "CPE1", Owner::Subscriber("s1"))
        .await
        .unwrap();
    assert!(s.snapshot().tenant(T).cpes.is_empty());
    s.shutdown().await;
}

#[tokio::test]
async fn a_timeout_is_retryable_and_the_retry_applies_once() {
    let s = sims().await;
    let mut ep = s.endpoints().2;
    ep.timeout_ms = 100;
    let billing = HttpBilling::new(&ep).unwrap();
    let svc = NewService {
        subscriber_id: "s1".into(),
        customer_id: "c1".into(),
        plan: "fiber".into(),
    };
    s.set_fault(
        "billing.create",
        Fault {
            latency_ms: 1_000,
            ..Fault::default()
        },
    );
    let e = billing.create_service(T, "k", &svc).await.unwrap_err();
    assert!(
        matches!(&e, AdapterError::Uncertain { message, .. } if message == "timed out"),
        "a timed-out request may have been applied: {e}"
    );
    let step_error = StepError::from(e.clone());
    assert!(step_error.is_retryable() && step_error.outcome_unknown());
    s.set_fault("billing.create", Fault::default());
    let created = billing.create_service(T, "k", &svc).await.unwrap();
    assert_eq!(created.state, ServiceState::Active);
    assert_eq!(s.snapshot().applied["billing.create"], 1);
    let suspended = billing.suspend(T, "k2", "s1").await.unwrap();
    assert_eq!(suspended.state, ServiceState::Suspended);
    // Unknown subscriber: not found, fatal.
    let e = billing.resume(T, "k3", "nobody").await.unwrap_err();
    assert!(matches!(e, AdapterError::NotFound { .. }), "{e}");
    // The state is readable over HTTP too.
    let body: serde_json::Value =
        reqwest::get(format!("{}/tenants/{T}/services/s1", s.billing_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(body["state"], "SUSPENDED");
    let all: serde_json::Value = reqwest::get(format!("http://{}/_state", s.addr()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        all["tenants"][T]["services"]["s1"]["service_id"],
        created.service_id
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_wrong_token_is_rejected_for_good() {
    let s = Simulators::start(SimConfig {
        token: Some("secret".into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let good = HttpOnu::new(&s.endpoints().0).unwrap();
    good.activate(T, "k", "ONU1", &activation("s1"))
        .await
        .unwrap();
    let bad = HttpOnu::new(&EndpointConfig {
        token: Some("guess".into()),
        ..EndpointConfig::new(s.onu_url())
    })
    .unwrap();
    let e = bad
        .deactivate(T, "k2", "ONU1", Owner::Subscriber("s1"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, AdapterError::Rejected { status: 401, .. }),
        "{e}"
    );
    let step: StepError = e.into();
    assert!(!step.is_retryable());
    assert_eq!(s.snapshot().tenant(T).onus.len(), 1);
    s.shutdown().await;
}

#[tokio::test]
async fn a_system_that_is_down_is_retryable() {
    let s = sims().await;
    let ep = s.endpoints().0;
    s.shutdown().await;
    let onu = HttpOnu::new(&EndpointConfig {
        timeout_ms: 2_000,
        ..ep
    })
    .unwrap();
    let e = onu
        .deactivate(T, "k", "ONU1", Owner::Request("k0"))
        .await
        .unwrap_err();
    // Nothing was sent: not applied, retryable.
    assert!(matches!(e, AdapterError::Unavailable { .. }), "{e}");
    let step = StepError::from(e);
    assert!(step.is_retryable() && !step.outcome_unknown());
}

/// A fault whose effect is applied and whose answer is then replaced.
async fn applied_then(fault: Fault, expect: impl Fn(&AdapterError) -> bool) -> SimHandle {
    let s = sims().await;
    let onu = HttpOnu::new(&s.endpoints().0).unwrap();
    s.set_fault("onu.activate", fault);
    let e = onu
        .activate(T, "k", "ONU1", &activation("s1"))
        .await
        .unwrap_err();
    assert!(expect(&e), "{e}");
    let step = StepError::from(e);
    assert_eq!(step.kind(), "uncertain");
    assert!(step.is_retryable() && step.outcome_unknown());
    assert!(
        s.snapshot().tenant(T).onus.contains_key("ONU1"),
        "the effect was applied"
    );
    // The retry with the same key gets the real answer, no second effect.
    s.set_fault("onu.activate", Fault::default());
    let status = onu
        .activate(T, "k", "ONU1", &activation("s1"))
        .await
        .unwrap();
    assert_eq!(status.activation.subscriber_id, "s1");
    let snap = s.snapshot();
    assert_eq!(snap.applied["onu.activate"], 1);
    assert_eq!(snap.effects.len(), 1, "{:?}", snap.effects);
    s
}

#[tokio::test]
async fn applied_then_500_is_uncertain() {
    let s = applied_then(
        Fault {
            applied_then_500_rate: 1.0,
            ..Fault::default()
        },
        |e| matches!(e, AdapterError::Uncertain { message, .. } if message.starts_with("500")),
    )
    .await;
    assert_eq!(s.snapshot().applied_then_500["onu.activate"], 1);
    s.shutdown().await;
}

#[tokio::test]
async fn applied_then_reset_is_uncertain() {
    let s = applied_then(
        Fault {
            applied_then_reset_rate: 1.0,
            ..Fault::default()
        },
        // Sent, then the connection went away without an answer: neither
        // a timeout nor an HTTP status.
        |e| {
            matches!(e, AdapterError::Uncertain { message, .. }
                if message != "timed out" && !message.starts_with('5'))
        },
    )
    .await;
    assert_eq!(s.snapshot().applied_then_reset["onu.activate"], 1);
    s.shutdown().await;
}

#[tokio::test]
async fn a_lost_acknowledgement_is_uncertain_and_the_retry_applies_nothing_more() {
    let s = sims().await;
    let onu = HttpOnu::new(&s.endpoints().0).unwrap();
    s.set_fault(
        "onu.activate",
        Fault {
            lost_ack_rate: 1.0,
            ..Fault::default()
        },
    );
    let e = onu
        .activate(T, "k", "ONU1", &activation("s1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AdapterError::Uncertain { message, .. } if message.starts_with("504")),
        "applied, then 504: the outcome is unknown: {e}"
    );
    let step = StepError::from(e);
    assert!(step.is_retryable() && step.outcome_unknown());
    assert!(
        s.snapshot().tenant(T).onus.contains_key("ONU1"),
        "the effect was applied"
    );
    s.set_fault("onu.activate", Fault::default());
    onu.activate(T, "k", "ONU1", &activation("s1"))
        .await
        .unwrap();
    let snap = s.snapshot();
    assert_eq!(snap.lost_acks["onu.activate"], 1);
    assert_eq!(
        snap.effects.len(),
        1,
        "one effect for the key: {:?}",
        snap.effects
    );
    assert_eq!(snap.effects[0].key.as_deref(), Some("k"));
}

#[tokio::test]
async fn a_stalled_request_times_out_and_is_applied_all_the_same() {
    let s = sims().await;
    let mut ep = s.endpoints().1;
    ep.timeout_ms = 100;
    let cpe = HttpCpe::new(&ep).unwrap();
    let cfg = CpeConfig {
        subscriber_id: "s1".into(),
        pppoe_username: "s1".into(),
        plan: "fiber".into(),
        ipv4_address: None,
        ipv6_prefix: None,
        inform: None,
    };
    s.set_fault(
        "cpe.configure",
        Fault {
            stall_rate: 1.0,
            stall_ms: 300,
            ..Fault::default()
        },
    );
    let e = cpe.configure(T, "k", "CPE1", &cfg).await.unwrap_err();
    assert!(matches!(e, AdapterError::Uncertain { .. }), "{e}");
    let snap = s.snapshot();
    assert!(
        snap.tenant(T).cpes.contains_key("CPE1"),
        "applied before the late answer"
    );
    assert_eq!(snap.stalls["cpe.configure"], 1);
}

#[tokio::test]
async fn an_undo_deletes_only_the_service_its_create_request_made() {
    let s = sims().await;
    let billing = HttpBilling::new(&s.endpoints().2).unwrap();
    let svc = |sub: &str| NewService {
        subscriber_id: sub.into(),
        customer_id: "c1".into(),
        plan: "fiber".into(),
    };
    // The subscriber had a service before: a run's create meets a conflict,
    // and its undo must leave that service alone.
    billing
        .create_service(T, "before:create", &svc("s1"))
        .await
        .unwrap();
    let e = billing
        .create_service(T, "run1:create_billing_service", &svc("s1"))
        .await
        .unwrap_err();
    assert!(matches!(e, AdapterError::Conflict { .. }), "{e}");
    billing
        .delete_service(
            T,
            "run1:create_billing_service:compensate",
            "s1",
            "run1:create_billing_service",
        )
        .await
        .unwrap();
    assert!(s.snapshot().tenant(T).services.contains_key("s1"), "kept");
    // A service the run's own request created is deleted.
    billing
        .create_service(T, "run2:create_billing_service", &svc("s2"))
        .await
        .unwrap();
    billing
        .delete_service(
            T,
            "run2:create_billing_service:compensate",
            "s2",
            "run2:create_billing_service",
        )
        .await
        .unwrap();
    let snap = s.snapshot();
    assert!(!snap.tenant(T).services.contains_key("s2"), "deleted");
    assert!(snap.tenant(T).services.contains_key("s1"));
    s.shutdown().await;
}

#[tokio::test]
async fn the_same_serials_and_subscriber_are_separate_records_per_tenant() {
    let s = sims().await;
    let (onu_ep, cpe_ep, billing_ep) = s.endpoints();
    let onu = HttpOnu::new(&onu_ep).unwrap();
    let cpe = HttpCpe::new(&cpe_ep).unwrap();
    let billing = HttpBilling::new(&billing_ep).unwrap();
    let cfg = CpeConfig {
        subscriber_id: "alice".into(),
        pppoe_username: "alice@acme".into(),
        plan: "fiber".into(),
        ipv4_address: None,
        ipv6_prefix: None,
        inform: None,
    };
    let svc = NewService {
        subscriber_id: "alice".into(),
        customer_id: "c1".into(),
        plan: "fiber".into(),
    };
    onu.activate("acme", "k:onu", "ONU1", &activation("alice"))
        .await
        .unwrap();
    cpe.configure("acme", "k:cpe", "CPE1", &cfg).await.unwrap();
    billing
        .create_service("acme", "k:bill", &svc)
        .await
        .unwrap();
    let acme = s.snapshot().tenant("acme").clone();
    assert_eq!(acme.onus.len() + acme.cpes.len() + acme.services.len(), 3);

    // globex: the same serials, subscriber and even idempotency keys are its
    // own records, made and removed without touching acme's.
    let created = billing
        .create_service("globex", "k:bill", &svc)
        .await
        .unwrap();
    assert_ne!(created.service_id, acme.services["alice"].service_id);
    onu.activate("globex", "k:onu", "ONU1", &activation("alice"))
        .await
        .unwrap();
    cpe.configure("globex", "k:cpe", "CPE1", &cfg)
        .await
        .unwrap();
    billing
        .suspend("globex", "g:suspend", "alice")
        .await
        .unwrap();
    assert!(
        onu.deactivate("globex", "g:1", "ONU1", Owner::Request("k:onu"))
            .await
            .unwrap()
    );
    assert!(
        cpe.unconfigure("globex", "g:1", "CPE1", Owner::Subscriber("alice"))
            .await
            .unwrap()
    );
    billing
        .delete_service("globex", "g:1", "alice", "k:bill")
        .await
        .unwrap();
    assert!(s.snapshot().tenant("globex").is_empty());
    assert_eq!(
        s.snapshot().tenant("acme"),
        &acme,
        "globex changed acme's records"
    );
    // A tenant that has nothing finds nothing.
    let e = billing.resume("globex", "g:2", "alice").await.unwrap_err();
    assert!(matches!(e, AdapterError::NotFound { .. }), "{e}");
    s.shutdown().await;
}

/// A system that answers every request with `status` and `Retry-After:
/// retry_after` (when given); its endpoint.
async fn turning_away(status: u16, retry_after: Option<&'static str>) -> EndpointConfig {
    let app = axum::Router::new().fallback(move || async move {
        let mut resp =
            axum::response::Response::new(axum::body::Body::from(r#"{"error":"slow down"}"#));
        *resp.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
        if let Some(v) = retry_after {
            resp.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static(v));
        }
        resp
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    EndpointConfig::new(format!("http://{addr}"))
}

#[tokio::test]
async fn a_429_or_408_is_retryable_not_before_its_retry_after() {
    for (status, header, wait) in [
        (429, Some("7"), Some(std::time::Duration::from_secs(7))),
        (408, Some("2"), Some(std::time::Duration::from_secs(2))),
        (429, None, None),
        (429, Some("soon"), None),
    ] {
        let ep = turning_away(status, header).await;
        for e in [
            HttpOnu::new(&ep)
                .unwrap()
                .deactivate(T, "k", "ONU1", Owner::Request("k0"))
                .await
                .unwrap_err(),
            HttpBilling::new(&ep)
                .unwrap()
                .suspend(T, "k", "s1")
                .await
                .unwrap_err(),
        ] {
            assert!(
                matches!(e, AdapterError::Throttled { status: s, .. } if s == status),
                "{status}: {e}"
            );
            let step = StepError::from(e);
            assert_eq!(step.kind(), "throttled");
            // Turned away: retryable, and nothing was applied.
            assert!(step.is_retryable() && !step.outcome_unknown());
            assert_eq!(step.retry_after(), wait, "{status} {header:?}");
        }
    }
    // Other 4xx answers stay final.
    let e = HttpOnu::new(&turning_away(400, Some("5")).await)
        .unwrap()
        .deactivate(T, "k", "ONU1", Owner::Request("k0"))
        .await
        .unwrap_err();
    assert!(!StepError::from(e).is_retryable());
}

#[test]
fn retry_after_reads_seconds_and_dates_and_is_capped() {
    use sagaflow_steps::adapters::{MAX_RETRY_AFTER, parse_retry_after};
    use std::time::Duration;
    let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
        Some(Duration::ZERO),
        "a date past is now"
    );
    assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
    assert_eq!(parse_retry_after("later", now), None);
}
