//! Checking a parsed definition against the rules and the handler registry.

use std::collections::HashSet;

use crate::handler::Registry;

use super::*;

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
    if let Err(m) = super::kinds::check_deadline(def) {
        return err(None, m);
    }
    if let Err(m) = super::search::check(def) {
        return err(None, m);
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
        if let Err(m) = super::kinds::check_step(s) {
            return err(name, m);
        }
        for (what, h) in [
            ("handler", Some(&s.handler).filter(|h| !h.is_empty())),
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
