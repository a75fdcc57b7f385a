//! The console's page shell (head, navigation, the signed-in principal and
//! sign-out), error pages from API statuses, and the formatting every page
//! shares: state names and badges, times, JSON documents.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use prost_types::Timestamp;
use sagaflow_proto::v1 as pb;
use tonic::Status;

use super::session::{CSRF_FIELD, Session};

const NAV: &[(&str, &str, &str)] = &[
    ("runs", "/ui/runs", "Runs"),
    ("schedules", "/ui/schedules", "Schedules"),
    ("pools", "/ui/pools", "Pools"),
    ("subscribers", "/ui/subscribers", "Subscribers"),
];

/// A whole page: `nav` names the current section.
pub fn page(session: Option<&Session>, title: &str, nav: &str, body: Markup) -> Response {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
                title { (title) " · sagaflow" }
                link rel="stylesheet" href="/ui/assets/console-1.css";
                script src="/ui/assets/htmx-2.0.11.min.js" defer {}
                script src="/ui/assets/console-1.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui/runs" { "sagaflow" }
                    @if let Some(s) = session {
                        nav {
                            @for (key, href, label) in NAV {
                                a href=(href) aria-current=[(*key == nav).then_some("page")] { (label) }
                            }
                        }
                        div.who {
                            span { (s.principal.name) }
                            " "
                            span.role { (s.principal.role.as_str()) }
                            form.inline method="post" action="/ui/logout" {
                                input type="hidden" name=(CSRF_FIELD) value=(s.csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    Html(doc.into_string()).into_response()
}

/// A page with one message and the given status.
pub fn message(session: Option<&Session>, status: StatusCode, title: &str, text: &str) -> Response {
    let body = html! {
        h1 { (title) }
        p.error role="alert" { (text) }
        p { a href="/ui/runs" { "Back to the runs" } }
    };
    let mut resp = page(session, title, "", body);
    *resp.status_mut() = status;
    resp
}

/// The page of a refused or failed API call: its HTTP status (as the
/// JSON/HTTP API answers it), code and message. htmx fragments get the
/// message alone.
pub fn status_page(session: &Session, status: &Status) -> Response {
    let http = crate::server::rest::http_status(status.code());
    let code = sagaflow_engine::api::audit::code_name(status.code());
    message(
        Some(session),
        http,
        &format!("{} ({code})", http.canonical_reason().unwrap_or("Error")),
        status.message(),
    )
}

/// An error as a fragment for htmx targets.
pub fn status_fragment(status: &Status) -> Response {
    let http = crate::server::rest::http_status(status.code());
    let code = sagaflow_engine::api::audit::code_name(status.code());
    (
        http,
        Html(html! { p.error role="alert" { (code) ": " (status.message()) } }.into_string()),
    )
        .into_response()
}

/// `WORKFLOW_STATE_FAILED` → `FAILED`.
pub fn run_state(s: i32) -> &'static str {
    pb::WorkflowState::try_from(s)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN")
        .trim_start_matches("WORKFLOW_STATE_")
}

/// `STEP_STATE_SUCCEEDED` → `SUCCEEDED`.
pub fn step_state(s: i32) -> &'static str {
    pb::StepState::try_from(s)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN")
        .trim_start_matches("STEP_STATE_")
}

/// The run states in the order operators read them.
pub const RUN_STATES: &[pb::WorkflowState] = &[
    pb::WorkflowState::Pending,
    pb::WorkflowState::Running,
    pb::WorkflowState::Failed,
    pb::WorkflowState::Compensating,
    pb::WorkflowState::CompensationFailed,
    pb::WorkflowState::Completed,
    pb::WorkflowState::Compensated,
    pb::WorkflowState::Cancelled,
    pb::WorkflowState::Terminated,
];

/// Whether a run in `s` has ended for good.
pub fn terminal(s: i32) -> bool {
    matches!(
        pb::WorkflowState::try_from(s),
        Ok(pb::WorkflowState::Completed
            | pb::WorkflowState::Compensated
            | pb::WorkflowState::Cancelled
            | pb::WorkflowState::Terminated)
    )
}

/// A state as a badge: its class is the state in lower case.
pub fn badge(state: &str) -> Markup {
    html! { span class={ "badge s-" (state.to_ascii_lowercase()) } { (state) } }
}

/// A time in UTC, to the second; empty when unset.
pub fn time(t: Option<&Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// A JSON document, indented; empty when unset.
pub fn json(s: Option<&prost_types::Struct>) -> String {
    s.and_then(|s| sagaflow_proto::json::struct_to_json(s).ok())
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_default()
}

/// A form field's JSON object (empty: none); the error says what to fix.
pub fn json_field(name: &str, text: &str) -> Result<Option<prost_types::Struct>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(Some(sagaflow_proto::json::json_to_struct(&v))),
        Ok(_) => Err(format!(
            "{name} must be a JSON object, e.g. {{\"demo\": {{}}}}"
        )),
        Err(e) => Err(format!("{name} is not valid JSON: {e}")),
    }
}

/// What a path segment or query value keeps as it is (RFC 3986's unreserved).
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A path segment or query value, percent-encoded.
pub fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}
