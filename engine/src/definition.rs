//! Workflow definitions as data: one TOML file per workflow version in
//! `workflows/`. The format is documented in `docs/workflow-definitions.md`.
//!
//! Loading validates everything and stops with a message that names the file,
//! the step and the fix. A run keeps a snapshot of the definition it started
//! on (stored by content hash), so later deploys never change a run in flight.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::handler::Registry;
use crate::retry::RetryPolicy;
use crate::run::state::OnFailure;

/// A workflow definition, as written in its file and as snapshotted with runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDefinition {
    pub name: String,
    pub version: u32,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub on_failure: OnFailure,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencySpec>,
    /// A JSON Schema the input must satisfy.
    #[serde(default = "empty_object")]
    pub input_schema: Value,
    /// Values every step inherits unless it sets its own.
    #[serde(default)]
    pub defaults: StepDefaults,
    pub steps: Vec<StepDefinition>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

fn yes() -> bool {
    true
}

/// Defaults for the steps of one workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StepDefaults {
    pub retry: RetryPolicy,
    pub compensation_retry: RetryPolicy,
    pub timeout_ms: u64,
}

impl Default for StepDefaults {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            compensation_retry: RetryPolicy {
                max_attempts: 5,
                ..RetryPolicy::default()
            },
            timeout_ms: 30_000,
        }
    }
}

/// At most one active run per (tenant, key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencySpec {
    /// A JSON pointer into the input, e.g. `/subscriber_id`.
    pub key: String,
    #[serde(default)]
    pub policy: ConcurrencyPolicy,
    /// With `queue`: how long a run may wait for the key before it ends
    /// CANCELLED without running; none: it waits as long as it takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_ttl_ms: Option<u64>,
}

/// The longest `concurrency.queue_ttl_ms` accepted: 30 days.
pub const MAX_QUEUE_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

impl ConcurrencySpec {
    /// How long a queued run may wait for the key, if bounded.
    pub fn queue_ttl(&self) -> Option<std::time::Duration> {
        self.queue_ttl_ms.map(std::time::Duration::from_millis)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyPolicy {
    /// Later runs wait PENDING until the key is free, in start order.
    #[default]
    Queue,
    /// Later runs are refused (ABORTED).
    Reject,
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDefinition {
    pub name: String,
    pub handler: String,
    /// The handler that undoes this step; none: nothing to undo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation: Option<String>,
    /// An optional step that gives up is recorded FAILED_NON_BLOCKING and
    /// the run goes on.
    #[serde(default = "yes")]
    pub required: bool,
    /// The step runs only when this holds on the run's context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation_retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl StepDefinition {
    /// The step's retry policy (its own, or the workflow's default once
    /// normalized).
    pub fn retry(&self) -> &RetryPolicy {
        static DEFAULT: std::sync::OnceLock<RetryPolicy> = std::sync::OnceLock::new();
        self.retry
            .as_ref()
            .unwrap_or_else(|| DEFAULT.get_or_init(RetryPolicy::default))
    }

    pub fn compensation_retry(&self) -> &RetryPolicy {
        static DEFAULT: std::sync::OnceLock<RetryPolicy> = std::sync::OnceLock::new();
        self.compensation_retry
            .as_ref()
            .unwrap_or_else(|| DEFAULT.get_or_init(|| StepDefaults::default().compensation_retry))
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms.unwrap_or(30_000))
    }
}

/// A condition on the run's context: `path` is a JSON pointer. With `equals`
/// the value must equal it; with `not_equals` it must not; with `exists` it
/// must (not) be present; with none of them it must be truthy (present and
/// not null, false, 0 or "").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

impl Condition {
    pub fn holds(&self, context: &Value) -> bool {
        let v = context.pointer(&self.path);
        if let Some(want) = &self.equals {
            return v == Some(want);
        }
        if let Some(unwanted) = &self.not_equals {
            return v != Some(unwanted);
        }
        if let Some(exists) = self.exists {
            return v.is_some_and(|v| !v.is_null()) == exists;
        }
        match v {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
            Some(Value::String(s)) => !s.is_empty(),
            Some(_) => true,
        }
    }
}

/// A definition that passed validation, with its snapshot id.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedDefinition {
    pub definition: WorkflowDefinition,
    /// `name@vN#hash`: identifies this exact content.
    pub id: String,
    /// The canonical JSON stored as the runs' snapshot.
    pub snapshot: Value,
    pub source: String,
}

impl LoadedDefinition {
    /// Builds the snapshot of an already-validated definition.
    pub fn new(mut definition: WorkflowDefinition, source: impl Into<String>) -> Self {
        normalize(&mut definition);
        let snapshot = serde_json::to_value(&definition).unwrap_or(Value::Null);
        let digest = Sha256::digest(snapshot.to_string().as_bytes());
        let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let id = format!("{}@v{}#{hash}", definition.name, definition.version);
        Self {
            definition,
            id,
            snapshot,
            source: source.into(),
        }
    }
}

/// Fills every step's policies and timeout from the workflow defaults, so the
/// snapshot is self-contained.
fn normalize(def: &mut WorkflowDefinition) {
    let d = def.defaults.clone();
    for s in &mut def.steps {
        s.retry.get_or_insert_with(|| d.retry.clone());
        if s.compensation.is_some() {
            s.compensation_retry
                .get_or_insert_with(|| d.compensation_retry.clone());
        }
        s.timeout_ms.get_or_insert(d.timeout_ms);
    }
}

/// Why a definition was refused. Displays as `file: step "x": problem`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {}{message}", step.as_ref().map(|s| format!("step {s:?}: ")).unwrap_or_default())]
pub struct DefinitionError {
    pub file: String,
    pub step: Option<String>,
    pub message: String,
}

impl DefinitionError {
    fn new(file: &str, step: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            step: step.map(str::to_owned),
            message: message.into(),
        }
    }
}

/// Parses one definition file's text. `file` names it in errors.
///
/// A step's partial `retry` (or `compensation_retry`) table takes the keys it
/// does not set from the workflow's `[defaults.retry]` (or
/// `[defaults.compensation_retry]`), then from the built-in defaults.
pub fn parse(text: &str, file: &str) -> Result<WorkflowDefinition, DefinitionError> {
    // First pass: errors with line and column.
    let _: WorkflowDefinition = parse_positional(text, file)?;
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        DefinitionError::new(
            file,
            None,
            format!("not valid TOML: {}", e.to_string().trim_end()),
        )
    })?;
    inherit_policies(&mut table);
    WorkflowDefinition::deserialize(toml::Value::Table(table)).map_err(|e| {
        DefinitionError::new(file, None, format!("not a valid workflow definition: {e}"))
    })
}

fn inherit_policies(table: &mut toml::Table) {
    let defaults = table
        .get("defaults")
        .and_then(toml::Value::as_table)
        .cloned();
    let Some(steps) = table.get_mut("steps").and_then(toml::Value::as_array_mut) else {
        return;
    };
    for key in ["retry", "compensation_retry"] {
        let Some(base) = defaults
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(toml::Value::as_table)
        else {
            continue;
        };
        for step in steps.iter_mut() {
            if let Some(own) = step.get_mut(key).and_then(toml::Value::as_table_mut) {
                for (k, v) in base {
                    own.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }
}

fn parse_positional(text: &str, file: &str) -> Result<WorkflowDefinition, DefinitionError> {
    toml::from_str(text).map_err(|e| {
        DefinitionError::new(
            file,
            None,
            format!(
                "not a valid workflow definition: {}",
                e.to_string().trim_end()
            ),
        )
    })
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && s.as_bytes()[0].is_ascii_lowercase()
}

/// Checks a parsed definition against the rules and the handler registry.
pub fn validate(
    def: &WorkflowDefinition,
    file: &str,
    registry: &Registry,
) -> Result<(), DefinitionError> {
    let err = |step: Option<&str>, m: String| Err(DefinitionError::new(file, step, m));
    if !is_identifier(&def.name) {
        return err(
            None,
            format!(
                "name {:?} must be lowercase letters, digits and '_', starting with a letter",
                def.name
            ),
        );
    }
    if def.version == 0 {
        return err(None, "version must be 1 or more".into());
    }
    if !def.input_schema.is_object() {
        return err(
            None,
            "input_schema must be a table (a JSON Schema object)".into(),
        );
    }
    if let Err(e) = jsonschema::validator_for(&def.input_schema) {
        return err(
            None,
            format!("input_schema is not a valid JSON Schema: {e}"),
        );
    }
    if let Some(c) = &def.concurrency {
        if !c.key.starts_with('/') {
            return err(
                None,
                format!(
                    "concurrency.key {:?} must be a JSON pointer into the input, like \"/subscriber_id\"",
                    c.key
                ),
            );
        }
        if let Some(ttl) = c.queue_ttl_ms {
            if c.policy != ConcurrencyPolicy::Queue {
                return err(
                    None,
                    "concurrency.queue_ttl_ms applies to policy = \"queue\" only (a rejected run never waits)"
                        .into(),
                );
            }
            if ttl == 0 || ttl > MAX_QUEUE_TTL_MS {
                return err(
                    None,
                    format!(
                        "concurrency.queue_ttl_ms = {ttl} must be between 1 and {MAX_QUEUE_TTL_MS} (30 days), e.g. 3600000 for an hour"
                    ),
                );
            }
        }
    }
    if let Err(m) = def.defaults.retry.validate() {
        return err(None, format!("defaults.retry: {m}"));
    }
    if let Err(m) = def.defaults.compensation_retry.validate() {
        return err(None, format!("defaults.compensation_retry: {m}"));
    }
    if def.defaults.timeout_ms == 0 {
        return err(None, "defaults.timeout_ms must be more than 0".into());
    }
    if def.steps.is_empty() {
        return err(None, "a workflow needs at least one [[steps]] entry".into());
    }
    let mut seen = HashSet::new();
    for s in &def.steps {
        let name = Some(s.name.as_str());
        if !is_identifier(&s.name) {
            return err(
                name,
                "step names must be lowercase letters, digits and '_', starting with a letter"
                    .into(),
            );
        }
        if !seen.insert(s.name.as_str()) {
            return err(
                name,
                "duplicate step name: every step of a workflow needs its own name".into(),
            );
        }
        for (what, h) in [
            ("handler", Some(&s.handler)),
            ("compensation", s.compensation.as_ref()),
        ] {
            if let Some(h) = h
                && !registry.contains(h)
            {
                return err(
                    name,
                    format!(
                        "{what} {h:?} is not registered; registered handlers: {} (fix the name or register the handler)",
                        registry.names().join(", ")
                    ),
                );
            }
        }
        if let Some(p) = &s.retry
            && let Err(m) = p.validate()
        {
            return err(name, format!("retry: {m}"));
        }
        if let Some(p) = &s.compensation_retry {
            if s.compensation.is_none() {
                return err(
                    name,
                    "compensation_retry is set but the step has no compensation handler".into(),
                );
            }
            if let Err(m) = p.validate() {
                return err(name, format!("compensation_retry: {m}"));
            }
        }
        if s.timeout_ms == Some(0) {
            return err(name, "timeout_ms must be more than 0".into());
        }
        if let Some(c) = &s.when {
            if !c.path.starts_with('/') {
                return err(
                    name,
                    format!(
                        "when.path {:?} must be a JSON pointer like \"/enable_ipv6\"",
                        c.path
                    ),
                );
            }
            let set = [
                c.equals.is_some(),
                c.not_equals.is_some(),
                c.exists.is_some(),
            ];
            if set.iter().filter(|b| **b).count() > 1 {
                return err(
                    name,
                    "when takes at most one of equals, not_equals, exists".into(),
                );
            }
        }
    }
    Ok(())
}

/// Every loaded definition, by name and version.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    by_name: BTreeMap<String, BTreeMap<u32, Arc<LoadedDefinition>>>,
}

impl Definitions {
    /// Loads every `*.toml` file of `dir`.
    pub fn load_dir(dir: &Path, registry: &Registry) -> Result<Self, DefinitionError> {
        let shown = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| {
            DefinitionError::new(
                &shown,
                None,
                format!("cannot read the workflows directory: {e}"),
            )
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut out = Self::default();
        for path in files {
            let file = path.display().to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| DefinitionError::new(&file, None, format!("cannot read: {e}")))?;
            let def = parse(&text, &file)?;
            out.add(def, &file, registry)?;
        }
        Ok(out)
    }

    /// Validates and adds one definition; `source` names it in errors.
    pub fn add(
        &mut self,
        def: WorkflowDefinition,
        source: &str,
        registry: &Registry,
    ) -> Result<Arc<LoadedDefinition>, DefinitionError> {
        validate(&def, source, registry)?;
        let versions = self.by_name.entry(def.name.clone()).or_default();
        if let Some(other) = versions.get(&def.version) {
            return Err(DefinitionError::new(
                source,
                None,
                format!(
                    "{} version {} is also defined in {}; give one of them a new version",
                    def.name, def.version, other.source
                ),
            ));
        }
        let loaded = Arc::new(LoadedDefinition::new(def, source));
        versions.insert(loaded.definition.version, loaded.clone());
        Ok(loaded)
    }

    /// The given version, or the latest when `version` is 0.
    pub fn resolve(&self, name: &str, version: u32) -> Option<Arc<LoadedDefinition>> {
        let versions = self.by_name.get(name)?;
        if version == 0 {
            versions.values().next_back().cloned()
        } else {
            versions.get(&version).cloned()
        }
    }

    /// Every definition, by name then version.
    pub fn all(&self) -> impl Iterator<Item = &Arc<LoadedDefinition>> {
        self.by_name.values().flat_map(|v| v.values())
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests;
