//! Schedules to proto, and the schedule fields of requests (id, overlap and
//! catch-up policies) to the domain.

use sagaflow_proto::v1 as pb;
use tonic::Status;

use super::{json_to_struct, timestamp};
use crate::schedule::{CatchupPolicy, OverlapPolicy, Schedule, ScheduleId};

pub fn schedule_id(s: &str) -> Result<ScheduleId, Status> {
    if s.len() == 36
        && let Ok(id) = s.parse()
    {
        return Ok(id);
    }
    let shown: String = s.chars().take(40).collect();
    Err(Status::invalid_argument(format!(
        "id must be a schedule id (a UUID such as 0190a5d2-ac96-7d4b-bcce-b302099a8057), not {shown:?}"
    )))
}

pub fn overlap(n: i32) -> Result<OverlapPolicy, Status> {
    match pb::OverlapPolicy::try_from(n) {
        Ok(pb::OverlapPolicy::Unspecified | pb::OverlapPolicy::Skip) => Ok(OverlapPolicy::Skip),
        Ok(pb::OverlapPolicy::Allow) => Ok(OverlapPolicy::Allow),
        Ok(pb::OverlapPolicy::BufferOne) => Ok(OverlapPolicy::BufferOne),
        Err(_) => Err(Status::invalid_argument(format!(
            "{n} is not an overlap policy"
        ))),
    }
}

pub fn catchup(n: i32) -> Result<CatchupPolicy, Status> {
    match pb::CatchupPolicy::try_from(n) {
        Ok(pb::CatchupPolicy::Unspecified | pb::CatchupPolicy::One) => Ok(CatchupPolicy::One),
        Ok(pb::CatchupPolicy::None) => Ok(CatchupPolicy::None),
        Ok(pb::CatchupPolicy::All) => Ok(CatchupPolicy::All),
        Err(_) => Err(Status::invalid_argument(format!(
            "{n} is not a catch-up policy"
        ))),
    }
}

/// A schedule as proto.
pub fn schedule(s: &Schedule) -> pb::Schedule {
    pb::Schedule {
        id: s.id.to_string(),
        name: s.name.clone(),
        cron: s.cron.clone(),
        timezone: s.timezone.clone(),
        workflow_name: s.workflow_name.clone(),
        input: Some(json_to_struct(&s.input)),
        paused: s.paused,
        overlap_policy: match s.overlap_policy {
            OverlapPolicy::Skip => pb::OverlapPolicy::Skip,
            OverlapPolicy::Allow => pb::OverlapPolicy::Allow,
            OverlapPolicy::BufferOne => pb::OverlapPolicy::BufferOne,
        } as i32,
        catchup_policy: match s.catchup_policy {
            CatchupPolicy::None => pb::CatchupPolicy::None,
            CatchupPolicy::One => pb::CatchupPolicy::One,
            CatchupPolicy::All => pb::CatchupPolicy::All,
        } as i32,
        next_fire_at: s.next_fire_at.map(timestamp),
        last_fire_at: s.last_fire_at.map(timestamp),
        last_workflow_id: s
            .last_workflow_id
            .map(|r| r.to_string())
            .unwrap_or_default(),
        created_at: Some(timestamp(s.created_at)),
    }
}
