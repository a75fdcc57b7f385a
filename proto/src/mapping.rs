//! The proto3 JSON mapping of the `sagaflow.v1` messages, for the JSON/HTTP
//! API: the descriptors of [`FILE_DESCRIPTOR_SET`](crate::FILE_DESCRIPTOR_SET)
//! and `prost-reflect`'s serde support, with the proto's own snake_case field
//! names, enum values by name, RFC 3339 timestamps, `Struct` as plain JSON
//! and unknown fields refused.
//!
//! Answers carry every scalar, enum, list and map field, defaults included
//! (`"created": false`, `"steps": []`), so a client reads the same keys
//! whatever the values; unset message fields (a timestamp not reached yet)
//! are left out.

use std::sync::OnceLock;

use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, Kind, MessageDescriptor, MethodDescriptor,
    SerializeOptions,
};
use serde_json::Value;

/// The package every service and message of the API lives in.
pub const PACKAGE: &str = "sagaflow.v1";

/// The descriptors of the API (and the well-known types it imports).
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // The set is compiled by this crate's build script; a set that does
        // not decode is a build defect, and every JSON call then fails with
        // the empty pool's "unknown method" rather than a panic.
        DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET).unwrap_or_default()
    })
}

/// The method `rpc` (`"WorkflowService/StartWorkflow"`) of the API.
pub fn method(rpc: &str) -> Option<MethodDescriptor> {
    let (service, method) = rpc.split_once('/')?;
    pool()
        .get_service_by_name(&format!("{PACKAGE}.{service}"))?
        .methods()
        .find(|m| m.name() == method)
}

/// A message of type `T` from its JSON form; the error says what is wrong
/// (an unknown field, a value of the wrong type, an unknown enum name).
pub fn decode<T: prost::Message + Default>(
    desc: &MessageDescriptor,
    json: &Value,
) -> Result<T, String> {
    let dynamic = DynamicMessage::deserialize_with_options(
        desc.clone(),
        json,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|e| e.to_string())?;
    dynamic.transcode_to::<T>().map_err(|e| e.to_string())
}

/// The JSON form of `msg`, whose type `desc` describes.
pub fn encode<T: prost::Message>(desc: &MessageDescriptor, msg: &T) -> Result<Value, String> {
    let mut dynamic = DynamicMessage::new(desc.clone());
    dynamic.transcode_from(msg).map_err(|e| e.to_string())?;
    let mut json = dynamic
        .serialize_with_options(
            serde_json::value::Serializer,
            &SerializeOptions::new().use_proto_field_name(true),
        )
        .map_err(|e| e.to_string())?;
    fill_defaults(desc, &mut json);
    Ok(json)
}

/// A `sagaflow.v1.Workflow` (steps included) in the same JSON form as the
/// HTTP API's answers: what a webhook body carries as its `workflow`.
pub fn workflow(w: &crate::v1::Workflow) -> Result<Value, String> {
    let desc = pool()
        .get_message_by_name(&format!("{PACKAGE}.Workflow"))
        .ok_or_else(|| format!("{PACKAGE}.Workflow is not in the descriptor set"))?;
    encode(&desc, w)
}

/// Whether `desc` is a well-known type with a JSON form of its own
/// (Timestamp, Struct, Value …): those are not objects of fields.
pub fn is_well_known(desc: &MessageDescriptor) -> bool {
    desc.package_name() == "google.protobuf"
}

/// Adds the fields the standard mapping leaves out when they hold their
/// default value, except unset messages.
fn fill_defaults(desc: &MessageDescriptor, json: &mut Value) {
    if is_well_known(desc) {
        return;
    }
    let Value::Object(obj) = json else { return };
    for field in desc.fields() {
        let kind = field.kind();
        match obj.get_mut(field.name()) {
            Some(value) => {
                if let Kind::Message(m) = &kind {
                    if field.is_map() {
                        continue; // string → string maps only, in this API
                    }
                    match value {
                        Value::Array(items) => {
                            items.iter_mut().for_each(|i| fill_defaults(m, i));
                        }
                        other => fill_defaults(m, other),
                    }
                }
            }
            None => {
                let default = if field.is_list() {
                    Value::Array(Vec::new())
                } else if field.is_map() {
                    Value::Object(Default::default())
                } else {
                    match kind {
                        Kind::Message(_) => continue,
                        Kind::Enum(e) => Value::String(e.default_value().name().to_owned()),
                        Kind::Bool => Value::Bool(false),
                        Kind::String | Kind::Bytes => Value::String(String::new()),
                        Kind::Int64
                        | Kind::Uint64
                        | Kind::Sint64
                        | Kind::Fixed64
                        | Kind::Sfixed64 => Value::String("0".into()),
                        _ => Value::from(0),
                    }
                };
                obj.insert(field.name().to_owned(), default);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_workflow_uses_field_names_enum_names_and_rfc3339() {
        let w = crate::v1::Workflow {
            id: "r1".into(),
            state: crate::v1::WorkflowState::Completed as i32,
            created_at: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: 0,
            }),
            ..Default::default()
        };
        let j = workflow(&w).unwrap();
        assert_eq!(j["id"], "r1");
        assert_eq!(j["state"], "WORKFLOW_STATE_COMPLETED");
        assert_eq!(j["created_at"], "1970-01-01T00:00:00Z");
        assert!(j["steps"].is_array());
    }
    use crate::v1 as pb;
    use serde_json::json;

    fn desc(name: &str) -> MessageDescriptor {
        pool()
            .get_message_by_name(&format!("{PACKAGE}.{name}"))
            .unwrap()
    }

    #[test]
    fn requests_decode_with_snake_case_names_and_refuse_unknown_fields() {
        let d = desc("StartWorkflowRequest");
        let r: pb::StartWorkflowRequest = decode(
            &d,
            &json!({"workflow_name": "demo", "input": {"a": [1, {"b": null}]}}),
        )
        .unwrap();
        assert_eq!(r.workflow_name, "demo");
        assert_eq!(r.input.unwrap().fields.len(), 1);
        let e = decode::<pb::StartWorkflowRequest>(&d, &json!({"nope": 1})).unwrap_err();
        assert!(e.contains("nope"), "{e}");
        let l: pb::ListWorkflowsRequest = decode(
            &desc("ListWorkflowsRequest"),
            &json!({"states": ["WORKFLOW_STATE_FAILED"], "created_after": "2026-01-02T03:04:05Z"}),
        )
        .unwrap();
        assert_eq!(l.states, vec![pb::WorkflowState::Failed as i32]);
        assert_eq!(l.created_after.unwrap().seconds, 1_767_323_045);
    }

    #[test]
    fn answers_carry_defaults_enum_names_and_leave_unset_messages_out() {
        let w = pb::StartWorkflowResponse {
            workflow: Some(pb::Workflow {
                state: pb::WorkflowState::Running as i32,
                created_at: Some(prost_types::Timestamp {
                    seconds: 1_767_323_045,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            created: false,
        };
        let j = encode(&desc("StartWorkflowResponse"), &w).unwrap();
        assert_eq!(j["created"], json!(false));
        assert_eq!(j["workflow"]["state"], json!("WORKFLOW_STATE_RUNNING"));
        assert_eq!(j["workflow"]["created_at"], json!("2026-01-02T03:04:05Z"));
        assert_eq!(j["workflow"]["steps"], json!([]));
        assert_eq!(j["workflow"]["search_attributes"], json!({}));
        assert!(j["workflow"].get("finished_at").is_none());
        let p = encode(&desc("Pool"), &pb::Pool::default()).unwrap();
        assert_eq!(p["capacity"], json!("0"));
    }
}
