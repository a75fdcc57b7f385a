//! The run page: the run's header, its steps as a timeline (state,
//! attempts, errors, outputs, what a waiting step waits for and when it
//! wakes), its history, the actions the role may take, and live updates:
//! while the run has not ended the page listens to `/events` (the API's
//! WatchWorkflow as Server-Sent Events) and reloads `/live` on each event;
//! when the run stops for an operator (FAILED, COMPENSATION_FAILED) the
//! whole page reloads so that its actions fit the new state.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use futures::StreamExt;
use maud::{Markup, html};
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::workflow_service_server::WorkflowService;

use super::UiState;
use super::actions;
use super::layout::{self, badge, json, run_state, step_state, terminal, time};
use super::session::Session;

async fn load(
    state: &UiState,
    session: &Session,
    id: &str,
) -> Result<(pb::Workflow, Vec<pb::WorkflowEvent>), tonic::Status> {
    let api = &state.apis.workflows;
    let run = api
        .get_workflow(session.request(pb::GetWorkflowRequest { id: id.into() }))
        .await?
        .into_inner();
    let history = api
        .get_workflow_history(session.request(pb::GetWorkflowHistoryRequest { id: id.into() }))
        .await?
        .into_inner()
        .events;
    Ok((run, history))
}

/// `GET /ui/runs/{id}`.
pub async fn page(
    State(state): State<UiState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let (run, history) = match load(&state, &session, &id).await {
        Ok(x) => x,
        Err(status) => return layout::status_page(&session, &status),
    };
    let live = !terminal(run.state);
    let body = html! {
        p.crumbs { a href="/ui/runs" { "Runs" } " / " span.mono { (run.id) } }
        @if live {
            div #live-source hidden data-state=(run_state(run.state))
                data-events={ "/ui/runs/" (run.id) "/events" }
                data-fragment={ "/ui/runs/" (run.id) "/live" } {}
        }
        (live_part(&run, &history))
        (actions::panel(&session, &run))
        details.context {
            summary { "Input and context" }
            h3 { "Input" } pre { (json(run.input.as_ref())) }
            h3 { "Context" } pre { (json(run.context.as_ref())) }
        }
    };
    layout::page(
        Some(&session),
        &format!("{} {}", run.workflow_name, run.id),
        "runs",
        body,
    )
}

/// `GET /ui/runs/{id}/live`: the part of the page that follows the run.
pub async fn live(
    State(state): State<UiState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    match load(&state, &session, &id).await {
        Ok((run, history)) => Html(live_part(&run, &history).into_string()).into_response(),
        Err(status) => layout::status_fragment(&status),
    }
}

fn live_part(run: &pb::Workflow, history: &[pb::WorkflowEvent]) -> Markup {
    let st = run_state(run.state);
    let mut attrs: Vec<_> = run.search_attributes.iter().collect();
    attrs.sort();
    html! {
        div #run-live data-state=(st) {
            h1 { (run.workflow_name) " " span.muted { "v" (run.workflow_version) } " " (badge(st)) }
            dl.facts {
                dt { "Run" } dd.mono { (run.id) }
                @if !run.current_step.is_empty() { dt { "Step" } dd { (run.current_step) } }
                @if !run.idempotency_key.is_empty() { dt { "Idempotency key" } dd { (run.idempotency_key) } }
                @if !attrs.is_empty() {
                    dt { "Search attributes" }
                    dd { @for (k, v) in attrs {
                        a.attr href={ "/ui/runs?search=" (layout::seg(&format!("{k}={v}"))) } { (k) "=" (v) } " "
                    } }
                }
                dt { "Created" } dd { (time(run.created_at.as_ref())) " UTC" }
                dt { "Updated" } dd { (time(run.updated_at.as_ref())) " UTC" }
                @if run.finished_at.is_some() { dt { "Finished" } dd { (time(run.finished_at.as_ref())) " UTC" } }
                @if !run.schedule_id.is_empty() { dt { "Schedule" } dd.mono { (run.schedule_id) } }
            }
            @if !run.error.is_empty() { p.error role="alert" { (run.error) } }
            h2 { "Steps" }
            ol.timeline {
                @for s in &run.steps { (step(s)) }
            }
            h2 { "History" }
            div.scroll {
                table.history {
                    thead { tr { th { "#" } th { "At (UTC)" } th { "Event" } th { "Step" } th { "Attempt" } th { "Run state" } th { "Message" } th { "By" } } }
                    tbody {
                        @for e in history {
                            tr {
                                td { (e.sequence) }
                                td.small { (time(e.at.as_ref())) }
                                td { (e.r#type) }
                                td { (e.step) }
                                td { @if e.attempt > 0 { (e.attempt) } }
                                td { (run_state(e.workflow_state)) }
                                td.msg { (e.message) }
                                td { (e.actor) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn step(s: &pb::Step) -> Markup {
    let st = step_state(s.state);
    html! {
        li class={ "step s-" (st.to_ascii_lowercase()) } data-step=(s.name) {
            div.step-head {
                strong { (s.name) }
                " " (badge(st))
                @if !s.required { " " span.muted { "optional" } }
            }
            div.small.muted {
                (s.handler)
                @if !s.compensation_handler.is_empty() { " · undo " (s.compensation_handler) }
                " · attempts " (s.attempts)
                @if s.compensation_attempts > 0 { " · undo attempts " (s.compensation_attempts) }
                @if s.started_at.is_some() { " · started " (time(s.started_at.as_ref())) }
                @if s.finished_at.is_some() { " · finished " (time(s.finished_at.as_ref())) }
            }
            @if !s.waiting_for.is_empty() { div.wait { "Waiting for signal " code { (s.waiting_for) } } }
            @if s.wake_at.is_some() { div.wait { "Wakes at " (time(s.wake_at.as_ref())) " UTC" } }
            @if s.next_attempt_at.is_some() { div.wait { "Next attempt at " (time(s.next_attempt_at.as_ref())) " UTC" } }
            @if !s.last_error.is_empty() { div.error { (s.last_error) } }
            @if s.output.as_ref().is_some_and(|o| !o.fields.is_empty()) {
                details { summary { "Output" } pre { (json(s.output.as_ref())) } }
            }
        }
    }
}

/// `GET /ui/runs/{id}/events`: one `change` event per event of the run
/// (from the API's WatchWorkflow), then `end` when the run has ended.
pub async fn events(
    State(state): State<UiState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let stream = match state
        .apis
        .workflows
        .watch_workflow(session.request(pb::WatchWorkflowRequest { id }))
        .await
    {
        Ok(s) => s.into_inner(),
        Err(status) => return layout::status_fragment(&status),
    };
    let changes = stream.map(|item| {
        Ok::<_, Infallible>(match item {
            Ok(e) => Event::default()
                .event("change")
                .id(e.sequence.to_string())
                .data(e.r#type),
            Err(status) => Event::default().event("failed").data(status.message()),
        })
    });
    let end = futures::stream::once(async { Ok(Event::default().event("end").data("end")) });
    Sse::new(changes.chain(end))
        .keep_alive(KeepAlive::default())
        .into_response()
}
