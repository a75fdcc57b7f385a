//! gRPC status → HTTP error answer: `{"code": "NOT_FOUND", "message": "…"}`
//! with the HTTP status the contract gives each code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sagaflow_engine::api::audit::code_name;
use tonic::{Code, Status};

/// The HTTP status of a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Internal | Code::Unknown | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The error body of `status`.
pub fn error_json(status: &Status) -> serde_json::Value {
    serde_json::json!({"code": code_name(status.code()), "message": status.message()})
}

/// The HTTP answer of a failed call. A `retry-after` in the status's
/// metadata (a rate limit) becomes the `Retry-After` header.
pub fn error_response(status: &Status) -> Response {
    let mut resp = (http_status(status.code()), axum::Json(error_json(status))).into_response();
    if let Some(v) = status
        .metadata()
        .get("retry-after")
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// An answer for what no route takes: NOT_FOUND, or the methods the path
/// takes (405 with `Allow`).
pub fn no_route(allowed: &[axum::http::Method]) -> Response {
    if allowed.is_empty() {
        return error_response(&Status::not_found(
            "no such route; GET /v1/openapi.json lists them",
        ));
    }
    let allow = allowed
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut resp = (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({
            "code": "UNIMPLEMENTED",
            "message": format!("this path takes {allow}"),
        })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&allow) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}
