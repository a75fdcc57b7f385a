//! An HTTP request as the gRPC request of its route: the headers become the
//! metadata (`Authorization` included, as gRPC carries it), the path
//! parameters, the query string or the JSON body become the message, and the
//! `Idempotency-Key` header fills `idempotency_key`.

use std::future::Future;

use axum::http::HeaderMap;
use prost_reflect::{Kind, MessageDescriptor, MethodDescriptor};
use sagaflow_proto::mapping;
use serde_json::{Map, Value};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::routes::Route;

/// The header that may carry the idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// One call of a route's method, ready to run.
pub struct Invocation {
    pub meta: MetadataMap,
    /// The request message as JSON.
    pub body: Value,
    pub method: MethodDescriptor,
}

impl Invocation {
    /// Builds the call of `route` from the HTTP request's parts.
    pub fn new(
        route: &Route,
        method: MethodDescriptor,
        params: Vec<(String, String)>,
        headers: &HeaderMap,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Self, Status> {
        let input = method.input();
        let mut obj = if route.takes_query() {
            query_to_json(route, &input, query.unwrap_or(""))?
        } else {
            if query.is_some_and(|q| !q.is_empty()) {
                return Err(Status::invalid_argument(
                    "this route takes its request as a JSON body, not in the query string",
                ));
            }
            body_to_json(body)?
        };
        for (name, value) in params {
            if obj.contains_key(&name) {
                return Err(Status::invalid_argument(format!(
                    "{name} comes from the path; leave it out of the request"
                )));
            }
            obj.insert(name, Value::String(value));
        }
        idempotency_header(&input, headers, &mut obj)?;
        Ok(Self {
            meta: MetadataMap::from_headers(headers.clone()),
            body: Value::Object(obj),
            method,
        })
    }

    /// Decodes the request, calls `f` (the gRPC method) and encodes its answer.
    pub async fn run<Req, Resp, F, Fut>(self, f: F) -> Result<Value, Status>
    where
        Req: prost::Message + Default,
        Resp: prost::Message,
        F: FnOnce(Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let output = self.method.output();
        let request = self.decode::<Req>()?;
        let answer = f(request).await?;
        mapping::encode(&output, answer.get_ref()).map_err(|e| {
            let reference = uuid::Uuid::now_v7();
            tracing::error!(%reference, error = %e, "answer could not be written as JSON");
            Status::internal(format!("internal error (ref {reference})"))
        })
    }

    /// The request message, with the metadata.
    pub fn decode<Req: prost::Message + Default>(self) -> Result<Request<Req>, Status> {
        let input = self.method.input();
        let msg = mapping::decode::<Req>(&input, &self.body).map_err(|e| {
            Status::invalid_argument(format!("the request does not fit {}: {e}", input.name()))
        })?;
        Ok(Request::from_parts(
            self.meta,
            tonic::Extensions::default(),
            msg,
        ))
    }
}

fn body_to_json(body: &[u8]) -> Result<Map<String, Value>, Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Status::invalid_argument(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(Status::invalid_argument(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

/// The query string as the request's JSON: a repeated field by repeating
/// its parameter, a map entry as `<field>.<key>=<value>`, numbers and
/// booleans by their text.
fn query_to_json(
    route: &Route,
    input: &MessageDescriptor,
    query: &str,
) -> Result<Map<String, Value>, Status> {
    let mut obj = Map::new();
    for (param, value) in form_urlencoded::parse(query.as_bytes()) {
        let (name, key) = match param.split_once('.') {
            Some((n, k)) => (route.field_of(n), Some(k)),
            None => (route.field_of(&param), None),
        };
        let Some(field) = input.get_field_by_name(name) else {
            return Err(Status::invalid_argument(format!(
                "unknown query parameter {param:?}"
            )));
        };
        match key {
            Some(key) if field.is_map() => {
                let map = obj
                    .entry(name.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = map {
                    m.insert(key.to_owned(), Value::String(value.into_owned()));
                }
            }
            Some(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown query parameter {param:?}"
                )));
            }
            None if field.is_list() => {
                let list = obj
                    .entry(name.to_owned())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(l) = list {
                    l.push(scalar(&param, &field.kind(), &value)?);
                }
            }
            None if field.is_map() || obj.contains_key(name) => {
                return Err(Status::invalid_argument(format!(
                    "query parameter {param:?} {}",
                    if field.is_map() {
                        "takes a key: <name>.<key>=<value>"
                    } else {
                        "is given more than once"
                    }
                )));
            }
            None => {
                obj.insert(name.to_owned(), scalar(&param, &field.kind(), &value)?);
            }
        }
    }
    Ok(obj)
}

/// A query value as the JSON of its field's kind. A 32-bit integer that
/// is not a whole number in its field's range is refused naming the
/// parameter; other values that do not parse are left as text for the
/// decoder to refuse.
fn scalar(param: &str, kind: &Kind, text: &str) -> Result<Value, Status> {
    let range = match kind {
        Kind::Uint32 | Kind::Fixed32 => Some((0, i64::from(u32::MAX))),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Some((i64::from(i32::MIN), i64::from(i32::MAX)))
        }
        _ => None,
    };
    if let Some((min, max)) = range {
        return match text.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Value::from(n)),
            _ => Err(Status::invalid_argument(format!(
                "query parameter {param:?} must be a whole number from {min} to {max}, not {text:?}"
            ))),
        };
    }
    Ok(match kind {
        Kind::Bool => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(text.to_owned()),
        },
        Kind::Double | Kind::Float => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(text.to_owned())),
        _ => Value::String(text.to_owned()),
    })
}

/// The `Idempotency-Key` header, for requests with an `idempotency_key`
/// field: it fills the field; a body that names a different key is refused.
fn idempotency_header(
    input: &MessageDescriptor,
    headers: &HeaderMap,
    obj: &mut Map<String, Value>,
) -> Result<(), Status> {
    let Some(header) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(());
    };
    if input.get_field_by_name("idempotency_key").is_none() {
        return Err(Status::invalid_argument(format!(
            "this route takes no Idempotency-Key header ({} has no idempotency_key)",
            input.name()
        )));
    }
    let key = header
        .to_str()
        .map_err(|_| Status::invalid_argument("the Idempotency-Key header is not valid text"))?;
    match obj.get("idempotency_key") {
        Some(Value::String(b)) if !b.is_empty() && b != key => Err(Status::invalid_argument(
            "idempotency_key in the body and the Idempotency-Key header differ; send one",
        )),
        _ => {
            obj.insert("idempotency_key".into(), Value::String(key.to_owned()));
            Ok(())
        }
    }
}
