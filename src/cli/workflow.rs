//! `sagaflow workflow …` and `sagaflow definitions`.

use sagaflow_proto::v1 as pb;
use serde_json::{Value, json};

use super::client::{Client, ClientError, Output, json_object};
use super::filter::{BulkArgs, FilterArgs, bulk};
use super::render::*;

/// `sagaflow workflow …` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WorkflowCommand {
    /// Start a run.
    Start {
        /// The workflow's name, e.g. provision_subscriber.
        name: String,
        /// The input: a JSON object, or @file.
        #[arg(long, default_value = "{}")]
        input: String,
        #[arg(long, default_value = "")]
        idempotency_key: String,
        /// Pin a definition version (0: latest).
        #[arg(long, default_value_t = 0)]
        version: u32,
        /// Wait until the run ends (or stops for an operator) and exit by its
        /// outcome: 0 COMPLETED, 3 anything else.
        #[arg(long)]
        wait: bool,
    },
    /// Show one run with its steps.
    Get { id: String },
    /// List runs, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Runs per page (at most 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// The next page: the token the previous page printed.
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Follow a run's events until it ends (or stops for an operator); exits
    /// 0 when it COMPLETED, 3 otherwise (FAILED, COMPENSATED, CANCELLED, …).
    Watch { id: String },
    /// Show a run's history, oldest event first: the whole of it, or with
    /// --page-size/--page-token a page at a time (the next page's token on
    /// stderr); --all follows the pages to the end.
    History {
        id: String,
        /// Events per page (0: the server's default, 1000; at most 10000).
        #[arg(long)]
        page_size: Option<u32>,
        /// The next page: the token the previous page printed.
        #[arg(long)]
        page_token: Option<String>,
        /// Follow the pages to the end (from --page-token's, or the first).
        #[arg(long)]
        all: bool,
    },
    /// Resume a FAILED or COMPENSATION_FAILED run.
    Retry {
        id: String,
        #[arg(long, default_value = "")]
        from_step: String,
        /// A JSON object merged into the run's context first (or @file).
        #[arg(long)]
        patch: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Take a FAILED run, or one waiting for a signal or a timer, back to a
    /// step: the completed steps from it on are compensated in reverse, the
    /// patch is merged into the context, and the run goes forward again
    /// from that step.
    Rewind {
        id: String,
        /// The step to go back to (it is compensated and run again).
        #[arg(long)]
        to_step: String,
        /// Why (required; kept in the history and the audit trail).
        #[arg(long)]
        reason: String,
        /// A JSON object merged into the run's context (or @file).
        #[arg(long)]
        patch: Option<String>,
    },
    /// Retry, compensate or cancel every run a filter matches (after an
    /// outage: `bulk retry --failed-step activate_onu --state FAILED`).
    /// Shows the count and asks first; --dry-run only lists.
    Bulk(BulkArgs),
    /// Roll a FAILED run back.
    Compensate {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Mark the failed step of a FAILED run as done by hand.
    Skip {
        id: String,
        #[arg(long)]
        step: String,
        /// The step's output by hand: a JSON object merged into the context
        /// (or @file).
        #[arg(long)]
        step_output: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Deliver a named signal to a run: the step waiting for it takes the
    /// payload; a signal no step waits for yet is kept until one does.
    Signal {
        id: String,
        /// The signal's name, e.g. approve or cpe_inform.
        name: String,
        /// The payload: a JSON object, or @file.
        #[arg(long, default_value = "{}")]
        payload: String,
        /// Idempotency key: a repeat with the same key changes nothing.
        #[arg(long, default_value = "")]
        key: String,
    },
    /// Stop a PENDING, RUNNING or FAILED run (compensating by default), or
    /// end a COMPENSATION_FAILED one with --no-compensate.
    Cancel {
        id: String,
        /// End TERMINATED without compensating completed steps (a FAILED or
        /// COMPENSATION_FAILED run needs a --reason for it).
        #[arg(long)]
        no_compensate: bool,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// End a FAILED or COMPENSATION_FAILED run TERMINATED as resolved by
    /// hand, without compensating (cancel --no-compensate); frees its
    /// concurrency key.
    Resolve {
        id: String,
        /// What was done by hand (required; recorded in history and audit).
        #[arg(long)]
        reason: String,
    },
}

/// Follows run `id` until it ends or stops for an operator (FAILED,
/// COMPENSATION_FAILED), printing its events when `print` says how; its
/// outcome as the command's: Ok for COMPLETED.
async fn follow(c: &mut Client, id: &str, print: Option<Output>) -> Result<(), ClientError> {
    use pb::WorkflowState as W;
    let r = c.req(pb::WatchWorkflowRequest { id: id.to_owned() });
    let mut stream = c.inner.watch_workflow(r).await?.into_inner();
    let mut last = W::Unspecified as i32;
    while let Some(e) = stream.message().await? {
        if let Some(out) = print {
            print_event(&e, out);
        }
        last = e.workflow_state;
        if last == W::Failed as i32 || last == W::CompensationFailed as i32 {
            // History replays old events too: stop only if it still is.
            let now = c.req(pb::GetWorkflowRequest { id: id.to_owned() });
            let state = c.inner.get_workflow(now).await?.into_inner().state;
            if state == last {
                break;
            }
        }
    }
    if last == W::Completed as i32 {
        Ok(())
    } else {
        Err(ClientError::Outcome(state_name(last)))
    }
}

/// `sagaflow workflow history`: GetWorkflowHistory without page options,
/// ListWorkflowHistory's pages with them.
async fn history(
    c: &mut Client,
    id: String,
    page_size: Option<u32>,
    page_token: Option<String>,
    all: bool,
    out: Output,
) -> Result<(), ClientError> {
    let mut events = Vec::new();
    let mut next = String::new();
    if page_size.is_none() && page_token.is_none() && !all {
        let r = c.req(pb::GetWorkflowHistoryRequest { id });
        events = c.inner.get_workflow_history(r).await?.into_inner().events;
    } else {
        next = page_token.unwrap_or_default();
        loop {
            let r = c.req(pb::ListWorkflowHistoryRequest {
                id: id.clone(),
                page_size: page_size.unwrap_or(0),
                page_token: next,
            });
            let page = c.inner.list_workflow_history(r).await?.into_inner();
            events.extend(page.events);
            next = page.next_page_token;
            if !all || next.is_empty() {
                break;
            }
        }
    }
    if out == Output::Json {
        print_json(&Value::Array(events.iter().map(event_json).collect()));
    } else {
        for e in &events {
            print_event(e, out);
        }
    }
    if !next.is_empty() {
        // On stderr, so the JSON on stdout stays one array.
        eprintln!("more: --page-token {next} (or --all)");
    }
    Ok(())
}

pub async fn workflow(
    c: &mut Client,
    cmd: WorkflowCommand,
    out: Output,
) -> Result<(), ClientError> {
    match cmd {
        WorkflowCommand::Start {
            name,
            input,
            idempotency_key,
            version,
            wait,
        } => {
            let input = json_object(&input, "--input")?;
            let r = c.req(pb::StartWorkflowRequest {
                workflow_name: name,
                input: Some(input),
                idempotency_key,
                workflow_version: version,
            });
            let resp = c.inner.start_workflow(r).await?.into_inner();
            let mut w = resp.workflow.unwrap_or_default();
            let mut outcome = Ok(());
            if wait {
                outcome = follow(c, &w.id, None).await;
                if let Err(ClientError::Refused(_)) = outcome {
                    return outcome;
                }
                let r = c.req(pb::GetWorkflowRequest { id: w.id.clone() });
                w = c.inner.get_workflow(r).await?.into_inner();
            }
            if out == Output::Json {
                print_json(&json!({"created": resp.created, "workflow": workflow_json(&w)}));
            } else {
                println!(
                    "{} run {}",
                    if resp.created { "started" } else { "existing" },
                    w.id
                );
                print_workflow(&w, out);
            }
            return outcome;
        }
        WorkflowCommand::Get { id } => {
            let r = c.req(pb::GetWorkflowRequest { id });
            print_workflow(&c.inner.get_workflow(r).await?.into_inner(), out);
        }
        WorkflowCommand::List {
            filter,
            limit,
            page_token,
        } => {
            let view = if out == Output::Json {
                pb::WorkflowView::Full
            } else {
                pb::WorkflowView::Basic
            };
            let r = c.req(pb::ListWorkflowsRequest {
                page_size: limit,
                page_token,
                view: view as i32,
                ..filter.request()?
            });
            let resp = c.inner.list_workflows(r).await?.into_inner();
            if out == Output::Json {
                print_json(&json!({
                    "workflows": resp.workflows.iter().map(workflow_json).collect::<Vec<_>>(),
                    "next_page_token": resp.next_page_token,
                }));
            } else {
                println!(
                    "{:<36}  {:<24} {:<20} {:<24} STEP",
                    "ID", "WORKFLOW", "STATE", "CREATED"
                );
                for w in &resp.workflows {
                    println!(
                        "{:<36}  {:<24} {:<20} {:<24} {}",
                        w.id,
                        w.workflow_name,
                        state_name(w.state),
                        ts(&w.created_at).as_str().unwrap_or(""),
                        w.current_step
                    );
                }
                if !resp.next_page_token.is_empty() {
                    println!("more: --page-token {}", resp.next_page_token);
                }
            }
        }
        WorkflowCommand::Watch { id } => return follow(c, &id, Some(out)).await,
        WorkflowCommand::Rewind {
            id,
            to_step,
            reason,
            patch,
        } => {
            let context_patch = patch.map(|p| json_object(&p, "--patch")).transpose()?;
            let r = c.req(pb::RewindWorkflowRequest {
                id,
                to_step,
                context_patch,
                reason,
            });
            print_workflow(&c.inner.rewind_workflow(r).await?.into_inner(), out);
        }
        WorkflowCommand::Bulk(args) => return bulk(c, args, out).await,
        WorkflowCommand::History {
            id,
            page_size,
            page_token,
            all,
        } => history(c, id, page_size, page_token, all, out).await?,
        WorkflowCommand::Retry {
            id,
            from_step,
            patch,
            reason,
        } => {
            let context_patch = patch.map(|p| json_object(&p, "--patch")).transpose()?;
            let r = c.req(pb::RetryWorkflowRequest {
                id,
                from_step,
                context_patch,
                reason,
            });
            print_workflow(&c.inner.retry_workflow(r).await?.into_inner(), out);
        }
        WorkflowCommand::Compensate { id, reason } => {
            let r = c.req(pb::CompensateWorkflowRequest { id, reason });
            print_workflow(&c.inner.compensate_workflow(r).await?.into_inner(), out);
        }
        WorkflowCommand::Skip {
            id,
            step,
            step_output,
            reason,
        } => {
            let output = step_output
                .map(|o| json_object(&o, "--step-output"))
                .transpose()?;
            let r = c.req(pb::SkipStepRequest {
                id,
                step,
                output,
                reason,
            });
            print_workflow(&c.inner.skip_step(r).await?.into_inner(), out);
        }
        WorkflowCommand::Cancel {
            id,
            no_compensate,
            reason,
        } => {
            let r = c.req(pb::CancelWorkflowRequest {
                id,
                compensate: !no_compensate,
                reason,
            });
            print_workflow(&c.inner.cancel_workflow(r).await?.into_inner(), out);
        }
        WorkflowCommand::Signal {
            id,
            name,
            payload,
            key,
        } => {
            let payload = Some(json_object(&payload, "--payload")?);
            let r = c.req(pb::SignalWorkflowRequest {
                id,
                signal_name: name,
                payload,
                idempotency_key: key,
            });
            let answer = c.inner.signal_workflow(r).await?.into_inner();
            let w = answer.workflow.unwrap_or_default();
            if out == Output::Json {
                print_json(&json!({"delivered": answer.delivered, "workflow": workflow_json(&w)}));
            } else {
                println!(
                    "{}",
                    if answer.delivered {
                        "delivered: the waiting step took it"
                    } else {
                        "kept: no step waits for it yet"
                    }
                );
                print_workflow(&w, out);
            }
        }
        WorkflowCommand::Resolve { id, reason } => {
            let r = c.req(pb::CancelWorkflowRequest {
                id,
                compensate: false,
                reason,
            });
            print_workflow(&c.inner.cancel_workflow(r).await?.into_inner(), out);
        }
    }
    Ok(())
}

pub async fn definitions(c: &mut Client, out: Output) -> Result<(), ClientError> {
    let r = c.req(pb::ListWorkflowDefinitionsRequest {});
    let defs = c
        .inner
        .list_workflow_definitions(r)
        .await?
        .into_inner()
        .definitions;
    if out == Output::Json {
        print_json(&Value::Array(
            defs.iter()
                .map(|d| {
                    json!({
                        "name": d.name,
                        "version": d.version,
                        "description": d.description,
                        "steps": d.steps.iter().map(|s| json!({
                            "name": s.name, "handler": s.handler, "compensation_handler": s.compensation_handler,
                            "required": s.required, "max_attempts": s.max_attempts, "timeout_ms": s.timeout_ms,
                        })).collect::<Vec<_>>(),
                        "input_schema": struct_json(&d.input_schema),
                    })
                })
                .collect(),
        ));
    } else {
        println!(
            "{:<28} {:>7}  {:>5}  DESCRIPTION",
            "WORKFLOW", "VERSION", "STEPS"
        );
        for d in &defs {
            println!(
                "{:<28} {:>7}  {:>5}  {}",
                d.name,
                d.version,
                d.steps.len(),
                d.description
            );
        }
    }
    Ok(())
}
