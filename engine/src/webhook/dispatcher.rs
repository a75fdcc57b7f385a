//! The webhook dispatcher, one per replica: claims due deliveries from the
//! outbox under a lease (so replicas never send the same try twice), POSTs
//! each signed body, and records the try: 2xx delivers, anything else is
//! retried on the [`backoff`](super::backoff) schedule until the webhook
//! has failed for 24 h, when it is disabled and reported. A replica killed
//! mid-try leaves its lease to expire; another replica then sends the same
//! delivery id again.

use std::sync::Arc;
use std::time::Duration;

use chrono::SecondsFormat;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};
use uuid::Uuid;

use super::backoff::{AfterFailure, after_failure};
use super::{Webhook, Webhooks};
use crate::engine::Engine;
use crate::store::{Delivery, TryOutcome};

/// How the dispatcher polls, leases and waits.
#[derive(Debug, Clone)]
pub struct DispatcherOptions {
    /// How often it looks for due deliveries.
    pub poll: Duration,
    /// How long a claimed delivery stays leased (longer than `timeout`).
    pub lease: Duration,
    /// Deliveries claimed at once.
    pub batch: u32,
    /// Longest wait for a receiver's answer.
    pub timeout: Duration,
}

impl DispatcherOptions {
    /// Deliveries leased as long as runs (`lease`), polled as often, and a
    /// receiver's answer awaited for half the lease at most (10 s), so a
    /// try ends well before its lease could pass to another replica.
    pub fn leased_like_runs(lease: Duration, poll: Duration) -> Self {
        Self {
            poll: poll.min(Duration::from_secs(1)),
            lease,
            timeout: (lease / 2).min(Duration::from_secs(10)),
            ..Self::default()
        }
    }
}

impl Default for DispatcherOptions {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            batch: 32,
            timeout: Duration::from_secs(10),
        }
    }
}

/// A running dispatcher.
#[derive(Debug)]
pub struct DispatcherHandle {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl DispatcherHandle {
    /// Stops claiming, lets the tries under way finish, and returns.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

struct Dispatcher {
    engine: Engine,
    webhooks: Arc<Webhooks>,
    client: reqwest::Client,
    opts: DispatcherOptions,
}

pub(crate) fn spawn(
    engine: Engine,
    webhooks: Arc<Webhooks>,
    opts: DispatcherOptions,
) -> DispatcherHandle {
    // reqwest is built without a default TLS provider; the first client
    // installs ring (a second install fails harmlessly).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(opts.timeout)
        .build()
        .unwrap_or_default();
    let d = Arc::new(Dispatcher {
        engine,
        webhooks,
        client,
        opts,
    });
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(d, stop.clone()));
    DispatcherHandle { stop, task }
}

async fn run(d: Arc<Dispatcher>, stop: CancellationToken) {
    loop {
        let full = match d.round().await {
            Ok(n) => n >= d.opts.batch as usize,
            Err(e) => {
                warn!(error = %e, "cannot claim webhook deliveries");
                false
            }
        };
        if full {
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(d.opts.poll) => {}
        }
    }
}

impl Dispatcher {
    /// Claims due deliveries and tries each; returns how many it claimed.
    async fn round(&self) -> crate::store::Result<usize> {
        let store = self.engine.store();
        let token = Uuid::now_v7();
        let now = self.engine.clock().now();
        let claimed = store
            .claim_deliveries(token, now, self.opts.lease, self.opts.batch)
            .await?;
        let n = claimed.len();
        futures::future::join_all(claimed.into_iter().map(|d| self.deliver(d, token))).await;
        Ok(n)
    }

    async fn deliver(&self, d: Delivery, token: Uuid) {
        let result = match self.webhooks.get(d.tenant_id.as_str(), &d.url) {
            Some(hook) => self.post(hook, &d).await,
            None => Err("the webhook is no longer configured".to_owned()),
        };
        let now = self.engine.clock().now();
        let (outcome, metric) = match result {
            Ok(()) => (TryOutcome::Delivered { at: now }, "delivered"),
            Err(error) => {
                let first = d.first_failed_at.unwrap_or(now);
                match after_failure(d.attempts + 1, first, now, fastrand::f64()) {
                    AfterFailure::RetryAt(retry_at) => {
                        debug!(delivery = %d.id, url = %d.url, %error, %retry_at, "webhook delivery failed");
                        (
                            TryOutcome::Failed {
                                at: now,
                                error,
                                retry_at,
                            },
                            "failed",
                        )
                    }
                    AfterFailure::GiveUp => {
                        error!(
                            tenant = %d.tenant_id, url = %d.url, delivery = %d.id, %error,
                            "webhook failed for 24 h; disabled"
                        );
                        (TryOutcome::GaveUp { at: now, error }, "disabled")
                    }
                }
            }
        };
        match self.engine.store().record_try(d.id, token, &outcome).await {
            Ok(true) => crate::telemetry::webhook_delivery(metric),
            Ok(false) => debug!(delivery = %d.id, "delivery lease lost; another replica has it"),
            Err(e) => warn!(delivery = %d.id, error = %e, "cannot record a webhook try"),
        }
    }

    /// POSTs the delivery's signed body; Ok on a 2xx answer.
    async fn post(&self, hook: &Webhook, d: &Delivery) -> Result<(), String> {
        let body = body(&self.engine, d).await?;
        let signed = super::signature::signature(hook.secret.as_bytes(), &body);
        let resp = self
            .client
            .post(&hook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Sagaflow-Delivery", d.id.to_string())
            .header("X-Sagaflow-Event", d.event.as_str())
            .header("X-Sagaflow-Signature", signed)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{e}"))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", resp.status()))
        }
    }
}

/// The JSON body of a delivery: its id, event and time, and the run as it
/// is now (the proto3 JSON mapping of `Workflow`, steps included).
async fn body(engine: &Engine, d: &Delivery) -> Result<Vec<u8>, String> {
    let run = engine
        .get(&d.tenant_id, d.run_id)
        .await
        .map_err(|e| format!("cannot read run {}: {e}", d.run_id))?;
    let def = engine.definition_of(&run).await.ok();
    let workflow = crate::api::convert::workflow(&run, def.as_deref());
    let workflow = sagaflow_proto::mapping::workflow(&workflow)?;
    let body = serde_json::json!({
        "delivery_id": d.id.to_string(),
        "event": d.event.as_str(),
        "occurred_at": d.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "workflow": workflow,
    });
    serde_json::to_vec(&body).map_err(|e| e.to_string())
}
