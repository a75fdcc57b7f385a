//! The OTLP trace exporter: which transport it uses, read from the standard
//! variables. `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else
//! `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` (the default; port 4317) or
//! `http/protobuf` (port 4318; `OTEL_EXPORTER_OTLP_ENDPOINT` gets
//! `/v1/traces` appended, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as
//! is). Any other value stops the start with an error naming the variable.

use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig as _};

use super::TelemetryError;

/// The variables naming the protocol, the first set one wins.
const PROTOCOL_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
];

/// A transport the trace exporter speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (`grpc`).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`http/protobuf`).
    HttpProtobuf,
}

/// The protocol the environment (read through `var`) asks for; an empty
/// variable counts as unset.
pub fn protocol(var: impl Fn(&str) -> Option<String>) -> Result<OtlpProtocol, TelemetryError> {
    let Some((name, value)) = PROTOCOL_VARS
        .into_iter()
        .find_map(|k| var(k).filter(|v| !v.trim().is_empty()).map(|v| (k, v)))
    else {
        return Ok(OtlpProtocol::Grpc);
    };
    match value.trim() {
        "grpc" => Ok(OtlpProtocol::Grpc),
        "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
        _ => Err(TelemetryError::Protocol { var: name, value }),
    }
}

/// The span exporter for `protocol`; its endpoint, headers, timeout and
/// compression come from the standard variables.
pub fn exporter(protocol: OtlpProtocol) -> Result<SpanExporter, TelemetryError> {
    let builder = SpanExporter::builder();
    Ok(match protocol {
        OtlpProtocol::Grpc => builder.with_tonic().build()?,
        OtlpProtocol::HttpProtobuf => builder
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn grpc_is_the_default_and_http_protobuf_is_understood() {
        assert_eq!(protocol(env(&[])).unwrap(), OtlpProtocol::Grpc);
        assert_eq!(
            protocol(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "")])).unwrap(),
            OtlpProtocol::Grpc
        );
        assert_eq!(
            protocol(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).unwrap(),
            OtlpProtocol::Grpc
        );
        assert_eq!(
            protocol(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])).unwrap(),
            OtlpProtocol::HttpProtobuf
        );
    }

    #[test]
    fn the_traces_variable_wins() {
        assert_eq!(
            protocol(env(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ]))
            .unwrap(),
            OtlpProtocol::HttpProtobuf
        );
    }

    #[test]
    fn another_protocol_is_refused_with_the_variable_named() {
        let e = protocol(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{e}");
        assert!(e.contains("http/json"), "{e}");
        assert!(e.contains("http/protobuf"), "{e}");
    }
}
