//! Search attributes: the input fields (dotted paths such as `customer.id`)
//! a workflow's runs can be listed by. The rule for a valid path and the
//! rule for which values are indexed live here, once.

use serde_json::Value;

use super::WorkflowDefinition;

/// The most search attributes one workflow may declare.
pub const MAX_SEARCH_ATTRIBUTES: usize = 8;

/// The longest value that is indexed; a longer one is not searchable.
pub const MAX_SEARCH_VALUE_LEN: usize = 256;

/// Checks the definition's `search_attributes`: dotted paths of
/// identifiers, no repeats, at most [`MAX_SEARCH_ATTRIBUTES`].
pub(super) fn check(def: &WorkflowDefinition) -> Result<(), String> {
    if def.search_attributes.len() > MAX_SEARCH_ATTRIBUTES {
        return Err(format!(
            "search_attributes lists {} fields; at most {MAX_SEARCH_ATTRIBUTES} are allowed",
            def.search_attributes.len()
        ));
    }
    for (i, path) in def.search_attributes.iter().enumerate() {
        let ok = !path.is_empty()
            && path.len() <= 100
            && path.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !ok {
            return Err(format!(
                "search_attributes: {path:?} must be a dotted path into the input, like \"subscriber_id\" or \"customer.id\""
            ));
        }
        if def.search_attributes[..i].contains(path) {
            return Err(format!("search_attributes: {path:?} is listed twice"));
        }
    }
    Ok(())
}

/// The value of one dotted path in `input`, as text: strings as they are,
/// numbers and booleans by their JSON text; objects, arrays, null, missing
/// fields and values over [`MAX_SEARCH_VALUE_LEN`] bytes have none.
pub fn value_at(input: &Value, path: &str) -> Option<String> {
    let mut v = input;
    for part in path.split('.') {
        v = v.as_object()?.get(part)?;
    }
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (text.len() <= MAX_SEARCH_VALUE_LEN).then_some(text)
}

impl WorkflowDefinition {
    /// The run's search attributes, `(attribute, value)`, from its input,
    /// in the order the definition lists them.
    pub fn search_values(&self, input: &Value) -> Vec<(String, String)> {
        self.search_attributes
            .iter()
            .filter_map(|a| value_at(input, a).map(|v| (a.clone(), v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_read_by_dotted_path() {
        let input = json!({"subscriber_id": "alice", "customer": {"id": 42, "tags": ["a"]},
            "ok": true, "none": null, "long": "x".repeat(300)});
        assert_eq!(value_at(&input, "subscriber_id").as_deref(), Some("alice"));
        assert_eq!(value_at(&input, "customer.id").as_deref(), Some("42"));
        assert_eq!(value_at(&input, "ok").as_deref(), Some("true"));
        for missing in [
            "customer",
            "customer.tags",
            "none",
            "long",
            "nope",
            "subscriber_id.x",
        ] {
            assert_eq!(value_at(&input, missing), None, "{missing}");
        }
    }
}
