//! The configuration keys, declared once: each key's name, the `SAGAFLOW_*`
//! variable that sets it (if any), how it is set from text, and whether
//! `config print` hides it. The environment layer ([`Config::apply_env`]),
//! [`Config::set`] and the redaction of [`Config::hide_secrets`] all read
//! [`KEYS`]; `docs/configuration.md` lists every key (a test checks it).

use super::{Config, ConfigError, invalid};
use crate::app::redact;
use sagaflow_steps::adapters::EndpointConfig;
use sagaflow_steps::ipam::NetBoxConfig;

/// Writes a key from text; gets the key's name for the error message.
type Setter = fn(&mut Config, &str, &str) -> Result<(), ConfigError>;

/// The value of a secret key, when it holds one to hide.
type SecretOf = fn(&mut Config) -> Option<&mut String>;

/// The values of a secret key set once per entry of an array of tables.
type SecretsOf = fn(&mut Config) -> Vec<&mut String>;

/// How `config print` hides a secret key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hide {
    /// The password of a URL becomes `***`; the rest stays readable.
    Password,
    /// The whole value becomes `***`.
    Whole,
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Its dotted path in the TOML file, e.g. `engine.lease_ms`.
    pub name: &'static str,
    /// The environment variable that sets it, if any.
    pub env: Option<&'static str>,
    set: Option<Setter>,
    secret: Option<(Hide, SecretOf)>,
    /// The same, for a key of an array of tables (one value per entry).
    secrets: Option<(Hide, SecretsOf)>,
}

impl Key {
    const fn env(self, var: &'static str) -> Self {
        Self {
            env: Some(var),
            ..self
        }
    }

    const fn text(self, set: Setter) -> Self {
        Self {
            set: Some(set),
            ..self
        }
    }

    const fn secret(self, hide: Hide, of: SecretOf) -> Self {
        Self {
            secret: Some((hide, of)),
            ..self
        }
    }

    const fn secret_each(self, hide: Hide, of: SecretsOf) -> Self {
        Self {
            secrets: Some((hide, of)),
            ..self
        }
    }

    /// Whether `config print` hides (part of) its value.
    pub fn hide(&self) -> Option<Hide> {
        self.secret.map(|(h, _)| h).or(self.secrets.map(|(h, _)| h))
    }

    /// Whether [`Config::set`] (and so its environment variable) can set it.
    pub fn settable(&self) -> bool {
        self.set.is_some()
    }
}

fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError> {
    v.parse()
        .map_err(|_| invalid(key, format!("{v:?} is not a valid number")))
}

fn flag(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(invalid(key, format!("{v:?} is not true or false"))),
    }
}

/// Sets an endpoint's URL, declaring the endpoint if the file did not.
fn endpoint_url(e: &mut Option<EndpointConfig>, url: &str) {
    match e {
        Some(e) => e.base_url = url.into(),
        None => *e = Some(EndpointConfig::new(url)),
    }
}

/// Sets an endpoint's token; the endpoint must have a URL.
fn endpoint_token(e: &mut Option<EndpointConfig>, key: &str, v: &str) -> Result<(), ConfigError> {
    match e {
        Some(e) => {
            e.token = Some(v.into());
            Ok(())
        }
        None => Err(invalid(
            key,
            format!(
                "a token for an endpoint without a URL: set {} too",
                key.replace(".token", ".base_url")
            ),
        )),
    }
}

/// A key set from text as is (strings and paths).
macro_rules! text {
    ($($field:ident).+) => {
        |c: &mut Config, _: &str, v: &str| {
            c.$($field).+ = v.into();
            Ok(())
        }
    };
}

/// A key set from text as a number.
macro_rules! number {
    ($($field:ident).+) => {
        |c: &mut Config, key: &str, v: &str| {
            c.$($field).+ = num(key, v)?;
            Ok(())
        }
    };
}

/// A key set in the TOML file only, until `.env`, `.text` or `.secret` add
/// to it.
const fn k(name: &'static str) -> Key {
    Key {
        name,
        env: None,
        set: None,
        secret: None,
        secrets: None,
    }
}

/// Every configuration key, in the order of the file's sections. Keys
/// without a setter are set in the TOML file only.
pub const KEYS: &[Key] = &[
    k("database.url")
        .env("SAGAFLOW_DATABASE_URL")
        .text(text!(database.url))
        .secret(Hide::Password, |c| Some(&mut c.database.url)),
    k("database.password")
        .env("SAGAFLOW_DATABASE_PASSWORD")
        .text(|c, _, v| {
            c.database.password = Some(v.into());
            Ok(())
        })
        .secret(Hide::Whole, |c| c.database.password.as_mut()),
    k("database.max_connections")
        .env("SAGAFLOW_DATABASE_MAX_CONNECTIONS")
        .text(number!(database.max_connections)),
    k("database.hot_connections").text(number!(database.hot_connections)),
    k("database.acquire_timeout_ms").text(number!(database.acquire_timeout_ms)),
    k("database.statement_timeout_ms").text(number!(database.statement_timeout_ms)),
    k("database.hot_statement_timeout_ms").text(number!(database.hot_statement_timeout_ms)),
    k("grpc.addr")
        .env("SAGAFLOW_GRPC_ADDR")
        .text(text!(grpc.addr)),
    k("grpc.max_payload_bytes")
        .env("SAGAFLOW_GRPC_MAX_PAYLOAD_BYTES")
        .text(number!(grpc.max_payload_bytes)),
    k("grpc.max_watch_streams"),
    k("grpc.watch_poll_ms"),
    k("grpc.bulk_actions_per_second"),
    k("grpc.tls.cert"),
    k("grpc.tls.key"),
    k("grpc.tls.client_ca"),
    k("http.addr")
        .env("SAGAFLOW_HTTP_ADDR")
        .text(text!(http.addr)),
    k("http.gauge_refresh_ms"),
    k("engine.workflows")
        .env("SAGAFLOW_WORKFLOWS")
        .text(text!(engine.workflows)),
    k("engine.owner")
        .env("SAGAFLOW_OWNER")
        .text(text!(engine.owner)),
    k("engine.lease_ms")
        .env("SAGAFLOW_LEASE_MS")
        .text(number!(engine.lease_ms)),
    k("engine.poll_ms")
        .env("SAGAFLOW_POLL_MS")
        .text(number!(engine.poll_ms)),
    k("engine.max_in_flight")
        .env("SAGAFLOW_MAX_IN_FLIGHT")
        .text(number!(engine.max_in_flight)),
    k("engine.claim_batch"),
    k("engine.shutdown_grace_ms")
        .env("SAGAFLOW_SHUTDOWN_GRACE_MS")
        .text(number!(engine.shutdown_grace_ms)),
    k("auth.tokens")
        .env("SAGAFLOW_AUTH_TOKENS")
        .text(|c, key, v| {
            c.auth.tokens = serde_json::from_str(v).map_err(|e| {
                invalid(
                    key,
                    format!("a JSON array of {{name, tenant, role, sha256}} entries: {e}"),
                )
            })?;
            Ok(())
        }),
    k("log.format")
        .env("SAGAFLOW_LOG_FORMAT")
        .text(text!(log.format)),
    k("schedules.enabled"),
    k("schedules.tenant"),
    k("schedules.poll_ms"),
    k("domain.pools.tenant"),
    k("domain.pools.name"),
    k("domain.pools.cidr"),
    k("domain.pools.prefix_length"),
    k("domain.pools.warning_percent"),
    k("domain.pools.critical_percent"),
    k("domain.onu.base_url")
        .env("SAGAFLOW_ONU_URL")
        .text(|c, _, v| {
            endpoint_url(&mut c.domain.onu, v);
            Ok(())
        })
        .secret(Hide::Password, |c| {
            c.domain.onu.as_mut().map(|e| &mut e.base_url)
        }),
    k("domain.onu.token")
        .env("SAGAFLOW_ONU_TOKEN")
        .text(|c, key, v| endpoint_token(&mut c.domain.onu, key, v))
        .secret(Hide::Whole, |c| {
            c.domain.onu.as_mut().and_then(|e| e.token.as_mut())
        }),
    k("domain.onu.timeout_ms"),
    k("domain.cpe.base_url")
        .env("SAGAFLOW_CPE_URL")
        .text(|c, _, v| {
            endpoint_url(&mut c.domain.cpe, v);
            Ok(())
        })
        .secret(Hide::Password, |c| {
            c.domain.cpe.as_mut().map(|e| &mut e.base_url)
        }),
    k("domain.cpe.token")
        .env("SAGAFLOW_CPE_TOKEN")
        .text(|c, key, v| endpoint_token(&mut c.domain.cpe, key, v))
        .secret(Hide::Whole, |c| {
            c.domain.cpe.as_mut().and_then(|e| e.token.as_mut())
        }),
    k("domain.cpe.timeout_ms"),
    k("domain.billing.base_url")
        .env("SAGAFLOW_BILLING_URL")
        .text(|c, _, v| {
            endpoint_url(&mut c.domain.billing, v);
            Ok(())
        })
        .secret(Hide::Password, |c| {
            c.domain.billing.as_mut().map(|e| &mut e.base_url)
        }),
    k("domain.billing.token")
        .env("SAGAFLOW_BILLING_TOKEN")
        .text(|c, key, v| endpoint_token(&mut c.domain.billing, key, v))
        .secret(Hide::Whole, |c| {
            c.domain.billing.as_mut().and_then(|e| e.token.as_mut())
        }),
    k("domain.billing.timeout_ms"),
    k("domain.ipam.backend"),
    k("domain.ipam.tenants"),
    k("domain.ipam.netbox.base_url")
        .env("SAGAFLOW_NETBOX_URL")
        .text(|c, _, v| {
            match &mut c.domain.ipam.netbox {
                Some(n) => n.base_url = v.into(),
                None => c.domain.ipam.netbox = Some(NetBoxConfig::new(v, "")),
            }
            Ok(())
        }),
    k("domain.ipam.netbox.token")
        .env("SAGAFLOW_NETBOX_TOKEN")
        .text(|c, key, v| match &mut c.domain.ipam.netbox {
            Some(n) => {
                n.token = v.into();
                Ok(())
            }
            None => Err(invalid(
                key,
                "a token without a URL: set domain.ipam.netbox.base_url too",
            )),
        })
        .secret(Hide::Whole, |c| {
            c.domain.ipam.netbox.as_mut().map(|n| &mut n.token)
        }),
    k("domain.ipam.netbox.timeout_ms"),
    k("domain.ipam.netbox.ca_file"),
    k("domain.ipam.netbox.status"),
    k("domain.simulators.enabled")
        .env("SAGAFLOW_SIMULATORS")
        .text(|c, key, v| {
            c.domain.simulators.enabled = flag(key, v)?;
            Ok(())
        }),
    k("domain.simulators.bind"),
    k("domain.simulators.token")
        .env("SAGAFLOW_SIMULATORS_TOKEN")
        .text(|c, _, v| {
            c.domain.simulators.token = Some(v.into());
            Ok(())
        })
        .secret(Hide::Whole, |c| c.domain.simulators.token.as_mut()),
    k("domain.simulators.default_fault"),
    k("domain.simulators.faults"),
    k("domain.simulators.devices"),
    k("domain.simulators.inform_url"),
    k("domain.simulators.inform_tokens").secret_each(Hide::Whole, |c| {
        c.domain.simulators.inform_tokens.values_mut().collect()
    }),
    k("domain.onu_online_poll_ms"),
    k("domain.maintenance.revoked_retention_days"),
    k("domain.maintenance.allocated_stale_hours"),
    k("domain.maintenance.revoking_stuck_hours"),
    k("domain.maintenance.batch_size"),
    k("domain.maintenance.leak_report_limit"),
    k("domain.maintenance.warning_percent"),
    k("domain.maintenance.critical_percent"),
    k("domain.maintenance.exhaustion_horizon_days"),
    k("domain.maintenance.retention.runs_days"),
    k("domain.maintenance.retention.fires_days"),
    k("domain.maintenance.retention.snapshots_days"),
    k("domain.maintenance.retention.address_audit_days"),
    k("domain.maintenance.retention.progress_days"),
    k("domain.maintenance.retention.runs"),
    k("domain.notify.webhook_url")
        .env("SAGAFLOW_NOTIFY_WEBHOOK_URL")
        .text(|c, _, v| {
            c.domain.notify.webhook_url = Some(v.into());
            Ok(())
        })
        .secret(Hide::Password, |c| c.domain.notify.webhook_url.as_mut()),
    k("domain.notify.secret")
        .env("SAGAFLOW_NOTIFY_SECRET")
        .text(text!(domain.notify.secret))
        .secret(Hide::Whole, |c| {
            Some(&mut c.domain.notify.secret).filter(|s| !s.is_empty())
        }),
    k("domain.notify.timeout_ms"),
    k("domain.notify.retries"),
    k("radius.secret")
        .env("SAGAFLOW_RADIUS_SECRET")
        .text(text!(radius.secret))
        .secret(Hide::Whole, |c| Some(&mut c.radius.secret)),
    k("radius.suspended_group"),
    k("radius.suspended_reply"),
    k("radius.timeout_ms"),
    k("radius.retries"),
    k("radius.database_url")
        .env("SAGAFLOW_RADIUS_DATABASE_URL")
        .text(|c, _, v| {
            c.radius.database_url = Some(v.into());
            Ok(())
        })
        .secret(Hide::Password, |c| c.radius.database_url.as_mut()),
    k("radius.username_format"),
    k("radius.tenant_username_formats"),
    k("webhooks.tenant"),
    k("webhooks.url").secret_each(Hide::Password, |c| {
        c.webhooks.iter_mut().map(|w| &mut w.url).collect()
    }),
    k("webhooks.secret").secret_each(Hide::Whole, |c| {
        c.webhooks.iter_mut().map(|w| &mut w.secret).collect()
    }),
    k("webhooks.events"),
    k("webhooks.workflows"),
];

/// The value in the file a `*_FILE` variable names.
fn read_secret_file(key: &str, var: &str, path: &str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(
            &format!("{key} (from {var})"),
            format!("cannot read {path}: {e}"),
        )
    })?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_owned())
}

impl Config {
    /// Applies `SAGAFLOW_*` variables read through `get`. Each variable
    /// `X` may instead be `X_FILE`, the path of a file holding the value
    /// (one trailing newline dropped), as container secrets are mounted;
    /// setting both is refused.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for key in KEYS {
            let Some(var) = key.env else { continue };
            let file_var = format!("{var}_FILE");
            let (value, from) = match (get(var), get(&file_var)) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        key.name,
                        format!("both {var} and {file_var} are set: keep one"),
                    ));
                }
                (Some(v), None) => (v, var.to_owned()),
                (None, Some(path)) => (read_secret_file(key.name, &file_var, &path)?, file_var),
                (None, None) => continue,
            };
            self.set(key.name, &value).map_err(|e| match e {
                ConfigError::Invalid { key, message } => {
                    invalid(&format!("{key} (from {from})"), message)
                }
                other => other,
            })?;
        }
        Ok(())
    }

    /// Sets one key from text (environment variables and flags).
    pub fn set(&mut self, key: &str, v: &str) -> Result<(), ConfigError> {
        match KEYS.iter().find(|k| k.name == key).and_then(|k| k.set) {
            Some(set) => set(self, key, v),
            None => Err(invalid(key, "unknown key")),
        }
    }

    /// Replaces every secret of [`KEYS`] by `***`: passwords in database and
    /// endpoint URLs, the RADIUS shared secret, the adapters' and the
    /// simulators' bearer tokens, the notification webhook's signing
    /// secret, and each run-outcome webhook's secret (and URL password).
    /// Token entries are hashes already.
    pub fn hide_secrets(&mut self) {
        const HIDDEN: &str = "***";
        let hidden = |hide: Hide, value: &mut String| {
            *value = match hide {
                Hide::Password => redact(value),
                Hide::Whole => HIDDEN.into(),
            };
        };
        for key in KEYS {
            if let Some((hide, of)) = key.secret
                && let Some(value) = of(self)
            {
                hidden(hide, value);
            }
            if let Some((hide, of)) = key.secrets {
                for value in of(self) {
                    hidden(hide, value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = include_str!("../../docs/configuration.md");

    /// The TOML examples of the page.
    fn examples() -> Vec<&'static str> {
        DOC.split("```toml\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .collect()
    }

    /// The keys a TOML value sets: a key of the table is a leaf; other
    /// tables (and arrays of tables) are walked.
    fn keys_set(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
        let known = KEYS.iter().any(|k| k.name == prefix);
        match v {
            toml::Value::Table(t) if !known => {
                for (name, inner) in t {
                    let path = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    keys_set(&path, inner, out);
                }
            }
            toml::Value::Array(items) if !known && items.iter().all(|i| i.is_table()) => {
                for item in items {
                    keys_set(prefix, item, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }

    #[test]
    fn every_key_and_variable_is_documented() {
        for key in KEYS {
            assert!(
                DOC.contains(&format!("`{}`", key.name)),
                "{} is missing from docs/configuration.md",
                key.name
            );
            if let Some(var) = key.env {
                assert!(
                    DOC.contains(&format!("`{var}`")),
                    "{var} is missing from docs/configuration.md"
                );
                assert!(key.settable(), "{} has a variable but no setter", key.name);
            }
        }
        let mut names: Vec<_> = KEYS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KEYS.len(), "a key is declared twice");
    }

    #[test]
    fn the_documented_examples_are_valid_and_use_declared_keys() {
        let examples = examples();
        assert!(examples.len() >= 8, "{} examples", examples.len());
        for text in examples {
            let parsed: Config = toml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            let value: toml::Value = toml::from_str(text).unwrap();
            let mut set = Vec::new();
            keys_set("", &value, &mut set);
            for key in set {
                assert!(
                    KEYS.iter().any(|k| k.name == key),
                    "{key} (in an example) is not in KEYS"
                );
            }
            // What the example sets survives printing, except the secrets.
            let printed: Config = toml::from_str(&parsed.to_toml()).unwrap();
            let mut hidden = parsed.clone();
            hidden.hide_secrets();
            assert_eq!(printed, hidden);
        }
    }

    #[test]
    fn every_secret_is_hidden_and_every_setter_sets_its_key() {
        let example = examples().concat();
        let mut c: Config = toml::from_str(&example).unwrap();
        c.database.url = "postgres://sagaflow:db-password@db/sagaflow".into();
        let printed = c.to_toml();
        let plain = toml::to_string(&c).unwrap();
        for secret in [
            "onu-gateway-token",
            "sim-token",
            "webhook-signing-key",
            "crm-hook-secret-1",
            "crm-hook-secret-2",
            "nbt_abc123.secret",
        ] {
            assert!(plain.contains(secret), "the example sets {secret}");
        }
        for secret in [
            "db-password",
            "onu-gateway-token",
            "billing-token",
            "sim-token",
            "webhook-signing-key",
            "the-nas-shared-secret",
            "crm-hook-secret-1",
            "crm-hook-secret-2",
            "crm-url-password",
            "nbt_abc123.secret",
        ] {
            assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
        }
        let secrets = KEYS.iter().filter(|k| k.hide().is_some()).count();
        assert_eq!(
            secrets, 17,
            "database, endpoints, simulators (token, inform tokens), notify, radius, webhooks, netbox"
        );

        for key in KEYS.iter().filter(|k| k.settable()) {
            let mut c = Config::default();
            if let Some(system) = key.name.strip_suffix(".token") {
                // An endpoint's token needs the endpoint.
                c.set(&format!("{system}.base_url"), "http://gw").ok();
            }
            let before = toml::Value::try_from(&c).unwrap();
            let value = if key.name.ends_with(".addr") {
                "10.1.2.3:4567"
            } else if key.name.ends_with("url") {
                "postgres://db/x"
            } else if key.name == "auth.tokens" {
                r#"[{"name":"crm","tenant":"t","role":"crm","sha256":"00"}]"#
            } else if key.name.ends_with(".enabled") {
                "true"
            } else {
                "4242"
            };
            c.set(key.name, value).unwrap_or_else(|e| panic!("{e}"));
            let after = toml::Value::try_from(&c).unwrap();
            assert_ne!(before, after, "{} changed nothing", key.name);
        }
        let e = Config::default()
            .set("engine.claim_batch", "1")
            .unwrap_err();
        assert_eq!(e.to_string(), "engine.claim_batch: unknown key");
    }

    #[test]
    fn every_secret_comes_from_a_variable_or_a_file() {
        // Per-entry secrets of a list (`[[webhooks]]`) or a table (the
        // simulators' inform tokens) have no single variable: they come
        // from the configuration file.
        for key in KEYS.iter().filter(|k| {
            k.hide().is_some()
                && !k.name.starts_with("webhooks.")
                && k.name != "domain.simulators.inform_tokens"
        }) {
            assert!(key.env.is_some(), "{} has no variable", key.name);
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-a-file\n").unwrap();
        let path = file.display().to_string();
        let mut c = Config::default();
        c.apply_env(|v| (v == "SAGAFLOW_RADIUS_SECRET_FILE").then(|| path.clone()))
            .unwrap();
        assert_eq!(
            c.radius.secret, "from-a-file",
            "the trailing newline dropped"
        );

        c.apply_env(|v| match v {
            "SAGAFLOW_DATABASE_URL" => Some("postgres://app@db/sagaflow".into()),
            "SAGAFLOW_DATABASE_PASSWORD_FILE" => Some(path.clone()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            c.database.connect_url(),
            "postgres://app@db/sagaflow?password=from-a-file"
        );
        assert!(!c.to_toml().contains("from-a-file"), "{}", c.to_toml());

        let e = c
            .apply_env(|v| {
                v.starts_with("SAGAFLOW_NOTIFY_SECRET")
                    .then(|| path.clone())
            })
            .unwrap_err();
        assert!(e.to_string().contains("keep one"), "{e}");
        let e = c
            .apply_env(|v| (v == "SAGAFLOW_ONU_TOKEN_FILE").then(|| "/nonexistent/x".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("domain.onu.token (from SAGAFLOW_ONU_TOKEN_FILE)")
                && e.contains("/nonexistent/x"),
            "{e}"
        );
    }
}
