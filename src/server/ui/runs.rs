//! The runs list: filters (workflow, state, failed step, search attributes,
//! idempotency key, created-time window), keyset pages, counts by state
//! (loaded after the page, one bounded ListWorkflows per state), and for
//! operators the bulk-action form on the current filter.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use chrono::{NaiveDateTime, TimeZone, Utc};
use maud::{Markup, html};
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::workflow_service_server::WorkflowService;

use super::UiState;
use super::layout::{self, RUN_STATES, badge, run_state, seg, time};
use super::session::{CSRF_FIELD, Session};

/// Runs per page.
const PAGE: u32 = 25;
/// Counts by state stop at this many (shown as "500+").
const COUNT_CAP: u32 = 500;

/// The list's filter, as the query string carries it.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub workflow: String,
    pub states: Vec<String>,
    pub failed_step: String,
    /// `name=value` pairs separated by spaces or commas.
    pub search: String,
    pub key: String,
    /// `YYYY-MM-DDTHH:MM`, UTC.
    pub from: String,
    pub to: String,
    pub page: String,
}

impl Filter {
    /// The filter of form or query `pairs`.
    pub fn from_pairs(pairs: &[(String, String)]) -> Self {
        let mut f = Self::default();
        for (k, v) in pairs {
            let v = v.trim().to_owned();
            match k.as_str() {
                "workflow" => f.workflow = v,
                "state" if !v.is_empty() => f.states.push(v),
                "failed_step" => f.failed_step = v,
                "search" => f.search = v,
                "key" => f.key = v,
                "from" => f.from = v,
                "to" => f.to = v,
                "page" => f.page = v,
                _ => {}
            }
        }
        f
    }

    fn from_query(q: Option<&str>) -> Self {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(q.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Self::from_pairs(&pairs)
    }

    /// The ListWorkflows request; the error says which field to fix.
    pub fn request(&self) -> Result<pb::ListWorkflowsRequest, String> {
        let mut states = Vec::new();
        for s in &self.states {
            let state = pb::WorkflowState::from_str_name(&format!("WORKFLOW_STATE_{s}"))
                .filter(|s| *s != pb::WorkflowState::Unspecified)
                .ok_or_else(|| format!("unknown state {s:?}"))?;
            states.push(state as i32);
        }
        let mut search = std::collections::HashMap::new();
        for pair in self
            .search
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                format!(
                    "search: write name=value pairs, e.g. subscriber_id=sub-1001 (not {pair:?})"
                )
            })?;
            search.insert(k.to_owned(), v.to_owned());
        }
        Ok(pb::ListWorkflowsRequest {
            workflow_name: self.workflow.clone(),
            states,
            created_after: when("from", &self.from)?,
            created_before: when("to", &self.to)?,
            page_size: PAGE,
            page_token: self.page.clone(),
            idempotency_key: self.key.clone(),
            failed_step: self.failed_step.clone(),
            search,
            ..Default::default()
        })
    }

    /// The filter as a query string (without the page).
    pub fn query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.hidden_pairs() {
            q.append_pair(k, &v);
        }
        q.finish()
    }

    /// The filter's non-empty fields (without the page).
    pub fn hidden_pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (k, v) in [
            ("workflow", &self.workflow),
            ("failed_step", &self.failed_step),
            ("search", &self.search),
            ("key", &self.key),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.is_empty() {
                out.push((k, v.clone()));
            }
        }
        for s in &self.states {
            out.push(("state", s.clone()));
        }
        out
    }

    /// The filter as hidden form fields.
    pub fn hidden(&self) -> Markup {
        html! { @for (k, v) in self.hidden_pairs() { input type="hidden" name=(k) value=(v); } }
    }
}

fn when(field: &str, text: &str) -> Result<Option<prost_types::Timestamp>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let t = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| format!("{field}: write a UTC time as YYYY-MM-DDTHH:MM, not {text:?}"))?;
    let t = Utc.from_utc_datetime(&t);
    Ok(Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }))
}

/// `GET /ui/runs`: the whole page; an htmx request gets the results alone
/// (and the address bar follows the filter).
pub async fn page(
    State(state): State<UiState>,
    session: Session,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let filter = Filter::from_query(q.as_deref());
    let results = results(&state, &session, &filter).await;
    if headers.contains_key("hx-request") && !headers.contains_key("hx-boosted") {
        let url = format!("/ui/runs?{}", filter.query());
        let mut resp = Html(results.into_string()).into_response();
        if let Ok(v) = url.parse() {
            resp.headers_mut().insert("hx-push-url", v);
        }
        return resp;
    }
    let defs = state
        .apis
        .workflows
        .list_workflow_definitions(session.request(pb::ListWorkflowDefinitionsRequest {}))
        .await
        .map(|r| r.into_inner().definitions)
        .unwrap_or_default();
    let body = html! {
        h1 { "Runs" }
        (filter_form(&filter, &defs))
        div #results { (results) }
    };
    layout::page(Some(&session), "Runs", "runs", body)
}

fn filter_form(f: &Filter, defs: &[pb::WorkflowDefinition]) -> Markup {
    let mut names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    names.dedup();
    let mut steps: Vec<&str> = defs
        .iter()
        .flat_map(|d| d.steps.iter().map(|s| s.name.as_str()))
        .collect();
    steps.sort_unstable();
    steps.dedup();
    let mut attrs: Vec<&str> = defs
        .iter()
        .flat_map(|d| d.search_attributes.iter().map(String::as_str))
        .collect();
    attrs.sort_unstable();
    attrs.dedup();
    let hint = if attrs.is_empty() {
        "name=value".to_owned()
    } else {
        format!("{}=…", attrs.join("=…, "))
    };
    html! {
        form.filters #filters method="get" action="/ui/runs"
            hx-get="/ui/runs" hx-target="#results" hx-trigger="submit, change" {
            label { "Workflow"
                select name="workflow" {
                    option value="" { "any" }
                    @for n in &names { option value=(n) selected[f.workflow == *n] { (n) } }
                }
            }
            label { "State"
                select name="state" {
                    option value="" { "any" }
                    @for s in RUN_STATES {
                        @let s = run_state(*s as i32);
                        option value=(s) selected[f.states.iter().any(|x| x == s)] { (s) }
                    }
                }
            }
            label { "Failed step"
                input name="failed_step" list="steps" value=(f.failed_step) placeholder="activate_onu";
                datalist #steps { @for s in &steps { option value=(s) {} } }
            }
            label.wide { "Search attributes"
                input name="search" value=(f.search) placeholder=(hint);
            }
            label { "Idempotency key" input name="key" value=(f.key); }
            label { "Created from (UTC)" input type="datetime-local" name="from" value=(f.from); }
            label { "to" input type="datetime-local" name="to" value=(f.to); }
            button.primary type="submit" { "Filter" }
            a.button href="/ui/runs" { "Clear" }
        }
    }
}

/// The counts, the table, the pages and the bulk form of `filter`.
async fn results(state: &UiState, session: &Session, filter: &Filter) -> Markup {
    let req = match filter.request() {
        Ok(r) => r,
        Err(e) => return html! { p.error role="alert" { (e) } },
    };
    let answer = state
        .apis
        .workflows
        .list_workflows(session.request(req))
        .await
        .map(|r| r.into_inner());
    let list = match answer {
        Ok(l) => l,
        Err(status) => {
            return html! { p.error role="alert" { (status.message()) } };
        }
    };
    let mut counts_filter = filter.clone();
    counts_filter.states.clear();
    html! {
        div.counts hx-get={ "/ui/runs/counts?" (counts_filter.query()) } hx-trigger="load" {
            span.muted { "counting…" }
        }
        @if list.workflows.is_empty() {
            p.muted #no-runs { "No runs match." }
        } @else {
            div.scroll {
                table.runs {
                    thead { tr { th { "Run" } th { "Workflow" } th { "State" } th { "Step" } th { "Search attributes" } th { "Created (UTC)" } } }
                    tbody {
                        @for w in &list.workflows { (row(w)) }
                    }
                }
            }
        }
        nav.pages {
            @if !filter.page.is_empty() {
                a.button href={ "/ui/runs?" (filter.query()) } { "← Newest" }
            }
            @if !list.next_page_token.is_empty() {
                a.button #older href={ "/ui/runs?" (filter.query()) "&page=" (seg(&list.next_page_token)) } { "Older →" }
            }
        }
        @if session.can_act() { (bulk_form(session, filter)) }
    }
}

fn row(w: &pb::Workflow) -> Markup {
    let st = run_state(w.state);
    let mut attrs: Vec<_> = w.search_attributes.iter().collect();
    attrs.sort();
    html! {
        tr data-run=(w.id) {
            td { a.mono href={ "/ui/runs/" (w.id) } { (w.id.get(..8).unwrap_or(&w.id)) "…" } }
            td { (w.workflow_name) " v" (w.workflow_version) }
            td { (badge(st)) }
            td { (w.current_step) }
            td.small { @for (k, v) in attrs { span.attr { (k) "=" (v) } " " } }
            td.small { (time(w.created_at.as_ref())) }
        }
    }
}

fn bulk_form(session: &Session, filter: &Filter) -> Markup {
    html! {
        details.bulk {
            summary { "Bulk action on every run of this filter…" }
            form method="post" action="/ui/bulk" {
                input type="hidden" name=(CSRF_FIELD) value=(session.csrf);
                (filter.hidden())
                label { "Action"
                    select name="action" {
                        option value="retry" { "retry" }
                        option value="compensate" { "compensate" }
                        option value="cancel" { "cancel" }
                    }
                }
                label.wide { "Context patch for a retry (JSON object, optional)" textarea name="patch" rows="1" {} }
                label.wide { "Reason (kept in the audit trail)" input name="reason" required; }
                button type="submit" { "Count the runs (dry run)…" }
            }
        }
    }
}

/// `GET /ui/runs/counts`: how many runs of the filter are in each state.
pub async fn counts(
    State(state): State<UiState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Response {
    let filter = Filter::from_query(q.as_deref());
    let base = match filter.request() {
        Ok(r) => r,
        Err(e) => return Html(html! { p.error { (e) } }.into_string()).into_response(),
    };
    let calls = RUN_STATES.iter().map(|s| {
        let mut req = base.clone();
        req.states = vec![*s as i32];
        req.page_size = COUNT_CAP;
        req.page_token.clear();
        let api = state.apis.workflows.clone();
        let r = session.request(req);
        async move { (*s, api.list_workflows(r).await) }
    });
    let answers = futures::future::join_all(calls).await;
    let mut cells = Vec::new();
    for (s, answer) in answers {
        match answer {
            Ok(r) => {
                let r = r.into_inner();
                let n = r.workflows.len();
                let more = !r.next_page_token.is_empty();
                cells.push((run_state(s as i32), n, more));
            }
            Err(status) => return layout::status_fragment(&status),
        }
    }
    let q = filter.query();
    let sep = if q.is_empty() { "" } else { "&" };
    Html(
        html! {
            @for (s, n, more) in cells {
                a.count href={ "/ui/runs?" (q) (sep) "state=" (s) } data-state=(s) {
                    (badge(s)) " " strong { (n) @if more { "+" } }
                }
            }
        }
        .into_string(),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(q: &str) -> Filter {
        Filter::from_query(Some(q))
    }

    #[test]
    fn filters_become_list_requests_and_bad_fields_are_named() {
        let r = f("workflow=provision_subscriber&state=FAILED&failed_step=activate_onu&search=subscriber_id%3Dsub-1+onu_serial%3DX&from=2026-01-02T03:04")
            .request()
            .unwrap_or_default();
        assert_eq!(r.workflow_name, "provision_subscriber");
        assert_eq!(r.states, vec![pb::WorkflowState::Failed as i32]);
        assert_eq!(r.failed_step, "activate_onu");
        assert_eq!(
            r.search.get("subscriber_id").map(String::as_str),
            Some("sub-1")
        );
        assert_eq!(r.search.get("onu_serial").map(String::as_str), Some("X"));
        assert_eq!(r.created_after.map(|t| t.seconds), Some(1_767_323_040));
        for (q, says) in [
            ("state=NOPE", "unknown state"),
            ("search=subscriber_id", "name=value"),
            ("from=yesterday", "YYYY-MM-DDTHH:MM"),
        ] {
            let e = f(q).request().err().unwrap_or_default();
            assert!(e.contains(says), "{q}: {e}");
        }
        assert_eq!(
            f("state=FAILED&workflow=a&page=x").query(),
            "workflow=a&state=FAILED"
        );
    }
}
