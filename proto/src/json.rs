//! JSON ⇄ `google.protobuf.Struct`/`Value`: the one conversion used by the
//! engine's API, the CLI, the bench, the chaos harness and the examples.
//! JSON read from a client is refused (as `INVALID_ARGUMENT`) where the
//! stores could not keep it: NUL characters, non-finite numbers, excessive
//! nesting.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value as PValue};
use serde_json::{Map, Number, Value};
use tonic::Status;

/// How deep a JSON document may nest.
pub const MAX_DEPTH: usize = 64;

/// A protobuf Struct as a JSON object. Refuses what the stores cannot keep
/// (NUL characters, non-finite numbers, excessive nesting), naming where.
pub fn struct_to_json(s: &Struct) -> Result<Value, Status> {
    fields_to_json(s, "", 0).map(Value::Object)
}

fn fields_to_json(s: &Struct, path: &str, depth: usize) -> Result<Map<String, Value>, Status> {
    if depth > MAX_DEPTH {
        return Err(Status::invalid_argument(format!(
            "JSON nests deeper than {MAX_DEPTH} levels at {}",
            if path.is_empty() { "/" } else { path }
        )));
    }
    let mut out = Map::new();
    for (k, v) in &s.fields {
        let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
        check_text(k, &p)?;
        out.insert(k.clone(), value_to_json(v, &p, depth + 1)?);
    }
    Ok(out)
}

fn check_text(s: &str, path: &str) -> Result<(), Status> {
    if s.contains('\0') {
        return Err(Status::invalid_argument(format!(
            "text must not contain NUL (\\u0000) characters (at {path})"
        )));
    }
    Ok(())
}

fn value_to_json(v: &PValue, path: &str, depth: usize) -> Result<Value, Status> {
    if depth > MAX_DEPTH {
        return Err(Status::invalid_argument(format!(
            "JSON nests deeper than {MAX_DEPTH} levels at {path}"
        )));
    }
    Ok(match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StringValue(s)) => {
            check_text(s, path)?;
            Value::String(s.clone())
        }
        Some(Kind::NumberValue(n)) => {
            if !n.is_finite() {
                return Err(Status::invalid_argument(format!(
                    "numbers must be finite (at {path})"
                )));
            }
            if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
                Value::Number(Number::from(*n as i64))
            } else {
                Number::from_f64(*n)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        Some(Kind::StructValue(s)) => Value::Object(fields_to_json(s, path, depth + 1)?),
        Some(Kind::ListValue(l)) => Value::Array(
            l.values
                .iter()
                .enumerate()
                .map(|(i, v)| value_to_json(v, &format!("{path}/{i}"), depth + 1))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// A JSON value as protobuf; objects become Structs.
pub fn json_to_value(v: &Value) -> PValue {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(json_to_value).collect(),
        }),
        Value::Object(m) => Kind::StructValue(map_to_struct(m)),
    };
    PValue { kind: Some(kind) }
}

/// A JSON object's fields as a Struct.
pub fn map_to_struct(m: &Map<String, Value>) -> Struct {
    Struct {
        fields: m
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

/// A JSON object as a Struct (anything else as an empty one).
pub fn json_to_struct(v: &Value) -> Struct {
    match v {
        Value::Object(m) => map_to_struct(m),
        _ => Struct::default(),
    }
}
