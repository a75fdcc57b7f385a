//! Schedules: each with its cron, zone, workflow, the next fires and the
//! last run; for admins pause (with a reason), resume and trigger. The
//! ScheduleService is admin-only, so other roles see its refusal.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};
use sagaflow_engine::schedule::CronSpec;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::schedule_service_server::ScheduleService;

use super::UiState;
use super::layout::{self, seg, time};
use super::session::{CSRF_FIELD, Posted, Session};

/// How many coming fires the page shows.
const NEXT_FIRES: usize = 3;

/// `GET /ui/schedules`.
pub async fn page(State(state): State<UiState>, session: Session) -> Response {
    let list = state
        .apis
        .schedules
        .list_schedules(session.request(pb::ListSchedulesRequest {}))
        .await;
    let list = match list {
        Ok(l) => l.into_inner().schedules,
        Err(status) => {
            let mut resp = layout::status_page(&session, &status);
            if status.code() == tonic::Code::PermissionDenied {
                resp = layout::message(
                    Some(&session),
                    axum::http::StatusCode::FORBIDDEN,
                    "Schedules",
                    &format!(
                        "Schedules are managed with the admin role: {}",
                        status.message()
                    ),
                );
            }
            return resp;
        }
    };
    let body = html! {
        h1 { "Schedules" }
        @if list.is_empty() { p.muted { "No schedules." } }
        div.scroll {
            table.schedules {
                thead { tr { th { "Name" } th { "Workflow" } th { "Cron" } th { "State" } th { "Next fires (UTC)" } th { "Last fire" } @if session.can_admin() { th { "Manage" } } } }
                tbody { @for s in &list { (row(&session, s)) } }
            }
        }
    };
    layout::page(Some(&session), "Schedules", "schedules", body)
}

fn next_fires(s: &pb::Schedule) -> Vec<String> {
    let Ok(spec) = CronSpec::parse(&s.cron, &s.timezone) else {
        return vec![time(s.next_fire_at.as_ref())];
    };
    let mut out = Vec::new();
    let mut t = Utc::now();
    if let Some(first) = s
        .next_fire_at
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
    {
        out.push(first.format("%Y-%m-%d %H:%M").to_string());
        t = first;
    }
    while out.len() < NEXT_FIRES {
        match spec.next_after(t) {
            Some(n) => {
                out.push(n.format("%Y-%m-%d %H:%M").to_string());
                t = n;
            }
            None => break,
        }
    }
    out
}

fn row(session: &Session, s: &pb::Schedule) -> Markup {
    let post = |verb: &str, label: &str, extra: Markup| {
        html! {
            form.inline method="post" action={ "/ui/schedules/" (seg(&s.id)) "/" (verb) } {
                input type="hidden" name=(CSRF_FIELD) value=(session.csrf);
                (extra)
                button type="submit" data-verb=(verb) { (label) }
            }
        }
    };
    html! {
        tr data-schedule=(s.name) {
            td { (s.name) }
            td { (s.workflow_name) }
            td.mono { (s.cron) @if !s.timezone.is_empty() { " " span.muted { (s.timezone) } } }
            td { @if s.paused { (layout::badge("PAUSED")) } @else { (layout::badge("ACTIVE")) } }
            td.small { @for f in next_fires(s) { div { (f) } } }
            td.small {
                (time(s.last_fire_at.as_ref()))
                @if !s.last_workflow_id.is_empty() { " " a href={ "/ui/runs/" (s.last_workflow_id) } { "run" } }
            }
            @if session.can_admin() {
                td {
                    @if s.paused { (post("resume", "Resume", html! {})) }
                    @else { (post("pause", "Pause", html! { input name="reason" placeholder="reason" required; })) }
                    " " (post("trigger", "Trigger now", html! {}))
                }
            }
        }
    }
}

/// `POST /ui/schedules/{id}/{verb}`: pause, resume or trigger.
pub async fn act(
    State(state): State<UiState>,
    Path((id, verb)): Path<(String, String)>,
    Posted { session, fields }: Posted,
) -> Response {
    let api = &state.apis.schedules;
    let result = match verb.as_str() {
        "pause" => {
            if fields.get("reason").is_empty() {
                return layout::message(
                    Some(&session),
                    axum::http::StatusCode::BAD_REQUEST,
                    "Check the form",
                    "a reason is required to pause a schedule",
                );
            }
            api.pause_schedule(session.request(pb::PauseScheduleRequest {
                id,
                reason: fields.get("reason").to_owned(),
            }))
            .await
            .map(drop)
        }
        "resume" => api
            .resume_schedule(session.request(pb::ResumeScheduleRequest { id }))
            .await
            .map(drop),
        "trigger" => api
            .trigger_schedule(session.request(pb::TriggerScheduleRequest { id }))
            .await
            .map(drop),
        _ => return (axum::http::StatusCode::NOT_FOUND, "no such action").into_response(),
    };
    match result {
        Ok(()) => Redirect::to("/ui/schedules").into_response(),
        Err(status) => layout::status_page(&session, &status),
    }
}
