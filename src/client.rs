//! The client side of the CLI: `sagaflow workflow …` and `sagaflow
//! definitions`, talking gRPC to a server, printing a table or JSON.

use std::io::Write;

use anyhow::Context;
use sagaflow_proto::json;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::workflow_service_client::WorkflowServiceClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// An error of a client command, with the exit code it gets.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the request (exit code 1).
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Refused(tonic::Status),
    /// The command line was wrong (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached (exit code 1).
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        ClientError::Refused(s)
    }
}

impl ClientError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => 2,
            _ => 1,
        }
    }
}

pub(crate) fn code_name(c: tonic::Code) -> String {
    sagaflow_engine::api::audit::code_name(c)
}

/// A connected client.
pub struct Client {
    inner: WorkflowServiceClient<Channel>,
    channel: Channel,
    token: String,
}

impl Client {
    pub async fn connect(server: &str, token: &str) -> Result<Self, ClientError> {
        let channel = Channel::from_shared(server.to_owned())
            .map_err(|e| ClientError::Usage(format!("--server {server:?}: {e}")))?
            .connect()
            .await
            .with_context(|| format!("cannot reach the sagaflow server at {server}"))?;
        Ok(Self {
            inner: WorkflowServiceClient::new(channel.clone()),
            channel,
            token: token.to_owned(),
        })
    }

    fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Ok(v) = format!("Bearer {}", self.token).parse() {
            r.metadata_mut().insert("authorization", v);
        }
        r
    }

    pub fn raw(&mut self) -> &mut WorkflowServiceClient<Channel> {
        &mut self.inner
    }
}

/// Parses a JSON object given inline or as `@file`.
pub fn json_object(arg: &str, what: &str) -> Result<prost_types::Struct, ClientError> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| ClientError::Usage(format!("{what}: cannot read {path}: {e}")))?,
        None => arg.to_owned(),
    };
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| ClientError::Usage(format!("{what} is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ClientError::Usage(format!("{what} must be a JSON object")));
    }
    Ok(json::json_to_struct(&v))
}

fn struct_json(s: &Option<prost_types::Struct>) -> Value {
    s.as_ref()
        .and_then(|s| json::struct_to_json(s).ok())
        .unwrap_or(Value::Null)
}

fn ts(t: &Option<prost_types::Timestamp>) -> Value {
    t.as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

fn state_name(n: i32) -> String {
    pb::WorkflowState::try_from(n)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("WORKFLOW_STATE_")
                .to_owned()
        })
        .unwrap_or_else(|_| n.to_string())
}

fn step_state_name(n: i32) -> String {
    pb::StepState::try_from(n)
        .map(|s| s.as_str_name().trim_start_matches("STEP_STATE_").to_owned())
        .unwrap_or_else(|_| n.to_string())
}

pub fn workflow_json(w: &pb::Workflow) -> Value {
    json!({
        "id": w.id,
        "tenant_id": w.tenant_id,
        "workflow_name": w.workflow_name,
        "workflow_version": w.workflow_version,
        "state": state_name(w.state),
        "input": struct_json(&w.input),
        "context": struct_json(&w.context),
        "steps": w.steps.iter().map(|s| json!({
            "name": s.name,
            "index": s.index,
            "state": step_state_name(s.state),
            "required": s.required,
            "attempts": s.attempts,
            "compensation_attempts": s.compensation_attempts,
            "last_error": s.last_error,
            "output": struct_json(&s.output),
            "started_at": ts(&s.started_at),
            "finished_at": ts(&s.finished_at),
            "next_attempt_at": ts(&s.next_attempt_at),
            "handler": s.handler,
            "compensation_handler": s.compensation_handler,
        })).collect::<Vec<_>>(),
        "current_step": w.current_step,
        "error": w.error,
        "idempotency_key": w.idempotency_key,
        "concurrency_key": w.concurrency_key,
        "schedule_id": w.schedule_id,
        "trace_id": w.trace_id,
        "created_at": ts(&w.created_at),
        "updated_at": ts(&w.updated_at),
        "finished_at": ts(&w.finished_at),
    })
}

pub fn event_json(e: &pb::WorkflowEvent) -> Value {
    json!({
        "workflow_id": e.workflow_id,
        "sequence": e.sequence,
        "at": ts(&e.at),
        "type": e.r#type,
        "step": e.step,
        "attempt": e.attempt,
        "workflow_state": state_name(e.workflow_state),
        "message": e.message,
        "actor": e.actor,
    })
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn print_workflow(w: &pb::Workflow, out: Output) {
    if out == Output::Json {
        return print_json(&workflow_json(w));
    }
    println!("id:        {}", w.id);
    println!("workflow:  {} v{}", w.workflow_name, w.workflow_version);
    println!("state:     {}", state_name(w.state));
    if !w.current_step.is_empty() {
        println!("step:      {}", w.current_step);
    }
    if !w.error.is_empty() {
        println!("error:     {}", w.error);
    }
    if !w.idempotency_key.is_empty() {
        println!("idem key:  {}", w.idempotency_key);
    }
    if !w.steps.is_empty() {
        println!();
        println!(
            "{:<3} {:<28} {:<20} {:>8} {:>5}  ERROR",
            "#", "STEP", "STATE", "ATTEMPTS", "COMP"
        );
        for s in &w.steps {
            println!(
                "{:<3} {:<28} {:<20} {:>8} {:>5}  {}",
                s.index,
                s.name,
                step_state_name(s.state),
                s.attempts,
                s.compensation_attempts,
                s.last_error
            );
        }
    }
}

fn print_event(e: &pb::WorkflowEvent, out: Output) {
    if out == Output::Json {
        println!("{}", event_json(e));
    } else {
        let at = ts(&e.at);
        println!(
            "{:>4}  {}  {:<28} {:<24} {:>3}  {:<20} {:<14} {}",
            e.sequence,
            at.as_str().unwrap_or(""),
            e.r#type,
            e.step,
            e.attempt,
            state_name(e.workflow_state),
            e.actor,
            e.message
        );
    }
    let _ = std::io::stdout().flush();
}

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

fn ts_str(t: &Option<prost_types::Timestamp>) -> String {
    ts(t).as_str().unwrap_or("-").to_owned()
}

fn enum_name(full: &str, prefix: &str) -> String {
    full.trim_start_matches(prefix).to_owned()
}

pub fn schedule_json(s: &pb::Schedule) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "cron": s.cron,
        "timezone": s.timezone,
        "workflow_name": s.workflow_name,
        "input": struct_json(&s.input),
        "paused": s.paused,
        "overlap_policy": pb::OverlapPolicy::try_from(s.overlap_policy).map(|p| enum_name(p.as_str_name(), "OVERLAP_POLICY_")).unwrap_or_default(),
        "catchup_policy": pb::CatchupPolicy::try_from(s.catchup_policy).map(|p| enum_name(p.as_str_name(), "CATCHUP_POLICY_")).unwrap_or_default(),
        "next_fire_at": ts(&s.next_fire_at),
        "last_fire_at": ts(&s.last_fire_at),
        "last_workflow_id": s.last_workflow_id,
        "created_at": ts(&s.created_at),
    })
}

fn print_schedules(all: &[pb::Schedule], out: Output) {
    if out == Output::Json {
        let v: Vec<Value> = all.iter().map(schedule_json).collect();
        return print_json(&Value::Array(v));
    }
    println!(
        "{:<36}  {:<24} {:<14} {:<22} {:<7} NEXT FIRE",
        "ID", "NAME", "CRON", "WORKFLOW", "PAUSED"
    );
    for s in all {
        println!(
            "{:<36}  {:<24} {:<14} {:<22} {:<7} {}",
            s.id,
            s.name,
            s.cron,
            s.workflow_name,
            s.paused,
            ts_str(&s.next_fire_at)
        );
    }
}

/// `sagaflow schedule …` subcommands (admin role).
#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Every schedule of the tenant.
    List,
    /// One schedule.
    Get {
        id: String,
    },
    /// Create a schedule.
    Create {
        /// Unique per tenant, e.g. ipv6-lifecycle-cleanup.
        name: String,
        /// Five fields, e.g. "0 2 * * *".
        #[arg(long)]
        cron: String,
        #[arg(long)]
        workflow: String,
        /// IANA time zone (default UTC).
        #[arg(long, default_value = "")]
        timezone: String,
        /// The input of every run: a JSON object or @file.
        #[arg(long, default_value = "{}")]
        input: String,
        /// skip, allow or buffer_one.
        #[arg(long, default_value = "skip")]
        overlap: String,
        /// none, one or all.
        #[arg(long, default_value = "one")]
        catchup: String,
        #[arg(long)]
        paused: bool,
    },
    Pause {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    Resume {
        id: String,
    },
    /// Start a run now; the next regular fire is unchanged.
    Trigger {
        id: String,
    },
    Delete {
        id: String,
    },
}

pub async fn schedule(
    c: &mut Client,
    cmd: ScheduleCommand,
    out: Output,
) -> Result<(), ClientError> {
    use sagaflow_proto::v1::schedule_service_client::ScheduleServiceClient;
    let mut s = ScheduleServiceClient::new(c.channel.clone());
    match cmd {
        ScheduleCommand::List => {
            let all = s
                .list_schedules(c.req(pb::ListSchedulesRequest {}))
                .await?
                .into_inner()
                .schedules;
            print_schedules(&all, out);
        }
        ScheduleCommand::Get { id } => {
            let one = s
                .get_schedule(c.req(pb::GetScheduleRequest { id }))
                .await?
                .into_inner();
            print_schedules(std::slice::from_ref(&one), out);
        }
        ScheduleCommand::Create {
            name,
            cron,
            workflow,
            timezone,
            input,
            overlap,
            catchup,
            paused,
        } => {
            let overlap = pb::OverlapPolicy::from_str_name(&format!(
                "OVERLAP_POLICY_{}",
                overlap.to_ascii_uppercase()
            ))
            .ok_or_else(|| {
                ClientError::Usage(format!(
                    "--overlap {overlap:?}: use skip, allow or buffer_one"
                ))
            })?;
            let catchup = pb::CatchupPolicy::from_str_name(&format!(
                "CATCHUP_POLICY_{}",
                catchup.to_ascii_uppercase()
            ))
            .ok_or_else(|| {
                ClientError::Usage(format!("--catchup {catchup:?}: use none, one or all"))
            })?;
            let r = pb::CreateScheduleRequest {
                name,
                cron,
                timezone,
                workflow_name: workflow,
                input: Some(json_object(&input, "--input")?),
                overlap_policy: overlap as i32,
                catchup_policy: catchup as i32,
                paused,
            };
            let one = s.create_schedule(c.req(r)).await?.into_inner();
            print_schedules(std::slice::from_ref(&one), out);
        }
        ScheduleCommand::Pause { id, reason } => {
            let one = s
                .pause_schedule(c.req(pb::PauseScheduleRequest { id, reason }))
                .await?
                .into_inner();
            print_schedules(std::slice::from_ref(&one), out);
        }
        ScheduleCommand::Resume { id } => {
            let one = s
                .resume_schedule(c.req(pb::ResumeScheduleRequest { id }))
                .await?
                .into_inner();
            print_schedules(std::slice::from_ref(&one), out);
        }
        ScheduleCommand::Trigger { id } => {
            let r = s
                .trigger_schedule(c.req(pb::TriggerScheduleRequest { id }))
                .await?
                .into_inner();
            let w = r.workflow.unwrap_or_default();
            if out == Output::Json {
                print_json(&json!({"created": r.created, "workflow": workflow_json(&w)}));
            } else {
                println!("started run {}", w.id);
            }
        }
        ScheduleCommand::Delete { id } => {
            s.delete_schedule(c.req(pb::DeleteScheduleRequest { id }))
                .await?;
            if out == Output::Json {
                print_json(&json!({"deleted": true}));
            } else {
                println!("deleted");
            }
        }
    }
    Ok(())
}

/// `sagaflow addresses <subscriber>`.
pub async fn addresses(c: &mut Client, subscriber: String, out: Output) -> Result<(), ClientError> {
    use sagaflow_proto::v1::lifecycle_service_client::LifecycleServiceClient;
    let mut l = LifecycleServiceClient::new(c.channel.clone());
    let all = l
        .get_subscriber_addresses(c.req(pb::GetSubscriberAddressesRequest {
            subscriber_id: subscriber,
        }))
        .await?
        .into_inner()
        .addresses;
    let fam = |n: i32| {
        pb::AddressFamily::try_from(n)
            .map(|f| enum_name(f.as_str_name(), "ADDRESS_FAMILY_"))
            .unwrap_or_default()
    };
    let st = |n: i32| {
        pb::LifecycleState::try_from(n)
            .map(|f| enum_name(f.as_str_name(), "LIFECYCLE_STATE_"))
            .unwrap_or_default()
    };
    if out == Output::Json {
        let v: Vec<Value> = all
            .iter()
            .map(|a| {
                json!({
                    "id": a.id, "subscriber_id": a.subscriber_id, "pool_id": a.pool_id, "family": fam(a.family),
                    "address": a.address, "state": st(a.state), "allocated_at": ts(&a.allocated_at),
                    "activated_at": ts(&a.activated_at), "suspended_at": ts(&a.suspended_at),
                    "revoked_at": ts(&a.revoked_at), "metadata": struct_json(&a.metadata), "workflow_id": a.workflow_id,
                })
            })
            .collect();
        print_json(&Value::Array(v));
    } else {
        println!(
            "{:<6} {:<28} {:<11} {:<26} WORKFLOW",
            "FAMILY", "ADDRESS", "STATE", "ACTIVATED"
        );
        for a in &all {
            println!(
                "{:<6} {:<28} {:<11} {:<26} {}",
                fam(a.family),
                a.address,
                st(a.state),
                ts_str(&a.activated_at),
                a.workflow_id
            );
        }
    }
    Ok(())
}

/// `sagaflow pools`.
pub async fn pools(c: &mut Client, out: Output) -> Result<(), ClientError> {
    use sagaflow_proto::v1::lifecycle_service_client::LifecycleServiceClient;
    let mut l = LifecycleServiceClient::new(c.channel.clone());
    let all = l
        .list_pools(c.req(pb::ListPoolsRequest {}))
        .await?
        .into_inner()
        .pools;
    if out == Output::Json {
        let v: Vec<Value> = all
            .iter()
            .map(|p| {
                json!({
                    "id": p.id, "name": p.name, "cidr": p.cidr, "prefix_length": p.prefix_length,
                    "capacity": p.capacity, "in_use": p.in_use, "utilization_percent": p.utilization_percent,
                    "warning_threshold_percent": p.warning_threshold_percent,
                    "critical_threshold_percent": p.critical_threshold_percent,
                })
            })
            .collect();
        print_json(&Value::Array(v));
    } else {
        println!(
            "{:<16} {:<22} {:>4} {:>12} {:>10} {:>7}",
            "POOL", "CIDR", "LEN", "CAPACITY", "IN USE", "USED %"
        );
        for p in &all {
            println!(
                "{:<16} {:<22} {:>4} {:>12} {:>10} {:>6.1}%",
                p.name, p.cidr, p.prefix_length, p.capacity, p.in_use, p.utilization_percent
            );
        }
    }
    Ok(())
}
