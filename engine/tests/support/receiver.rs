//! A local webhook receiver for the webhook tests: answers a status that
//! can be changed and records every POST; with the delivery log's reads
//! and fast dispatcher options.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use sagaflow_engine::store::{DeliveryFilter, DeliveryState, Store};
use sagaflow_engine::webhook::{DispatcherOptions, Webhook, WebhookEvent, Webhooks};

use super::{TENANT, poll};

pub const SECRET: &str = "crm-signing-secret-0123";

/// One POST the receiver saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub delivery: String,
    pub event: String,
    pub signature: String,
    pub body: Vec<u8>,
}

/// A local HTTP receiver answering `status` (changeable) and recording
/// every POST.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    pub async fn start(status: u16) -> Self {
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

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn webhooks(&self) -> Webhooks {
        Webhooks::new(vec![Webhook {
            tenant: TENANT.into(),
            url: self.url.clone(),
            secret: SECRET.into(),
            events: WebhookEvent::ALL.to_vec(),
            workflows: None,
        }])
    }
}

pub fn fast_dispatch() -> DispatcherOptions {
    DispatcherOptions {
        poll: Duration::from_millis(20),
        lease: Duration::from_secs(10),
        batch: 8,
        timeout: Duration::from_secs(5),
    }
}

pub async fn deliveries(
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

/// Polls until the delivery of `run` has been tried `n` times.
pub async fn tried(store: &Arc<dyn Store>, n: u32) -> sagaflow_engine::store::Delivery {
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

/// Polls until `n` deliveries are acknowledged; returns them.
pub async fn delivered(store: &Arc<dyn Store>, n: usize) -> Vec<sagaflow_engine::store::Delivery> {
    poll(
        &format!("{n} deliveries acknowledged"),
        Duration::from_secs(10),
        || {
            let store = store.clone();
            async move {
                let d = deliveries(&store, Some(DeliveryState::Delivered)).await;
                (d.len() == n).then_some(d)
            }
        },
    )
    .await
}
