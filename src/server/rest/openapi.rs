//! The OpenAPI 3.1 document of the JSON/HTTP API (`GET /v1/openapi.json`),
//! generated from the route table and the proto's descriptors (their
//! comments included), so that it describes what the router serves.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use prost_reflect::{EnumDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor};
use sagaflow_proto::mapping;
use serde_json::{Map, Value, json};

use super::call::IDEMPOTENCY_HEADER;
use super::routes::{Call, Route, routes};

/// Routes of the HTTP address outside the API: path, summary, media type.
pub const PLAIN_ROUTES: &[(&str, &str, &str)] = &[
    ("/healthz", "The process is up.", "text/plain"),
    (
        "/readyz",
        "The store answers and is migrated (and the scheduler runs where this replica has one); 503 otherwise.",
        "text/plain",
    ),
    ("/metrics", "Prometheus metrics, text format.", "text/plain"),
    ("/v1/openapi.json", "This document.", "application/json"),
];

/// The document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

fn build() -> Value {
    let mut schemas = Schemas::default();
    let mut paths = Map::new();
    for route in routes() {
        let Some(method) = mapping::method(route.rpc) else {
            continue;
        };
        let op = operation(route, &method, &mut schemas);
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(route.method.as_str().to_ascii_lowercase(), op);
        }
    }
    for (path, summary, media) in PLAIN_ROUTES {
        let mut responses = Map::new();
        responses.insert(
            "200".into(),
            json!({"description": "OK", "content": {*media: {"schema": if *media == "application/json" { json!({"type": "object"}) } else { json!({"type": "string"}) }}}}),
        );
        if *path == "/readyz" {
            responses.insert(
                "503".into(),
                json!({"description": "Not ready", "content": {"text/plain": {"schema": {"type": "string"}}}}),
            );
        }
        paths.insert(
            (*path).to_owned(),
            json!({"get": {"summary": summary, "security": [], "responses": responses}}),
        );
    }
    let mut components = schemas.into_components();
    components.insert(
        "Error".into(),
        json!({
            "type": "object",
            "description": "A failed call: the gRPC status code's name and a message saying what to fix.",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "message"],
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "sagaflow",
            "version": "v1",
            "description": "The sagaflow.v1 gRPC API as JSON over HTTP: the proto3 JSON mapping with the proto's field names, enum values by name, RFC 3339 timestamps; unknown fields are refused. Errors are {\"code\", \"message\"} with the HTTP status of the gRPC code.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": components,
        },
    })
}

fn operation(route: &Route, method: &prost_reflect::MethodDescriptor, s: &mut Schemas) -> Value {
    let input = method.input();
    let output = method.output();
    let paging = route.pages.and_then(|p| mapping::method(p.rpc));
    let path_params = path_params(route.path);
    let mut params: Vec<Value> = path_params
        .iter()
        .map(|p| json!({"name": p, "in": "path", "required": true, "schema": path_schema(route.path, p)}))
        .collect();
    let mut op = Map::new();
    op.insert("operationId".into(), json!(method.name()));
    op.insert(
        "summary".into(),
        json!(format!("{} (gRPC {})", method.name(), method.full_name())),
    );
    let mut description = comments(method.parent_file(), method.path());
    if let Some(p) = paging.as_ref() {
        // A paged route says what its page parameters turn it into.
        let paged = comments(p.parent_file(), p.path()).unwrap_or_default();
        let own = description.take().unwrap_or_default();
        description = Some(format!(
            "{own} With page_size or page_token in the query it is {} instead: {paged}",
            p.name()
        ));
    }
    if let Some(c) = description {
        op.insert("description".into(), json!(c.trim()));
    }
    op.insert("tags".into(), json!([method.parent_service().name()]));
    if route.takes_query() {
        for f in input.fields() {
            if path_params.contains(&f.name()) || f.is_map() {
                continue;
            }
            let name = route
                .query_names
                .iter()
                .find(|(_, field)| *field == f.name())
                .map_or(f.name(), |(p, _)| p);
            let mut p = json!({"name": name, "in": "query", "schema": s.field(&f)});
            if f.is_list() {
                p["explode"] = json!(true);
            }
            if let Some(c) = comments(f.parent_file(), f.path()) {
                p["description"] = json!(c);
            }
            params.push(p);
        }
        if let Some(paging) = paging.as_ref() {
            page_params(&input, paging, &mut params, s);
        }
    } else {
        let mut body = s.message_schema(&input);
        if let Some(Value::Object(props)) = body.get_mut("properties") {
            for p in &path_params {
                props.remove(*p);
            }
            // Every text field refuses NUL; reasons are at most 1024
            // characters; a pool's range is an address and a length; a
            // signal's name is a lowercase identifier.
            for (name, schema) in props.iter_mut() {
                if schema.get("type") == Some(&json!("string")) && schema.get("format").is_none() {
                    schema["pattern"] = json!(match name.as_str() {
                        "cidr" => CIDR,
                        "signal_name" => "^[a-z][a-z0-9_]{0,99}$",
                        _ => "^[^\\u0000]*$",
                    });
                    if name == "reason" {
                        schema["maxLength"] = json!(1024);
                    }
                }
            }
            let mut required = Vec::new();
            for (field, rule) in REQUIRED
                .iter()
                .filter_map(|(m, f, r)| (*m == input.name()).then_some((*f, r)))
            {
                if let Some(Value::Object(schema)) = props.get_mut(field) {
                    let base = std::mem::take(schema);
                    *schema = match rule {
                        Rule::Text => {
                            let mut t = base;
                            t.insert("minLength".into(), json!(1));
                            t
                        }
                        Rule::Enum(unset) => {
                            json!({"allOf": [Value::Object(base)], "not": {"const": unset}})
                                .as_object()
                                .cloned()
                                .unwrap_or_default()
                        }
                    };
                    required.push(field);
                }
            }
            if !required.is_empty() {
                body["required"] = json!(required);
            }
        }
        let body_required = body.get("required").is_some();
        op.insert(
            "requestBody".into(),
            json!({"required": body_required, "content": {"application/json": {"schema": body}}}),
        );
    }
    if input.get_field_by_name("idempotency_key").is_some() {
        params.push(json!({
            "name": "Idempotency-Key",
            "in": "header",
            "description": format!("The idempotency key, instead of idempotency_key in the body ({IDEMPOTENCY_HEADER}); a body naming another key is refused"),
            "schema": {"type": "string"},
        }));
    }
    let mut responses = Map::new();
    match route.call {
        Call::Watch => {
            params.push(json!({
                "name": "Last-Event-ID",
                "in": "header",
                "description": "Resume after this event's sequence number",
                "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
            }));
            let event = s.message(&output);
            responses.insert("200".into(), json!({
                "description": format!("Server-Sent Events: one {} JSON per data: line, id: its sequence; a failure is one `event: error` with the Error JSON, and the end", output.name()),
                "content": {"text/event-stream": {"schema": {
                    "type": "object",
                    "description": "One event of the stream",
                    "properties": {
                        "id": {"type": "string", "pattern": "^[0-9]+$"},
                        "event": {"type": "string", "enum": ["message", "error"]},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": {"anyOf": [event, {"$ref": "#/components/schemas/Error"}]},
                        },
                    },
                }}},
            }));
        }
        Call::Unary(_) => {
            let mut schema = s.message(&output);
            // Asked for a page, the paging method's answer (the whole
            // answer's fields and the next page's token).
            if let Some(paging) = paging.as_ref() {
                schema = json!({"anyOf": [schema, s.message(&paging.output())]});
            }
            responses.insert(
                "200".into(),
                json!({"description": output.name(), "content": {"application/json": {"schema": schema}}}),
            );
            if output.get_field_by_name("created").is_some() {
                responses.insert(
                    "201".into(),
                    json!({"description": format!("{} (a run was created)", output.name()), "content": {"application/json": {"schema": schema}}}),
                );
            }
        }
    }
    responses.insert(
        "default".into(),
        json!({"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
    );
    op.insert("parameters".into(), Value::Array(params));
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// The query parameters that ask a paged route for a page: the fields of
/// the paging method's request that the route's own request lacks.
fn page_params(
    own: &MessageDescriptor,
    paging: &prost_reflect::MethodDescriptor,
    params: &mut Vec<Value>,
    s: &mut Schemas,
) {
    for f in paging.input().fields() {
        if own.get_field_by_name(f.name()).is_some() {
            continue;
        }
        let mut p = json!({"name": f.name(), "in": "query", "schema": s.field(&f)});
        let page = format!(
            "given, the answer is a page ({}: {})",
            paging.name(),
            paging.output().name()
        );
        p["description"] = json!(match comments(f.parent_file(), f.path()) {
            Some(c) => format!("{c}; {page}"),
            None => page,
        });
        params.push(p);
    }
}

/// An IPv4 or IPv6 range (or nothing, for UpdatePool's "unchanged").
const CIDR: &str = "^((25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}/([0-9]|[12][0-9]|3[0-2])|[0-9a-fA-F]{0,4}(:[0-9a-fA-F]{0,4}){2,7}/([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8]))?$";

/// What a required field of a request body must hold.
enum Rule {
    /// A non-empty string.
    Text,
    /// An enum value other than the named unset one.
    Enum(&'static str),
}

/// The request fields the server requires (INVALID_ARGUMENT without them),
/// so that the document says what the server checks.
const REQUIRED: &[(&str, &str, Rule)] = &[
    ("StartWorkflowRequest", "workflow_name", Rule::Text),
    ("SignalWorkflowRequest", "signal_name", Rule::Text),
    ("SkipStepRequest", "step", Rule::Text),
    ("RewindWorkflowRequest", "to_step", Rule::Text),
    ("RewindWorkflowRequest", "reason", Rule::Text),
    (
        "BulkOperateRequest",
        "action",
        Rule::Enum("BULK_ACTION_UNSPECIFIED"),
    ),
    ("CreateScheduleRequest", "name", Rule::Text),
    ("CreateScheduleRequest", "cron", Rule::Text),
    ("CreateScheduleRequest", "workflow_name", Rule::Text),
    ("CreatePoolRequest", "name", Rule::Text),
    ("CreatePoolRequest", "cidr", Rule::Text),
    ("ReserveAddressRequest", "subscriber_id", Rule::Text),
    (
        "ReserveAddressRequest",
        "family",
        Rule::Enum("ADDRESS_FAMILY_UNSPECIFIED"),
    ),
];

/// The schema of a path parameter: run and schedule ids are UUIDs,
/// reservation ids numbers, names 1 to 256 characters.
fn path_schema(path: &str, param: &str) -> Value {
    const UUID: &str =
        "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
    match param {
        "id" if path.starts_with("/v1/reservations/") => {
            json!({"type": "string", "pattern": "^[0-9]{1,18}$"})
        }
        "id" => json!({"type": "string", "format": "uuid", "pattern": UUID}),
        _ => json!({"type": "string", "minLength": 1, "maxLength": 256}),
    }
}

/// The `{name}` parameters of a path template.
pub fn path_params(path: &str) -> Vec<&str> {
    path.split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(n, _)| n))
        .collect()
}

/// The comment in the proto above (or beside) what `path` locates.
fn comments(file: FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let loc = info.location.iter().find(|l| l.path == path)?;
    let text = loc
        .leading_comments
        .as_deref()
        .or(loc.trailing_comments.as_deref())?;
    let text = text
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_owned();
    (!text.is_empty()).then_some(text)
}

/// The component schemas referenced so far.
#[derive(Default)]
struct Schemas {
    messages: BTreeSet<String>,
    enums: BTreeSet<String>,
    out: Map<String, Value>,
}

impl Schemas {
    fn into_components(self) -> Map<String, Value> {
        self.out
    }

    /// A reference to `m`'s schema (or the JSON form of a well-known type).
    fn message(&mut self, m: &MessageDescriptor) -> Value {
        if mapping::is_well_known(m) {
            return match m.name() {
                "Timestamp" => json!({"type": "string", "format": "date-time"}),
                "Struct" => json!({"type": "object"}),
                "ListValue" => json!({"type": "array"}),
                _ => json!({}),
            };
        }
        if self.messages.insert(m.name().to_owned()) {
            let schema = self.message_schema(m);
            self.out.insert(m.name().to_owned(), schema);
        }
        json!({"$ref": format!("#/components/schemas/{}", m.name())})
    }

    fn message_schema(&mut self, m: &MessageDescriptor) -> Value {
        let mut props = Map::new();
        for f in m.fields() {
            let mut schema = self.field(&f);
            if let Some(c) = comments(f.parent_file(), f.path())
                && let Value::Object(o) = &mut schema
                && !o.contains_key("$ref")
            {
                o.insert("description".into(), json!(c));
            }
            props.insert(f.name().to_owned(), schema);
        }
        let mut schema =
            json!({"type": "object", "properties": props, "additionalProperties": false});
        if let Some(c) = comments(m.parent_file(), m.path()) {
            schema["description"] = json!(c);
        }
        schema
    }

    fn field(&mut self, f: &FieldDescriptor) -> Value {
        if f.is_map() {
            let value = match f.kind() {
                Kind::Message(entry) => entry.map_entry_value_field().kind(),
                other => other,
            };
            return json!({"type": "object", "additionalProperties": self.kind(&value)});
        }
        let one = self.kind(&f.kind());
        if f.is_list() {
            json!({"type": "array", "items": one})
        } else {
            one
        }
    }

    fn kind(&mut self, k: &Kind) -> Value {
        match k {
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
            Kind::Double | Kind::Float => json!({"type": "number"}),
            Kind::Uint32 | Kind::Fixed32 => {
                json!({"type": "integer", "minimum": 0, "maximum": u32::MAX})
            }
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX})
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({"anyOf": [{"type": "string", "pattern": "^-?[0-9]{1,19}$"}, {"type": "integer"}]})
            }
            Kind::Uint64 | Kind::Fixed64 => {
                json!({"anyOf": [{"type": "string", "pattern": "^[0-9]{1,20}$"}, {"type": "integer", "minimum": 0}]})
            }
            Kind::Enum(e) => self.enumeration(e),
            Kind::Message(m) => self.message(m),
        }
    }

    fn enumeration(&mut self, e: &EnumDescriptor) -> Value {
        if self.enums.insert(e.name().to_owned()) {
            let names: Vec<String> = e.values().map(|v| v.name().to_owned()).collect();
            let mut schema = json!({"type": "string", "enum": names});
            if let Some(c) = comments(e.parent_file(), e.path()) {
                schema["description"] = json!(c);
            }
            self.out.insert(e.name().to_owned(), schema);
        }
        json!({"$ref": format!("#/components/schemas/{}", e.name())})
    }
}
