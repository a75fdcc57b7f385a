//! The proto3 JSON mapping of any `sagaflow.v1` message, read through the
//! descriptor set: the proto's own snake_case field names, enum values by
//! full name, RFC 3339 timestamps, `Struct` as plain JSON. What a webhook
//! body carries as its `workflow`.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

/// Why a message could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum ProtoJsonError {
    #[error("the descriptor set does not decode: {0}")]
    Descriptors(String),
    #[error("message {0} is not in the descriptor set")]
    UnknownMessage(String),
    #[error("cannot map {name}: {message}")]
    Mapping { name: String, message: String },
}

fn pool() -> Result<&'static DescriptorPool, ProtoJsonError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| ProtoJsonError::Descriptors(e.clone()))
}

/// `msg` in the proto3 JSON mapping, with every field present (defaults
/// included) so receivers need not know proto3's omissions.
pub fn to_json<M: prost::Message>(
    msg: &M,
    full_name: &str,
) -> Result<serde_json::Value, ProtoJsonError> {
    let name = full_name.to_owned();
    let desc = pool()?
        .get_message_by_name(&name)
        .ok_or_else(|| ProtoJsonError::UnknownMessage(name.clone()))?;
    let mapping = |e: &dyn std::fmt::Display| ProtoJsonError::Mapping {
        name: name.clone(),
        message: e.to_string(),
    };
    let dynamic =
        DynamicMessage::decode(desc, msg.encode_to_vec().as_slice()).map_err(|e| mapping(&e))?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false)
        .stringify_64_bit_integers(true);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| mapping(&e))
}

/// A `sagaflow.v1.Workflow` (steps included) in the proto3 JSON mapping.
pub fn workflow(w: &crate::v1::Workflow) -> Result<serde_json::Value, ProtoJsonError> {
    to_json(w, "sagaflow.v1.Workflow")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1;

    #[test]
    fn workflow_uses_field_names_enum_names_and_rfc3339() {
        let w = v1::Workflow {
            id: "r1".into(),
            state: v1::WorkflowState::Completed as i32,
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
}
