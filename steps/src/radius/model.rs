//! RADIUS's types: its error (and how it reaches the engine) and the
//! `[radius]` configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use sagaflow_engine::handler::StepError;
use serde::{Deserialize, Serialize};

use super::{DynAuthClient, DynAuthKind, ErrorCause, ReplyAttribute};

/// The UDP port of Dynamic Authorization (RFC 5176 §3.1, RFC 8559).
pub const DEFAULT_COA_PORT: u16 = 3799;

/// Errors of the RADIUS adapters.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("RADIUS database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("invalid RADIUS configuration: {0}")]
    Config(String),
    #[error("invalid RADIUS data: {0}")]
    InvalidInput(String),
    #[error("no RADIUS account for user {0:?}")]
    NoAccount(String),
    #[error("the RADIUS user {0:?} belongs to another tenant")]
    ForeignAccount(String),
    #[error(
        "the RADIUS user {username:?} already exists ({}); this step did not create it",
        match created_by { Some(k) => format!("created by {k}"), None => "not created by sagaflow".to_owned() }
    )]
    AccountExists {
        username: String,
        created_by: Option<String>,
    },
    #[error(
        "NAS {0:?} is not registered for this tenant: add it to radius_nas \
         (CoA and Disconnect-Request go only to registered NASes)"
    )]
    UnknownNas(String),
    #[error("cannot build the {kind} for {nas}: {detail}")]
    InvalidRequest {
        kind: DynAuthKind,
        nas: SocketAddr,
        detail: String,
    },
    #[error("{} from NAS {nas}{}", kind.nak_name(), cause_suffix(*error_cause))]
    Nak {
        kind: DynAuthKind,
        nas: SocketAddr,
        error_cause: Option<ErrorCause>,
    },
    #[error(
        "{what} mismatch in the {} from NAS {nas}: wrong shared secret? \
         (the NAS signed its answer with another secret than the configured radius.secret)",
        kind.response_name()
    )]
    WrongSecret {
        kind: DynAuthKind,
        nas: SocketAddr,
        what: &'static str,
    },
    #[error(
        "no response to the {kind} from NAS {nas} after {attempts} attempts in {elapsed_ms} ms: \
         wrong shared secret? (an RFC 5176 NAS silently discards requests whose authenticator \
         does not verify with its secret); otherwise the NAS is down or unreachable"
    )]
    NoResponse {
        kind: DynAuthKind,
        nas: SocketAddr,
        attempts: u32,
        elapsed_ms: u64,
    },
    #[error(
        "NAS {nas} refused the {kind} (nothing listens on that port) after {attempts} attempts"
    )]
    Unreachable {
        kind: DynAuthKind,
        nas: SocketAddr,
        attempts: u32,
    },
    #[error("invalid response to the {kind} from NAS {nas}: {detail}")]
    InvalidResponse {
        kind: DynAuthKind,
        nas: SocketAddr,
        detail: String,
    },
    #[error("UDP socket for NAS {nas}: {source}")]
    Io {
        nas: SocketAddr,
        source: std::io::Error,
    },
    #[error("the {kind} to NAS {nas} was cancelled")]
    Cancelled { kind: DynAuthKind, nas: SocketAddr },
}

fn cause_suffix(cause: Option<ErrorCause>) -> String {
    match cause {
        Some(c) => format!(" with Error-Cause {c}"),
        None => " without Error-Cause".to_owned(),
    }
}

/// `type Result<T> = Result<T, radius::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The short, machine-readable kind a workflow's retry policy can name.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Database(_) => "database",
            Error::Config(_) => "radius_config",
            Error::InvalidInput(_) => "radius_invalid_input",
            Error::NoAccount(_) => "radius_no_account",
            Error::ForeignAccount(_) => "radius_foreign_account",
            Error::AccountExists { .. } => "radius_account_exists",
            Error::UnknownNas(_) => "radius_unknown_nas",
            Error::InvalidRequest { .. } => "radius_invalid_request",
            Error::Nak { .. } => "radius_nak",
            Error::WrongSecret { .. } => "radius_wrong_secret",
            Error::NoResponse { .. } => "radius_no_response",
            Error::Unreachable { .. } => "radius_unreachable",
            Error::InvalidResponse { .. } => "radius_invalid_response",
            Error::Io { .. } => "radius_io",
            Error::Cancelled { .. } => "cancelled",
        }
    }

    /// Whether trying again later can succeed. A wrong shared secret, a
    /// configuration error, a missing account, a malformed request or answer
    /// and a NAK whose Error-Cause is permanent are not retried; a silent or
    /// refusing NAS, a NAK for lack of resources and database errors are.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Database(_)
            | Error::NoResponse { .. }
            | Error::Unreachable { .. }
            | Error::Io { .. }
            | Error::Cancelled { .. } => true,
            Error::Nak { error_cause, .. } => error_cause.is_some_and(ErrorCause::is_transient),
            Error::Config(_)
            | Error::InvalidInput(_)
            | Error::NoAccount(_)
            | Error::ForeignAccount(_)
            | Error::AccountExists { .. }
            | Error::UnknownNas(_)
            | Error::InvalidRequest { .. }
            | Error::WrongSecret { .. }
            | Error::InvalidResponse { .. } => false,
        }
    }
}

impl From<Error> for StepError {
    fn from(e: Error) -> Self {
        if e.is_retryable() {
            StepError::retryable(e.kind(), e.to_string())
        } else {
            StepError::fatal(e.kind(), e.to_string())
        }
    }
}

/// The `[radius]` configuration.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RadiusConfig {
    /// The shared secret of the NASes, for CoA-Request and Disconnect-Request
    /// (and for deriving subscriber passwords when the input has none).
    pub secret: String,
    /// The `radusergroup` group a suspended subscriber is moved to.
    pub suspended_group: String,
    /// The `radgroupreply` rows of the suspended group: what a suspended
    /// subscriber's Access-Accept carries (a walled-garden filter by default).
    pub suspended_reply: Vec<ReplyAttribute>,
    /// How long the first attempt waits for the NAS's answer; each
    /// retransmission waits twice as long as the one before.
    pub timeout_ms: u64,
    /// Retransmissions after the first attempt.
    pub retries: u32,
    /// The database holding FreeRADIUS's tables (`postgres://…` or
    /// `sqlite://…`); the engine's own database when unset.
    pub database_url: Option<String>,
    /// The RADIUS `User-Name` of a subscriber: `{subscriber_id}` and
    /// `{tenant}` are replaced. Each tenant gets its own namespace (a realm
    /// by default), so two tenants' subscribers of the same id never share
    /// an account.
    pub username_format: String,
    /// Per-tenant overrides of `username_format`, by tenant id.
    pub tenant_username_formats: BTreeMap<String, String>,
}

/// The default `radius.username_format`: the tenant as the realm.
pub const DEFAULT_USERNAME_FORMAT: &str = "{subscriber_id}@{tenant}";

/// The default `radius.secret`: FreeRADIUS's example secret, fit for `sagaflow
/// dev` and tests only (`sagaflow serve` refuses to start with it).
pub const DEFAULT_SECRET: &str = "testing123";

impl Default for RadiusConfig {
    fn default() -> Self {
        Self {
            secret: DEFAULT_SECRET.to_owned(),
            suspended_group: "suspended".to_owned(),
            suspended_reply: vec![ReplyAttribute::new("Filter-Id", ":=", "suspended")],
            timeout_ms: 1_000,
            retries: 2,
            database_url: None,
            username_format: DEFAULT_USERNAME_FORMAT.to_owned(),
            tenant_username_formats: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for RadiusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RadiusConfig")
            .field("secret", &"***")
            .field("suspended_group", &self.suspended_group)
            .field("suspended_reply", &self.suspended_reply)
            .field("timeout_ms", &self.timeout_ms)
            .field("retries", &self.retries)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "<configured>"),
            )
            .field("username_format", &self.username_format)
            .field("tenant_username_formats", &self.tenant_username_formats)
            .finish()
    }
}

impl RadiusConfig {
    /// Checks the configuration; the message names the key to fix.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.secret.is_empty() {
            return bad("radius.secret must not be empty".into());
        }
        if self.suspended_group.trim().is_empty() {
            return bad("radius.suspended_group must not be empty".into());
        }
        if self.timeout_ms == 0 {
            return bad("radius.timeout_ms must be at least 1".into());
        }
        if self.retries > 10 {
            return bad(format!(
                "radius.retries must be at most 10, not {}",
                self.retries
            ));
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
        {
            return bad("radius.database_url must be a postgres:// or sqlite: URL".into());
        }
        for a in &self.suspended_reply {
            a.validate()
                .map_err(|m| Error::Config(format!("radius.suspended_reply: {m}")))?;
        }
        validate_format("radius.username_format", &self.username_format)?;
        for (tenant, format) in &self.tenant_username_formats {
            validate_format(&format!("radius.tenant_username_formats.{tenant}"), format)?;
        }
        Ok(())
    }

    /// Whether the shared secret is still the example default.
    pub fn has_default_secret(&self) -> bool {
        self.secret == DEFAULT_SECRET
    }

    /// The RADIUS `User-Name` of `subscriber_id` of `tenant`: the tenant's
    /// format from `radius.tenant_username_formats`, else
    /// `radius.username_format`.
    pub fn username(&self, tenant: &str, subscriber_id: &str) -> String {
        self.tenant_username_formats
            .get(tenant)
            .unwrap_or(&self.username_format)
            .replace("{tenant}", tenant)
            .replace("{subscriber_id}", subscriber_id)
    }

    /// The first attempt's timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// A client for CoA and Disconnect-Request with this configuration.
    pub fn client(&self) -> DynAuthClient {
        DynAuthClient::new(self.secret.as_bytes(), self.timeout(), self.retries)
    }
}

/// A user-name format must name the subscriber and no placeholder other
/// than `{subscriber_id}` and `{tenant}`.
fn validate_format(key: &str, format: &str) -> Result<()> {
    if !format.contains("{subscriber_id}") {
        return Err(Error::Config(format!(
            "{key} {format:?} must contain {{subscriber_id}}"
        )));
    }
    let rest = format
        .replace("{subscriber_id}", "")
        .replace("{tenant}", "");
    if rest.contains('{') || rest.contains('}') {
        return Err(Error::Config(format!(
            "{key} {format:?}: the only placeholders are {{subscriber_id}} and {{tenant}}"
        )));
    }
    Ok(())
}
