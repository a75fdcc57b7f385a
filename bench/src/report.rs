//! Printing the figures: a table for people, JSON for scripts.

use serde_json::Value;

/// How the figures are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

pub(crate) fn print(v: &Value, out: Format) {
    if out == Format::Json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    if let Value::Object(m) = v {
        for (k, val) in m {
            match val {
                Value::Number(n) if n.is_f64() => {
                    println!("{k:<32} {:>12.3}", n.as_f64().unwrap_or(0.0))
                }
                Value::Object(_) => {
                    println!("{k}:");
                    print(val, out);
                }
                other => println!("{k:<32} {:>12}", other.to_string().trim_matches('"')),
            }
        }
    }
}
