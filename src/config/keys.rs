//! The configuration keys, declared once: each key's name, the `SAGAFLOW_*`
//! variable that sets it (if any), how it is set from text, and whether
//! `config print` hides it. The environment layer ([`Config::apply_env`]),
//! [`Config::set`] and the redaction of [`Config::hide_secrets`] all read
//! [`KEYS`]; `docs/configuration.md` lists every key (a test checks it).

use super::{Config, ConfigError, invalid};
use crate::app::redact;
use sagaflow_steps::adapters::EndpointConfig;

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

// After the macros above, which the sections' tables use.
mod domain;
mod outside;
mod server;

/// Every configuration key, in the order of the file's sections (each
/// section's keys live in the submodule named for it). Keys without a
/// setter are set in the TOML file only.
pub const KEYS: &[Key] = &ALL;

/// The sections' tables, in the order of the file.
const SECTIONS: &[&[Key]] = &[server::KEYS, domain::KEYS, outside::KEYS];

/// How many keys the sections declare.
const COUNT: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < SECTIONS.len() {
        n += SECTIONS[i].len();
        i += 1;
    }
    n
};

/// The sections' keys in one table, joined at compile time.
const ALL: [Key; COUNT] = {
    let mut out = [k(""); COUNT];
    let mut n = 0;
    let mut i = 0;
    while i < SECTIONS.len() {
        let mut j = 0;
        while j < SECTIONS[i].len() {
            out[n] = SECTIONS[i][j];
            n += 1;
            j += 1;
        }
        i += 1;
    }
    out
};

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
