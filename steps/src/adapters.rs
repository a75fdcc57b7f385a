//! What every adapter of an external system shares: the error, the
//! endpoint configuration, the undo ownership contract ([`Owner`]) and the
//! JSON-over-HTTP plumbing. The systems provisioning drives are the ONU/OLT,
//! the CPE through its TR-069 ACS, and billing. Each is a trait
//! ([`crate::onu::OnuAdapter`], [`crate::cpe::CpeAdapter`],
//! [`crate::billing::BillingAdapter`], in its domain's `client.rs`) with an HTTP client
//! implementation (JSON over HTTP, bearer token, the step's idempotency key
//! in an `Idempotency-Key` header). Every call is made for one tenant: its
//! requests go under `{base}/tenants/{tenant}/…`, so every external key (ONU
//! serial, CPE serial, billing subscriber) is scoped to the tenant and one
//! tenant's request cannot touch another tenant's record. [`crate::sim`] serves the same HTTP
//! interfaces for `sagaflow dev` and tests.
//!
//! Failures are classified by what the caller can know: a request that
//! never left (connection refused, no route) was not applied
//! ([`AdapterError::Unavailable`]); one that was sent and then got no answer
//! (timeout, connection reset) or a 5xx answer may have been applied
//! ([`AdapterError::Uncertain`]). Both are retryable; the engine also
//! compensates a step that gives up after an uncertain attempt. A 429 or
//! 408 answer ([`AdapterError::Throttled`]) was not applied and is
//! retryable too, not before what its `Retry-After` header asks.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use sagaflow_engine::handler::StepError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Why a call to an external system failed. `Unavailable` and `Uncertain`
/// are worth retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// The request was never sent (the connection could not be made): it
    /// was not applied.
    #[error("{system} unavailable: {message}")]
    Unavailable {
        system: &'static str,
        message: String,
    },
    /// The request was sent and no clear answer came back: no answer
    /// (timeout, connection reset) or a 5xx one. The system may have
    /// applied it.
    #[error("{system}: no answer ({message}); the request may have been applied")]
    Uncertain {
        system: &'static str,
        message: String,
    },
    /// The system turned the request away for now without applying it:
    /// 429 Too Many Requests or 408 Request Timeout, with the wait its
    /// `Retry-After` header asks for, if any.
    #[error("{system} asks to retry later ({status}): {message}")]
    Throttled {
        system: &'static str,
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("{system}: {what} not found")]
    NotFound { system: &'static str, what: String },
    #[error("{system} refused: {message}")]
    Conflict {
        system: &'static str,
        message: String,
    },
    /// Any other 4xx: the request itself is wrong (or not authorized).
    #[error("{system} rejected the request ({status}): {message}")]
    Rejected {
        system: &'static str,
        status: u16,
        message: String,
    },
    #[error("{system} answered something unreadable: {message}")]
    BadResponse {
        system: &'static str,
        message: String,
    },
    #[error("{system} client: {message}")]
    Config {
        system: &'static str,
        message: String,
    },
}

impl From<AdapterError> for StepError {
    fn from(e: AdapterError) -> Self {
        let kind = match &e {
            AdapterError::Unavailable { .. } => {
                return StepError::retryable("unavailable", e.to_string());
            }
            AdapterError::Uncertain { .. } => {
                return StepError::retryable("uncertain", e.to_string());
            }
            AdapterError::Throttled { retry_after, .. } => {
                return match *retry_after {
                    Some(after) => StepError::retryable_after("throttled", e.to_string(), after),
                    None => StepError::retryable("throttled", e.to_string()),
                };
            }
            AdapterError::NotFound { .. } => "not_found",
            AdapterError::Conflict { .. } => "conflict",
            AdapterError::Rejected { .. } => "rejected",
            AdapterError::BadResponse { .. } => "bad_response",
            AdapterError::Config { .. } => "adapter_config",
        };
        StepError::fatal(kind, e.to_string())
    }
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// Where an external system's HTTP API is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// e.g. `https://olt-gw.example.net/api`; paths are appended to it.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set.
    #[serde(default)]
    pub token: Option<String>,
    /// Limit for one request, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl EndpointConfig {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            token: None,
            timeout_ms: default_timeout_ms(),
        }
    }
}

/// A JSON-over-HTTP endpoint of one system.
#[derive(Debug, Clone)]
pub(crate) struct HttpEndpoint {
    system: &'static str,
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// The error body the simulators (and, by convention, the gateways) send.
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

impl HttpEndpoint {
    pub(crate) fn new(system: &'static str, cfg: &EndpointConfig) -> Result<Self, AdapterError> {
        // reqwest is built without a default TLS provider; the first client
        // installs ring (a second install fails harmlessly).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms.clamp(1, 5_000)))
            .build()
            .map_err(|e| AdapterError::Config {
                system,
                message: e.to_string(),
            })?;
        Ok(Self {
            system,
            client,
            base: cfg.base_url.trim_end_matches('/').to_owned(),
            token: cfg.token.clone(),
        })
    }

    /// Sends one request for `tenant` (to `{base}/tenants/{tenant}{path}`);
    /// returns the decoded body of a 2xx answer (`None` for an empty one).
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        (tenant, path): (&str, &str),
        key: &str,
        body: Option<&(impl Serialize + Sync)>,
    ) -> Result<Option<T>, AdapterError> {
        let system = self.system;
        if tenant.is_empty() {
            return Err(AdapterError::Config {
                system,
                message: "a request without a tenant".into(),
            });
        }
        let url = format!("{}/tenants/{}{path}", self.base, seg(tenant));
        let mut req = self
            .client
            .request(method, url)
            .header("Idempotency-Key", key);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| transport_error(system, &e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let text = resp.text().await.map_err(|e| AdapterError::Uncertain {
            system,
            message: format!("reading the answer: {e}"),
        })?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(None);
            }
            return serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| AdapterError::BadResponse {
                    system,
                    message: e.to_string(),
                });
        }
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or_else(|_| text.chars().take(200).collect());
        Err(answer_error(system, status, message, retry_after))
    }

    /// Like [`call`](Self::call), for answers that must have a body.
    pub(crate) async fn call_for<T: DeserializeOwned>(
        &self,
        method: Method,
        target: (&str, &str),
        key: &str,
        body: Option<&(impl Serialize + Sync)>,
    ) -> Result<T, AdapterError> {
        self.call(method, target, key, body)
            .await?
            .ok_or_else(|| AdapterError::BadResponse {
                system: self.system,
                message: "empty answer".into(),
            })
    }
}

/// Classifies a non-2xx answer of `system`: what a caller can know from
/// its status (see the module's comment).
pub(crate) fn answer_error(
    system: &'static str,
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
) -> AdapterError {
    match status {
        // A 5xx says the request reached the system (or a gateway in
        // front of it) and that something went wrong; not that nothing
        // was applied: a 500 may come after the write, a 504 from a
        // gateway that gave up waiting.
        s if s.is_server_error() => AdapterError::Uncertain {
            system,
            message: format!("{s}: {message}"),
        },
        StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => AdapterError::Throttled {
            system,
            status: status.as_u16(),
            message,
            retry_after,
        },
        StatusCode::NOT_FOUND => AdapterError::NotFound {
            system,
            what: message,
        },
        StatusCode::CONFLICT => AdapterError::Conflict { system, message },
        s => AdapterError::Rejected {
            system,
            status: s.as_u16(),
            message,
        },
    }
}

/// The longest wait a `Retry-After` header is taken at its word for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The wait a `Retry-After` value asks for, from `now`: delay-seconds or an
/// HTTP date (RFC 9110 §10.2.3), at most [`MAX_RETRY_AFTER`]; `None` when
/// unreadable.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&chrono::Utc) - now)
                .to_std()
                .unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Classifies a request that got no HTTP answer: only a failure to
/// connect proves nothing was sent.
pub(crate) fn transport_error(system: &'static str, e: &reqwest::Error) -> AdapterError {
    if e.is_builder() {
        return AdapterError::Config {
            system,
            message: e.to_string(),
        };
    }
    if e.is_connect() {
        return AdapterError::Unavailable {
            system,
            message: error_chain(e),
        };
    }
    AdapterError::Uncertain {
        system,
        message: if e.is_timeout() {
            "timed out".into()
        } else {
            error_chain(e)
        },
    }
}

/// An error and its sources, e.g. "error sending request: connection
/// closed before message completed".
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `s` made safe as one URL path segment (percent-encoded).
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whose resource an undo may remove: the contract every undo of an
/// external effect follows. The system removes the resource only when it
/// belongs to the named owner, and otherwise answers success without a
/// change (`200 {"changed": false}`), so a step whose forward outcome was
/// unknown can be undone without touching what another request, run or
/// subscriber made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// Made by the request with this idempotency key (`<run>:<step>`, the
    /// forward call's key): the undo of that step. Sent as
    /// `?created_by=<key>`.
    Request(&'a str),
    /// Held by this subscriber, whoever made it: a forward removal
    /// (deprovisioning). Sent as `?subscriber_id=<id>`.
    Subscriber(&'a str),
}

impl Owner<'_> {
    /// The query string naming the owner.
    pub(crate) fn query(&self) -> String {
        match self {
            Owner::Request(key) => format!("?created_by={}", seg(key)),
            Owner::Subscriber(sub) => format!("?subscriber_id={}", seg(sub)),
        }
    }
}

/// The answer to an undo: whether it changed anything.
#[derive(Debug, Deserialize)]
pub(crate) struct Undone {
    /// Absent in an empty or older answer: taken as changed.
    #[serde(default = "yes")]
    pub(crate) changed: bool,
}

fn yes() -> bool {
    true
}

impl Undone {
    pub(crate) fn changed(answer: Option<Undone>) -> bool {
        answer.is_none_or(|u| u.changed)
    }
}

/// No request body.
pub(crate) const NO_BODY: Option<&()> = None;
