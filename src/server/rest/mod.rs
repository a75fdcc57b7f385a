//! The JSON/HTTP API (`/v1/…` on the HTTP address): each route translates
//! an HTTP request into the gRPC request of its method, calls the service
//! implementation the gRPC server serves, and translates the answer or the
//! status back. The routes are in `routes.rs`, the request translation in
//! `call.rs`, errors in `error.rs`, the watch as Server-Sent Events in
//! `sse.rs` and the OpenAPI document in `openapi.rs`.

mod call;
mod error;
pub mod openapi;
mod routes;
mod sse;

pub use call::IDEMPOTENCY_HEADER;
pub use error::http_status;
pub use routes::{Route, routes};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use tonic::Status;
use tracing::Instrument;

use crate::server::apis::Apis;
use call::Invocation;
use routes::{Call, match_path};

/// The API's routes and `GET /v1/openapi.json`.
pub fn router(apis: Apis) -> Router {
    Router::new()
        .route(
            "/v1/openapi.json",
            get(|| async { axum::Json(openapi::document().clone()) }),
        )
        .route("/v1/{*rest}", any(dispatch))
        .with_state(apis)
}

async fn dispatch(
    State(apis): State<Apis>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut allowed = Vec::new();
    let mut found = None;
    for route in routes() {
        if let Some(params) = match_path(route.path, uri.path()) {
            if route.method == method {
                found = Some((route, params));
                break;
            }
            allowed.push(route.method.clone());
        }
    }
    let Some((route, params)) = found else {
        return error::no_route(&allowed);
    };
    let (rpc, call) = route.answered_by(uri.query());
    let span = tracing::info_span!("http_rpc", rpc, tenant = tracing::field::Empty);
    let limit = apis.workflows.options().max_request_bytes();
    async move {
        let body = match axum::body::to_bytes(body, limit).await {
            Ok(b) => b,
            Err(_) => {
                let mut resp = error::error_response(&Status::resource_exhausted(format!(
                    "the request body is larger than {limit} bytes"
                )));
                *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                return resp;
            }
        };
        match answer(
            &apis,
            route,
            (rpc, call),
            params,
            &headers,
            uri.query(),
            &body,
        )
        .await
        {
            Ok(resp) => resp,
            Err(status) => error::error_response(&status),
        }
    }
    .instrument(span)
    .await
}

async fn answer(
    apis: &Apis,
    route: &Route,
    (rpc, call): (&'static str, Call),
    params: Vec<(String, String)>,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<Response, Status> {
    let method = sagaflow_proto::mapping::method(rpc)
        .ok_or_else(|| Status::unimplemented(format!("{rpc} is not in the API")))?;
    let inv = Invocation::new(route, method, params, headers, query, body)?;
    match call {
        Call::Unary(f) => {
            let json = f(apis, inv).await?;
            // A started run: 201 when created, 200 when the key matched.
            let status = if json.get("created") == Some(&serde_json::Value::Bool(true)) {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, axum::Json(json)).into_response())
        }
        Call::Watch => sse::watch(apis, inv, headers).await,
    }
}
