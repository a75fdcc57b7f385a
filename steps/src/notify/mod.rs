//! Notifications to operators and owners: pool capacity crossings,
//! reservations made and expired.
//!
//! A [`Notifier`] delivers a [`Notification`]. Two ship:
//! - [`LogNotifier`] writes it to the log (the default);
//! - [`WebhookNotifier`] POSTs it as JSON to a configured URL, signed with
//!   HMAC-SHA256 of the body under a shared secret in the
//!   `X-Sagaflow-Signature: sha256=<hex>` header, retried with exponential
//!   backoff and a timeout per attempt.
//!
//! [`NotifyConfig`] (`[domain.notify]`) chooses: a `webhook_url` selects the
//! webhook, otherwise the log. Delivery is at least once: a step that is run
//! again may send a notification again with the same `id`
//! (`X-Sagaflow-Delivery`), by which receivers can drop repeats.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "X-Sagaflow-Signature";
/// The header naming the notification's kind.
pub const EVENT_HEADER: &str = "X-Sagaflow-Event";
/// The header carrying the notification's id.
pub const DELIVERY_HEADER: &str = "X-Sagaflow-Delivery";

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("invalid notification configuration: {0}")]
    Config(String),
    #[error("webhook {url} failed after {attempts} attempts: {last}")]
    Delivery {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error("encoding the notification: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A pool's utilization reached its warning threshold.
    CapacityWarning,
    /// A pool's utilization reached its critical threshold.
    CapacityCritical,
    /// A pool's utilization fell back below its warning threshold.
    CapacityRecovered,
    /// A subscriber's address reservation ran out and was released.
    ReservationExpired,
    /// An operator reserved an address or prefix for a subscriber.
    AddressReserved,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::CapacityWarning => "capacity_warning",
            NotificationKind::CapacityCritical => "capacity_critical",
            NotificationKind::CapacityRecovered => "capacity_recovered",
            NotificationKind::ReservationExpired => "reservation_expired",
            NotificationKind::AddressReserved => "address_reserved",
        }
    }
}

impl std::fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One notification; its JSON is the webhook's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable across repeats of the step that sends it.
    pub id: String,
    pub kind: NotificationKind,
    pub tenant_id: String,
    pub at: DateTime<Utc>,
    /// The details (pool and utilization; subscriber and address).
    pub data: Value,
}

/// Delivers notifications.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError>;
}

/// The `[domain.notify]` configuration.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Where notifications are POSTed; unset: they are only logged.
    pub webhook_url: Option<String>,
    /// The HMAC-SHA256 key of the signature header.
    pub secret: String,
    /// The limit of one delivery attempt.
    pub timeout_ms: u64,
    /// Attempts after the first; each waits twice as long as the one before
    /// (from 200 ms, ±50 % jitter, at least a 429's `Retry-After`). A 4xx
    /// answer other than 408 and 429 is not retried.
    pub retries: u32,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            secret: String::new(),
            timeout_ms: 5_000,
            retries: 3,
        }
    }
}

impl std::fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyConfig")
            .field("webhook_url", &self.webhook_url)
            .field("secret", &"***")
            .field("timeout_ms", &self.timeout_ms)
            .field("retries", &self.retries)
            .finish()
    }
}

impl NotifyConfig {
    /// Checks the configuration; the message names the key to fix.
    pub fn validate(&self) -> Result<(), NotifyError> {
        let bad = |m: &str| Err(NotifyError::Config(m.to_owned()));
        if self.timeout_ms == 0 {
            return bad("domain.notify.timeout_ms must be at least 1");
        }
        if self.retries > 10 {
            return bad("domain.notify.retries must be at most 10");
        }
        if let Some(url) = &self.webhook_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return bad("domain.notify.webhook_url must be an http:// or https:// URL");
            }
            if self.secret.is_empty() {
                return bad("domain.notify.secret must be set with domain.notify.webhook_url");
            }
        }
        Ok(())
    }

    /// The notifier this configuration selects.
    pub fn notifier(&self) -> Result<Arc<dyn Notifier>, NotifyError> {
        self.validate()?;
        Ok(match &self.webhook_url {
            Some(url) => Arc::new(WebhookNotifier::new(
                url,
                &self.secret,
                Duration::from_millis(self.timeout_ms),
                self.retries,
            )?),
            None => Arc::new(LogNotifier),
        })
    }
}

/// Writes notifications to the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        tracing::warn!(
            id = %n.id,
            kind = %n.kind,
            tenant = %n.tenant_id,
            data = %n.data,
            "notification"
        );
        Ok(())
    }
}

pub use sagaflow_engine::webhook::signature::{signature, verify_signature};

/// POSTs notifications to a webhook.
pub struct WebhookNotifier {
    client: reqwest::Client,
    url: String,
    secret: Vec<u8>,
    retries: u32,
    backoff: Duration,
}

impl std::fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("url", &self.url)
            .field("retries", &self.retries)
            .finish()
    }
}

impl WebhookNotifier {
    pub fn new(
        url: &str,
        secret: &str,
        timeout: Duration,
        retries: u32,
    ) -> Result<Self, NotifyError> {
        // reqwest is built without a default TLS provider; the first client
        // installs ring (a second install fails harmlessly).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| NotifyError::Config(format!("webhook client: {e}")))?;
        Ok(Self {
            client,
            url: url.to_owned(),
            secret: secret.as_bytes().to_vec(),
            retries,
            backoff: Duration::from_millis(200),
        })
    }

    /// Sets the wait before the first retry (doubled for each further one,
    /// each jittered by ±50 %).
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    async fn attempt(
        &self,
        body: &[u8],
        signed: &str,
        n: &Notification,
    ) -> Result<(), AttemptError> {
        let resp = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signed)
            .header(EVENT_HEADER, n.kind.as_str())
            .header(DELIVERY_HEADER, &n.id)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| AttemptError {
                message: e.to_string(),
                retry: true,
                retry_after: None,
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let throttled = matches!(
            status,
            reqwest::StatusCode::TOO_MANY_REQUESTS | reqwest::StatusCode::REQUEST_TIMEOUT
        );
        Err(AttemptError {
            message: format!("HTTP {status}"),
            // A 4xx other than 408 and 429 says the request itself is
            // refused: sending it again changes nothing.
            retry: throttled || !status.is_client_error(),
            retry_after: throttled
                .then(|| resp.headers().get(reqwest::header::RETRY_AFTER))
                .flatten()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| crate::adapters::parse_retry_after(v, chrono::Utc::now()))
                .map(|d| d.min(MAX_NOTIFY_RETRY_AFTER)),
        })
    }
}

/// The longest a delivery waits on a webhook's `Retry-After`.
const MAX_NOTIFY_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Why one delivery attempt failed, and whether another may succeed.
struct AttemptError {
    message: String,
    retry: bool,
    retry_after: Option<Duration>,
}

/// `wait` with ±50 % jitter for `u` uniform in [0, 1), so that replicas
/// failing together do not retry together.
fn jittered(wait: Duration, u: f64) -> Duration {
    wait.mul_f64(0.5 + u.clamp(0.0, 1.0))
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(n)?;
        let signed = signature(&self.secret, &body);
        let mut wait = self.backoff;
        let mut last = String::new();
        let mut attempts = 0;
        let mut asked: Option<Duration> = None;
        for attempt in 0..=self.retries {
            if attempt > 0 {
                let pause = jittered(wait, fastrand::f64()).max(asked.unwrap_or_default());
                tokio::time::sleep(pause).await; // the delivery's backoff
                wait = wait.saturating_mul(2);
            }
            attempts += 1;
            match self.attempt(&body, &signed, n).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::debug!(id = %n.id, attempt, error = %e.message, "webhook attempt failed");
                    last = e.message;
                    asked = e.retry_after;
                    if !e.retry {
                        break;
                    }
                }
            }
        }
        Err(NotifyError::Delivery {
            url: self.url.clone(),
            attempts,
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_both_ways() {
        let w = Duration::from_millis(200);
        assert_eq!(jittered(w, 0.0), Duration::from_millis(100));
        assert_eq!(jittered(w, 0.5), w);
        assert!(jittered(w, 0.999) < Duration::from_millis(300));
    }

    /// A webhook answering `status` to every request; its URL and the
    /// number of requests it got.
    async fn answering(status: u16) -> (String, Arc<std::sync::atomic::AtomicU32>) {
        use std::sync::atomic::{AtomicU32, Ordering};
        let hits = Arc::new(AtomicU32::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::from_u16(status)
                    .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/hook"), hits)
    }

    #[tokio::test]
    async fn only_throttling_and_server_errors_are_retried() {
        let n = Notification {
            id: "n1".into(),
            kind: NotificationKind::CapacityWarning,
            tenant_id: "t".into(),
            at: chrono::Utc::now(),
            data: serde_json::json!({}),
        };
        for (status, expected) in [(400, 1), (401, 1), (404, 1), (408, 3), (429, 3), (503, 3)] {
            let (url, hits) = answering(status).await;
            let w = WebhookNotifier::new(&url, "s", Duration::from_secs(5), 2)
                .unwrap()
                .with_backoff(Duration::from_millis(1));
            let e = w.notify(&n).await.unwrap_err();
            let sent = hits.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(sent, expected, "{status}");
            assert!(
                e.to_string()
                    .contains(&format!("after {expected} attempts")),
                "{e}"
            );
        }
    }

    #[test]
    fn config_chooses_and_is_checked() {
        assert!(NotifyConfig::default().validate().is_ok());
        let mut c = NotifyConfig {
            webhook_url: Some("ftp://x".into()),
            secret: "s".into(),
            ..NotifyConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("webhook_url")
        );
        c.webhook_url = Some("http://127.0.0.1:1/hook".into());
        c.secret.clear();
        assert!(c.validate().unwrap_err().to_string().contains("secret"));
        c.secret = "s".into();
        assert!(c.validate().is_ok());
        assert!(!format!("{c:?}").contains("\"s\""));
    }
}
