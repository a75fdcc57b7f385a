//! ListWorkflows' side of the API, shared with BulkOperate: a request's
//! filter checked and turned into a [`RunFilter`], the opaque keyset page
//! tokens, and the runs as proto in the asked-for view (search attributes
//! always, input and context only in the FULL view).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::DateTime;
use sagaflow_proto::v1 as pb;
use tonic::Status;

use super::{check_text, convert};
use crate::Engine;
use crate::definition::WorkflowDefinition;
use crate::definition::search::{MAX_SEARCH_ATTRIBUTES, MAX_SEARCH_VALUE_LEN};
use crate::ids::RunId;
use crate::store::{RunFilter, RunRecord};

/// The filter of `r` (page token and size aside) as a [`RunFilter`] of
/// `limit` runs; bad values are refused with a message saying what to fix.
pub(super) async fn run_filter(
    engine: &Engine,
    r: &pb::ListWorkflowsRequest,
    limit: u32,
) -> Result<RunFilter, Status> {
    check_text("workflow_name", &r.workflow_name, 100)?;
    check_text("concurrency_key", &r.concurrency_key, 256)?;
    check_text("idempotency_key", &r.idempotency_key, 256)?;
    check_text("failed_step", &r.failed_step, 100)?;
    let workflow = (!r.workflow_name.is_empty()).then_some(r.workflow_name.as_str());
    let states = r
        .states
        .iter()
        .map(|s| convert::run_state_from(*s))
        .collect::<Result<Vec<_>, _>>()?;
    let failed_at = if r.failed_step.is_empty() {
        None
    } else {
        let at = engine
            .failed_at(workflow, &r.failed_step)
            .await
            .map_err(convert::status)?;
        if at.is_empty() {
            return Err(Status::invalid_argument(format!(
                "failed_step: {} has no step {:?}",
                workflow.map_or("no workflow".to_owned(), |w| format!("workflow {w:?}")),
                r.failed_step
            )));
        }
        Some(at)
    };
    let search = search_filter(engine, workflow, &r.search)?;
    Ok(RunFilter {
        workflow_name: workflow.map(str::to_owned),
        states,
        concurrency_key: (!r.concurrency_key.is_empty()).then(|| r.concurrency_key.clone()),
        created_after: r
            .created_after
            .as_ref()
            .map(convert::from_timestamp)
            .transpose()?,
        created_before: r
            .created_before
            .as_ref()
            .map(convert::from_timestamp)
            .transpose()?,
        idempotency_key: (!r.idempotency_key.is_empty()).then(|| r.idempotency_key.clone()),
        failed_at,
        search,
        before: if r.page_token.is_empty() {
            None
        } else {
            Some(decode_page_token(&r.page_token)?)
        },
        limit,
    })
}

/// The `search` map checked against the search attributes the loaded
/// definitions (of `workflow`, when named) declare.
fn search_filter(
    engine: &Engine,
    workflow: Option<&str>,
    search: &HashMap<String, String>,
) -> Result<Vec<(String, String)>, Status> {
    if search.len() > MAX_SEARCH_ATTRIBUTES {
        return Err(Status::invalid_argument(format!(
            "search names {} attributes; at most {MAX_SEARCH_ATTRIBUTES} may be combined",
            search.len()
        )));
    }
    let mut known: Vec<&str> = engine
        .definitions()
        .all()
        .filter(|d| workflow.is_none_or(|w| d.definition.name == w))
        .flat_map(|d| d.definition.search_attributes.iter().map(String::as_str))
        .collect();
    known.sort_unstable();
    known.dedup();
    let mut out = Vec::with_capacity(search.len());
    for (key, value) in search {
        check_text("search attribute", key, 100)?;
        check_text(&format!("search.{key}"), value, MAX_SEARCH_VALUE_LEN)?;
        if !known.contains(&key.as_str()) {
            return Err(Status::invalid_argument(format!(
                "search: {key:?} is not a search attribute of {}; known: {}",
                workflow.map_or("any workflow".to_owned(), |w| format!("workflow {w:?}")),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )));
        }
        if value.is_empty() {
            return Err(Status::invalid_argument(format!(
                "search.{key} needs a value, e.g. search.{key}=alice"
            )));
        }
        out.push((key.clone(), value.clone()));
    }
    out.sort();
    Ok(out)
}

/// The runs as proto: search attributes from each run's definition; input
/// and context only when `full`.
pub(super) async fn workflows(
    engine: &Engine,
    runs: &[RunRecord],
    full: bool,
) -> Vec<pb::Workflow> {
    let mut defs: HashMap<&str, Option<Arc<WorkflowDefinition>>> = HashMap::new();
    let mut out = Vec::with_capacity(runs.len());
    for run in runs {
        if !defs.contains_key(run.definition_id.as_str()) {
            let d = engine.definition_of(run).await.ok();
            defs.insert(&run.definition_id, d);
        }
        let def = defs
            .get(run.definition_id.as_str())
            .and_then(|d| d.as_deref());
        let mut w = convert::workflow(run, None);
        if let Some(d) = def {
            w.search_attributes = d.search_values(&run.input).into_iter().collect();
        }
        if !full {
            w.input = None;
            w.context = None;
        }
        out.push(w);
    }
    out
}

/// Whether the request asks for the FULL view (input and context).
pub(super) fn full_view(r: &pb::ListWorkflowsRequest) -> Result<bool, Status> {
    match pb::WorkflowView::try_from(r.view) {
        Ok(pb::WorkflowView::Full) => Ok(true),
        Ok(_) => Ok(false),
        Err(_) => Err(Status::invalid_argument(format!(
            "view {} is not a view; use WORKFLOW_VIEW_BASIC or WORKFLOW_VIEW_FULL",
            r.view
        ))),
    }
}

/// A page token's text as the opaque token clients see (hex).
pub(super) fn encode_token_text(raw: &str) -> String {
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The text inside a page token; none for anything not made by
/// [`encode_token_text`] (or longer than any token this server makes).
pub(super) fn decode_token_text(token: &str) -> Option<String> {
    if token.len() > 200 || !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<_, _>>()
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Keyset page tokens: opaque to clients, `(created_at, id)` inside.
pub(super) fn encode_page_token(run: &RunRecord) -> String {
    encode_token_text(&format!("{}:{}", run.created_at.timestamp_micros(), run.id))
}

fn decode_page_token(token: &str) -> Result<(DateTime<chrono::Utc>, RunId), Status> {
    let bad = || Status::invalid_argument("page_token is not a token this server gave out");
    let raw = decode_token_text(token).ok_or_else(bad)?;
    let (micros, id) = raw.split_once(':').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    Ok((at, id.parse().map_err(|_| bad())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let run_created = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let id = RunId::new();
        let raw = format!("{}:{}", run_created.timestamp_micros(), id);
        let token: String = raw.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(decode_page_token(&token).unwrap(), (run_created, id));
        for bad in ["x", "zz", "abc", "3a3a", &"a".repeat(300)] {
            assert_eq!(
                decode_page_token(bad).unwrap_err().code(),
                tonic::Code::InvalidArgument
            );
        }
    }
}
