//! The sagaflow public API, `sagaflow.v1`, generated at build time from
//! `proto/sagaflow/v1/sagaflow.proto`. Generated code is never edited.

/// `sagaflow.v1`: messages, enums, clients and servers.
#[allow(unreachable_pub, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("sagaflow.v1");
}

pub mod codec;
pub mod json;
pub mod mapping;

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sagaflow_descriptor.bin"));
