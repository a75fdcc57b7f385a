//! `sagaflow schedule …` (admin role).

use sagaflow_proto::v1 as pb;
use serde_json::json;

use super::client::{Client, ClientError, Output, json_object};
use super::render::*;

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
