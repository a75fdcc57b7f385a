//! Operator actions from the console: retry, compensate, skip, cancel,
//! rewind and signal one run, and retry/compensate/cancel every run of a
//! filter. Each needs a reason and a second, confirming POST; a bulk action
//! shows its dry-run count first. The call is the API's, with the session's
//! token: the API checks the role, audits and refuses as it does for gRPC.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::workflow_service_server::WorkflowService;

use super::UiState;
use super::layout::{self, json_field, seg};
use super::runs::Filter;
use super::session::{CSRF_FIELD, Fields, Posted, Session};

/// The actions of one run, as the form's `action` names them.
const ACTIONS: &[&str] = &["retry", "compensate", "skip", "cancel", "rewind", "signal"];

/// The action forms for `run` that the session's role and the run's state
/// allow showing.
pub fn panel(session: &Session, run: &pb::Workflow) -> Markup {
    let state = pb::WorkflowState::try_from(run.state).unwrap_or_default();
    use pb::WorkflowState as S;
    let failed = matches!(state, S::Failed);
    let stuck = matches!(state, S::Failed | S::CompensationFailed);
    let active = matches!(state, S::Pending | S::Running | S::Failed);
    let waiting: Vec<&str> = run
        .steps
        .iter()
        .filter(|s| s.state == pb::StepState::Waiting as i32 && !s.waiting_for.is_empty())
        .map(|s| s.waiting_for.as_str())
        .collect();
    let failed_step = run
        .steps
        .iter()
        .find(|s| s.state == pb::StepState::Failed as i32)
        .map_or("", |s| s.name.as_str());
    let steps: Vec<&str> = run.steps.iter().map(|s| s.name.as_str()).collect();
    let op = session.can_act();
    let any = (op && (stuck || active)) || !waiting.is_empty();
    if !any {
        return html! {};
    }
    let form = |action: &str, title: &str, fields: Markup| {
        html! {
            details.action {
                summary { (title) }
                form method="post" action={ "/ui/runs/" (run.id) "/action" } {
                    input type="hidden" name=(CSRF_FIELD) value=(session.csrf);
                    input type="hidden" name="action" value=(action);
                    (fields)
                    label.wide { "Reason (kept in the audit trail)" input name="reason" required; }
                    button.primary type="submit" data-action=(action) { "Review " (action) "…" }
                }
            }
        }
    };
    let step_select = |name: &str, label: &str, preset: &str, any: bool| {
        html! {
            label { (label)
                select name=(name) {
                    @if any { option value="" { "the failed step" } }
                    @for s in &steps { option value=(s) selected[*s == preset] { (s) } }
                }
            }
        }
    };
    html! {
        section.actions #actions {
            h2 { "Actions" }
            @if op && stuck {
                (form("retry", "Retry", html! {
                    (step_select("from_step", "From step", "", true))
                    label.wide { "Context patch (JSON object, optional)" textarea name="patch" rows="2" placeholder=r#"{"demo": {}}"# {} }
                }))
            }
            @if op && failed {
                (form("compensate", "Compensate (undo completed steps)", html! {}))
                (form("skip", "Skip the failed step", html! {
                    input type="hidden" name="step" value=(failed_step);
                    label.wide { "Output of the skipped step (JSON object, optional)" textarea name="output" rows="2" {} }
                }))
            }
            @if op && (failed || !waiting.is_empty()) {
                (form("rewind", "Rewind to a step", html! {
                    (step_select("to_step", "To step", failed_step, false))
                    label.wide { "Context patch (JSON object, optional)" textarea name="patch" rows="2" {} }
                }))
            }
            @if op && active {
                (form("cancel", "Cancel", html! {
                    label.check { input type="checkbox" name="compensate" value="true" checked; " compensate completed steps first" }
                }))
            }
            @for signal in &waiting {
                (form("signal", &format!("Send signal {signal}"), html! {
                    input type="hidden" name="signal_name" value=(signal);
                    label.wide { "Payload (JSON object, optional)" textarea name="payload" rows="2" {} }
                }))
            }
        }
    }
}

/// What a form asks for, in words, for the confirmation page.
fn describe(f: &Fields) -> Vec<(&'static str, String)> {
    let mut out = vec![("Action", f.get("action").to_owned())];
    for (label, name) in [
        ("From step", "from_step"),
        ("Step", "step"),
        ("To step", "to_step"),
        ("Signal", "signal_name"),
        ("Context patch", "patch"),
        ("Output", "output"),
        ("Payload", "payload"),
    ] {
        if !f.get(name).is_empty() {
            out.push((label, f.get(name).to_owned()));
        }
    }
    if f.get("action") == "cancel" {
        let c = if f.get("compensate") == "true" {
            "compensate completed steps, end CANCELLED"
        } else {
            "no compensation, end TERMINATED"
        };
        out.push(("Cancel", c.to_owned()));
    }
    out.push(("Reason", f.get("reason").to_owned()));
    out
}

/// The confirmation page: what will be done, and the same form again with
/// `confirm=yes`.
fn confirm_page(
    session: &Session,
    title: &str,
    action_url: &str,
    back: &str,
    facts: &[(&'static str, String)],
    extra: Markup,
    f: &Fields,
) -> Response {
    let body = html! {
        h1 { (title) }
        dl.facts { @for (k, v) in facts { dt { (k) } dd { pre.inline { (v) } } } }
        (extra)
        form method="post" action=(action_url) {
            @for (k, v) in f.pairs() {
                @if k != "confirm" && k != CSRF_FIELD { input type="hidden" name=(k) value=(v); }
            }
            input type="hidden" name=(CSRF_FIELD) value=(session.csrf);
            input type="hidden" name="confirm" value="yes";
            button.primary.danger #confirm type="submit" { "Confirm" }
            " "
            a.button href=(back) { "Back" }
        }
    };
    layout::page(Some(session), title, "runs", body)
}

fn bad_form(session: &Session, text: &str) -> Response {
    layout::message(
        Some(session),
        StatusCode::BAD_REQUEST,
        "Check the form",
        text,
    )
}

/// `POST /ui/runs/{id}/action`.
pub async fn act(
    State(state): State<UiState>,
    Path(id): Path<String>,
    Posted { session, fields: f }: Posted,
) -> Response {
    let action = f.get("action");
    if !ACTIONS.contains(&action) {
        return bad_form(&session, &format!("unknown action {action:?}"));
    }
    if f.get("reason").is_empty() {
        return bad_form(
            &session,
            "a reason is required: say why, for the audit trail",
        );
    }
    let json = |name: &str, label: &str| json_field(label, f.get(name));
    let (patch, output, payload) = match (
        json("patch", "the context patch"),
        json("output", "the output"),
        json("payload", "the payload"),
    ) {
        (Ok(p), Ok(o), Ok(l)) => (p, o, l),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return bad_form(&session, &e),
    };
    let back = format!("/ui/runs/{}", seg(&id));
    if f.get("confirm") != "yes" {
        let title = format!("Confirm {action} of run {id}");
        let url = format!("{back}/action");
        return confirm_page(&session, &title, &url, &back, &describe(&f), html! {}, &f);
    }
    let api = &state.apis.workflows;
    let reason = f.get("reason").to_owned();
    let result = match action {
        "retry" => api
            .retry_workflow(session.request(pb::RetryWorkflowRequest {
                id: id.clone(),
                from_step: f.get("from_step").into(),
                context_patch: patch,
                reason,
            }))
            .await
            .map(drop),
        "compensate" => api
            .compensate_workflow(session.request(pb::CompensateWorkflowRequest {
                id: id.clone(),
                reason,
            }))
            .await
            .map(drop),
        "skip" => api
            .skip_step(session.request(pb::SkipStepRequest {
                id: id.clone(),
                step: f.get("step").into(),
                output,
                reason,
            }))
            .await
            .map(drop),
        "cancel" => api
            .cancel_workflow(session.request(pb::CancelWorkflowRequest {
                id: id.clone(),
                compensate: f.get("compensate") == "true",
                reason,
            }))
            .await
            .map(drop),
        "rewind" => api
            .rewind_workflow(session.request(pb::RewindWorkflowRequest {
                id: id.clone(),
                to_step: f.get("to_step").into(),
                context_patch: patch,
                reason,
            }))
            .await
            .map(drop),
        _ => api
            .signal_workflow(session.request(pb::SignalWorkflowRequest {
                id: id.clone(),
                signal_name: f.get("signal_name").into(),
                payload,
                idempotency_key: String::new(),
            }))
            .await
            .map(drop),
    };
    match result {
        Ok(()) => Redirect::to(&back).into_response(),
        Err(status) => layout::status_page(&session, &status),
    }
}

/// `POST /ui/bulk`: first the dry run (the count and the runs), then, with
/// `confirm=yes`, the action on every run of the filter.
pub async fn bulk(State(state): State<UiState>, Posted { session, fields: f }: Posted) -> Response {
    let action = match f.get("action") {
        "retry" => pb::BulkAction::Retry,
        "compensate" => pb::BulkAction::Compensate,
        "cancel" => pb::BulkAction::Cancel,
        other => return bad_form(&session, &format!("unknown bulk action {other:?}")),
    };
    if f.get("reason").is_empty() {
        return bad_form(
            &session,
            "a reason is required: say why, for the audit trail",
        );
    }
    let patch = match json_field("the context patch", f.get("patch")) {
        Ok(p) => p,
        Err(e) => return bad_form(&session, &e),
    };
    let filter = Filter::from_pairs(f.pairs());
    let mut list = match filter.request() {
        Ok(r) => r,
        Err(e) => return bad_form(&session, &e),
    };
    list.page_size = 0;
    list.page_token.clear();
    let confirmed = f.get("confirm") == "yes";
    let answer = state
        .apis
        .workflows
        .bulk_operate(session.request(pb::BulkOperateRequest {
            filter: Some(list),
            action: action as i32,
            dry_run: !confirmed,
            max_runs: 0,
            reason: f.get("reason").to_owned(),
            context_patch: patch,
        }))
        .await;
    let answer = match answer {
        Ok(a) => a.into_inner(),
        Err(status) => return layout::status_page(&session, &status),
    };
    let back = format!("/ui/runs?{}", filter.query());
    let verb = f.get("action");
    let runs = html! {
        ul.ids {
            @for id in answer.workflow_ids.iter().take(50) {
                li { a.mono href={ "/ui/runs/" (id) } { (id) } }
            }
            @if answer.workflow_ids.len() > 50 { li.muted { "and " (answer.workflow_ids.len() - 50) " more" } }
        }
        @if !answer.refused.is_empty() {
            h2 { "Refused" }
            table.refused {
                thead { tr { th { "Run" } th { "Why" } } }
                tbody { @for r in &answer.refused {
                    tr { td { a.mono href={ "/ui/runs/" (r.workflow_id) } { (r.workflow_id) } } td { (r.reason) } }
                } }
            }
        }
    };
    if !confirmed {
        let mut facts = vec![("Action", verb.to_owned())];
        for (k, v) in filter.hidden_pairs() {
            facts.push((k, v));
        }
        if !f.get("patch").is_empty() {
            facts.push(("Context patch", f.get("patch").to_owned()));
        }
        facts.push(("Reason", f.get("reason").to_owned()));
        facts.push(("Runs matched (dry run)", answer.matched.to_string()));
        let title = format!("Confirm bulk {verb} of {} runs", answer.matched);
        let extra = html! {
            p #dry-run data-matched=(answer.matched) {
                "Dry run: " strong { (answer.matched) } " runs match; nothing has changed yet."
            }
            (runs)
        };
        return confirm_page(&session, &title, "/ui/bulk", &back, &facts, extra, &f);
    }
    let body = html! {
        h1 { "Bulk " (verb) " done" }
        p #bulk-result data-applied=(answer.applied) {
            strong { (answer.applied) } " of " (answer.matched) " runs: " (verb) " applied; "
            (answer.refused.len()) " refused."
        }
        (runs)
        p { a.button href=(back) { "Back to the runs" } }
    };
    layout::page(Some(&session), "Bulk action", "runs", body)
}
