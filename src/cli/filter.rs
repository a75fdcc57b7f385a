//! The run filter flags `workflow list` and `workflow bulk` share, and
//! `workflow bulk` itself: a dry run first, the count confirmed, then the
//! action.

use std::io::{BufRead, IsTerminal, Write};

use clap::builder::TypedValueParser;

use sagaflow_proto::v1 as pb;
use serde_json::json;

use super::client::{Client, ClientError, Output, json_object};
use super::render::print_json;

/// The run states the filter flags take (`FAILED`, `compensation_failed`,
/// …), read from the API's own enum, as its numbers.
fn state_parser() -> impl TypedValueParser<Value = i32> {
    let names: Vec<&'static str> = (1..=i32::from(u8::MAX))
        .map_while(|n| pb::WorkflowState::try_from(n).ok())
        .map(|s| s.as_str_name().trim_start_matches("WORKFLOW_STATE_"))
        .collect();
    clap::builder::PossibleValuesParser::new(names).map(|s: String| {
        pb::WorkflowState::from_str_name(&format!("WORKFLOW_STATE_{}", s.to_ascii_uppercase()))
            .map_or(0, |w| w as i32)
    })
}

/// Which runs: every flag narrows the set; none lists all.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Runs of this workflow only, e.g. provision_subscriber.
    #[arg(long, default_value = "")]
    pub workflow: String,
    /// Runs in this state (repeatable: any of them).
    #[arg(long = "state", value_parser = state_parser(), ignore_case = true)]
    pub states: Vec<i32>,
    /// Runs holding or queued on this concurrency key (e.g. a subscriber id).
    #[arg(long, default_value = "")]
    pub concurrency_key: String,
    /// The run started with this idempotency key (e.g. the CRM order id).
    #[arg(long, default_value = "")]
    pub idempotency_key: String,
    /// FAILED runs whose failed step is this one, e.g. activate_onu.
    #[arg(long, default_value = "")]
    pub failed_step: String,
    /// A search attribute = value (repeatable: all must match), e.g.
    /// subscriber_id=alice or customer.id=C-1001.
    #[arg(long = "search", value_name = "ATTRIBUTE=VALUE")]
    pub search: Vec<String>,
    /// Runs created after this time (RFC 3339, e.g. 2026-03-01T08:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub created_after: Option<String>,
    /// Runs created before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub created_before: Option<String>,
}

fn time(flag: &str, text: &Option<String>) -> Result<Option<prost_types::Timestamp>, ClientError> {
    let Some(text) = text else { return Ok(None) };
    let t = chrono::DateTime::parse_from_rfc3339(text).map_err(|e| {
        ClientError::Usage(format!(
            "{flag} {text:?} is not an RFC 3339 time (e.g. 2026-03-01T08:00:00Z): {e}"
        ))
    })?;
    Ok(Some(sagaflow_engine::api::convert::timestamp(
        t.with_timezone(&chrono::Utc),
    )))
}

impl FilterArgs {
    /// The ListWorkflows request these flags describe.
    pub fn request(&self) -> Result<pb::ListWorkflowsRequest, ClientError> {
        let mut search = std::collections::HashMap::new();
        for s in &self.search {
            let (k, v) = s
                .split_once('=')
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .ok_or_else(|| {
                    ClientError::Usage(format!(
                        "--search {s:?}: write ATTRIBUTE=VALUE, e.g. subscriber_id=alice"
                    ))
                })?;
            search.insert(k.to_owned(), v.to_owned());
        }
        Ok(pb::ListWorkflowsRequest {
            workflow_name: self.workflow.clone(),
            states: self.states.clone(),
            concurrency_key: self.concurrency_key.clone(),
            idempotency_key: self.idempotency_key.clone(),
            failed_step: self.failed_step.clone(),
            search,
            created_after: time("--created-after", &self.created_after)?,
            created_before: time("--created-before", &self.created_before)?,
            ..Default::default()
        })
    }
}

/// What `workflow bulk` does to each run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BulkActionArg {
    /// Resume each FAILED (or COMPENSATION_FAILED) run at its failed step.
    Retry,
    /// Roll each FAILED run back.
    Compensate,
    /// Cancel each run, compensating its completed steps.
    Cancel,
}

/// `sagaflow workflow bulk …`.
#[derive(Debug, Clone, clap::Args)]
pub struct BulkArgs {
    /// What to do to every matching run.
    #[arg(value_enum)]
    pub action: BulkActionArg,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only count and list the matching runs; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (needed without a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Act on at most this many runs (0: 1000; at most 10000).
    #[arg(long, default_value_t = 0)]
    pub max_runs: u32,
    /// Why (kept in every run's history and the audit trail).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// retry only: a JSON object merged into each run's context (or @file).
    #[arg(long)]
    pub patch: Option<String>,
}

pub async fn bulk(c: &mut Client, a: BulkArgs, out: Output) -> Result<(), ClientError> {
    let action = match a.action {
        BulkActionArg::Retry => pb::BulkAction::Retry,
        BulkActionArg::Compensate => pb::BulkAction::Compensate,
        BulkActionArg::Cancel => pb::BulkAction::Cancel,
    };
    let context_patch = a
        .patch
        .as_deref()
        .map(|p| json_object(p, "--patch"))
        .transpose()?;
    let request = |dry_run: bool, max_runs: u32| pb::BulkOperateRequest {
        filter: None,
        action: action as i32,
        dry_run,
        max_runs,
        reason: a.reason.clone(),
        context_patch: context_patch.clone(),
    };
    let filter = a.filter.request()?;
    let dry = c
        .inner
        .bulk_operate(c.req(pb::BulkOperateRequest {
            filter: Some(filter.clone()),
            ..request(true, a.max_runs)
        }))
        .await?
        .into_inner();
    if a.dry_run || dry.matched == 0 {
        return print_bulk(&dry, out, true);
    }
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            return Err(ClientError::Usage(format!(
                "{} runs match; pass --yes to {:?} them without a terminal (or --dry-run to list them)",
                dry.matched, a.action
            )));
        }
        eprint!(
            "{} runs match; {} them? [y/N] ",
            dry.matched,
            format!("{:?}", a.action).to_lowercase()
        );
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| ClientError::Usage(format!("cannot read the answer: {e}")))?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            return Err(ClientError::Usage("not confirmed; nothing changed".into()));
        }
    }
    // At most the confirmed count (runs that match since are left alone).
    let done = c
        .inner
        .bulk_operate(c.req(pb::BulkOperateRequest {
            filter: Some(filter),
            ..request(false, dry.matched)
        }))
        .await?
        .into_inner();
    print_bulk(&done, out, false)
}

fn print_bulk(r: &pb::BulkOperateResponse, out: Output, dry_run: bool) -> Result<(), ClientError> {
    if out == Output::Json {
        print_json(&json!({
            "dry_run": dry_run,
            "matched": r.matched,
            "workflow_ids": r.workflow_ids,
            "applied": r.applied,
            "refused": r.refused.iter().map(|x| json!({"workflow_id": x.workflow_id, "reason": x.reason})).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    if dry_run {
        println!("{} runs match (dry run: nothing changed)", r.matched);
        for id in &r.workflow_ids {
            println!("{id}");
        }
    } else {
        println!(
            "{} runs matched, {} acted on, {} refused",
            r.matched,
            r.applied,
            r.refused.len()
        );
        for x in &r.refused {
            println!("refused {}  {}", x.workflow_id, x.reason);
        }
    }
    Ok(())
}
