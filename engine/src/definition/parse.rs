//! Reading a definition file's TOML: step policies inherit the workflow's
//! defaults before the text is decoded.

use serde::Deserialize;

use super::*;

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

pub(super) fn inherit_policies(table: &mut toml::Table) {
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

pub(super) fn parse_positional(
    text: &str,
    file: &str,
) -> Result<WorkflowDefinition, DefinitionError> {
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

pub(super) fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && s.as_bytes()[0].is_ascii_lowercase()
}
