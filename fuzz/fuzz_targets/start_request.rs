//! Start requests as they arrive: any bytes are decoded as a
//! `StartWorkflowRequest`; its input goes through the API's conversion
//! (NUL characters, non-finite numbers, nesting) and the input schemas of
//! the repository's workflows, the way the server checks it, without a
//! panic. An accepted input converts back to the same JSON.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sagaflow_proto::json::{json_to_struct, struct_to_json};
use sagaflow_engine::definition::parse;
use sagaflow_proto::v1 as pb;

const WORKFLOWS: &[(&str, &str)] = &[
    ("demo_saga", include_str!("../../workflows/demo_saga.v1.toml")),
    (
        "provision_subscriber",
        include_str!("../../workflows/provision_subscriber.v1.toml"),
    ),
];

fn validators() -> &'static Vec<jsonschema::Validator> {
    static V: OnceLock<Vec<jsonschema::Validator>> = OnceLock::new();
    V.get_or_init(|| {
        WORKFLOWS
            .iter()
            .map(|(name, text)| {
                let def = parse(text, name).expect("the repository's workflows parse");
                jsonschema::validator_for(&def.input_schema).expect("their schemas compile")
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = pb::StartWorkflowRequest::decode(data) else {
        return;
    };
    let Some(input) = req.input else {
        return;
    };
    let Ok(json) = struct_to_json(&input) else {
        return;
    };
    for v in validators() {
        // What the engine puts in its INVALID_ARGUMENT message.
        for e in v.iter_errors(&json).take(5) {
            let _ = (e.instance_path().to_string(), e.to_string());
        }
    }
    let again = struct_to_json(&json_to_struct(&json)).expect("an accepted input converts back");
    assert_eq!(again, json);
});
