//! `sagaflow workflow …` and `sagaflow definitions`.

use sagaflow_proto::v1 as pb;
use serde_json::{Value, json};

use super::client::{Client, ClientError, Output, json_object};
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
    },
    /// Show one run with its steps.
    Get { id: String },
    /// List runs, newest first.
    List {
        #[arg(long, default_value = "")]
        workflow: String,
        /// Filter by state (repeatable), e.g. --state FAILED.
        #[arg(long = "state")]
        states: Vec<String>,
        #[arg(long, default_value = "")]
        concurrency_key: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Follow a run's events until it ends.
    Watch { id: String },
    /// Show a run's full history.
    History { id: String },
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

fn state_number(s: &str) -> Result<i32, ClientError> {
    let name = format!("WORKFLOW_STATE_{}", s.to_ascii_uppercase());
    pb::WorkflowState::from_str_name(&name)
        .map(|s| s as i32)
        .ok_or_else(|| ClientError::Usage(format!("unknown state {s:?}")))
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
        } => {
            let input = json_object(&input, "--input")?;
            let r = c.req(pb::StartWorkflowRequest {
                workflow_name: name,
                input: Some(input),
                idempotency_key,
                workflow_version: version,
            });
            let resp = c.inner.start_workflow(r).await?.into_inner();
            let w = resp.workflow.unwrap_or_default();
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
        }
        WorkflowCommand::Get { id } => {
            let r = c.req(pb::GetWorkflowRequest { id });
            print_workflow(&c.inner.get_workflow(r).await?.into_inner(), out);
        }
        WorkflowCommand::List {
            workflow,
            states,
            concurrency_key,
            limit,
            page_token,
        } => {
            let states = states
                .iter()
                .map(|s| state_number(s))
                .collect::<Result<_, _>>()?;
            let r = c.req(pb::ListWorkflowsRequest {
                workflow_name: workflow,
                states,
                concurrency_key,
                page_size: limit,
                page_token,
                ..Default::default()
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
        WorkflowCommand::Watch { id } => {
            let r = c.req(pb::WatchWorkflowRequest { id });
            let mut stream = c.inner.watch_workflow(r).await?.into_inner();
            while let Some(e) = stream.message().await? {
                print_event(&e, out);
            }
        }
        WorkflowCommand::History { id } => {
            let r = c.req(pb::GetWorkflowHistoryRequest { id });
            let events = c.inner.get_workflow_history(r).await?.into_inner().events;
            if out == Output::Json {
                print_json(&Value::Array(events.iter().map(event_json).collect()));
            } else {
                for e in &events {
                    print_event(e, out);
                }
            }
        }
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
