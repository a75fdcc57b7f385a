//! `sagaflow webhooks`: the delivery log and the disabled webhooks, read
//! from the database like `sagaflow migrate` (an operator's view of the
//! outbox across tenants, next to the configuration that names the
//! webhooks; no RPC exposes it), and enabling a disabled webhook again
//! (recorded in the database with who and why).

use chrono::SecondsFormat;
use clap::Subcommand;
use sagaflow_engine::ids::{RunId, TenantId};
use sagaflow_engine::store::{
    Delivery, DeliveryFilter, DeliveryState, DisabledWebhook, Reenable, Reenabled,
};
use serde_json::{Value, json};

use super::client::{ClientError, Output};
use super::render::print_json;
use crate::app;

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// The delivery log, newest first.
    Deliveries {
        /// Only deliveries in this state: pending, delivered or failed.
        #[arg(long)]
        state: Option<String>,
        /// Only deliveries of this run.
        #[arg(long)]
        run: Option<String>,
        /// Only deliveries of this tenant.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Webhooks disabled after failing for 24 h.
    Disabled,
    /// Enable a disabled webhook again (once the receiver is fixed): its
    /// deliveries that gave up are tried again at once, with the same
    /// delivery ids. Recorded with who and why.
    Enable {
        /// The webhook's URL, as `sagaflow webhooks disabled -o json` shows
        /// it (`url`) and the configuration names it.
        url: String,
        /// Only this tenant's webhook at the URL (default: every tenant's).
        #[arg(long)]
        tenant: Option<String>,
        /// Why (kept with the record).
        #[arg(long)]
        reason: String,
        /// Who (default: $USER).
        #[arg(long, env = "USER", default_value = "operator")]
        actor: String,
    },
}

fn usage(m: String) -> ClientError {
    ClientError::Usage(m)
}

/// Runs a `webhooks` command against the database at `url`.
pub async fn webhooks(url: &str, cmd: WebhooksCommand, out: Output) -> Result<(), ClientError> {
    let filter = match &cmd {
        WebhooksCommand::Deliveries {
            state,
            run,
            tenant,
            limit,
        } => Some(DeliveryFilter {
            state: state
                .as_deref()
                .map(|s| {
                    DeliveryState::parse(s).ok_or_else(|| {
                        usage(format!(
                            "--state: {s:?} is not a delivery state (pending, delivered, failed)"
                        ))
                    })
                })
                .transpose()?,
            run: run
                .as_deref()
                .map(|r| {
                    r.parse::<uuid::Uuid>()
                        .map(RunId)
                        .map_err(|_| usage(format!("--run: {r:?} is not a run id")))
                })
                .transpose()?,
            tenant: tenant.as_deref().map(TenantId::new),
            limit: (*limit).clamp(1, 10_000),
        }),
        WebhooksCommand::Disabled | WebhooksCommand::Enable { .. } => None,
    };
    let enable = match cmd {
        WebhooksCommand::Enable {
            url,
            tenant,
            reason,
            actor,
        } => Some(reenable(url, tenant, reason, actor)?),
        _ => None,
    };
    let (store, _) = app::open_store(url, 2).await?;
    let failed = |e: sagaflow_engine::store::StoreError| ClientError::Other(e.into());
    match (filter, enable) {
        (Some(f), _) => print_deliveries(&store.deliveries(&f).await.map_err(failed)?, out),
        (None, Some(r)) => {
            let done = store.enable_webhooks(&r).await.map_err(failed)?;
            if done.is_empty() {
                return Err(ClientError::Refused(tonic::Status::not_found(format!(
                    "no disabled webhook at {}{} (`sagaflow webhooks disabled` lists them)",
                    app::redact(&r.url),
                    r.tenant
                        .as_ref()
                        .map(|t| format!(" of tenant {t}"))
                        .unwrap_or_default()
                ))));
            }
            print_enabled(&done, out);
        }
        (None, None) => print_disabled(&store.disabled_webhooks().await.map_err(failed)?, out),
    }
    Ok(())
}

/// The re-enable an `enable` command asks for, checked.
fn reenable(
    url: String,
    tenant: Option<String>,
    reason: String,
    actor: String,
) -> Result<Reenable, ClientError> {
    if reason.trim().is_empty() {
        return Err(usage(
            "--reason: say why the webhook is enabled again".into(),
        ));
    }
    if url.is_empty() {
        return Err(usage("the webhook's URL must not be empty".into()));
    }
    Ok(Reenable {
        tenant: tenant.map(TenantId::new),
        url,
        at: chrono::Utc::now(),
        actor,
        reason,
    })
}

fn print_enabled(all: &[Reenabled], out: Output) {
    if out == Output::Json {
        let v = all
            .iter()
            .map(|r| {
                json!({
                    "tenant_id": r.webhook.tenant_id.as_str(),
                    "url": app::redact(&r.webhook.url),
                    "disabled_at": time(Some(r.webhook.disabled_at)),
                    "requeued": r.requeued,
                })
            })
            .collect();
        return print_json(&Value::Array(v));
    }
    for r in all {
        println!(
            "enabled {} of tenant {} again; {} deliveries queued again",
            app::redact(&r.webhook.url),
            r.webhook.tenant_id.as_str(),
            r.requeued
        );
    }
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    t.map(|t| Value::String(t.to_rfc3339_opts(SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

fn delivery_json(d: &Delivery) -> Value {
    json!({
        "delivery_id": d.id.to_string(),
        "tenant_id": d.tenant_id.as_str(),
        "run_id": d.run_id.to_string(),
        "url": app::redact(&d.url),
        "event": d.event.as_str(),
        "occurred_at": time(Some(d.occurred_at)),
        "state": d.state.as_str(),
        "attempts": d.attempts,
        "next_attempt_at": time(d.next_attempt_at),
        "first_failed_at": time(d.first_failed_at),
        "last_error": d.last_error,
        "delivered_at": time(d.delivered_at),
    })
}

fn print_deliveries(all: &[Delivery], out: Output) {
    if out == Output::Json {
        return print_json(&Value::Array(all.iter().map(delivery_json).collect()));
    }
    println!(
        "{:<36}  {:<36}  {:<24} {:<10} {:>8}  LAST ERROR",
        "DELIVERY", "RUN", "EVENT", "STATE", "ATTEMPTS"
    );
    for d in all {
        println!(
            "{:<36}  {:<36}  {:<24} {:<10} {:>8}  {}",
            d.id,
            d.run_id,
            d.event.as_str(),
            d.state.as_str(),
            d.attempts,
            d.last_error.as_deref().unwrap_or("")
        );
    }
}

fn print_disabled(all: &[DisabledWebhook], out: Output) {
    if out == Output::Json {
        let v = all
            .iter()
            .map(|w| {
                json!({
                    "tenant_id": w.tenant_id.as_str(),
                    "url": app::redact(&w.url),
                    "disabled_at": time(Some(w.disabled_at)),
                    "reason": w.reason,
                })
            })
            .collect();
        return print_json(&Value::Array(v));
    }
    println!(
        "{:<16} {:<24} {:<48} REASON",
        "TENANT", "DISABLED AT", "URL"
    );
    for w in all {
        println!(
            "{:<16} {:<24} {:<48} {}",
            w.tenant_id.as_str(),
            w.disabled_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            app::redact(&w.url),
            w.reason
        );
    }
}
