//! `GET /v1/workflows/{id}/events`: WatchWorkflow as Server-Sent Events, one
//! WorkflowEvent JSON per `data:` line with the event's sequence as its
//! `id:`; `Last-Event-ID` resumes after that event. A failure after the
//! stream opened is one `event: error` with the error JSON, and the end.

use std::convert::Infallible;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use sagaflow_proto::mapping;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::workflow_service_server::WorkflowService;
use tonic::Status;

use super::call::Invocation;
use super::error::error_json;
use crate::server::apis::Apis;

/// The header a reconnecting client sends with the last id it saw.
const LAST_EVENT_ID: &str = "last-event-id";

pub(super) async fn watch(
    apis: &Apis,
    inv: Invocation,
    headers: &HeaderMap,
) -> Result<Response, Status> {
    let after = match headers.get(LAST_EVENT_ID) {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                Status::invalid_argument(
                    "Last-Event-ID must be the sequence number of an event (the id: of the stream)",
                )
            })?,
    };
    let output = inv.method.output();
    let request = inv.decode::<pb::WatchWorkflowRequest>()?;
    let stream = apis.workflows.watch_workflow(request).await?.into_inner();
    let events = stream
        .filter(move |item| {
            let keep = !matches!(item, Ok(e) if e.sequence <= after);
            async move { keep }
        })
        .map(move |item| {
            let event = match item.and_then(|e| {
                mapping::encode(&output, &e)
                    .map(|json| (e.sequence, json))
                    .map_err(|m| Status::internal(format!("event could not be written: {m}")))
            }) {
                Ok((seq, json)) => Event::default().id(seq.to_string()).data(json.to_string()),
                Err(status) => Event::default()
                    .event("error")
                    .data(error_json(&status).to_string()),
            };
            Ok::<_, Infallible>(event)
        });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
