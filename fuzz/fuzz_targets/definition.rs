//! Workflow definition files: any text goes through parsing, validation
//! against a registry of the built-in handlers and snapshotting without a
//! panic; a definition that passes has a compilable input schema.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sagaflow_engine::definition::{LoadedDefinition, parse, validate};
use sagaflow_engine::handler::Registry;

/// The handlers the repository's workflows name (the seeds of the corpus).
const HANDLERS: &[&str] = &[
    "billing.create_service",
    "billing.delete_service",
    "billing.resume",
    "billing.suspend",
    "cpe.configure",
    "cpe.unconfigure",
    "customer.create",
    "customer.delete",
    "ipam.allocate",
    "ipam.release",
    "ipam.release_subscriber",
    "lifecycle.activate_ipv4",
    "lifecycle.activate_ipv6",
    "lifecycle.resume",
    "lifecycle.revoke_ipv4",
    "lifecycle.revoke_ipv6",
    "lifecycle.suspend",
    "maintenance.capacity_check",
    "maintenance.lifecycle_cleanup",
    "maintenance.lifecycle_metrics",
    "maintenance.report_leaks",
    "maintenance.reservation_expiry",
    "network_profile.archive",
    "network_profile.create",
    "network_profile.delete",
    "onu.activate",
    "onu.await_online",
    "onu.deactivate",
    "radius.coa",
    "radius.create_account",
    "radius.delete_account",
    "radius.disconnect",
    "radius.resume",
    "radius.suspend",
    "subscriber.archive",
    "subscriber.create",
    "subscriber.delete",
    "subscriber.mark_active",
    "subscriber.mark_suspended",
    "subscriber.verify",
];

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| {
        let mut r = Registry::new().with_builtins();
        for name in HANDLERS {
            r.register_fn(*name, |_| async { Ok(Default::default()) });
        }
        r
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(def) = parse(text, "fuzz.toml") else {
        return;
    };
    if validate(&def, "fuzz.toml", registry()).is_err() {
        return;
    }
    let loaded = LoadedDefinition::new(def, "fuzz.toml");
    let validator = jsonschema::validator_for(&loaded.definition.input_schema)
        .expect("a validated definition has a valid input schema");
    let _ = validator.is_valid(&serde_json::json!({}));
    // The snapshot is what runs are pinned to: it reads back as the same
    // definition.
    let back: sagaflow_engine::definition::WorkflowDefinition =
        serde_json::from_value(loaded.snapshot.clone()).expect("the snapshot reads back");
    assert_eq!(back, loaded.definition);
});
