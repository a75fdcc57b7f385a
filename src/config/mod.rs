//! Configuration: one typed struct, layered defaults < TOML file
//! (`--config`) < `SAGAFLOW_*` environment < command-line flags, validated
//! at startup with messages that name the key. Every key is listed in
//! `docs/configuration.md`; `sagaflow config print` shows the effective one.
//! The typed sections live here; [`keys`] is the one table of key names,
//! environment variables and secrets the layering and printing derive from.

mod keys;

pub use keys::{Hide, KEYS, Key};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sagaflow_engine::api::auth::TokenEntry;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub grpc: GrpcConfig,
    pub http: HttpConfig,
    pub engine: EngineConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub schedules: SchedulesConfig,
    /// Address pools and the ONU/OLT, CPE and billing endpoints (the
    /// simulators stand in for any endpoint left unset).
    pub domain: sagaflow_steps::DomainConfig,
    /// RADIUS: CoA/Disconnect secret, suspended group, timeouts.
    pub radius: sagaflow_steps::radius::RadiusConfig,
    /// Run-outcome webhooks, one `[[webhooks]]` each.
    pub webhooks: Vec<sagaflow_engine::webhook::Webhook>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulesConfig {
    /// Run the cron scheduler in this replica.
    pub enabled: bool,
    /// The tenant the default maintenance schedules are created for.
    pub tenant: String,
    /// How often to look for due schedules.
    pub poll_ms: u64,
}

impl Default for SchedulesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tenant: "default".into(),
            poll_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://…` or `sqlite://…`. Empty: `sqlite://.sagaflow/dev.db` in
    /// `dev`; required by `serve`.
    pub url: String,
    /// The password, when kept out of the URL (e.g. from
    /// `SAGAFLOW_DATABASE_PASSWORD_FILE`); see [`DatabaseConfig::connect_url`].
    pub password: Option<String>,
    /// Connections in the PostgreSQL pool of the API, watches, scheduler
    /// and domain repositories.
    pub max_connections: u32,
    /// Connections in the executor's own PostgreSQL pool (claim,
    /// checkpoint, lease renewal, release).
    pub hot_connections: u32,
    /// Longest wait for a free connection, in milliseconds.
    pub acquire_timeout_ms: u64,
    /// PostgreSQL `statement_timeout` of the general pool, in milliseconds.
    pub statement_timeout_ms: u64,
    /// PostgreSQL `statement_timeout` of the executor's pool, in
    /// milliseconds.
    pub hot_statement_timeout_ms: u64,
    /// Connections in the PostgreSQL pool of the API's reads (runs,
    /// histories, schedules, definitions).
    pub api_connections: u32,
    /// PostgreSQL `statement_timeout` of the API reads' pool, in
    /// milliseconds: a longer read is cancelled (DEADLINE_EXCEEDED).
    pub api_statement_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            password: None,
            max_connections: 16,
            hot_connections: 8,
            acquire_timeout_ms: 5_000,
            statement_timeout_ms: 30_000,
            hot_statement_timeout_ms: 5_000,
            api_connections: 8,
            api_statement_timeout_ms: 5_000,
        }
    }
}

impl DatabaseConfig {
    /// The URL to connect with: [`DatabaseConfig::url`], plus `password`
    /// as its `password` parameter when one is set apart.
    pub fn connect_url(&self) -> String {
        match &self.password {
            Some(p) if !p.is_empty() => {
                let sep = if self.url.contains('?') { '&' } else { '?' };
                format!("{}{sep}password={}", self.url, percent_encode(p))
            }
            _ => self.url.clone(),
        }
    }

    /// The PostgreSQL pools this configuration asks for.
    pub fn pg_options(&self) -> sagaflow_engine::store::postgres::PgOptions {
        use std::time::Duration;
        sagaflow_engine::store::postgres::PgOptions {
            max_connections: self.max_connections,
            hot_connections: self.hot_connections,
            acquire_timeout: Duration::from_millis(self.acquire_timeout_ms),
            statement_timeout: Duration::from_millis(self.statement_timeout_ms),
            hot_statement_timeout: Duration::from_millis(self.hot_statement_timeout_ms),
            api_connections: self.api_connections,
            api_statement_timeout: Duration::from_millis(self.api_statement_timeout_ms),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    pub addr: String,
    /// Largest workflow input, context patch or step output, in bytes.
    pub max_payload_bytes: usize,
    /// WatchWorkflow streams open at once; past it, RESOURCE_EXHAUSTED.
    pub max_watch_streams: usize,
    /// How often each watch polls for events written by other replicas.
    pub watch_poll_ms: u64,
    /// How many runs a BulkOperate call acts on per second (so a bulk
    /// retry after an outage does not crowd out new starts).
    pub bulk_actions_per_second: u32,
    pub tls: Option<TlsConfig>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:50051".into(),
            max_payload_bytes: 256 * 1024,
            max_watch_streams: 1000,
            watch_poll_ms: 250,
            bulk_actions_per_second: 50,
            tls: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of the server.
    pub cert: PathBuf,
    /// PEM private key of the server.
    pub key: PathBuf,
    /// PEM CA bundle: when set, clients must present a certificate it signed.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `/healthz`, `/readyz` and `/metrics`.
    pub addr: String,
    /// How often the gauges read from the store (runs by state, pool
    /// connections) are refreshed, in milliseconds.
    pub gauge_refresh_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:9471".into(),
            gauge_refresh_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Directory of workflow definition files; empty: the shipped ones,
    /// embedded in the binary.
    pub workflows: PathBuf,
    /// This replica's name in leases; empty: host name and process id.
    pub owner: String,
    pub lease_ms: u64,
    pub poll_ms: u64,
    pub max_in_flight: usize,
    pub claim_batch: u32,
    pub shutdown_grace_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workflows: PathBuf::new(),
            owner: String::new(),
            lease_ms: 30_000,
            poll_ms: 1_000,
            max_in_flight: 256,
            claim_batch: 64,
            shutdown_grace_ms: 25_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Bearer tokens, stored as SHA-256 hashes.
    pub tokens: Vec<TokenEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
        }
    }
}

/// `s` percent-encoded for a URL query value.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Why the configuration was refused; names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config file {0}: {1}")]
    Parse(PathBuf, String),
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl Config {
    /// Defaults, then the file (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut c = match file {
            None => Config::default(),
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| ConfigError::Read(p.to_owned(), e))?;
                toml::from_str(&text).map_err(|e| {
                    ConfigError::Parse(p.to_owned(), e.to_string().trim_end().to_owned())
                })?
            }
        };
        c.apply_env(|k| std::env::var(k).ok())?;
        Ok(c)
    }

    /// What `serve` needs beyond [`Config::validate`]: a RADIUS shared
    /// secret of the operator's own (the example default signs CoA and
    /// Disconnect-Request with a secret anyone knows), and an endpoint for
    /// each of the ONU/OLT, CPE and billing systems unless the simulators
    /// are asked for (`domain.simulators.enabled`): a replica must not
    /// report a subscriber provisioned that it provisioned nowhere. `dev`
    /// may keep both defaults.
    pub fn validate_serve(&self) -> Result<(), ConfigError> {
        if self.radius.has_default_secret() {
            return Err(invalid(
                "radius.secret",
                format!(
                    "serve refuses the example default secret {:?}: set radius.secret in the \
                     config file or SAGAFLOW_RADIUS_SECRET to your NASes' shared secret \
                     (only `sagaflow dev` may use the default)",
                    sagaflow_steps::radius::DEFAULT_SECRET
                ),
            ));
        }
        let d = &self.domain;
        let unset: Vec<&str> = [
            ("domain.onu.base_url", d.onu.is_none()),
            ("domain.cpe.base_url", d.cpe.is_none()),
            ("domain.billing.base_url", d.billing.is_none()),
        ]
        .into_iter()
        .filter_map(|(key, unset)| unset.then_some(key))
        .collect();
        if !unset.is_empty() && !d.simulators.enabled {
            return Err(invalid(
                "domain",
                format!(
                    "serve has no endpoint for {}: set them (or SAGAFLOW_ONU_URL, \
                     SAGAFLOW_CPE_URL, SAGAFLOW_BILLING_URL) to the real systems, or ask \
                     for the built-in simulators with [domain.simulators] enabled = true \
                     (SAGAFLOW_SIMULATORS=true); a replica on simulators provisions \
                     nothing real",
                    unset.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// Checks every value; the message names the key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.database.url;
        let known = ["postgres://", "postgresql://", "sqlite:"];
        if !url.is_empty() && !known.iter().any(|p| url.starts_with(p)) {
            return Err(invalid(
                "database.url",
                "must start with postgres://, postgresql:// or sqlite:",
            ));
        }
        for (key, n) in [
            ("database.max_connections", self.database.max_connections),
            ("database.hot_connections", self.database.hot_connections),
            ("database.api_connections", self.database.api_connections),
        ] {
            if !(1..=1000).contains(&n) {
                return Err(invalid(key, "must be between 1 and 1000"));
            }
        }
        for (key, ms) in [
            (
                "database.acquire_timeout_ms",
                self.database.acquire_timeout_ms,
            ),
            (
                "database.statement_timeout_ms",
                self.database.statement_timeout_ms,
            ),
            (
                "database.hot_statement_timeout_ms",
                self.database.hot_statement_timeout_ms,
            ),
            (
                "database.api_statement_timeout_ms",
                self.database.api_statement_timeout_ms,
            ),
        ] {
            if ms == 0 {
                return Err(invalid(key, "must be at least 1 ms"));
            }
        }
        for (key, addr) in [
            ("grpc.addr", &self.grpc.addr),
            ("http.addr", &self.http.addr),
        ] {
            addr.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    key,
                    format!("{addr:?} is not an address like 127.0.0.1:50051"),
                )
            })?;
        }
        if !(1024..=64 << 20).contains(&self.grpc.max_payload_bytes) {
            return Err(invalid(
                "grpc.max_payload_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        if !(1..=1_000_000).contains(&self.grpc.max_watch_streams) {
            return Err(invalid(
                "grpc.max_watch_streams",
                "must be between 1 and 1000000",
            ));
        }
        if self.grpc.watch_poll_ms < 10 {
            return Err(invalid("grpc.watch_poll_ms", "must be at least 10"));
        }
        if !(1..=100_000).contains(&self.grpc.bulk_actions_per_second) {
            return Err(invalid(
                "grpc.bulk_actions_per_second",
                "must be between 1 and 100000",
            ));
        }
        if self.http.gauge_refresh_ms < 10 {
            return Err(invalid("http.gauge_refresh_ms", "must be at least 10"));
        }
        if self.engine.lease_ms < 100 {
            return Err(invalid("engine.lease_ms", "must be at least 100"));
        }
        if self.engine.poll_ms < 10 {
            return Err(invalid("engine.poll_ms", "must be at least 10"));
        }
        if self.engine.max_in_flight == 0 {
            return Err(invalid("engine.max_in_flight", "must be at least 1"));
        }
        if self.engine.claim_batch == 0 {
            return Err(invalid("engine.claim_batch", "must be at least 1"));
        }
        if self.schedules.tenant.is_empty() {
            return Err(invalid("schedules.tenant", "must not be empty"));
        }
        if self.schedules.poll_ms < 10 {
            return Err(invalid("schedules.poll_ms", "must be at least 10"));
        }
        self.radius
            .validate()
            .map_err(|m| invalid("radius", m.to_string()))?;
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid("log.format", "must be text or json"));
        }
        sagaflow_engine::api::auth::Authenticator::new(&self.auth.tokens)
            .map_err(|m| invalid("auth.tokens", m))?;
        for (i, hook) in self.webhooks.iter().enumerate() {
            hook.check()
                .map_err(|m| invalid(&format!("webhooks[{i}]"), m))?;
        }
        Ok(())
    }

    /// The configuration as TOML, with every secret hidden (see
    /// [`Config::hide_secrets`]).
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        shown.hide_secrets();
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order_and_errors_name_the_key() {
        let mut c: Config =
            toml::from_str("[grpc]\naddr = \"0.0.0.0:1\"\n[engine]\nlease_ms = 500\n").unwrap();
        assert_eq!(c.grpc.addr, "0.0.0.0:1");
        assert_eq!(c.http.addr, "127.0.0.1:9471", "defaults under the file");
        c.apply_env(|k| (k == "SAGAFLOW_LEASE_MS").then(|| "900".to_string()))
            .unwrap();
        assert_eq!(c.engine.lease_ms, 900, "environment over the file");
        assert!(
            Config::default().engine.shutdown_grace_ms < 30_000,
            "the drain ends before Kubernetes' 30 s SIGKILL"
        );
        let e = c
            .apply_env(|k| (k == "SAGAFLOW_POLL_MS").then(|| "soon".to_string()))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("engine.poll_ms (from SAGAFLOW_POLL_MS)"),
            "{e}"
        );
        c.grpc.addr = "nowhere".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("grpc.addr")
        );
        let e = toml::from_str::<Config>("[grpc]\nadress = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("adress"), "typos are named");
    }
}
