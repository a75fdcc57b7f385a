//! Protobuf Struct and Value ⇄ JSON (the one conversion lives in
//! `sagaflow_proto::json`, re-exported here), and timestamps.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;
use tonic::Status;

pub use sagaflow_proto::json::{
    MAX_DEPTH, json_to_struct, json_to_value, map_to_struct, struct_to_json,
};

pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn from_timestamp(t: &Timestamp) -> Result<DateTime<Utc>, Status> {
    DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
        .ok_or_else(|| Status::invalid_argument("timestamp out of range"))
}
